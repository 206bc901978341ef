/*
 * schema.c: pg_dump / pg_restore driving.
 */
#include "schema.h"

#include "log.h"
#include "proc.h"
#include "strbuf.h"

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ATTEMPTS 5
/* pg_dump of the schema is killed after 30 min (see dump_limit_ms) */
#define SCHEMA_DUMP_LIMIT_MS (30 * 60 * 1000LL)

/* "pg_dump (PostgreSQL) 15.18 (Debian ...)" -> 15; 0 when it does not run. */
static int tool_major(const char *path)
{
    const char *argv[] = {path, "--version", NULL};
    ProcResult r;
    int major = 0;
    const char *p;

    if (access(path, X_OK) != 0)
        return 0;
    if (proc_run(argv, NULL, true, &r) && (p = strstr(r.out.data, ") ")) != NULL)
        major = atoi(p + 2);
    proc_result_free(&r);
    return major;
}

/* What the search found, for the error message. */
typedef struct Seen {
    int best_dump;        /* newest pg_dump major seen */
    bool dump_no_restore; /* a pg_dump new enough without a matching pg_restore */
} Seen;

static bool try_dir(const char *dir, int need_major, PgTools *out, Seen *seen)
{
    char dump[4096], restore[4096];
    int m1, m2;

    snprintf(dump, sizeof(dump), "%s/pg_dump", dir);
    snprintf(restore, sizeof(restore), "%s/pg_restore", dir);
    m1 = tool_major(dump);
    m2 = tool_major(restore);
    if (m1 > seen->best_dump)
        seen->best_dump = m1;
    if (m1 >= need_major && m2 != m1)
        seen->dump_no_restore = true;
    if (m1 < need_major || m2 < need_major || m1 != m2)
        return false;
    snprintf(out->pg_dump, sizeof(out->pg_dump), "%s", dump);
    snprintf(out->pg_restore, sizeof(out->pg_restore), "%s", restore);
    out->major = m1;
    return true;
}

static bool try_path(int need_major, PgTools *out, Seen *best_seen)
{
    const char *path = getenv("PATH");
    char *copy, *save = NULL;
    bool found = false;

    if (!path)
        return false;
    copy = xstrdup(path);
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save))
        found = *d && try_dir(d, need_major, out, best_seen);
    free(copy);
    return found;
}

bool schema_find_tools(const char *pg_bin, int need_major, PgTools *out)
{
    return schema_find_tools_why(pg_bin, need_major, out, NULL, 0);
}

bool schema_find_tools_why(const char *pg_bin, int need_major, PgTools *out, char *why,
                           size_t whylen)
{
    Seen best = {0, false};
    glob_t g;
    bool found = false;
    const char *detail = NULL, *hint;
    char msg[600];

    if (pg_bin) {
        found = try_dir(pg_bin, need_major, out, &best);
    } else if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0) {
        /* newest first: glob sorts "10" before "9", so compare numbers */
        for (int want = 99; want >= need_major && !found; want--)
            for (size_t i = 0; i < g.gl_pathc && !found; i++)
                if (atoi(g.gl_pathv[i] + strlen("/usr/lib/postgresql/")) == want)
                    found = try_dir(g.gl_pathv[i], need_major, out, &best);
        globfree(&g);
    }
    if (!found && !pg_bin)
        found = try_path(need_major, out, &best);
    if (found) {
        log_debug("[schema] using %s (version %d)", out->pg_dump, out->major);
        return true;
    }
    if (best.dump_no_restore) {
        detail = "pgrelocate needs pg_restore of the same version as pg_dump.";
        hint = "Install the complete PostgreSQL client programs (Debian: postgresql-client-N) "
               "or name their directory with --pg-bin.";
        snprintf(msg, sizeof(msg), "pg_restore not found beside pg_dump%s%s", pg_bin ? " in " : "",
                 pg_bin ? pg_bin : "");
    } else if (best.best_dump == 0) {
        hint = "Install the PostgreSQL client programs (Debian: postgresql-client-N for the "
               "source's major version N) or name their directory with --pg-bin.";
        snprintf(msg, sizeof(msg), "pg_dump and pg_restore not found%s%s", pg_bin ? " in " : "",
                 pg_bin ? pg_bin : "");
    } else {
        detail = "pg_dump cannot read a server newer than itself, and pg_dump and pg_restore "
                 "must be of the same version.";
        hint = "Install postgresql-client of the source's major version or newer and name its "
               "directory with --pg-bin.";
        snprintf(msg, sizeof(msg), "pg_dump %d is older than the source server (%d)",
                 best.best_dump, need_major);
    }
    if (why) {
        snprintf(why, whylen, "%s", msg);
        return false;
    }
    log_note_lasting_error(); /* until someone installs them */
    log_msg(LOG_ERROR, detail, hint, "%s", msg);
    return false;
}

/* Log a failed child's stderr: first error line as the message, the rest as
 * DETAIL (bounded). */
static void log_child_failure(const char *ctx, const char *what, ProcResult *r)
{
    char *text = r->err.data;
    size_t n = strlen(text);

    while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
        text[--n] = '\0';
    if (n > 4000)
        text[4000] = '\0';
    log_msg(LOG_ERROR, text[0] ? text : NULL,
            strstr(text, "role \"") && strstr(text, "does not exist")
                ? "Create the source's roles on the target first (pg_dumpall --roles-only), "
                  "or run with --no-owner --no-acl."
                : NULL,
            "[%s] %s failed (exit code %d)", ctx, what, r->exit_code);
}

/* How long pg_dump of the schema may run: a schema-only dump is short (its
 * locks wait at most --lock-wait-timeout); one still running after this
 * waits on a stopped or hung source, which connect_timeout and keepalives
 * do not end.  PGRELOCATE_TEST_DUMP_LIMIT_MS shortens it for the tests.
 * pg_restore and the data phase get no such limit: they are legitimately
 * long. */
static int64_t dump_limit_ms(void)
{
    const char *t = getenv("PGRELOCATE_TEST_DUMP_LIMIT_MS");

    return t && atoll(t) > 0 ? atoll(t) : SCHEMA_DUMP_LIMIT_MS;
}

bool schema_dump(const PgTools *t, const ConnInfo *src, const char *snapshot, const char *path,
                 char *const *excludes, int nexcludes)
{
    const char *extra[2 + CONNINFO_TIMEOUTS_MAX] = {"fallback_application_name",
                                                    "pgrelocate pg_dump"};
    char *conn;

    conninfo_timeouts(src, extra + 2);
    conn = conninfo_for_child(src, extra);
    char *dbarg = xasprintf("--dbname=%s", conn);
    char *snaparg = xasprintf("--snapshot=%s", snapshot);
    char *filearg = xasprintf("--file=%s", path);
    const char *fixed[] = {t->pg_dump,
                           "--format=custom",
                           "--section=pre-data",
                           "--section=post-data",
                           "--exclude-schema=pgrelocate",
                           "--no-subscriptions",
                           "--no-sync",
                           "--lock-wait-timeout=60s",
                           snaparg,
                           filearg,
                           dbarg};
    size_t nfixed = sizeof(fixed) / sizeof(fixed[0]), k = 0;
    const char **argv = xcalloc(nfixed + 2 * (size_t)nexcludes + 1, sizeof(char *));
    ProcResult r;
    bool ok;

    for (size_t i = 0; i < nfixed; i++)
        argv[k++] = fixed[i];
    for (int i = 0; i < nexcludes; i++) { /* --tables: each pattern names one relation */
        argv[k++] = "--exclude-table";
        argv[k++] = excludes[i];
    }
    ok = proc_run_limited(argv, conninfo_password(src), false, dump_limit_ms(), &r);
    if (r.killed)
        log_msg(LOG_ERROR, NULL,
                "Check that the source is running and not stopped or overloaded, and that no "
                "session holds a lock on its catalogs, then run again.",
                "[schema] pg_dump of the source schema was still running after %lld s: killed (%s)",
                (long long)(dump_limit_ms() / 1000), conninfo_display(src));
    else if (!ok)
        log_child_failure("schema", "pg_dump of the source schema", &r);
    proc_result_free(&r);
    free(argv);
    free(conn);
    free(dbarg);
    free(snaparg);
    free(filearg);
    return ok;
}

/* argv for pg_restore into the target; extra_args NULL-terminated. */
static const char **restore_argv(const PgTools *t, const char *dbarg, const SchemaOpts *so,
                                 const char *const *extra_args, const char *archive)
{
    const char **argv = xcalloc(16, sizeof(char *));
    int k = 0;

    argv[k++] = t->pg_restore;
    argv[k++] = "--exit-on-error";
    argv[k++] = "--single-transaction";
    if (so->no_owner)
        argv[k++] = "--no-owner";
    if (so->no_acl)
        argv[k++] = "--no-acl";
    for (const char *const *e = extra_args; e && *e && k < 13; e++)
        argv[k++] = *e;
    argv[k++] = dbarg;
    argv[k++] = archive;
    argv[k] = NULL;
    return argv;
}

static char *target_dbarg(const ConnInfo *tgt)
{
    const char *extra[2 + CONNINFO_TIMEOUTS_MAX] = {"fallback_application_name",
                                                    "pgrelocate pg_restore"};
    char *conn, *dbarg;

    conninfo_timeouts(tgt, extra + 2);
    conn = conninfo_for_child(tgt, extra);
    dbarg = xasprintf("--dbname=%s", conn);

    free(conn);
    return dbarg;
}

bool schema_restore_pre(const PgTools *t, const ConnInfo *tgt, const char *archive,
                        const SchemaOpts *so)
{
    const char *extra[] = {"--section=pre-data", NULL};
    char *dbarg = target_dbarg(tgt);
    const char **argv = restore_argv(t, dbarg, so, extra, archive);
    ProcResult r;
    bool ok = proc_run(argv, conninfo_password(tgt), false, &r);

    if (!ok)
        log_child_failure("schema", "restoring the pre-data schema on the target", &r);
    proc_result_free(&r);
    free(argv);
    free(dbarg);
    return ok;
}

typedef struct KindWave {
    const char *kind;
    PostWave wave;
} KindWave;

/* Longest names first where one is a prefix of another. */
static const KindWave kind_waves[] = {
    {"FK CONSTRAINT", POST_WAVE_FK},    {"CHECK CONSTRAINT", POST_WAVE_BUILD},
    {"INDEX ATTACH", POST_WAVE_ATTACH}, {"CONSTRAINT", POST_WAVE_BUILD},
    {"INDEX", POST_WAVE_BUILD},
};

static PostWave wave_of(const char *desc)
{
    for (size_t i = 0; i < sizeof(kind_waves) / sizeof(kind_waves[0]); i++) {
        size_t n = strlen(kind_waves[i].kind);

        if (strncmp(desc, kind_waves[i].kind, n) == 0 && desc[n] == ' ')
            return kind_waves[i].wave;
    }
    return POST_WAVE_REST;
}

/* "3254; 2606 16403 CONSTRAINT public t t_pkey owner" -> id 3254, catalog
 * 2606, object 16403, desc from the type on.  Returns false for comment and
 * blank lines. */
static bool parse_list_line(char *line, PostEntry *e)
{
    char *p = line, *end;
    unsigned long oids[2] = {0, 0};
    long id;

    if (*line == ';' || *line == '\0')
        return false;
    id = strtol(line, &end, 10);
    if (end == line || *end != ';' || id <= 0)
        return false;
    p = end + 1;
    for (int field = 0; field < 2; field++) { /* catalog oid, object oid */
        while (*p == ' ')
            p++;
        oids[field] = strtoul(p, NULL, 10);
        while (*p && *p != ' ')
            p++;
    }
    while (*p == ' ')
        p++;
    e->dump_id = (int)id;
    e->catalog_oid = (unsigned int)oids[0];
    e->object_oid = (unsigned int)oids[1];
    e->desc = xstrdup(p);
    e->wave = wave_of(p);
    e->done = false;
    return true;
}

bool schema_list_post(const PgTools *t, const char *archive, PostEntry **out, int *n)
{
    const char *argv[] = {t->pg_restore, "--list", "--section=post-data", archive, NULL};
    ProcResult r;
    int cap = 64, count = 0;
    PostEntry *entries;
    char *save = NULL;

    if (!proc_run(argv, NULL, true, &r)) {
        log_child_failure("schema", "listing the post-data schema", &r);
        proc_result_free(&r);
        return false;
    }
    entries = xcalloc((size_t)cap, sizeof(PostEntry));
    for (char *line = strtok_r(r.out.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (count == cap) {
            cap *= 2;
            entries = xrealloc(entries, (size_t)cap * sizeof(PostEntry));
        }
        if (parse_list_line(line, &entries[count]))
            count++;
    }
    proc_result_free(&r);
    *out = entries;
    *n = count;
    return true;
}

void schema_free_post(PostEntry *entries, int n)
{
    for (int i = 0; i < n; i++)
        free(entries[i].desc);
    free(entries);
}

/* Write the dump ids of entries[idx[0..nidx)] to a list file. */
static bool write_list(const char *path, const PostEntry *entries, const int *idx, int nidx)
{
    FILE *f = fopen(path, "w");

    if (!f) {
        log_error("[schema] could not write \"%s\": %m", path);
        return false;
    }
    for (int i = 0; i < nidx; i++)
        fprintf(f, "%d;\n", entries[idx[i]].dump_id);
    return fclose(f) == 0;
}

static char *read_file_text(const char *path)
{
    FILE *f = fopen(path, "r");
    StrBuf sb;
    char buf[4096];
    size_t n;

    strbuf_init(&sb);
    if (f) {
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            strbuf_append_len(&sb, buf, n);
        fclose(f);
    }
    return strbuf_detach(&sb);
}

typedef struct PostRun {
    const PgTools *tools;
    const SchemaOpts *so;
    const char *archive;
    const char *dbarg;
    const char *password;
    const char *tmpdir;
    bool resuming;
    PostDoneFn done;
    void *arg;
} PostRun;

/* Run one pg_restore over entries idx[0..nidx) in one transaction, in the
 * background.  Returns the pid or -1. */
static pid_t spawn_batch(const PostRun *pr, const PostEntry *entries, const int *idx, int nidx,
                         int slot)
{
    char *list = xasprintf("%s/post-%d.list", pr->tmpdir, slot);
    char *errp = xasprintf("%s/post-%d.err", pr->tmpdir, slot);
    char *listarg = xasprintf("--use-list=%s", list);
    const char *extra[] = {listarg, NULL};
    const char **argv = restore_argv(pr->tools, pr->dbarg, pr->so, extra, pr->archive);
    pid_t pid = -1;

    if (write_list(list, entries, idx, nidx))
        pid = proc_spawn(argv, pr->password, errp);
    free(argv);
    free(listarg);
    free(list);
    free(errp);
    return pid;
}

typedef enum { BATCH_DONE, BATCH_RETRY, BATCH_FAILED } BatchOutcome;

static BatchOutcome judge_batch(const PostRun *pr, int exit_code, int slot, const char *what)
{
    char *errp = xasprintf("%s/post-%d.err", pr->tmpdir, slot);
    char *text = read_file_text(errp);
    BatchOutcome o = BATCH_DONE;

    if (exit_code != 0) {
        if (strstr(text, "deadlock detected") || strstr(text, "could not serialize"))
            o = BATCH_RETRY;
        else if (pr->resuming && (strstr(text, "already exists") ||
                                  strstr(text, "multiple primary keys for table")))
            o = BATCH_DONE;
        else {
            ProcResult r = {.exit_code = exit_code};

            strbuf_init(&r.out);
            strbuf_init(&r.err);
            strbuf_append(&r.err, text);
            log_child_failure("indexes", what, &r);
            proc_result_free(&r);
            o = BATCH_FAILED;
        }
    }
    unlink(errp);
    free(errp);
    free(text);
    return o;
}

/* Next entry of wave that is neither done nor running, or -1. */
static int next_pending(const PostEntry *entries, int n, PostWave wave, const bool *inflight)
{
    for (int i = 0; i < n; i++)
        if (!entries[i].done && !inflight[i] && entries[i].wave == wave)
            return i;
    return -1;
}

/* Account for one finished child; false when the run must stop. */
static bool finish_one(const PostRun *pr, PostEntry *e, int code, int slot, int *attempts)
{
    switch (judge_batch(pr, code, slot, e->desc)) {
    case BATCH_DONE:
        e->done = true;
        return !pr->done || pr->done(e, pr->arg);
    case BATCH_RETRY:
        if (++*attempts < MAX_ATTEMPTS) {
            log_notice("[indexes] %s: deadlock, trying again", e->desc);
            return true;
        }
        log_error("[indexes] %s: deadlocked %d times", e->desc, MAX_ATTEMPTS);
        return false;
    case BATCH_FAILED:
        break;
    }
    return false;
}

/* Run the pending entries of one wave, one entry per child, up to jobs at
 * once.  On failure waits for the running children before returning. */
static bool run_parallel(const PostRun *pr, PostEntry *entries, int n, PostWave wave, int jobs)
{
    pid_t *pids = xcalloc((size_t)jobs, sizeof(pid_t));
    int *slot_entry = xcalloc((size_t)jobs, sizeof(int));
    int *attempts = xcalloc((size_t)n + 1, sizeof(int));
    bool *inflight = xcalloc((size_t)n + 1, sizeof(bool));
    int running = 0;
    bool ok = true;

    for (;;) {
        int code, s = 0, i;
        pid_t pid;

        for (s = 0; s < jobs && ok; s++) {
            if (pids[s] > 0 || (i = next_pending(entries, n, wave, inflight)) < 0)
                continue;
            pids[s] = spawn_batch(pr, entries, &i, 1, s);
            if (pids[s] <= 0) {
                pids[s] = 0;
                ok = false;
                break;
            }
            log_debug("[indexes] %s", entries[i].desc);
            slot_entry[s] = i;
            inflight[i] = true;
            running++;
        }
        if (running == 0 || (pid = proc_wait_one(pids, jobs, &code)) < 0)
            break;
        for (s = 0; s < jobs && pids[s] != pid; s++)
            ;
        pids[s] = 0;
        running--;
        i = slot_entry[s];
        inflight[i] = false;
        if (!finish_one(pr, &entries[i], code, s, &attempts[i]))
            ok = false;
    }
    free(pids);
    free(slot_entry);
    free(attempts);
    free(inflight);
    return ok;
}

/* Run the pending entries of one wave in one pg_restore, one transaction. */
static bool run_serial(const PostRun *pr, PostEntry *entries, int n, PostWave wave)
{
    int *idx = xcalloc((size_t)n, sizeof(int));
    int nidx = 0, code;
    pid_t pid;
    bool ok = true;

    for (int i = 0; i < n; i++)
        if (!entries[i].done && entries[i].wave == wave)
            idx[nidx++] = i;
    if (nidx > 0) {
        pid = spawn_batch(pr, entries, idx, nidx, 0);
        ok = pid > 0 && proc_wait_one(&pid, 1, &code) == pid &&
             judge_batch(pr, code, 0,
                         wave == POST_WAVE_ATTACH ? "attaching partition indexes"
                                                  : "triggers, rules and the rest "
                                                    "of the post-data schema") == BATCH_DONE;
        for (int i = 0; ok && i < nidx; i++) {
            entries[idx[i]].done = true;
            if (pr->done && !pr->done(&entries[idx[i]], pr->arg))
                ok = false;
        }
    }
    free(idx);
    return ok;
}

bool schema_entry_is_table_build(const PostEntry *e)
{
    /* Not CHECK CONSTRAINT: a NOT VALID check on a table would also check
     * rows copied later into its inheritance children. */
    return e->wave == POST_WAVE_BUILD &&
           (strncmp(e->desc, "INDEX ", 6) == 0 || strncmp(e->desc, "CONSTRAINT ", 11) == 0);
}

bool schema_restore_entry(const PgTools *t, const ConnInfo *tgt, const char *archive,
                          const SchemaOpts *so, const PostEntry *e, const char *tmpdir, int slot,
                          bool resuming)
{
    char *dbarg = target_dbarg(tgt);
    PostRun pr = {t, so, archive, dbarg, conninfo_password(tgt), tmpdir, resuming, NULL, NULL};
    int idx = 0, attempts = 0, code;
    BatchOutcome o = BATCH_RETRY;

    while (o == BATCH_RETRY) {
        pid_t pid = spawn_batch(&pr, e, &idx, 1, slot);

        if (pid <= 0 || proc_wait_one(&pid, 1, &code) != pid) {
            log_error("[indexes] %s: could not run pg_restore", e->desc);
            o = BATCH_FAILED;
            break;
        }
        o = judge_batch(&pr, code, slot, e->desc);
        if (o == BATCH_RETRY && ++attempts >= MAX_ATTEMPTS) {
            log_error("[indexes] %s: deadlocked %d times", e->desc, MAX_ATTEMPTS);
            o = BATCH_FAILED;
        } else if (o == BATCH_RETRY)
            log_notice("[indexes] %s: deadlock, trying again", e->desc);
    }
    free(dbarg);
    return o == BATCH_DONE;
}

bool schema_restore_post(const PgTools *t, const ConnInfo *tgt, const char *archive,
                         const SchemaOpts *so, PostEntry *entries, int n, int jobs,
                         const char *tmpdir, bool resuming, PostDoneFn done, void *arg)
{
    char *dbarg = target_dbarg(tgt);
    PostRun pr = {t, so, archive, dbarg, conninfo_password(tgt), tmpdir, resuming, done, arg};
    bool ok = run_parallel(&pr, entries, n, POST_WAVE_BUILD, jobs) &&
              run_serial(&pr, entries, n, POST_WAVE_ATTACH) &&
              run_parallel(&pr, entries, n, POST_WAVE_FK, jobs) &&
              run_serial(&pr, entries, n, POST_WAVE_REST);

    free(dbarg);
    return ok;
}
