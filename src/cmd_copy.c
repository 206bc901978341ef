/*
 * cmd_copy.c: `pgrelocate copy`: the whole one-time copy of a database,
 * phase by phase, resumable from the state in the target.
 *
 *   schema         snapshot (keeper), pg_dump, pre-data restored in one txn
 *   data           chunks copied in parallel under that snapshot (copy.c)
 *   large-objects  under the same snapshot; then the snapshot is released
 *   post-data      indexes and constraints in parallel, then the rest
 *   sequences      source values onto the target
 *   analyze        planner statistics, in parallel
 */
#include "commands.h"

#include "catalog.h"
#include "conn.h"
#include "copy.h"
#include "copyplan.h"
#include "largeobject.h"
#include "log.h"
#include "progress.h"
#include "schema.h"
#include "sequences.h"
#include "size.h"
#include "snapshot.h"
#include "state.h"
#include "strbuf.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct CopyRun {
    const Options *o;
    ConnInfo *src_ci;
    ConnInfo *tgt_ci;
    PGconn *src; /* control connections */
    PGconn *tgt;
    ServerInfo src_info;
    ServerInfo tgt_info;
    PgTools tools;
    SnapshotKeeper keeper;
    MigrationState st;
    Progress *progress;
    char tmpdir[64];
    char archive[128];
    bool resuming;
    bool state_created; /* this run created the state (undo it on early failure) */
} CopyRun;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = 1;
    signal(sig, SIG_DFL); /* a second signal stops at once */
}

static bool make_tmpdir(CopyRun *r)
{
    const char *base = getenv("TMPDIR");

    snprintf(r->tmpdir, sizeof(r->tmpdir), "%s/pgrelocate.XXXXXX",
             base && *base && strlen(base) < 40 ? base : "/tmp");
    if (!mkdtemp(r->tmpdir)) {
        log_error("could not create a temporary directory in %s: %m", r->tmpdir);
        r->tmpdir[0] = '\0';
        return false;
    }
    snprintf(r->archive, sizeof(r->archive), "%s/schema.dump", r->tmpdir);
    return true;
}

static void remove_tmpdir(CopyRun *r)
{
    DIR *d;
    struct dirent *e;

    if (!r->tmpdir[0] || !(d = opendir(r->tmpdir)))
        return;
    while ((e = readdir(d)) != NULL) {
        char path[512];

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", r->tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(r->tmpdir);
}

/* Everything that can refuse the run before anything changes. */
static bool open_and_check(CopyRun *r)
{
    ConnOpts so = {.side = CONN_SOURCE, .app_name = "pgrelocate"};
    ConnOpts to = {.side = CONN_TARGET, .app_name = "pgrelocate"};
    char err[256];
    char *unreadable = NULL, *example = NULL;
    bool exists = false, empty = false;

    if (!(r->src_ci = conninfo_parse(r->o->source, err, sizeof(err)))) {
        log_error("invalid --source connection string: %s", err);
        return false;
    }
    if (!(r->tgt_ci = conninfo_parse(r->o->target, err, sizeof(err)))) {
        log_error("invalid --target connection string: %s", err);
        return false;
    }
    if (!(r->src = conn_open(r->src_ci, &so)) || !(r->tgt = conn_open(r->tgt_ci, &to)))
        return false;
    if (!catalog_server_info(r->src, &r->src_info) || !catalog_server_info(r->tgt, &r->tgt_info))
        return false;
    log_info("source: %s (PostgreSQL %d.%d, %s)", conninfo_display(r->src_ci),
             r->src_info.version_num / 10000, r->src_info.version_num % 100,
             r->src_info.encoding);
    log_info("target: %s (PostgreSQL %d.%d, %s)", conninfo_display(r->tgt_ci),
             r->tgt_info.version_num / 10000, r->tgt_info.version_num % 100,
             r->tgt_info.encoding);
    if (r->src_info.version_num / 10000 > r->tgt_info.version_num / 10000)
        log_warning("the target (%d) is an older major version than the source (%d): "
                    "the schema may not restore",
                    r->tgt_info.version_num / 10000, r->src_info.version_num / 10000);
    if (!schema_find_tools(r->o->pg_bin, r->src_info.version_num / 10000, &r->tools))
        return false;
    if (!catalog_unreadable_tables(r->src, &unreadable))
        return false;
    if (unreadable) {
        log_msg(LOG_ERROR,
                "Every table's rows are copied, so the source role needs SELECT on all of them.",
                "GRANT SELECT ON ALL TABLES IN SCHEMA ... TO the role, or connect as the owner.",
                "the source role cannot read %s", unreadable);
        free(unreadable);
        return false;
    }
    if (!state_exists(r->tgt, &exists))
        return false;
    if (exists && !r->o->resume) {
        log_msg(LOG_ERROR,
                "The target database holds the state of an earlier pgrelocate run (schema "
                "pgrelocate).",
                "Run again with --resume to continue it, or recreate the target database "
                "(dropdb, createdb) to start over.",
                "target database is not empty");
        return false;
    }
    r->resuming = exists;
    if (!exists && r->o->resume)
        log_notice("nothing to resume on the target: starting a new copy");
    if (!exists) {
        if (!state_target_is_empty(r->tgt, &empty, &example))
            return false;
        if (!empty) {
            log_msg(LOG_ERROR, example,
                    "Copy into an empty database: createdb on the target server, then name it "
                    "in --target.",
                    "target database is not empty");
            free(example);
            return false;
        }
    }
    return make_tmpdir(r);
}

/* Take a snapshot: import the previous one when resuming, else export a
 * new one.  *gone tells the caller the previous one no longer exists. */
static bool take_snapshot(CopyRun *r, const char *previous, bool *gone)
{
    SnapshotStatus s = SNAPSHOT_GONE;

    *gone = false;
    if (previous)
        s = snapshot_keeper_start(r->src_ci, previous, r->o->snapshot_grace_ms, &r->keeper);
    if (s == SNAPSHOT_ERROR)
        return false;
    if (s == SNAPSHOT_OK) {
        const char *p[1];
        char pid[16];

        /* The keeper of the interrupted run can let go now. */
        snprintf(pid, sizeof(pid), "%d", r->st.snapshot_backend_pid);
        p[0] = pid;
        PQclear(PQexecParams(r->src,
                             "SELECT pg_catalog.pg_terminate_backend(pid) FROM "
                             "pg_catalog.pg_stat_activity WHERE pid = $1::int "
                             "AND application_name = '" SNAPSHOT_APP_NAME "'",
                             1, NULL, p, NULL, NULL, 0));
        log_info("continuing at the snapshot of the interrupted run");
    } else {
        *gone = previous != NULL;
        if (snapshot_keeper_start(r->src_ci, NULL, r->o->snapshot_grace_ms, &r->keeper) !=
            SNAPSHOT_OK)
            return false;
    }
    log_debug("[snapshot] %s held by keeper pid %d (backend %d)", r->keeper.name,
              (int)r->keeper.pid, r->keeper.backend_pid);
    return state_set_snapshot(r->tgt, r->keeper.name, r->keeper.backend_pid);
}

/* Open a transaction on conn that sees the copy snapshot. */
static bool begin_snapshot(PGconn *conn, const char *snapshot)
{
    char *lit = conn_quote_literal(conn, snapshot);
    char *sql = xasprintf("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                          "SET TRANSACTION SNAPSHOT %s",
                          lit);
    bool ok = conn_exec(conn, "snapshot", sql);

    free(lit);
    free(sql);
    return ok;
}

/* Read the tables under the snapshot, plan chunks, save the plan (the
 * phase becomes data). */
static bool plan_copy(CopyRun *r)
{
    Catalog cat;
    PlanTable *pt;
    PlanChunk *pc;
    StateChunk *sc;
    int nchunks = 0;
    bool ok;

    if (!begin_snapshot(r->src, r->keeper.name) || !catalog_read(r->src, &cat) ||
        !conn_exec(r->src, "catalog", "COMMIT"))
        return false;
    pt = xcalloc((size_t)cat.ntables + 1, sizeof(PlanTable));
    for (int i = 0; i < cat.ntables; i++)
        pt[i] = (PlanTable){cat.tables[i].table_no, cat.tables[i].bytes,
                            cat.tables[i].heap_blocks};
    pc = copyplan_make(pt, cat.ntables, r->o->split_larger_than,
                       r->src_info.version_num >= 140000, &nchunks);
    sc = xcalloc((size_t)nchunks + 1, sizeof(StateChunk));
    for (int i = 0; i < nchunks; i++)
        sc[i] = (StateChunk){pc[i].table_no, pc[i].chunk_no,   pc[i].nchunks,
                             pc[i].blk_start, pc[i].blk_end,   pc[i].est_bytes, false};
    ok = state_save_plan(r->tgt, cat.tables, cat.ntables, sc, nchunks);
    if (ok) {
        char total[32];

        log_info("planned %d tables in %d chunks, %s on disk, %lld large objects", cat.ntables,
                 nchunks, size_format_bytes(cat.total_bytes, total, sizeof(total)),
                 (long long)cat.large_objects);
    }
    free(pt);
    free(pc);
    free(sc);
    catalog_free(&cat);
    return ok;
}

/* Schema phase: dump (unless the archive is in the state already) and
 * restore pre-data (unless already there), then plan. */
static bool run_schema(CopyRun *r, bool have_archive, bool restore_pre)
{
    SchemaOpts so = {r->o->no_owner, r->o->no_acl};

    progress_phase_begin(r->progress, "schema");
    if (!have_archive && (!schema_dump(&r->tools, r->src_ci, r->keeper.name, r->archive) ||
                          !state_save_archive(r->tgt, r->archive)))
        return false;
    if (restore_pre && !schema_restore_pre(&r->tools, r->tgt_ci, r->archive, &so))
        return false;
    return plan_copy(r) && state_load(r->tgt, &r->st);
}

/* After a new snapshot replaced a lost one: tables copied only in part
 * would mix two points in time; empty them and copy them whole again. */
static bool reset_partial_tables(CopyRun *r)
{
    bool ok = conn_exec(r->tgt, "state", "BEGIN");

    for (int t = 0; ok && t < r->st.ntables; t++) {
        const StateTable *tb = &r->st.tables[t];
        int done = 0, total = 0;

        for (int c = 0; c < r->st.nchunks; c++)
            if (r->st.chunks[c].table_no == tb->table_no) {
                total++;
                done += r->st.chunks[c].done;
            }
        if (done > 0 && done < total) {
            char *q = conn_qualify(r->tgt, tb->schema_name, tb->table_name);
            char *sql = xasprintf("TRUNCATE ONLY %s", q);

            log_notice("[copy %s.%s] %d of %d chunks were copied from the old snapshot: "
                       "copying the whole table again",
                       tb->schema_name, tb->table_name, done, total);
            ok = conn_exec(r->tgt, "state", sql) && state_reset_table(r->tgt, tb->table_no);
            free(q);
            free(sql);
        }
    }
    ok = ok && conn_exec(r->tgt, "state", "COMMIT");
    if (!ok)
        conn_exec(r->tgt, "state", "ROLLBACK");
    return ok;
}

static int count_done_chunks(const MigrationState *st)
{
    int n = 0;

    for (int i = 0; i < st->nchunks; i++)
        n += st->chunks[i].done;
    return n;
}

static bool start_fresh(CopyRun *r)
{
    bool gone;

    if (!state_create(r->tgt, conninfo_display(r->src_ci), r->src_info.dbname))
        return false;
    r->state_created = true;
    return take_snapshot(r, NULL, &gone) && run_schema(r, false, true);
}

/* The snapshot of the interrupted run is gone while some chunks were
 * copied under it: go on only when the user accepts a newer point in time. */
static bool accept_new_snapshot(CopyRun *r)
{
    int done = count_done_chunks(&r->st);
    char detail[512];

    if (done == 0 || r->st.phase != PHASE_DATA)
        return true;
    snprintf(detail, sizeof(detail),
             "%d of %d chunks were copied as of %s; copying the rest from a newer point in "
             "time could leave tables that disagree with each other if the source was "
             "written in between.",
             done, r->st.nchunks, r->st.snapshot_taken_at ? r->st.snapshot_taken_at : "then");
    if (!r->o->new_snapshot) {
        log_msg(LOG_ERROR, detail,
                "If the source has not been written since, run again with --resume "
                "--new-snapshot (tables copied in part are copied again whole). To copy "
                "everything from one point in time, recreate the target database and start "
                "over.",
                "the snapshot of the interrupted copy is gone");
        return false;
    }
    log_warning("the snapshot of the interrupted copy is gone; continuing from a new one "
                "(--new-snapshot)");
    return reset_partial_tables(r) && (state_free(&r->st), state_load(r->tgt, &r->st));
}

static bool start_resume(CopyRun *r)
{
    bool gone = false, have_archive, empty = false;
    char *example = NULL;

    if (!state_load(r->tgt, &r->st))
        return false;
    log_info("resuming the copy at phase %s", state_phase_name(r->st.phase));
    if (r->st.phase <= PHASE_LARGE_OBJECTS) {
        if (!take_snapshot(r, r->st.snapshot, &gone))
            return false;
        if (gone && !accept_new_snapshot(r))
            return false;
    }
    have_archive = state_restore_archive(r->tgt, r->archive);
    if (r->st.phase != PHASE_SCHEMA)
        return have_archive;
    /* Pre-data restores in one transaction: either all of it is there or
     * nothing is. */
    if (!state_target_is_empty(r->tgt, &empty, &example))
        return false;
    free(example);
    state_free(&r->st);
    return run_schema(r, have_archive, empty);
}

static bool run_data(CopyRun *r)
{
    CopyJob job = {r->src_ci, r->tgt_ci,     r->keeper.name, r->tgt_info.encoding,
                   r->st.tables, r->st.ntables, r->st.chunks, r->st.nchunks,
                   r->o->jobs,   r->progress,   &interrupted};
    int64_t total = 0;
    int pending = 0;

    for (int i = 0; i < r->st.nchunks; i++)
        if (!r->st.chunks[i].done) { /* done ones were copied before an interruption */
            total += r->st.chunks[i].est_bytes;
            pending++;
        }
    progress_phase_begin(r->progress, "data");
    progress_set_total(r->progress, total, pending);
    return copy_run(&job) && state_set_phase(r->tgt, PHASE_LARGE_OBJECTS);
}

static bool run_large_objects(CopyRun *r)
{
    int64_t count = 0, bytes = 0;
    bool ok;

    progress_phase_begin(r->progress, "large objects");
    ok = begin_snapshot(r->src, r->keeper.name) &&
         largeobject_copy(r->src, r->tgt, r->progress, &count, &bytes) &&
         conn_exec(r->src, "large objects", "COMMIT");
    if (!ok)
        return false;
    if (count > 0) {
        char b[32];

        log_info("copied %lld large objects (%s)", (long long)count,
                 size_format_bytes(bytes, b, sizeof(b)));
    }
    /* Nothing reads under the snapshot any more: let VACUUM on the source
     * move on. */
    snapshot_keeper_release(&r->keeper);
    return state_set_phase(r->tgt, PHASE_POST_DATA);
}

static bool post_done(const PostEntry *e, void *arg)
{
    CopyRun *r = arg;

    return state_mark_post_done(r->tgt, e->dump_id, e->desc);
}

static bool run_post_data(CopyRun *r)
{
    SchemaOpts so = {r->o->no_owner, r->o->no_acl};
    PostEntry *entries = NULL;
    int n = 0, *done = NULL, ndone = 0;
    bool ok;

    progress_phase_begin(r->progress, "indexes and constraints");
    ok = schema_list_post(&r->tools, r->archive, &entries, &n) &&
         state_load_post_done(r->tgt, &done, &ndone);
    for (int i = 0; ok && i < n; i++)
        for (int k = 0; k < ndone; k++)
            if (entries[i].dump_id == done[k])
                entries[i].done = true;
    ok = ok && schema_restore_post(&r->tools, r->tgt_ci, r->archive, &so, entries, n,
                                   r->o->jobs, r->tmpdir, r->resuming, post_done, r) &&
         state_set_phase(r->tgt, PHASE_SEQUENCES);
    schema_free_post(entries, n);
    free(done);
    return ok;
}

static bool run_sequences(CopyRun *r)
{
    Catalog cat;
    bool ok;

    progress_phase_begin(r->progress, "sequences");
    if (!catalog_read(r->src, &cat))
        return false;
    ok = sequences_copy(r->src, r->tgt, cat.sequences, cat.nsequences) &&
         state_set_phase(r->tgt, PHASE_ANALYZE);
    if (ok && cat.nsequences > 0)
        log_info("set %d sequences to the source's values", cat.nsequences);
    catalog_free(&cat);
    return ok;
}

static bool run_analyze(CopyRun *r)
{
    PGresult *res;
    char **stmts;
    int n;
    bool ok;

    progress_phase_begin(r->progress, "analyze");
    res = conn_query(r->tgt, "analyze",
                     "SELECT pg_catalog.format('ANALYZE %I.%I', n.nspname, c.relname)"
                     " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                     " WHERE c.relkind IN ('r', 'p', 'm') AND c.relpersistence <> 't'"
                     " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate')"
                     " AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"
                     " ORDER BY pg_catalog.pg_total_relation_size(c.oid) DESC",
                     0, NULL, 1);
    if (!res)
        return false;
    n = PQntuples(res);
    stmts = xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++)
        stmts[i] = PQgetvalue(res, i, 0);
    ok = copy_run_statements(r->tgt_ci, stmts, n, r->o->jobs, r->progress, &interrupted) &&
         state_set_phase(r->tgt, PHASE_DONE);
    free(stmts);
    PQclear(res);
    return ok;
}

typedef bool (*PhaseFn)(CopyRun *r);

static const PhaseFn phase_fns[] = {
    [PHASE_DATA] = run_data,           [PHASE_LARGE_OBJECTS] = run_large_objects,
    [PHASE_POST_DATA] = run_post_data, [PHASE_SEQUENCES] = run_sequences,
    [PHASE_ANALYZE] = run_analyze,
};

static ProgressMode progress_mode(const Options *o)
{
    if (o->quiet || strcmp(o->progress, "none") == 0)
        return PROGRESS_QUIET;
    if (strcmp(o->progress, "plain") == 0)
        return PROGRESS_PLAIN;
    if (strcmp(o->progress, "tty") == 0)
        return PROGRESS_TTY;
    return isatty(STDERR_FILENO) ? PROGRESS_TTY : PROGRESS_PLAIN;
}

/* On failure in the schema phase of a new run, nothing but pgrelocate's own
 * state was written (pre-data restores all or nothing): remove it, so the
 * target is as it was. */
static void undo_new_state(CopyRun *r)
{
    if (!r->state_created || !r->tgt || PQstatus(r->tgt) != CONNECTION_OK)
        return;
    PQclear(PQexec(r->tgt, "ROLLBACK"));
    if (conn_exec(r->tgt, "cleanup", "DROP SCHEMA IF EXISTS pgrelocate CASCADE"))
        log_info("the target is unchanged");
}

static void finish(CopyRun *r, bool ok)
{
    if (!ok && r->tgt)
        state_event(r->tgt, interrupted ? "interrupted" : "error", "copy",
                    interrupted ? "interrupted by a signal" : "copy failed; see the tool's output");
    if (r->keeper.pid > 0) {
        if (ok || r->o->snapshot_grace_ms == 0)
            snapshot_keeper_release(&r->keeper);
        else {
            char g[32];

            log_notice("the source snapshot is kept for %s so that --resume continues at the "
                       "same point; it is released after that",
                       size_format_seconds((double)r->o->snapshot_grace_ms / 1000, g, sizeof(g)));
            snapshot_keeper_abandon(&r->keeper);
        }
    }
    remove_tmpdir(r);
    conn_close(r->src);
    conn_close(r->tgt);
    conninfo_destroy(r->src_ci);
    conninfo_destroy(r->tgt_ci);
    catalog_free_server_info(&r->src_info);
    catalog_free_server_info(&r->tgt_info);
    state_free(&r->st);
    progress_destroy(r->progress);
}

int cmd_copy(const Options *o)
{
    CopyRun r = {.o = o, .keeper = {.control_fd = -1}};
    bool ok;

    r.progress = progress_create(progress_mode(o), o->jobs);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    ok = open_and_check(&r);
    if (ok) {
        ok = r.resuming ? start_resume(&r) : start_fresh(&r);
        if (!ok && r.st.phase == PHASE_SCHEMA && !r.resuming) {
            snapshot_keeper_release(&r.keeper);
            undo_new_state(&r);
        }
    }
    if (ok && r.st.phase == PHASE_DONE)
        log_info("this copy was already complete");
    progress_start(r.progress);
    for (Phase p = r.st.phase; ok && p < PHASE_DONE; p++) {
        if (p == PHASE_SCHEMA)
            continue;
        ok = phase_fns[p](&r) && !interrupted;
    }
    progress_phase_end(r.progress);
    progress_stop(r.progress);
    if (ok && !o->quiet && r.st.phase != PHASE_DONE)
        progress_print_summary(r.progress, stdout, 20);
    if (ok && r.st.phase != PHASE_DONE)
        log_info("copy complete: the target holds the source's schema and data");
    else if (interrupted)
        log_msg(LOG_ERROR, NULL, "Run the same command with --resume to continue.",
                "copy interrupted");
    else if (!ok && r.state_created && r.st.phase > PHASE_SCHEMA)
        log_msg(LOG_ERROR, NULL,
                "Fix the cause, then run the same command with --resume to continue.",
                "copy failed");
    finish(&r, ok);
    return ok ? EXIT_OK : interrupted ? EXIT_INTERRUPTED : EXIT_FAILED;
}
