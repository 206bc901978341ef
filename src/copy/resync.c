/*
 * resync.c: `pgrelocate resync`: copy chosen tables again while every other
 * table keeps following.  The protocol with the follower goes through
 * pgrelocate.tables.sync_state (tablesync.h):
 *   1. resync: 'resync' for the tables (and every partition of their roots)
 *   2. follower: their changes wait from now on; answers 'resync_ack'
 *   3. resync: a temporary slot, its snapshot and consistent point L;
 *      'syncing' at L (changes before L are skipped, later ones wait)
 *   4. resync: TRUNCATE, chunks pending again; the chunks copied under the
 *      snapshot (copy.c); the last one's transaction marks 'ready' at L
 *   5. follower: the tables' changes after L apply again
 * A follower runs in this process when no pgrelocate start runs.  Owns no
 * copy or apply code: copy.c and the follower do the work.
 */
#include "commands.h"

#include "catalog.h"
#include "clock.h"
#include "conn.h"
#include "copy.h"
#include "follow.h"
#include "interrupt.h"
#include "log.h"
#include "progress.h"
#include "state.h"
#include "stateschema.h"
#include "strbuf.h"
#include "stream.h"
#include "syncpoint.h"
#include "tablefilter.h"
#include "tablesync.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACK_WAIT_MS  60000 /* for the follower to answer a request */
#define CAUGHT_UP_MS 30000 /* an own follower: for it to apply past the copy */
#define POLL_MS      200

typedef struct Resync {
    const Options *o;
    ConnInfo *src_ci, *tgt_ci;
    PGconn *src, *tgt;
    MigrationState st;
    int *table_nos; /* chosen (with their roots' partitions) */
    int n;
    char *array; /* "{1,4}" */
    FollowThread *follower;
    FollowOpts fo;
    ServerInfo src_info, tgt_info;
} Resync;

static bool open_conns(Resync *rs)
{
    ConnOpts so = {.side = CONN_SOURCE,
                   .app_name = "pgrelocate resync",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
    /* the target session truncates: no statement limit (it may wait for
     * apply to commit), the lock limit of catalog sessions */
    ConnOpts to = {.side = CONN_TARGET, .app_name = "pgrelocate resync"};
    char err[256];
    bool exists = false;

    if (!(rs->src_ci = conninfo_parse(rs->o->source, err, sizeof(err)))) {
        log_error("invalid --source connection string: %s", err);
        return false;
    }
    if (!(rs->tgt_ci = conninfo_parse(rs->o->target, err, sizeof(err)))) {
        log_error("invalid --target connection string: %s", err);
        return false;
    }
    if (!(rs->src = conn_open(rs->src_ci, &so)) || !(rs->tgt = conn_open(rs->tgt_ci, &to)) ||
        !catalog_server_info(rs->src, &rs->src_info) ||
        !catalog_server_info(rs->tgt, &rs->tgt_info) || !state_open(rs->tgt, STATE_WRITE, &exists))
        return false;
    if (!exists) {
        log_msg(LOG_ERROR, NULL, "Begin the migration with pgrelocate start.",
                "the target holds no pgrelocate migration");
        return false;
    }
    return state_load(rs->tgt, &rs->st);
}

/* What resync refuses, before it changes anything. */
static bool refuse(Resync *rs)
{
    const char *why = NULL, *hint = NULL;

    if (!rs->st.follow) {
        why = "the migration was begun with pgrelocate copy: nothing follows its tables";
        hint = "Copy again into a new target database.";
    } else if (rs->st.phase < PHASE_FOLLOW) {
        why = "pgrelocate start has not finished copying";
        hint = "Run resync once pgrelocate start follows (pgrelocate status shows the phase).";
    } else if (rs->st.phase >= PHASE_DONE) {
        why = "the migration is cut over or finished: nothing follows the source any more";
        hint = NULL;
    } else if (rs->st.ntables == 0 || !rs->st.tables[0].sync_state) {
        why = "the migration copies under one snapshot (--one-snapshot): its tables have no "
              "points of their own";
        hint = "Run pgrelocate cleanup and start again without --one-snapshot.";
    }
    if (why)
        log_msg(LOG_ERROR, NULL, hint, "cannot resync: %s", why);
    return why != NULL;
}

/* The tables --tables names, by table or by partitioned root, with every
 * partition of the roots involved. */
static bool choose(Resync *rs)
{
    char err[256], *spec = cli_join_list(&rs->o->tables), *missing;
    TableFilter *f = tablefilter_parse(spec, err, sizeof(err));
    bool *pick = xcalloc((size_t)rs->st.ntables + 1, sizeof(bool));
    StrBuf a;

    if (!f) {
        log_error("invalid --tables: %s", err);
        free(spec);
        free(pick);
        return false;
    }
    for (int t = 0; t < rs->st.ntables; t++) {
        const StateTable *tb = &rs->st.tables[t];

        pick[t] = tablefilter_match(f, tb->schema_name, tb->table_name) ||
                  (tb->root_name && tablefilter_match(f, tb->root_schema, tb->root_name));
    }
    for (int t = 0; t < rs->st.ntables; t++)
        for (int u = 0; pick[t] && rs->st.tables[t].root_name && u < rs->st.ntables; u++)
            if (rs->st.tables[u].root_name &&
                strcmp(rs->st.tables[u].root_name, rs->st.tables[t].root_name) == 0 &&
                strcmp(rs->st.tables[u].root_schema, rs->st.tables[t].root_schema) == 0)
                pick[u] = true;
    rs->table_nos = xcalloc((size_t)rs->st.ntables + 1, sizeof(int));
    strbuf_init(&a);
    for (int t = 0; t < rs->st.ntables; t++)
        if (pick[t]) {
            rs->table_nos[rs->n++] = rs->st.tables[t].table_no;
            strbuf_appendf(&a, "%s%d", a.len ? "," : "", rs->st.tables[t].table_no);
        }
    rs->array = xasprintf("{%s}", a.data);
    strbuf_free(&a);
    missing = tablefilter_unmatched(f);
    if (rs->n == 0 || missing)
        log_msg(LOG_ERROR, NULL,
                "Name tables the migration copies (pgrelocate status lists them), as "
                "schema.table.",
                "--tables \"%s\" matches no table of the migration", missing ? missing : spec);
    free(missing);
    tablefilter_destroy(f);
    free(spec);
    free(pick);
    return rs->n > 0 && !missing;
}

/* Set the chosen tables' sync_state (and sync_lsn when lsn is given). */
static bool set_state(Resync *rs, const char *state, const char *lsn)
{
    const char *p[3] = {rs->array, state, lsn};

    return conn_command(rs->tgt, "state",
                        "UPDATE pgrelocate.tables SET sync_state = $2, sync_lsn = $3::pg_lsn "
                        "WHERE table_no = ANY ($1::int[])",
                        3, p);
}

/* Poll until every chosen table is in state (or the deadline, or Ctrl-C). */
static bool wait_state(Resync *rs, const char *state, int64_t wait_ms, const char *what)
{
    const char *p[2] = {rs->array, state};
    int64_t deadline = clock_now_ms() + wait_ms;

    while (!interrupt_requested) {
        PGresult *res = conn_query(rs->tgt, "state",
                                   "SELECT count(*) FILTER (WHERE sync_state = $2) = count(*) "
                                   "FROM pgrelocate.tables WHERE table_no = ANY ($1::int[])",
                                   2, p, 1);
        bool done = res && PQgetvalue(res, 0, 0)[0] == 't';

        PQclear(res);
        if (!res || done)
            return done;
        if (rs->follower && !follow_thread_alive(rs->follower)) {
            log_error("[resync] the follower of this process stopped (its error is above)");
            return false;
        }
        if (clock_now_ms() >= deadline) {
            log_msg(LOG_ERROR,
                    "The tables' changes are applied by the follower (pgrelocate "
                    "start, or this process's own); it did not answer.",
                    "Check that pgrelocate start runs and follows (pgrelocate status), then run "
                    "resync again.",
                    "timed out after %lld s waiting for %s", (long long)(wait_ms / 1000), what);
            return false;
        }
        usleep(POLL_MS * 1000);
    }
    return false;
}

/* A follower in this process when no pgrelocate start runs. */
static bool ensure_follower(Resync *rs)
{
    bool running = false;

    if (!syncpoint_follower_running(rs->tgt, &running))
        return false;
    if (running)
        return true;
    rs->fo = (FollowOpts){.source = rs->src_ci,
                          .target = rs->tgt_ci,
                          .slot = rs->st.replication_name,
                          .publication = rs->st.replication_name,
                          .origin = rs->st.replication_name,
                          .proto_version = stream_proto_for_server(rs->src_info.version_num),
                          .client_encoding = rs->tgt_info.encoding,
                          .protocol = follow_recorded_protocol(rs->tgt),
                          .label = "resync follow"};
    log_info("[resync] no pgrelocate start runs: following changes in this process meanwhile");
    rs->follower = follow_spawn(&rs->fo);
    return rs->follower != NULL;
}

static bool mark_ready(void *arg, int table_no, int worker, PGconn *tgt)
{
    (void)worker;
    (void)tgt;
    tablesync_table_ready(arg, table_no);
    return true;
}

/* Steps 3 and 4: the snapshot, then the tables emptied and copied. */
static bool copy_again(Resync *rs)
{
    TableSync *ts =
        tablesync_create(rs->src_ci, rs->st.replication_name, rs->st.ntables, rs->o->slot_wait_ms);
    int g = tablesync_add_group(ts, false, 0), nchunks = 0;
    StateChunk *chunks = xcalloc((size_t)rs->st.nchunks + 1, sizeof(StateChunk));
    Progress *pr = progress_create(PROGRESS_QUIET, rs->o->jobs);
    char snap[64], lsn_text[LSN_TEXT_SIZE];
    Lsn lsn = 0;
    bool ok;

    for (int i = 0; i < rs->n; i++) {
        const StateTable *tb = &rs->st.tables[rs->table_nos[i] - 1];
        int k = 0;

        for (int c = 0; c < rs->st.nchunks; c++)
            if (rs->st.chunks[c].table_no == tb->table_no) {
                chunks[nchunks] = rs->st.chunks[c];
                chunks[nchunks++].done = false;
                k++;
            }
        tablesync_add_table(ts, g, tb->table_no, tb->schema_name, tb->table_name, k);
    }
    ok = tablesync_acquire(ts, rs->table_nos[0], snap, sizeof(snap), &lsn) &&
         set_state(rs, "syncing", lsn_format(lsn, lsn_text)) &&
         conn_script(rs->tgt, "resync", "BEGIN");
    for (int i = 0; ok && i < rs->n; i++) {
        const StateTable *tb = &rs->st.tables[rs->table_nos[i] - 1];
        char *q = conn_qualify(rs->tgt, tb->schema_name, tb->table_name);
        char *sql = xasprintf("TRUNCATE ONLY %s", q);

        ok = conn_script(rs->tgt, "resync", sql) && state_reset_table(rs->tgt, tb->table_no);
        free(q);
        free(sql);
    }
    ok = ok && set_state(rs, "syncing", lsn_text) && conn_script(rs->tgt, "resync", "COMMIT");
    if (ok) {
        CopyJob job = {.source = rs->src_ci,
                       .target = rs->tgt_ci,
                       .client_encoding = rs->tgt_info.encoding,
                       .tables = rs->st.tables,
                       .ntables = rs->st.ntables,
                       .chunks = chunks,
                       .nchunks = nchunks,
                       .jobs = rs->o->jobs,
                       .progress = pr,
                       .interrupted = &interrupt_requested,
                       .table_ready = mark_ready,
                       .table_ready_arg = ts,
                       .sync = ts};

        log_info("[resync] copying %d table%s as of %s", rs->n, rs->n == 1 ? "" : "s", lsn_text);
        ok = copy_run(&job);
    } else
        PQclear(PQexec(rs->tgt, "ROLLBACK"));
    tablesync_destroy(ts);
    progress_destroy(pr);
    free(chunks);
    return ok;
}

/* An own follower applies past the copy before it stops (so the tables
 * are following again when resync returns). */
static void own_follower_catch_up(Resync *rs)
{
    PGresult *res;
    char *at;

    if (!rs->follower)
        return;
    res =
        conn_query(rs->src, "source", "SELECT pg_catalog.pg_current_wal_insert_lsn()", 0, NULL, 1);
    if (!res)
        return;
    at = xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    for (int64_t deadline = clock_now_ms() + CAUGHT_UP_MS;
         clock_now_ms() < deadline && !interrupt_requested && follow_thread_alive(rs->follower);) {
        const char *p[2] = {rs->st.replication_name, at};

        res = conn_query(rs->tgt, "state",
                         "SELECT coalesce(pg_catalog.pg_replication_origin_progress($1, true) >= "
                         "$2::pg_lsn, false)",
                         2, p, 1);
        if (!res || PQgetvalue(res, 0, 0)[0] == 't') {
            PQclear(res);
            break;
        }
        PQclear(res);
        usleep(POLL_MS * 1000);
    }
    free(at);
}

int cmd_resync(const Options *o)
{
    Resync rs = {.o = o};
    bool ok;
    int rc;

    interrupt_catch();
    signal(SIGPIPE, SIG_IGN);
    ok = open_conns(&rs) && !refuse(&rs);
    rc = ok ? EXIT_OK : EXIT_FAILED;
    if (ok && !choose(&rs))
        ok = false, rc = EXIT_USAGE;
    ok = ok && set_state(&rs, "resync", NULL) && ensure_follower(&rs) &&
         wait_state(&rs, "resync_ack", ACK_WAIT_MS, "the follower to hold the tables' changes") &&
         copy_again(&rs);
    if (ok)
        own_follower_catch_up(&rs);
    if (rs.follower && follow_join(rs.follower) == FOLLOW_FAILED)
        ok = false;
    if (ok && !interrupt_requested) {
        state_event(rs.tgt, "info", "resync", rs.array);
        log_info("[resync] %d table%s copied again and following", rs.n, rs.n == 1 ? "" : "s");
    } else if (rc == EXIT_OK) {
        rc = interrupt_requested ? EXIT_INTERRUPTED : EXIT_FAILED;
        log_msg(LOG_ERROR,
                rs.n ? "The tables' changes wait (apply holds them) until a resync completes."
                     : NULL,
                rs.n ? "Run the same resync again." : NULL, "resync %s",
                interrupt_requested ? "interrupted" : "failed");
    }
    conn_close(rs.src);
    conn_close(rs.tgt);
    conninfo_destroy(rs.src_ci);
    conninfo_destroy(rs.tgt_ci);
    catalog_free_server_info(&rs.src_info);
    catalog_free_server_info(&rs.tgt_info);
    state_free(&rs.st);
    free(rs.table_nos);
    free(rs.array);
    return rc;
}
