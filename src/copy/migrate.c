/*
 * migrate.c: `pgrelocate copy` (a one-time copy of a whole database) and
 * `pgrelocate start` (the same copy from the snapshot of a new logical
 * replication slot, then following the source's changes), phase by phase,
 * resumable from the state in the target.
 *
 *   schema         snapshot (keeper), pg_dump, pre-data restored in one txn
 *   data           chunks copied in parallel under that snapshot (copy.c);
 *                  start (unless --one-snapshot): the keeper is released after
 *                  the schema, the follower runs from here on, and groups of
 *                  tables are copied under short snapshots of their own
 *                  (tablesync.h)
 *   large-objects  under the same snapshot; then the snapshot is released
 *   post-data      indexes and constraints in parallel, then the rest
 *   sequences      source values onto the target
 *   analyze        planner statistics, in parallel
 *   follow         start only: stream and apply changes until stopped
 */
#include "commands.h"

#include "apply.h"
#include "catalog.h"
#include "childorder.h"
#include "conn.h"
#include "copy.h"
#include "copyplan.h"
#include "earlyindex.h"
#include "follow.h"
#include "interrupt.h"
#include "largeobject.h"
#include "log.h"
#include "metrics.h"
#include "progress.h"
#include "schema.h"
#include "schemafix.h"
#include "sequences.h"
#include "size.h"
#include "slot.h"
#include "stream.h"
#include "snapshot.h"
#include "state.h"
#include "stateschema.h"
#include "strbuf.h"
#include "tableset.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOT_RELEASE_WAIT_MS 10000 /* an interrupted run's slot, let go */

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
    bool follow;        /* start: slot snapshot, then follow changes */
    /* start: tables synced at their own points (tablesync.h), their states
     * while the data phase runs, and the follower running meanwhile (its
     * options outlive it) */
    bool per_table;
    TableSync *sync;
    FollowThread *follower;
    FollowOpts fo;
    char **no_identity; /* start: tables that need REPLICA IDENTITY FULL */
    int n_no_identity;
    bool created_publication;
    /* start: how values travel while following (resolve_protocol) */
    ValueProtocol protocol;
    char *tables_spec; /* --tables, or the one the migration began with; NULL: all */
    TableSet tables;   /* what tables_spec leaves out (nothing when NULL) */
    Metrics metrics;
    pthread_t retire; /* drops the old direction's slot after a cutover */
    bool retiring;    /* retire runs (joined by finish) */
    char cause[512];  /* the error that ended the run, for the event log */
} CopyRun;

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

/* Applying changes uses a replication origin and replica mode: both need
 * a superuser (or rds_superuser) on the target. */
static bool check_target_for_apply(CopyRun *r)
{
    if (r->tgt_info.superuser)
        return true;
    log_msg(LOG_ERROR,
            "Applying changes sets session_replication_role = replica (so triggers and foreign "
            "keys do not fire twice) and records progress in a replication origin; both need "
            "a superuser.",
            "Connect to the target as a superuser (on RDS and Aurora: a member of "
            "rds_superuser).",
            "the target role is not a superuser");
    return false;
}

/* Tables without a key break the source application once published:
 * refuse, unless --replica-identity-full. */
static bool check_identity(CopyRun *r)
{
    char *names = NULL;

    if (!slot_tables_without_identity(r->src, r->tables.excluded_oids, &names, &r->no_identity,
                                      &r->n_no_identity))
        return false;
    if (r->n_no_identity == 0 || r->o->replica_identity_full) {
        free(names);
        return true;
    }
    log_msg(LOG_ERROR,
            "Once a table is published, UPDATE and DELETE on it fail on the source with "
            "\"cannot update table ... because it does not have a replica identity\" unless it "
            "has a primary key or a replica identity: your application would break.  And "
            "applying a change needs the key of the row as logical decoding sends it: through "
            "the partitioned root for a partition, never with generated columns.",
            "Add primary keys (of columns that are not generated, on partitioned roots too), or "
            "run again with --replica-identity-full to give these tables REPLICA IDENTITY FULL "
            "(undone by pgrelocate cleanup; UPDATE and DELETE then log whole old rows).",
            "%d table%s without primary key or replica identity: %s", r->n_no_identity,
            r->n_no_identity == 1 ? "" : "s", names);
    free(names);
    return false;
}

/* The copy creates schemas and tables on the target. */
static bool check_target_create(CopyRun *r)
{
    PGresult *res = conn_query(r->tgt, "target",
                               "SELECT pg_catalog.has_database_privilege("
                               "pg_catalog.current_database(), 'CREATE'), current_user",
                               0, NULL, 2);
    bool ok = res && PQgetvalue(res, 0, 0)[0] == 't';

    if (res && !ok)
        log_msg(LOG_ERROR,
                "The copy creates the source's schemas and tables, and its own schema "
                "pgrelocate, in the target database.",
                "GRANT CREATE ON DATABASE ... TO the role, or connect as the database owner.",
                "the target role \"%s\" lacks the CREATE privilege on the target database",
                PQgetvalue(res, 0, 1));
    PQclear(res);
    return ok;
}

/* --tables: the spec of this run, which on resume must be the one the
 * migration began with (given again or left out), resolved on the source
 * while the phases that use it are still ahead. */
static bool choose_tables(CopyRun *r, bool exists)
{
    char *given = cli_join_list(&r->o->tables);
    const char *stored = exists ? r->st.tables_filter : NULL;

    if (exists && given && (!stored || strcmp(given, stored) != 0)) {
        log_msg(LOG_ERROR, NULL,
                stored ? "Run again with the same --tables, or without --tables to go on with the "
                         "migration's own."
                       : "Run again without --tables, or remove the migration with pgrelocate "
                         "cleanup (or recreate the target database) to begin a new one.",
                "the target holds a migration of %s%s%s, not --tables \"%s\"",
                stored ? "--tables \"" : "all tables", stored ? stored : "", stored ? "\"" : "",
                given);
        free(given);
        return false;
    }
    r->tables_spec = given ? given : stored ? xstrdup(stored) : NULL;
    if (!r->tables_spec || (exists && r->st.phase > PHASE_SEQUENCES))
        return true;
    return tableset_resolve(r->src, r->tables_spec, &r->tables);
}

/* A server older than pgrelocate supports is refused: its catalogs lack
 * what the queries read (check says the same, as a FAIL). */
static bool server_supported(const char *side, int version_num)
{
    if (version_num / 10000 >= CATALOG_MIN_MAJOR)
        return true;
    log_msg(LOG_ERROR, NULL, "Upgrade it to a supported version first, or run pgrelocate check.",
            "the %s runs PostgreSQL %d.%d: pgrelocate supports PostgreSQL %d to %d", side,
            version_num / 10000, version_num % 100, CATALOG_MIN_MAJOR, CATALOG_MAX_TESTED_MAJOR);
    return false;
}

/* Everything that can refuse the run before anything changes. */
static bool open_and_check(CopyRun *r)
{
    ConnOpts so = {
        .side = CONN_SOURCE, .app_name = "pgrelocate", .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
    ConnOpts to = {
        .side = CONN_TARGET, .app_name = "pgrelocate", .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
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
             r->src_info.version_num / 10000, r->src_info.version_num % 100, r->src_info.encoding);
    log_info("target: %s (PostgreSQL %d.%d, %s)", conninfo_display(r->tgt_ci),
             r->tgt_info.version_num / 10000, r->tgt_info.version_num % 100, r->tgt_info.encoding);
    if (!server_supported("source", r->src_info.version_num) ||
        !server_supported("target", r->tgt_info.version_num))
        return false;
    if (r->src_info.version_num / 10000 > r->tgt_info.version_num / 10000)
        log_warning("the target (%d) is an older major version than the source (%d): "
                    "the schema may not restore",
                    r->tgt_info.version_num / 10000, r->src_info.version_num / 10000);
    if (r->follow && (!slot_check_source(r->src) || !check_target_for_apply(r)))
        return false;
    if (!state_open(r->tgt, STATE_WRITE, &exists))
        return false;
    if (exists && !state_load(r->tgt, &r->st))
        return false;
    if (!choose_tables(r, exists))
        return false;
    if (!catalog_unreadable_tables(r->src, r->tables.excluded_oids, &unreadable))
        return false;
    if (unreadable) {
        log_msg(LOG_ERROR,
                "Every table's rows are copied, so the source role needs SELECT on all of them.",
                "GRANT SELECT ON ALL TABLES IN SCHEMA ... TO the role, or connect as the owner.",
                "the source role cannot read %s", unreadable);
        free(unreadable);
        return false;
    }
    if (exists && r->st.follow != r->follow) {
        log_msg(LOG_ERROR, NULL,
                r->st.follow ? "Continue it with pgrelocate start, or remove it with pgrelocate "
                               "cleanup."
                             : "Continue it with pgrelocate copy --resume, or recreate the "
                               "target database.",
                "the target holds a migration begun with pgrelocate %s",
                r->st.follow ? "start" : "copy");
        return false;
    }
    if (exists && !r->o->resume && !r->follow) {
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
    if (!exists && r->follow && !check_identity(r))
        return false;
    /* pg_dump and pg_restore are needed up to the post-data phase */
    if ((!exists || r->st.phase <= PHASE_POST_DATA) &&
        !schema_find_tools(r->o->pg_bin, r->src_info.version_num / 10000, &r->tools))
        return false;
    if (!exists && !check_target_create(r))
        return false;
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

/* Import the interrupted run's snapshot into a new keeper.  The state
 * names the new keeper's snapshot before the old keeper is told to let go,
 * so a crash in between never leaves the state naming a dead snapshot. */
static SnapshotStatus import_snapshot(CopyRun *r, const char *previous)
{
    int old_pid = r->st.snapshot_backend_pid;
    SnapshotStatus s;

    if (!previous)
        return SNAPSHOT_GONE;
    s = snapshot_keeper_start(r->src_ci, previous, r->o->snapshot_grace_ms, &r->keeper);
    if (s != SNAPSHOT_OK)
        return s;
    if (!state_set_snapshot(r->tgt, r->keeper.name, r->keeper.backend_pid))
        return SNAPSHOT_ERROR;
    snapshot_keeper_confirm(&r->keeper);
    snapshot_end_keeper_backend(r->src, old_pid);
    log_info("continuing at the snapshot of the interrupted run");
    return SNAPSHOT_OK;
}

/* copy: the interrupted run's snapshot when it still exists, else a new
 * one (*gone tells the caller the previous one was lost). */
static bool take_snapshot(CopyRun *r, const char *previous, bool *gone)
{
    SnapshotStatus s = import_snapshot(r, previous);

    *gone = false;
    if (s == SNAPSHOT_ERROR)
        return false;
    if (s == SNAPSHOT_OK)
        return true;
    *gone = previous != NULL;
    if (snapshot_keeper_start(r->src_ci, NULL, r->o->snapshot_grace_ms, &r->keeper) != SNAPSHOT_OK)
        return false;
    log_debug("[snapshot] %s held by keeper pid %d (backend %d)", r->keeper.name,
              (int)r->keeper.pid, r->keeper.backend_pid);
    if (!state_set_snapshot(r->tgt, r->keeper.name, r->keeper.backend_pid))
        return false;
    snapshot_keeper_confirm(&r->keeper);
    return true;
}

/* Open a transaction on conn that sees the copy snapshot. */
static bool begin_snapshot(PGconn *conn, const char *snapshot)
{
    char *lit;

    if (!snapshot) /* a snapshot of its own */
        return conn_script(conn, "snapshot", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    lit = conn_quote_literal(conn, snapshot);
    char *sql = xasprintf("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                          "SET TRANSACTION SNAPSHOT %s",
                          lit);
    bool ok = conn_script(conn, "snapshot", sql);

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

    if (!begin_snapshot(r->src, r->keeper.name) ||
        !catalog_read_subset(r->src, r->tables.excluded_oids, &cat) ||
        !conn_script(r->src, "catalog", "COMMIT"))
        return false;
    pt = xcalloc((size_t)cat.ntables + 1, sizeof(PlanTable));
    for (int i = 0; i < cat.ntables; i++)
        pt[i] = (PlanTable){cat.tables[i].table_no, cat.tables[i].bytes, cat.tables[i].heap_blocks,
                            cat.tables[i].toast_bytes};
    pc = copyplan_make(pt, cat.ntables, r->o->split_larger_than, r->o->jobs,
                       r->src_info.version_num >= 140000, &nchunks);
    sc = xcalloc((size_t)nchunks + 1, sizeof(StateChunk));
    for (int i = 0; i < nchunks; i++)
        sc[i] = (StateChunk){pc[i].table_no, pc[i].chunk_no,  pc[i].nchunks, pc[i].blk_start,
                             pc[i].blk_end,  pc[i].est_bytes, false};
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

/* Our own publication and schema-change capture triggers are in the
 * schema dump (they existed when the slot's snapshot was taken): they are
 * not part of the user's database. */
static void skip_own_publication(const CopyRun *r, PostEntry *entries, int n)
{
    size_t len = r->st.replication_name ? strlen(r->st.replication_name) : 0;

    for (int i = 0; len && i < n; i++) {
        const char *d = entries[i].desc, *hit;

        if (strncmp(d, "EVENT TRIGGER", 13) == 0 && strstr(d, r->st.replication_name))
            entries[i].done = true;
        if (strncmp(d, "PUBLICATION", 11) != 0)
            continue;
        for (hit = strstr(d, r->st.replication_name); hit;
             hit = strstr(hit + 1, r->st.replication_name))
            if ((hit == d || hit[-1] == ' ') && (hit[len] == ' ' || hit[len] == '\0'))
                entries[i].done = true;
    }
}

/* Pre-data in one transaction, inheritance children in the source's
 * column order where that takes more than pg_restore (childorder.h). */
static bool restore_pre_data(CopyRun *r, const SchemaOpts *so)
{
    bool handled = false;

    if (!childorder_restore_pre(r->src, r->tgt, &r->tools, r->tgt_ci, r->archive, so, &handled))
        return false;
    return handled || schema_restore_pre(&r->tools, r->tgt_ci, r->archive, so);
}

/* Per-table sync: the partitions of each partitioned root (pgoutput may
 * publish their changes under the root's name, so they sync together). */
static bool track_sync(CopyRun *r)
{
    PGresult *res = conn_query(
        r->src, "catalog",
        "SELECT n.nspname, c.relname, rn.nspname, rc.relname FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_class rc ON rc.oid = pg_catalog.pg_partition_root(c.oid)"
        " JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace WHERE c.relispartition",
        0, NULL, 4);
    int n = 0, *nos;
    char **rs, **rn;
    bool ok;

    if (!res)
        return false;
    nos = xcalloc((size_t)PQntuples(res) + 1, sizeof(int));
    rs = xcalloc((size_t)PQntuples(res) + 1, sizeof(char *));
    rn = xcalloc((size_t)PQntuples(res) + 1, sizeof(char *));
    for (int i = 0; i < PQntuples(res); i++)
        for (int t = 0; t < r->st.ntables; t++)
            if (strcmp(r->st.tables[t].schema_name, PQgetvalue(res, i, 0)) == 0 &&
                strcmp(r->st.tables[t].table_name, PQgetvalue(res, i, 1)) == 0) {
                nos[n] = r->st.tables[t].table_no;
                rs[n] = PQgetvalue(res, i, 2);
                rn[n++] = PQgetvalue(res, i, 3);
                break;
            }
    ok = state_track_sync(r->tgt, n, nos, rs, rn);
    free(nos);
    free(rs);
    free(rn);
    PQclear(res);
    return ok;
}

/* start: the schema is in and the plan saved at the slot's snapshot;
 * tables are tracked per table from now on, and nothing reads under the
 * slot's snapshot any more: let VACUUM on the source move on. */
static bool begin_per_table(CopyRun *r)
{
    if (!track_sync(r))
        return false;
    snapshot_keeper_release(&r->keeper);
    state_free(&r->st);
    return state_load(r->tgt, &r->st);
}

/* Schema phase: dump (unless the archive is in the state already) and
 * restore pre-data (unless already there), then plan. */
static bool run_schema(CopyRun *r, bool have_archive, bool restore_pre)
{
    SchemaOpts so = {r->o->no_owner, r->o->no_acl};

    progress_phase_begin(r->progress, "schema");
    if (!have_archive && (!schema_dump(&r->tools, r->src_ci, r->keeper.name, r->archive,
                                       r->tables.dump_excludes, r->tables.ndump_excludes) ||
                          !state_save_archive(r->tgt, r->archive)))
        return false;
    if (restore_pre && !restore_pre_data(r, &so))
        return false;
    if (!plan_copy(r))
        return false;
    state_free(&r->st);
    return state_load(r->tgt, &r->st) && (!r->per_table || begin_per_table(r));
}

/* After a new snapshot replaced a lost one: tables copied only in part
 * would mix two points in time; empty them and copy them whole again. */
static bool reset_partial_tables(CopyRun *r)
{
    bool ok = conn_script(r->tgt, "state", "BEGIN");

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
            ok = conn_script(r->tgt, "state", sql) && state_reset_table(r->tgt, tb->table_no);
            free(q);
            free(sql);
        }
    }
    ok = ok && conn_script(r->tgt, "state", "COMMIT");
    if (!ok)
        conn_script(r->tgt, "state", "ROLLBACK");
    return ok;
}

static int count_done_chunks(const MigrationState *st)
{
    int n = 0;

    for (int i = 0; i < st->nchunks; i++)
        n += st->chunks[i].done;
    return n;
}

/* start: the slot, created by the keeper, exports the snapshot the copy
 * reads; its stream begins exactly where the snapshot ends. */
static bool take_slot_snapshot(CopyRun *r)
{
    char lsn[LSN_TEXT_SIZE];

    if (snapshot_keeper_start_slot(r->src_ci, r->st.replication_name, r->o->snapshot_grace_ms,
                                   r->o->slot_wait_ms, &r->keeper) != SNAPSHOT_OK)
        return false;
    r->st.slot_lsn = r->keeper.slot_lsn;
    log_info("[slot] created replication slot %s at %s", r->st.replication_name,
             lsn_format(r->keeper.slot_lsn, lsn));
    if (!state_set_snapshot(r->tgt, r->keeper.name, r->keeper.backend_pid) ||
        !state_set_slot_lsn(r->tgt, r->keeper.slot_lsn))
        return false;
    snapshot_keeper_confirm(&r->keeper);
    return true;
}

/* start: capture schema changes on the source when it can (before the
 * slot: every change after its consistent point is captured); when not,
 * say why: apply stops at the first schema change. */
static bool prepare_ddl_capture(CopyRun *r)
{
    const char *why = slot_ddl_capture_refusal(r->src);

    if (why) {
        log_notice("[ddl] schema changes on the source are not captured: %s; apply stops at the "
                   "first one",
                   why);
        return true;
    }
    return slot_install_ddl_capture(r->src, r->st.replication_name, r->tables_spec);
}

/* start: replica identity for key-less tables (recorded first, so cleanup
 * can undo it even if we die right after), then the publication. */
static bool prepare_source(CopyRun *r)
{
    PGresult *res;

    for (int i = 0; i < r->n_no_identity; i++) {
        const char *p[1] = {r->no_identity[i]};

        res = conn_query(r->src, "replica identity",
                         "SELECT relreplident FROM pg_class WHERE oid = $1::regclass", 1, p, 1);
        if (!res || !state_record_identity(r->tgt, r->no_identity[i], PQgetvalue(res, 0, 0)[0])) {
            PQclear(res);
            return false;
        }
        PQclear(res);
    }
    if (!slot_set_identity_full(r->src, r->no_identity, r->n_no_identity))
        return false;
    {
        const char *p[1] = {r->st.replication_name};

        res = conn_query(r->src, "publication",
                         "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1", 1, p, 1);
        if (!res)
            return false;
        r->created_publication =
            PQntuples(res) == 1 ||
            slot_create_publication(r->src, r->st.replication_name, r->tables.excluded_oids);
        PQclear(res);
    }
    return r->created_publication && prepare_ddl_capture(r);
}

static bool start_fresh(CopyRun *r)
{
    char name[32] = "";
    bool gone;

    if (r->follow) {
        unsigned char rnd[4];
        FILE *f = fopen("/dev/urandom", "rb");

        if (!f || fread(rnd, 1, sizeof(rnd), f) != sizeof(rnd)) {
            log_error("could not read /dev/urandom");
            if (f)
                fclose(f);
            return false;
        }
        fclose(f);
        snprintf(name, sizeof(name), "pgrelocate_%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
        r->st.replication_name = xstrdup(name);
    }
    if (!state_create(r->tgt, conninfo_display(r->src_ci), r->src_info.dbname,
                      r->follow ? name : NULL, r->tables_spec))
        return false;
    r->state_created = true;
    r->per_table = r->follow && !r->o->one_snapshot;
    if (r->follow)
        return prepare_source(r) && take_slot_snapshot(r) && run_schema(r, false, true);
    return take_snapshot(r, NULL, &gone) && run_schema(r, false, true);
}

/* start, resumed after the slot's snapshot was lost: the rows copied so far
 * cannot be tied to the slot's stream any more.  Recreate the slot (a new
 * snapshot and consistent point) and copy every table again. */
static bool restart_follow_copy(CopyRun *r)
{
    bool ok;

    log_warning("the snapshot of the interrupted copy is gone: recreating the replication slot "
                "and copying all tables again (tables, not the schema)");
    /* Empty the tables first: if we die before the new slot exists, the
     * next run comes back here; it never finds rows of the old snapshot
     * next to a new slot. */
    ok = conn_script(r->tgt, "state", "BEGIN");
    for (int t = 0; ok && t < r->st.ntables; t++) {
        char *q = conn_qualify(r->tgt, r->st.tables[t].schema_name, r->st.tables[t].table_name);
        char *sql = xasprintf("TRUNCATE ONLY %s", q);

        ok = conn_script(r->tgt, "state", sql) &&
             state_reset_table(r->tgt, r->st.tables[t].table_no);
        free(q);
        free(sql);
    }
    ok = ok && state_restart_data(r->tgt) && conn_script(r->tgt, "state", "COMMIT");
    if (!ok) {
        conn_script(r->tgt, "state", "ROLLBACK");
        return false;
    }
    if (!slot_drop(r->src, r->st.replication_name) || !take_slot_snapshot(r))
        return false;
    state_free(&r->st);
    return state_load(r->tgt, &r->st);
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

/* Wait up to wait_ms for slot name to be gone or inactive (its walsender
 * lets go a moment after its client ended); *si holds the last look.
 * false when the slot could not be read. */
static bool slot_let_go(PGconn *conn, const char *name, int wait_ms, SlotInfo *si)
{
    for (int waited = 0;; waited += 100) {
        if (!slot_info(conn, name, si))
            return false;
        if (!si->exists || !si->active || waited >= wait_ms)
            return true;
        usleep(100000);
    }
}

/* The slot of an interrupted run is let go a moment after that run died (its
 * snapshot keeper, ended at once, and its walsender): wait for it before
 * slot_drop calls it in use (and names who holds it). */
static bool slot_released(CopyRun *r)
{
    SlotInfo si = {0};

    return slot_let_go(r->src, r->st.replication_name, SLOT_RELEASE_WAIT_MS, &si);
}

/* The snapshot for the phases that read under it: the interrupted run's
 * when it still exists.  Otherwise a copy asks the user (--new-snapshot),
 * and a start recreates its slot (and copies the tables again if any were
 * copied under the old one).  *fresh: a new snapshot was taken. */
static bool resume_snapshot(CopyRun *r, bool *fresh)
{
    bool gone = false;
    SnapshotStatus st;

    *fresh = false;
    if (!r->follow) {
        if (!take_snapshot(r, r->st.snapshot, &gone))
            return false;
        *fresh = gone;
        return !gone || accept_new_snapshot(r);
    }
    /* start copies only under its slot's own snapshot, never another one:
     * any other would not meet the slot's stream exactly. */
    st = import_snapshot(r, r->st.snapshot);
    if (st != SNAPSHOT_GONE)
        return st == SNAPSHOT_OK;
    *fresh = true;
    if (r->st.phase != PHASE_SCHEMA)
        return restart_follow_copy(r);
    return prepare_source(r) && slot_released(r) && slot_drop(r->src, r->st.replication_name) &&
           take_slot_snapshot(r);
}

static bool start_resume(CopyRun *r)
{
    bool fresh = false, have_archive, empty = false;
    char *example = NULL;

    log_info("resuming at phase %s", state_phase_name(r->st.phase));
    r->per_table = r->follow &&
                   (r->st.phase == PHASE_SCHEMA ? !r->o->one_snapshot
                                                : r->st.ntables > 0 && r->st.tables[0].sync_state);
    if (r->st.phase >= PHASE_FOLLOW)
        return true;
    /* per table, the data phase reads under snapshots of its own: a keeper
     * an interrupted run left holding the slot's snapshot is ended now,
     * not after its grace period */
    if (r->per_table && r->st.phase >= PHASE_DATA && r->st.snapshot_backend_pid > 0)
        snapshot_end_keeper_backend(r->src, r->st.snapshot_backend_pid);
    if (r->st.phase <= PHASE_LARGE_OBJECTS && !(r->per_table && r->st.phase >= PHASE_DATA) &&
        !resume_snapshot(r, &fresh))
        return false;
    have_archive = state_restore_archive(r->tgt, r->archive, r->st.phase == PHASE_SCHEMA);
    if (r->st.phase != PHASE_SCHEMA)
        return have_archive;
    /* Pre-data restores in one transaction: either all of it is there or
     * nothing is. */
    if (!state_target_is_empty(r->tgt, &empty, &example))
        return false;
    free(example);
    return run_schema(r, have_archive && !fresh, empty);
}

/* Record that the next phase begins. */
static bool advance(CopyRun *r, Phase next)
{
    if (!state_set_phase(r->tgt, next))
        return false;
    r->st.phase = next;
    atomic_store(&r->metrics.phase, next);
    return true;
}

/* Indexes of a table are built as soon as its rows are copied (copy.h);
 * without the mapping (logged) they wait for the post-data phase. */
static bool prepare_early_indexes(CopyRun *r, EarlyIndexes *ei)
{
    *ei = (EarlyIndexes){.tools = &r->tools,
                         .target = r->tgt_ci,
                         .archive = r->archive,
                         .so = {r->o->no_owner, r->o->no_acl},
                         .tmpdir = r->tmpdir,
                         .resuming = r->resuming,
                         .progress = r->progress};
    if (earlyindex_prepare(ei, r->src, r->tgt, r->st.tables, r->st.ntables))
        return true;
    log_notice("indexes will be built after all rows are copied");
    return false;
}

static void resolve_protocol(CopyRun *r);

/* Per table, after a crash: a table not ready had chunks copied under a
 * snapshot that is gone; empty it (and every partition of its root, which
 * sync together) and copy it again at a new point. */
static bool reset_unready_tables(CopyRun *r)
{
    bool ok = conn_script(r->tgt, "state", "BEGIN"), any = false;

    for (int t = 0; ok && t < r->st.ntables; t++) {
        const StateTable *tb = &r->st.tables[t];
        bool reset = tb->sync_state != 'r', partial = false;

        for (int u = 0; !reset && tb->root_name && u < r->st.ntables; u++) {
            const StateTable *o = &r->st.tables[u];

            reset = o->sync_state != 'r' && o->root_name &&
                    strcmp(o->root_name, tb->root_name) == 0 &&
                    strcmp(o->root_schema, tb->root_schema) == 0;
        }
        for (int c = 0; reset && c < r->st.nchunks; c++)
            partial = partial || (r->st.chunks[c].table_no == tb->table_no && r->st.chunks[c].done);
        if (!reset || (!partial && tb->sync_state != 'r'))
            continue;
        char *q = conn_qualify(r->tgt, tb->schema_name, tb->table_name);
        char *sql = xasprintf("TRUNCATE ONLY %s", q);

        log_notice("[copy %s.%s] copied in part by an interrupted run: copying it again at a new "
                   "point",
                   tb->schema_name, tb->table_name);
        ok = conn_script(r->tgt, "state", sql) && state_reset_table(r->tgt, tb->table_no);
        any = true;
        free(q);
        free(sql);
    }
    ok = ok && conn_script(r->tgt, "state", "COMMIT");
    if (!ok) {
        conn_script(r->tgt, "state", "ROLLBACK");
        return false;
    }
    return !any || (state_free(&r->st), state_load(r->tgt, &r->st));
}

/* Groups in plan order (costliest first): a table (with every partition of
 * its root) joins the open group while the group stays under
 * --sync-group-size, else opens the next; ready tables keep their L.  The
 * pending chunks come back ordered by group, so a group's snapshot lives
 * only while its own chunks are copied.  Caller frees *ordered. */
static TableSync *plan_groups(CopyRun *r, StateChunk **ordered)
{
    TableSync *ts =
        tablesync_create(r->src_ci, r->st.replication_name, r->st.ntables, r->o->slot_wait_ms);
    int *group = xcalloc((size_t)r->st.ntables + 1, sizeof(int)), *chunks, open = -1, n = 0;
    int64_t open_bytes = 0;

    chunks = xcalloc((size_t)r->st.ntables + 1, sizeof(int));
    for (int c = 0; c < r->st.nchunks; c++)
        chunks[r->st.chunks[c].table_no - 1] += !r->st.chunks[c].done;
    for (int t = 0; t < r->st.ntables; t++)
        group[t] = -1;
    for (int c = 0; c < r->st.nchunks; c++) {
        const StateTable *tb = &r->st.tables[r->st.chunks[c].table_no - 1];

        if (group[tb->table_no - 1] >= 0)
            continue;
        if (tb->sync_state == 'r') {
            group[tb->table_no - 1] = tablesync_add_group(ts, true, tb->sync_lsn);
            tablesync_add_table(ts, group[tb->table_no - 1], tb->table_no, tb->schema_name,
                                tb->table_name, 0);
            continue;
        }
        if (open < 0 || open_bytes + tb->bytes > r->o->sync_group_size) {
            open = tablesync_add_group(ts, false, 0);
            open_bytes = 0;
        }
        /* the table and the partitions of its root */
        for (int u = 0; u < r->st.ntables; u++) {
            const StateTable *o = &r->st.tables[u];

            if (u != tb->table_no - 1 &&
                (!tb->root_name || !o->root_name || strcmp(o->root_name, tb->root_name) != 0 ||
                 strcmp(o->root_schema, tb->root_schema) != 0))
                continue;
            group[u] = open;
            open_bytes += o->bytes;
            tablesync_add_table(ts, open, o->table_no, o->schema_name, o->table_name, chunks[u]);
        }
        if (tb->root_name)
            tablesync_add_root(ts, open, tb->root_schema, tb->root_name);
    }
    *ordered = xcalloc((size_t)r->st.nchunks + 1, sizeof(StateChunk));
    for (int g = 0; g < r->st.ntables; g++) /* group numbers are below ntables */
        for (int c = 0; c < r->st.nchunks; c++)
            if (group[r->st.chunks[c].table_no - 1] == g)
                (*ordered)[n++] = r->st.chunks[c];
    free(group);
    free(chunks);
    return ts;
}

typedef struct SyncReady {
    EarlyIndexes *ei; /* or NULL */
    TableSync *sync;
} SyncReady;

/* A table's rows are in: its early indexes first (apply's changes find
 * their rows by key), then its changes apply. */
static bool sync_table_ready(void *arg, int table_no, int worker, PGconn *tgt)
{
    SyncReady *sr = arg;

    if (sr->ei && !earlyindex_build_table(sr->ei, table_no, worker, tgt))
        return false;
    tablesync_table_ready(sr->sync, table_no);
    return true;
}

/* The forward follower's options (--skip-transaction included; checked in
 * migrate_main); the caller sets stop, or follow_spawn does. */
static FollowOpts forward_follow_opts(CopyRun *r)
{
    FollowOpts fo = {.source = r->src_ci,
                     .target = r->tgt_ci,
                     .slot = r->st.replication_name,
                     .publication = r->st.replication_name,
                     .origin = r->st.replication_name,
                     .proto_version = stream_proto_for_server(r->src_info.version_num),
                     .client_encoding = r->tgt_info.encoding,
                     .status_interval_ms = 10000,
                     .max_retained_wal = r->o->max_retained_wal,
                     .metrics = &r->metrics,
                     .protocol = r->protocol};

    if (r->o->skip_transaction)
        lsn_parse(r->o->skip_transaction, &fo.skip_lsn);
    return fo;
}

/* The follower of this process while the tables copy (stopped by
 * stop_follower, at the follow phase or at the end). */
static bool start_follower(CopyRun *r)
{
    resolve_protocol(r);
    r->fo = forward_follow_opts(r);
    r->fo.sync = r->sync;
    r->follower = follow_spawn(&r->fo);
    return r->follower != NULL;
}

static bool stop_follower(CopyRun *r)
{
    FollowResult fr = FOLLOW_STOPPED;

    tablesync_abort(r->sync); /* a wait of apply ends (its batch rolls back) */
    if (r->follower)
        fr = follow_join(r->follower);
    r->follower = NULL;
    tablesync_destroy(r->sync);
    r->sync = NULL;
    return fr != FOLLOW_FAILED;
}

static bool run_data_per_table(CopyRun *r)
{
    CopyJob job = {.source = r->src_ci,
                   .target = r->tgt_ci,
                   .client_encoding = r->tgt_info.encoding,
                   .jobs = r->o->jobs,
                   .progress = r->progress,
                   .interrupted = &interrupt_requested,
                   .metrics = &r->metrics,
                   .table_ready = sync_table_ready};
    EarlyIndexes ei;
    SyncReady sr = {NULL, NULL};
    StateChunk *ordered = NULL;
    int64_t total = 0;
    int pending = 0;
    bool ok;

    if (!reset_unready_tables(r)) /* reloads the state: job's views are taken after */
        return false;
    job.tables = r->st.tables;
    job.ntables = r->st.ntables;
    job.nchunks = r->st.nchunks;
    r->sync = sr.sync = job.sync = plan_groups(r, &ordered);
    job.chunks = ordered;
    job.table_ready_arg = &sr;
    for (int i = 0; i < r->st.nchunks; i++)
        if (!r->st.chunks[i].done) {
            total += r->st.chunks[i].est_bytes;
            pending++;
        }
    if (prepare_early_indexes(r, &ei))
        sr.ei = &ei;
    if (!start_follower(r)) {
        free(ordered);
        earlyindex_free(&ei);
        return false;
    }
    progress_phase_begin(r->progress, "data");
    progress_set_total(r->progress, total, pending);
    ok = copy_run(&job);
    if (ok && !follow_thread_alive(r->follower)) {
        log_error("the follower stopped while the tables were copied");
        ok = false;
    }
    ok = ok && advance(r, PHASE_LARGE_OBJECTS);
    if (!ok)
        stop_follower(r);
    if (sr.ei && atomic_load(&ei.built) > 0)
        log_info("built %d indexes and key constraints while rows were copied",
                 atomic_load(&ei.built));
    earlyindex_free(&ei);
    free(ordered);
    return ok;
}

static bool run_data(CopyRun *r)
{
    if (r->per_table)
        return run_data_per_table(r);
    CopyJob job = {r->src_ci,
                   r->tgt_ci,
                   r->keeper.name,
                   r->tgt_info.encoding,
                   r->st.tables,
                   r->st.ntables,
                   r->st.chunks,
                   r->st.nchunks,
                   r->o->jobs,
                   r->progress,
                   &interrupt_requested,
                   &r->metrics,
                   NULL,
                   NULL,
                   NULL};
    EarlyIndexes ei;
    int64_t total = 0;
    int pending = 0;
    bool ok;

    for (int i = 0; i < r->st.nchunks; i++)
        if (!r->st.chunks[i].done) { /* done ones were copied before an interruption */
            total += r->st.chunks[i].est_bytes;
            pending++;
        }
    if (prepare_early_indexes(r, &ei)) {
        job.table_ready = earlyindex_build_table;
        job.table_ready_arg = &ei;
    }
    progress_phase_begin(r->progress, "data");
    progress_set_total(r->progress, total, pending);
    ok = copy_run(&job) && advance(r, PHASE_LARGE_OBJECTS);
    if (job.table_ready && atomic_load(&ei.built) > 0)
        log_info("built %d indexes and key constraints while rows were copied",
                 atomic_load(&ei.built));
    earlyindex_free(&ei);
    return ok;
}

static bool run_large_objects(CopyRun *r)
{
    int64_t count = 0, bytes = 0;
    bool ok;

    progress_phase_begin(r->progress, "large objects");
    ok = begin_snapshot(r->src, r->keeper.pid > 0 ? r->keeper.name : NULL) &&
         largeobject_copy(r->src, r->tgt, r->progress, &count, &bytes) &&
         conn_script(r->src, "large objects", "COMMIT");
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
    return advance(r, PHASE_POST_DATA);
}

static bool post_done(const PostEntry *e, void *arg)
{
    CopyRun *r = arg;

    return state_mark_post_done(r->tgt, e->dump_id, e->desc);
}

/* What pg_restore does not make exactly as on the source (schemafix.h). */
static bool fix_schema(CopyRun *r)
{
    int renamed = 0;

    if (!schemafix_constraint_names(r->src, r->tgt, &renamed) ||
        !schemafix_database(r->src, r->tgt, r->o->no_acl))
        return false;
    if (renamed > 0)
        log_info("[schema] %d foreign key%s of partitions renamed as on the source", renamed,
                 renamed == 1 ? "" : "s");
    return true;
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
    if (ok)
        skip_own_publication(r, entries, n);
    for (int i = 0; ok && i < n; i++)
        for (int k = 0; k < ndone; k++)
            if (entries[i].dump_id == done[k])
                entries[i].done = true;
    ok = ok &&
         schema_restore_post(&r->tools, r->tgt_ci, r->archive, &so, entries, n, r->o->jobs,
                             r->tmpdir, r->resuming, post_done, r) &&
         fix_schema(r) && advance(r, PHASE_SEQUENCES);
    schema_free_post(entries, n);
    free(done);
    return ok;
}

static bool run_sequences(CopyRun *r)
{
    Catalog cat;
    bool ok;

    progress_phase_begin(r->progress, "sequences");
    if (!catalog_read_subset(r->src, r->tables.excluded_oids, &cat))
        return false;
    ok = sequences_copy(r->src, r->tgt, cat.sequences, cat.nsequences) && advance(r, PHASE_ANALYZE);
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
    ok = copy_run_statements(r->tgt_ci, stmts, n, r->o->jobs, r->progress, &interrupt_requested) &&
         advance(r, r->follow ? PHASE_FOLLOW : PHASE_DONE);
    free(stmts);
    PQclear(res);
    return ok;
}

/* After a switch of direction the old direction's slot only makes its
 * server keep WAL: nothing streams from it again (a rollback uses the
 * reverse direction; after a rollback nothing follows).  Dropped once our
 * own walsender has let go of it. */
static void drop_old_slot(PGconn *conn, const char *name, const char *where)
{
    SlotInfo si = {0};

    if (!slot_let_go(conn, name, 30000, &si) || !si.exists)
        return;
    if (si.active) {
        log_warning("replication slot %s on the %s is still in use; pgrelocate cleanup drops it",
                    name, where);
        return;
    }
    if (slot_drop(conn, name))
        log_info("the %s no longer keeps WAL for the old direction (slot %s dropped)", where, name);
}

/* The forward slot, dropped on a connection of its own while the reverse
 * direction starts (waiting for its walsender must not delay the reverse
 * stream: a rollback may come soon). */
static void *retire_main(void *arg)
{
    CopyRun *r = arg;
    ConnOpts co = {.side = CONN_SOURCE, .app_name = "pgrelocate start"};
    PGconn *conn = conn_open(r->src_ci, &co);

    if (conn)
        drop_old_slot(conn, r->st.replication_name, "source");
    conn_close(conn);
    return NULL;
}

static void retire_forward_slot(CopyRun *r)
{
    if (r->retiring)
        return;
    r->retiring = pthread_create(&r->retire, NULL, retire_main, r) == 0;
}

/* How values travel while following: --protocol as given (recorded on the
 * target when it changes what the migration uses, so a later start, verify
 * or cutover uses the same), else as recorded, else auto. */
static void resolve_protocol(CopyRun *r)
{
    ValueProtocol recorded = follow_recorded_protocol(r->tgt);

    r->protocol = recorded;
    if (!r->o->protocol || !valueformat_parse_protocol(r->o->protocol, &r->protocol) ||
        r->protocol == recorded)
        return;
    state_event(r->tgt, "info", "protocol", valueformat_protocol_name(r->protocol));
    log_info("values travel by --protocol %s from now on (recorded on the target)",
             valueformat_protocol_name(r->protocol));
}

/*
 * After cutover: the target is primary and the source must stay current,
 * so a rollback loses nothing.  Same engine, roles swapped: stream from the
 * reverse slot on the target, apply to the source under the reverse
 * origin; transactions carrying the forward origin (our own applies) are
 * never sent back.  Sync points still live on the target.
 */
static bool run_reverse(CopyRun *r)
{
    char *name = state_reverse_name(r->st.replication_name);
    FollowOpts fo = {.source = r->tgt_ci,
                     .target = r->src_ci,
                     .slot = name,
                     .publication = name,
                     .origin = name,
                     .proto_version = stream_proto_for_server(r->tgt_info.version_num),
                     .client_encoding = r->src_info.encoding,
                     .status_interval_ms = 10000,
                     .max_retained_wal = r->o->max_retained_wal,
                     .metrics = &r->metrics,
                     .stop = &interrupt_requested,
                     .control = r->tgt_ci,
                     .skip_origin = r->st.replication_name,
                     .label = "reverse"};
    SlotInfo si;
    FollowResult fr;

    resolve_protocol(r);
    fo.protocol = r->protocol;
    if (!slot_info(r->tgt, name, &si)) {
        free(name);
        return false;
    }
    if (!si.exists) {
        log_msg(LOG_ERROR, "The cutover records a reverse direction but its slot is missing.",
                "Run pgrelocate cutover again to finish it, or rollback.",
                "replication slot %s does not exist on the target", name);
        free(name);
        return false;
    }
    progress_stop(r->progress);
    log_info("cut over: following the target's changes back to the source (Ctrl-C to stop; run "
             "the same command to go on)");
    fr = follow_run(&fo);
    if (fr == FOLLOW_FINISHED && state_read_phase(r->tgt, &r->st.phase) &&
        r->st.phase == PHASE_ROLLED_BACK)
        drop_old_slot(r->tgt, name, "target");
    free(name);
    if (fr == FOLLOW_FAILED)
        return false;
    if (fr == FOLLOW_FINISHED)
        log_info("[reverse] stopped for good (rollback)");
    else
        log_info("[reverse] stopped; progress is saved on the source");
    return true;
}

/* Stream and apply changes until a signal asks to stop. */
static bool run_follow(CopyRun *r)
{
    FollowOpts fo = forward_follow_opts(r);
    SlotInfo si;

    fo.stop = &interrupt_requested;
    if (r->o->skip_transaction) {
        char lsn[LSN_TEXT_SIZE], done_text[LSN_TEXT_SIZE];
        Lsn done = 0;

        if (!apply_origin_progress(r->tgt, r->st.replication_name, &done))
            return false;
        if (done >= fo.skip_lsn)
            log_msg(LOG_WARNING, NULL,
                    "Give the commit LSN of the transaction apply stopped on (its error names "
                    "it), or leave the option out.",
                    "[follow] --skip-transaction %s has nothing to leave out: the target has "
                    "applied the source's changes up to %s, past that position",
                    lsn_format(fo.skip_lsn, lsn), lsn_format(done, done_text));
        else
            log_notice("[follow] the source transaction committed at %s is left out if it comes "
                       "(--skip-transaction)",
                       lsn_format(fo.skip_lsn, lsn));
    }
    if (r->follower && !stop_follower(r))
        return false; /* its error is logged */
    resolve_protocol(r);
    fo.protocol = r->protocol;
    if (!slot_info(r->src, r->st.replication_name, &si))
        return false;
    if (!si.exists || strcmp(si.wal_status, "lost") == 0) {
        log_msg(LOG_ERROR,
                "Without the slot the source's changes since the copy cannot be read: a full "
                "copy is required.",
                "Run pgrelocate cleanup, recreate the target database, and run pgrelocate "
                "start again.",
                "replication slot %s %s", r->st.replication_name,
                si.exists ? "lost WAL it needed (wal_status = lost)" : "no longer exists");
        return false;
    }
    progress_phase_begin(r->progress, "follow");
    progress_stop(r->progress);
    log_info("copy complete; following changes (Ctrl-C to stop; run the same command to go on)");
    switch (follow_run(&fo)) {
    case FOLLOW_FAILED:
        return false;
    case FOLLOW_STOPPED:
        log_info("[follow] stopped; progress is saved on the target");
        return true;
    case FOLLOW_FINISHED:
        break;
    }
    /* a cutover stopped the forward direction, once its switch was done */
    if (!state_read_phase(r->tgt, &r->st.phase))
        return false;
    if (r->st.phase == PHASE_REVERSE || r->st.phase == PHASE_DONE)
        retire_forward_slot(r);
    return true; /* migrate_main goes on in reverse if the cutover set it up */
}

typedef bool (*PhaseFn)(CopyRun *r);

static const PhaseFn phase_fns[] = {
    [PHASE_DATA] = run_data,           [PHASE_LARGE_OBJECTS] = run_large_objects,
    [PHASE_POST_DATA] = run_post_data, [PHASE_SEQUENCES] = run_sequences,
    [PHASE_ANALYZE] = run_analyze,     [PHASE_FOLLOW] = run_follow,
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
    bool ok = true;

    if (!r->state_created || !r->tgt || PQstatus(r->tgt) != CONNECTION_OK)
        return;
    PQclear(PQexec(r->tgt, "ROLLBACK"));
    if (r->follow && r->src && PQstatus(r->src) == CONNECTION_OK) {
        char **names = NULL, *orig = NULL;
        int n = 0;

        ok = slot_drop_ddl_capture(r->src, r->st.replication_name) &&
             slot_drop(r->src, r->st.replication_name) &&
             (!r->created_publication || slot_drop_publication(r->src, r->st.replication_name)) &&
             state_load_identity(r->tgt, &names, &orig, &n);
        for (int i = 0; i < n; i++) {
            ok = ok && slot_restore_identity(r->src, names[i], orig[i]);
            free(names[i]);
        }
        free(names);
        free(orig);
    }
    if (!ok) {
        log_warning("could not undo everything on the source: run pgrelocate cleanup");
        return;
    }
    if (conn_script(r->tgt, "cleanup", "DROP SCHEMA IF EXISTS pgrelocate CASCADE"))
        log_info("the source and the target are as they were");
}

static void finish(CopyRun *r, bool ok)
{
    stop_follower(r);
    if (!ok && r->tgt && PQstatus(r->tgt) == CONNECTION_OK) {
        const char *msg = r->cause;

        PQclear(PQexec(r->tgt, "ROLLBACK")); /* a failed step may have left a transaction open */
        state_event(r->tgt, interrupt_requested ? "interrupted" : "error",
                    r->follow ? "start" : "copy",
                    interrupt_requested ? "interrupted by a signal"
                    : msg[0]            ? msg
                                        : "failed");
    }
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
    if (r->retiring)
        pthread_join(r->retire, NULL);
    for (int i = 0; i < r->n_no_identity; i++)
        free(r->no_identity[i]);
    free(r->no_identity);
    metrics_stop(&r->metrics);
    remove_tmpdir(r);
    conn_close(r->src);
    conn_close(r->tgt);
    conninfo_destroy(r->src_ci);
    conninfo_destroy(r->tgt_ci);
    catalog_free_server_info(&r->src_info);
    catalog_free_server_info(&r->tgt_info);
    state_free(&r->st);
    tableset_free(&r->tables);
    free(r->tables_spec);
    progress_destroy(r->progress);
}

/* Final words and the exit code. */
static int conclude(CopyRun *r, bool ok, bool was_done)
{
    /* only where a retry can succeed: not after an error that recurs */
    const char *again = log_had_lasting_error() ? NULL
                        : r->follow             ? "Run the same command to continue."
                                                : "Run the same command with --resume to continue.";
    bool followed = r->follow && r->st.phase >= PHASE_FOLLOW;
    int rc;

    log_last_error(r->cause, sizeof(r->cause)); /* before the summary lines below */
    if (ok && !interrupt_requested && !was_done && !followed && !r->o->quiet)
        progress_print_summary(r->progress, stdout, 20);
    if (ok && !interrupt_requested && !was_done && !followed)
        log_info("copy complete: the target holds the source's schema and data");
    if (ok && (followed || !interrupt_requested))
        rc = EXIT_OK;
    else if (interrupt_requested) {
        log_msg(LOG_ERROR, NULL, again, "%s interrupted", r->follow ? "start" : "copy");
        rc = EXIT_INTERRUPTED;
    } else {
        if (r->state_created || r->resuming)
            log_msg(LOG_ERROR, NULL, r->st.phase > PHASE_SCHEMA ? again : NULL, "%s failed",
                    r->follow ? "start" : "copy");
        rc = EXIT_FAILED;
    }
    finish(r, ok && rc == EXIT_OK);
    return rc;
}

static int migrate_main(const Options *o, bool follow)
{
    CopyRun r = {.o = o, .keeper = {.control_fd = -1}, .follow = follow};
    ValueProtocol protocol;
    bool ok;
    Lsn skip;

    if (o->skip_transaction && (!lsn_parse(o->skip_transaction, &skip) || skip == 0)) {
        log_msg(LOG_ERROR, NULL,
                "Give the commit LSN the apply error named, as in --skip-transaction 0/1A2B3C8.",
                "invalid value for --skip-transaction: \"%s\"", o->skip_transaction);
        return EXIT_USAGE;
    }
    if (o->protocol && !valueformat_parse_protocol(o->protocol, &protocol)) {
        log_msg(LOG_ERROR, NULL, "Use auto, text or binary.",
                "invalid value for --protocol: \"%s\"", o->protocol);
        return EXIT_USAGE;
    }
    r.progress = progress_create(progress_mode(o), o->jobs);
    interrupt_catch();
    signal(SIGPIPE, SIG_IGN);
    atomic_store(&r.metrics.retained_wal_bytes, -1);
    ok = (!o->metrics_listen || metrics_start(&r.metrics, o->metrics_listen)) && open_and_check(&r);
    if (ok) {
        ok = r.resuming ? start_resume(&r) : start_fresh(&r);
        if (!ok && r.st.phase == PHASE_SCHEMA && !r.resuming) {
            snapshot_keeper_release(&r.keeper);
            undo_new_state(&r);
        }
    }
    bool was_done = ok && r.st.phase == PHASE_DONE;

    atomic_store(&r.metrics.phase, r.st.phase);
    if (was_done)
        log_info("this copy was already complete");
    progress_start(r.progress);
    while (ok && r.st.phase < PHASE_DONE && !interrupt_requested) {
        Phase before = r.st.phase;

        ok = phase_fns[r.st.phase](&r);
        if (before == PHASE_FOLLOW)
            break; /* follow returns when asked to stop */
    }
    /* A cutover turns the direction around, a rollback or an aborted
     * cutover may turn it back: follow whichever the migration is in until
     * asked to stop. */
    while (ok && follow && !interrupt_requested && r.st.phase == PHASE_REVERSE) {
        ok = run_reverse(&r) && state_read_phase(r.tgt, &r.st.phase);
        if (ok && !interrupt_requested && r.st.phase == PHASE_FOLLOW)
            ok = run_follow(&r) && state_read_phase(r.tgt, &r.st.phase);
    }
    if (ok && follow && r.st.phase == PHASE_ROLLED_BACK)
        log_info("this migration was rolled back: the source is primary again and nothing "
                 "follows; pgrelocate cleanup removes what is left of it");
    progress_phase_end(r.progress);
    progress_stop(r.progress);
    return conclude(&r, ok, was_done);
}

int cmd_copy(const Options *o)
{
    return migrate_main(o, false);
}

int cmd_start(const Options *o)
{
    return migrate_main(o, true);
}
