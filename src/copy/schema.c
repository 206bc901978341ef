/*
 * schema.c: pg_dump / pg_restore driving.  pg_restore never connects: it
 * writes SQL (--file=-) that runs on target sessions opened here, whose
 * results are judged by SQLSTATE.  Owns those sessions; not the archive's
 * storage (state.c) nor the order of the post-data waves' callers.
 */
#include "schema.h"

#include "conn.h"
#include "interrupt.h"
#include "log.h"
#include "proc.h"
#include "stall.h"
#include "strbuf.h"

#include <ctype.h>
#include <glob.h>
#include <poll.h>
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
    log_msg(LOG_ERROR, text[0] ? text : NULL, NULL, "[%s] %s failed (exit code %d)", ctx, what,
            r->exit_code);
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

/* argv for pg_restore writing the SQL of archive (the entries of list when
 * not NULL, else of section) to stdout: it never connects, the SQL runs on
 * our connections so that each outcome is judged by its SQLSTATE, not by
 * pg_restore's (translatable) message text.  Caller frees argv and *listarg. */
static const char **script_argv(const PgTools *t, const SchemaOpts *so, const char *section,
                                const char *list, char **listarg, const char *archive)
{
    const char **argv = xcalloc(12, sizeof(char *));
    int k = 0;

    argv[k++] = t->pg_restore;
    argv[k++] = "--single-transaction";
    argv[k++] = "--file=-";
    if (so->no_owner)
        argv[k++] = "--no-owner";
    if (so->no_acl)
        argv[k++] = "--no-acl";
    *listarg = list ? xasprintf("--use-list=%s", list) : xasprintf("--section=%s", section);
    argv[k++] = *listarg;
    argv[k++] = archive;
    argv[k] = NULL;
    return argv;
}

/* Blank out pg_restore's "\\restrict KEY" and "\\unrestrict KEY" lines
 * (psql meta-commands guarding a plain dump, CVE-2025-8714): they are no
 * SQL.  The first comes before any entry (after the header comments), the
 * other last; a line starting with a backslash inside a function body
 * between them is the body's. */
static void strip_restrict(char *sql)
{
    char *p = strncmp(sql, "\\restrict ", 10) == 0 ? sql : strstr(sql, "\n\\restrict ");
    char *last = NULL;

    if (p)
        for (p += *p == '\n'; *p && *p != '\n'; p++)
            *p = ' ';
    for (char *q = strstr(sql, "\n\\unrestrict "); q; q = strstr(q + 1, "\n\\unrestrict "))
        last = q;
    if (last)
        for (p = last + 1; *p && *p != '\n'; p++)
            *p = ' ';
}

/* The SQL pg_restore writes for section (list NULL) or for the entries of
 * the list file list; NULL after logging. Caller frees. */
static char *restore_script(const PgTools *t, const SchemaOpts *so, const char *section,
                            const char *list, const char *archive, const char *what)
{
    char *listarg;
    const char **argv = script_argv(t, so, section, list, &listarg, archive);
    ProcResult r;
    char *sql = NULL;

    if (proc_run(argv, NULL, true, &r)) {
        sql = strbuf_detach(&r.out);
        strip_restrict(sql);
    } else
        log_child_failure("schema", what, &r);
    proc_result_free(&r);
    free(argv);
    free(listarg);
    return sql;
}

/* The encoding pg_restore wrote script in (its "SET client_encoding = 'X';"
 * line, the source database's), into enc; "UTF8" when none is there. */
static void script_encoding(const char *script, char *enc, size_t enclen)
{
    const char *p = strstr(script, "\nSET client_encoding = '");
    size_t n = 0;

    if (p) {
        p += strlen("\nSET client_encoding = '");
        while (n + 1 < enclen && (isalnum((unsigned char)p[n]) || p[n] == '_'))
            n++;
    }
    if (p && n > 0 && p[n] == '\'')
        snprintf(enc, enclen, "%.*s", (int)n, p);
    else
        snprintf(enc, enclen, "UTF8");
}

/* A session for script: its client_encoding from the start (the server
 * converts the whole query string on receipt, before the script's own SET
 * runs), standard_conforming_strings on (the whole string is parsed
 * before its SETs run), no timeouts (index builds are long). */
static PGconn *restore_conn(const ConnInfo *tgt, const char *script)
{
    char enc[64];
    ConnOpts co = {
        .side = CONN_TARGET, .app_name = "pgrelocate pg_restore", .client_encoding = enc};
    PGconn *conn;

    script_encoding(script, enc, sizeof(enc));
    conn = conn_open(tgt, &co);
    if (conn && !conn_script(conn, "target", "SET standard_conforming_strings = on")) {
        conn_close(conn);
        conn = NULL;
    }
    return conn;
}

typedef enum { BATCH_DONE, BATCH_RETRY, BATCH_FAILED } BatchOutcome;

/* Whether a failed entry's SQLSTATE means its object is there already: a
 * resumed run whose previous one committed it and died before recording
 * it.  42P07 duplicate_table (an index's relation), 42710
 * duplicate_object (a constraint, trigger, rule, policy), 42P16
 * invalid_table_definition ("multiple primary keys"). */
static bool already_there(const char *state)
{
    return strcmp(state, "42P07") == 0 || strcmp(state, "42710") == 0 ||
           strcmp(state, "42P16") == 0;
}

/* "[ctx] what: the server's message" with its DETAIL and HINT; a missing
 * object (42704, roles among them: ALTER ... OWNER TO, GRANT) gets our hint
 * when the server gave none. */
static void log_entry_failure(PGconn *conn, const PGresult *res, const char *ctx, const char *what)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
    char *ours = conn_error_hint(res, conn); /* a full disk: rerunning start resumes */
    char *msg;

    if (strcmp(conn_sqlstate(res), "53100") == 0)
        hint = ours;
    if (!res || PQresultStatus(res) != PGRES_FATAL_ERROR) {
        conn_log_result_error(res, conn, ctx);
        free(ours);
        return;
    }
    if (!hint && strcmp(conn_sqlstate(res), "42704") == 0)
        hint = "If it names a role, create the source's roles on the target first "
               "(pg_dumpall --roles-only), or run with --no-owner --no-acl.";
    msg = conn_one_line(primary ? primary : PQresultErrorMessage(res));
    log_msg(LOG_ERROR, detail, hint, "[%s] %s: %s", ctx, what, msg);
    free(msg);
    free(ours);
    if (strncmp(conn_sqlstate(res), "42", 2) == 0)
        log_note_lasting_error();
}

/* Judge the last result of an entry's script (NULL: out of memory, see
 * PQerrorMessage), by its status and SQLSTATE; logs a failure as
 * "[ctx] what: the server's message".  A failed script's transaction is
 * rolled back so the session can run the next.  Frees res. */
static BatchOutcome judge_result(PGconn *conn, PGresult *res, bool resuming, const char *ctx,
                                 const char *what)
{
    const char *state = conn_sqlstate(res);
    BatchOutcome o = BATCH_FAILED;

    if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK)
        o = BATCH_DONE;
    else if (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0)
        o = BATCH_RETRY;
    else if (resuming && already_there(state)) {
        log_debug("[%s] %s: there already (SQLSTATE %s)", ctx, what, state);
        o = BATCH_DONE;
    } else
        log_entry_failure(conn, res, ctx, what);
    PQclear(res);
    if (PQtransactionStatus(conn) == PQTRANS_INERROR ||
        PQtransactionStatus(conn) == PQTRANS_INTRANS)
        PQclear(conn_exec(conn, ctx, "ROLLBACK"));
    return o;
}

/* Run script on conn (blocking) and judge it. */
static BatchOutcome run_script(PGconn *conn, const char *script, bool resuming, const char *ctx,
                               const char *what)
{
    return judge_result(conn, conn_exec(conn, ctx, script), resuming, ctx, what);
}

bool schema_restore_pre(const PgTools *t, const ConnInfo *tgt, const char *archive,
                        const SchemaOpts *so)
{
    const char *what = "restoring the pre-data schema on the target";
    char *sql = restore_script(t, so, "pre-data", NULL, archive, what);
    PGconn *conn = sql ? restore_conn(tgt, sql) : NULL;
    bool ok = conn && run_script(conn, sql, false, "schema", what) == BATCH_DONE;

    conn_close(conn);
    free(sql);
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

char *schema_pre_text(const PgTools *t, const char *archive, const SchemaOpts *so)
{
    const char *argv[7] = {t->pg_restore, "--section=pre-data", "--verbose", "--file=-"};
    int k = 4;
    ProcResult r;
    char *text = NULL;

    if (so->no_owner)
        argv[k++] = "--no-owner";
    if (so->no_acl)
        argv[k++] = "--no-acl";
    argv[k++] = archive;
    argv[k] = NULL;
    if (proc_run(argv, NULL, true, &r))
        text = strbuf_detach(&r.out);
    else
        log_child_failure("schema", "writing the pre-data schema as SQL", &r);
    proc_result_free(&r);
    return text;
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

typedef struct PostRun {
    const PgTools *tools;
    const SchemaOpts *so;
    const ConnInfo *tgt;
    const char *archive;
    const char *tmpdir;
    bool resuming;
    PostDoneFn done;
    void *arg;
} PostRun;

/* The SQL of entries idx[0..nidx) in one transaction; NULL after logging. */
static char *batch_script(const PostRun *pr, const PostEntry *entries, const int *idx, int nidx,
                          int slot, const char *what)
{
    char *list = xasprintf("%s/post-%d.list", pr->tmpdir, slot);
    char *sql = NULL;

    if (write_list(list, entries, idx, nidx))
        sql = restore_script(pr->tools, pr->so, NULL, list, pr->archive, what);
    unlink(list);
    free(list);
    return sql;
}

/* Next entry of wave that is neither done nor running, or -1. */
static int next_pending(const PostEntry *entries, int n, PostWave wave, const bool *inflight)
{
    for (int i = 0; i < n; i++)
        if (!entries[i].done && !inflight[i] && entries[i].wave == wave)
            return i;
    return -1;
}

/* Account for one judged entry; false when the run must stop. */
static bool finish_one(const PostRun *pr, PostEntry *e, BatchOutcome o, int *attempts)
{
    switch (o) {
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

/* One session of run_parallel: its connection and the entry it runs. */
typedef struct PostSlot {
    PGconn *conn;
    int entry; /* -1: idle */
    PGresult *last;
    StallWatch *watch; /* while it runs an entry: a stopped target is reported */
} PostSlot;

/* Send entry i's script on slot s (connecting first when needed). */
static bool start_entry(const PostRun *pr, PostEntry *entries, int i, PostSlot *sl, int s)
{
    char *sql = batch_script(pr, entries, &i, 1, s, entries[i].desc);
    bool ok = sql != NULL;

    if (ok && !sl->conn)
        ok = (sl->conn = restore_conn(pr->tgt, sql)) != NULL;
    if (ok && !PQsendQuery(sl->conn, sql)) {
        log_error("[indexes] %s: %s", entries[i].desc, PQerrorMessage(sl->conn));
        ok = false;
    }
    free(sql);
    if (ok) {
        log_debug("[indexes] %s", entries[i].desc);
        sl->entry = i;
        sl->watch = stall_watch(sl->conn, CONN_TARGET, "indexes");
    }
    return ok;
}

/* Read what slot's server sent; true when its script has ended (sl->last
 * then holds its last result, or NULL when the connection failed before
 * any). */
static bool slot_ended(PostSlot *sl)
{
    PGresult *res;

    if (!PQconsumeInput(sl->conn)) {
        /* the connection failed: PQgetResult reports it */
        while ((res = PQgetResult(sl->conn)) != NULL) {
            PQclear(sl->last);
            sl->last = res;
        }
        return true;
    }
    while (!PQisBusy(sl->conn)) {
        if ((res = PQgetResult(sl->conn)) == NULL)
            return true;
        PQclear(sl->last);
        sl->last = res;
    }
    return false;
}

/* Wait until some busy slot's socket is readable (1 s at most). */
static void wait_slots(const PostSlot *slots, int jobs)
{
    struct pollfd *pfd = xcalloc((size_t)jobs, sizeof(*pfd));
    int n = 0;

    for (int s = 0; s < jobs; s++)
        if (slots[s].entry >= 0)
            pfd[n++] = (struct pollfd){.fd = PQsocket(slots[s].conn), .events = POLLIN};
    if (n > 0)
        (void)poll(pfd, (nfds_t)n, 1000);
    free(pfd);
}

/* Run the pending entries of one wave, one entry per session, each in its
 * own transaction, up to jobs at once.  On failure or a first Ctrl-C (the
 * end of an entry is the safe point) starts no more entries and waits for
 * the running ones before returning; a second Ctrl-C ends the process and
 * with it the sessions. */
static bool run_parallel(const PostRun *pr, PostEntry *entries, int n, PostWave wave, int jobs)
{
    PostSlot *slots = xcalloc((size_t)jobs, sizeof(PostSlot));
    int *attempts = xcalloc((size_t)n + 1, sizeof(int));
    bool *inflight = xcalloc((size_t)n + 1, sizeof(bool));
    int running = 0, i;
    bool ok = true;

    for (int s = 0; s < jobs; s++)
        slots[s].entry = -1;
    for (;;) {
        if (interrupt_requested)
            ok = false;
        for (int s = 0; s < jobs && ok; s++) {
            if (slots[s].entry >= 0 || (i = next_pending(entries, n, wave, inflight)) < 0)
                continue;
            if (!(ok = start_entry(pr, entries, i, &slots[s], s)))
                break;
            inflight[i] = true;
            running++;
        }
        if (running == 0)
            break;
        wait_slots(slots, jobs);
        for (int s = 0; s < jobs; s++) {
            PostSlot *sl = &slots[s];

            if (sl->entry < 0 || !slot_ended(sl))
                continue;
            i = sl->entry;
            sl->entry = -1;
            stall_unwatch(sl->watch);
            sl->watch = NULL;
            running--;
            inflight[i] = false;
            if (!finish_one(
                    pr, &entries[i],
                    judge_result(sl->conn, sl->last, pr->resuming, "indexes", entries[i].desc),
                    &attempts[i]))
                ok = false;
            sl->last = NULL;
            if (PQstatus(sl->conn) == CONNECTION_BAD) {
                conn_close(sl->conn);
                sl->conn = NULL;
            }
        }
    }
    for (int s = 0; s < jobs; s++) {
        stall_unwatch(slots[s].watch);
        conn_close(slots[s].conn);
    }
    free(slots);
    free(attempts);
    free(inflight);
    return ok;
}

/* Run the pending entries of one wave in one transaction. */
static bool run_serial(const PostRun *pr, PostEntry *entries, int n, PostWave wave)
{
    const char *what = wave == POST_WAVE_ATTACH ? "attaching partition indexes"
                                                : "triggers, rules and the rest of the post-data "
                                                  "schema";
    int *idx = xcalloc((size_t)n, sizeof(int));
    int nidx = 0;
    bool ok = true;

    for (int i = 0; i < n; i++)
        if (!entries[i].done && entries[i].wave == wave)
            idx[nidx++] = i;
    if (nidx > 0) {
        char *sql = batch_script(pr, entries, idx, nidx, 0, what);
        PGconn *conn = sql ? restore_conn(pr->tgt, sql) : NULL;

        ok = conn && run_script(conn, sql, pr->resuming, "indexes", what) == BATCH_DONE;
        conn_close(conn);
        free(sql);
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
    PostRun pr = {t, so, tgt, archive, tmpdir, resuming, NULL, NULL};
    int idx = 0, attempts = 0;
    char *sql = batch_script(&pr, e, &idx, 1, slot, e->desc);
    PGconn *conn = sql ? restore_conn(tgt, sql) : NULL;
    BatchOutcome o = conn ? BATCH_RETRY : BATCH_FAILED;

    while (o == BATCH_RETRY) {
        o = run_script(conn, sql, resuming, "indexes", e->desc);
        if (o == BATCH_RETRY && ++attempts >= MAX_ATTEMPTS) {
            log_error("[indexes] %s: deadlocked %d times", e->desc, MAX_ATTEMPTS);
            o = BATCH_FAILED;
        } else if (o == BATCH_RETRY)
            log_notice("[indexes] %s: deadlock, trying again", e->desc);
    }
    conn_close(conn);
    free(sql);
    return o == BATCH_DONE;
}

bool schema_restore_post(const PgTools *t, const ConnInfo *tgt, const char *archive,
                         const SchemaOpts *so, PostEntry *entries, int n, int jobs,
                         const char *tmpdir, bool resuming, PostDoneFn done, void *arg)
{
    PostRun pr = {t, so, tgt, archive, tmpdir, resuming, done, arg};

    return run_parallel(&pr, entries, n, POST_WAVE_BUILD, jobs) &&
           run_serial(&pr, entries, n, POST_WAVE_ATTACH) &&
           run_parallel(&pr, entries, n, POST_WAVE_FK, jobs) &&
           run_serial(&pr, entries, n, POST_WAVE_REST);
}
