/*
 * status.c: `pgrelocate status`: where a migration stands, read from the
 * target's pgrelocate schema (and, with --source, from our slot on the
 * source).  Owns the report (collect, then print as text or JSON) and the
 * --watch loop.  Changes nothing on either server: the target is read in
 * one READ ONLY transaction, the source through catalog views only.
 * --tables narrows the tables shown and the copy totals to the matching
 * ones (a partition goes by its root's name, as in verify).  Does not own
 * the schema (stateschema.c), its queries (statequery.c) nor the slot
 * (slot.c).
 */
#include "commands.h"

#include "conn.h"
#include "interrupt.h"
#include "log.h"
#include "lsn.h"
#include "names.h"
#include "size.h"
#include "slot.h"
#include "state.h"
#include "statequery.h"
#include "stateschema.h"
#include "strbuf.h"
#include "tablefilter.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Retained WAL above this gets a warning (until --max-retained-wal exists). */
#define STATUS_MAX_RETAINED_WAL_BYTES ((int64_t)20 << 30)
/* Text output lists this many tables (the biggest), then "... and N more". */
#define STATUS_TEXT_TABLES 20
#define STATUS_EVENTS      5
#define STATUS_SKIPS       20
#define STATUS_CUTOVERS    5
#define STATUS_MAX_WARN    8

typedef struct TableStatus {
    char *name;        /* display form (names_display) */
    const char *state; /* pending, copying, copied, replicating */
    int chunks;
    int chunks_done;
    int64_t rows_done; /* sum(rows_copied) of done chunks */
    int64_t bytes_done;
    int64_t bytes_estimate;
} TableStatus;

/* Everything one report shows.  Unknown numbers are -1 (printed "unknown",
 * JSON null); unknown LSNs are LSN_INVALID with the have_ flag false. */
typedef struct Report {
    char *source, *phase_name, *replication_name;
    char *started_at, *updated_at, *finished_at, *now; /* UTC, ISO 8601; finished may be NULL */
    int phase;                                         /* Phase, or -1 for a name we do not know */
    TableStatus *tables;                               /* by bytes_estimate, biggest first */
    int ntables, tables_copied;
    int ntables_all;    /* in the migration; ntables: those --tables shows */
    char *table_nos;    /* int[] literal of the tables shown; NULL: all */
    const char *filter; /* --tables as given, or NULL (not owned) */
    int chunks, chunks_done;
    int64_t rows_done, bytes_done, bytes_estimate, est_done;
    double elapsed_s, rate_bytes_s, rate_rows_s, eta_s, percent;
    int64_t post_data_done;
    char *post_data_last_at;
    /* replication (start only): the stream that runs in this phase */
    const char *direction; /* "forward", "reverse" (after a cutover), NULL: none runs */
    char *stream_name;     /* its slot, publication and origin */
    bool origin_readable, have_applied;
    Lsn applied_lsn; /* origin progress downstream (target; source in reverse) */
    bool source_checked, have_source_lsn;
    SlotInfo slot;
    Lsn source_lsn;
    int64_t lag_bytes;
    double lag_s;
    /* per-table sync (tablesync.h): tables in each state; tracked false
     * for a migration copied under one snapshot */
    bool sync_tracked;
    int sync_pending, sync_syncing, sync_ready;
    /* with --source: what pgrelocate's sessions hold back on the source */
    bool hold_checked;
    int hold_sessions, hold_temp_slots;
    double hold_age_s;     /* oldest snapshot we hold, seconds */
    int64_t hold_xmin_age; /* its backend_xmin's age, in transactions */
    StateEvent events[STATUS_EVENTS];
    int nevents;
    StateEvent skips[STATUS_SKIPS]; /* transactions --skip-transaction left out */
    int nskips;
    int64_t ddl_replayed, ddl_refused;            /* captured schema changes (ddl.h) */
    StateCutoverRecord cutovers[STATUS_CUTOVERS]; /* the latest, oldest first */
    int ncutovers, cutovers_total;
    char *warnings[STATUS_MAX_WARN];
    int nwarnings;
} Report;

typedef struct StatusCtx {
    const Options *o;
    ConnInfo *tci, *sci;
    PGconn *tgt, *src;
    char *spec;          /* --tables joined, or NULL */
    TableFilter *filter; /* parsed spec */
    bool clear_screen;   /* --watch on a terminal: redraw in place */
} StatusCtx;

static double real_value(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? -1.0 : atof(PQgetvalue(res, row, col));
}

static void report_warn(Report *r, char *msg)
{
    if (r->nwarnings < STATUS_MAX_WARN)
        r->warnings[r->nwarnings++] = msg;
    else
        free(msg);
}

static void report_free(Report *r)
{
    free(r->source);
    free(r->phase_name);
    free(r->replication_name);
    free(r->stream_name);
    free(r->started_at);
    free(r->updated_at);
    free(r->finished_at);
    free(r->now);
    free(r->post_data_last_at);
    for (int i = 0; i < r->ntables; i++)
        free(r->tables[i].name);
    free(r->tables);
    free(r->table_nos);
    for (int i = 0; i < r->nevents; i++)
        statequery_free_event(&r->events[i]);
    for (int i = 0; i < r->nskips; i++)
        statequery_free_event(&r->skips[i]);
    for (int i = 0; i < r->ncutovers; i++)
        statequery_free_cutover(&r->cutovers[i]);
    for (int i = 0; i < r->nwarnings; i++)
        free(r->warnings[i]);
    memset(r, 0, sizeof(*r));
}

static int phase_from_text(const char *name)
{
    for (int p = PHASE_SCHEMA; p <= PHASE_LAST; p++)
        if (strcmp(state_phase_name((Phase)p), name) == 0)
            return p;
    return -1;
}

static const char origin_privilege_sql[] =
    "SELECT pg_catalog.has_function_privilege("
    "'pg_catalog.pg_replication_origin_progress(text, boolean)', 'EXECUTE') "
    "AND pg_catalog.has_function_privilege('pg_catalog.pg_replication_origin_oid(text)', "
    "'EXECUTE')";

static const char origin_sql[] =
    "SELECT CASE WHEN pg_catalog.pg_replication_origin_oid($1) IS NULL THEN NULL "
    "ELSE pg_catalog.pg_replication_origin_progress($1, true)::text END";

/* The source's WAL position, and the lag time its walsender measured from
 * our feedback (NULL when not streaming, idle, or not visible to us).  The
 * insert position, not the write position: with synchronous_commit off a
 * commit is visible before its record is written, and lag 0 must mean
 * every committed transaction is on the target. */
static const char source_sql[] =
    "SELECT (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() "
    "ELSE pg_catalog.pg_current_wal_insert_lsn() END)::text, "
    "(SELECT extract(epoch FROM coalesce(replay_lag, flush_lag))::float8 "
    " FROM pg_catalog.pg_stat_replication WHERE pid = $1::int)";

static bool load_migration(PGconn *tgt, Report *r)
{
    StateMigrationRow m;

    if (!statequery_load_migration(tgt, &m))
        return false;
    r->source = m.source;
    r->phase_name = m.phase;
    r->phase = phase_from_text(r->phase_name);
    r->replication_name = m.replication_name;
    if (r->replication_name && r->phase == PHASE_REVERSE) {
        r->direction = "reverse";
        r->stream_name = state_reverse_name(r->replication_name);
    } else if (r->replication_name && (r->phase < PHASE_DONE)) {
        r->direction = "forward";
        r->stream_name = xstrdup(r->replication_name);
    } /* done or rolled back: nothing follows */
    r->started_at = m.started_at;
    r->updated_at = m.updated_at;
    r->finished_at = m.finished_at;
    r->now = m.now;
    return true;
}

static const char *table_state(const Report *r, const TableStatus *t, bool in_flight)
{
    if (t->chunks > 0 && t->chunks_done == t->chunks)
        return r->phase == PHASE_FOLLOW        ? "replicating"
               : r->phase == PHASE_REVERSE     ? "cut over"
               : r->phase == PHASE_ROLLED_BACK ? "rolled back"
                                               : "copied";
    if (t->chunks_done > 0 || in_flight)
        return "copying";
    return "pending";
}

/* The migration's tables into r->tables, only those filter matches when
 * given (their table_no then in r->table_nos). */
static bool load_tables(PGconn *tgt, TableFilter *filter, Report *r)
{
    StateTableRow *rows;
    StrBuf nos;
    int n;

    if (!statequery_load_tables(tgt, &rows, &n))
        return false;
    r->ntables_all = n;
    r->tables = xcalloc((size_t)n + 1, sizeof(TableStatus));
    strbuf_init(&nos);
    strbuf_append(&nos, "{");
    for (int i = 0; i < n; i++) {
        const StateTableRow *row = &rows[i];
        TableStatus *t = &r->tables[r->ntables];

        if (filter && !tablefilter_match(filter, row->root_schema, row->root_name))
            continue;
        strbuf_appendf(&nos, "%s%d", r->ntables++ ? "," : "", row->table_no);

        t->name = names_display(row->schema_name, row->table_name);
        t->bytes_estimate = row->bytes_estimate;
        t->chunks = row->chunks;
        t->chunks_done = row->chunks_done;
        t->rows_done = row->rows_done;
        t->bytes_done = row->bytes_done;
        t->state = table_state(r, t, row->in_flight);
        if (t->chunks > 0 && t->chunks_done == t->chunks)
            r->tables_copied++;
    }
    strbuf_append(&nos, "}");
    if (filter)
        r->table_nos = strbuf_detach(&nos);
    strbuf_free(&nos);
    statequery_free_tables(rows, n);
    return true;
}

/* Rate from the actual bytes and rows; percent and ETA from the planner's
 * estimates (done chunks' estimate against all chunks'), so both sides of
 * the ratio are in the same unit. */
static void derive_copy(Report *r)
{
    bool copying = r->phase == PHASE_DATA || r->phase == PHASE_SCHEMA;

    r->rate_bytes_s = r->rate_rows_s = r->eta_s = -1;
    if (r->elapsed_s > 0 && r->chunks_done > 0) {
        r->rate_bytes_s = (double)r->bytes_done / r->elapsed_s;
        r->rate_rows_s = (double)r->rows_done / r->elapsed_s;
    }
    if (!copying && r->phase >= 0)
        r->percent = 100.0;
    else if (r->bytes_estimate > 0)
        r->percent = 100.0 * (double)r->est_done / (double)r->bytes_estimate;
    else
        r->percent = r->chunks > 0 ? 100.0 * r->chunks_done / r->chunks : 0.0;
    if (!copying && r->phase >= 0)
        r->eta_s = 0;
    else if (r->elapsed_s > 0 && r->est_done > 0)
        r->eta_s = (double)(r->bytes_estimate - r->est_done) * r->elapsed_s / (double)r->est_done;
}

static bool load_totals(PGconn *tgt, Report *r)
{
    StateCopyTotals t;

    if (!statequery_load_totals(tgt, r->table_nos, &t))
        return false;
    r->chunks = t.chunks;
    r->chunks_done = t.chunks_done;
    r->rows_done = t.rows_done;
    r->bytes_done = t.bytes_done;
    r->bytes_estimate = t.bytes_estimate;
    r->est_done = t.est_done;
    r->elapsed_s = t.elapsed_s;
    derive_copy(r);
    return true;
}

static bool load_post_data_and_events(PGconn *tgt, Report *r)
{
    return statequery_load_post_data(tgt, &r->post_data_done, &r->post_data_last_at) &&
           statequery_load_events(tgt, r->events, STATUS_EVENTS, &r->nevents) &&
           statequery_load_skips(tgt, r->skips, STATUS_SKIPS, &r->nskips) &&
           statequery_load_schema_changes(tgt, &r->ddl_replayed, &r->ddl_refused);
}

/* The latest runs of pgrelocate.cutovers into r->cutovers, oldest first. */
static bool load_cutovers(PGconn *tgt, Report *r)
{
    return statequery_load_cutovers(tgt, r->cutovers, STATUS_CUTOVERS, &r->ncutovers,
                                    &r->cutovers_total);
}

/* Origin progress: what the downstream side (the target, or the source in
 * reverse) applied and committed (durably). */
static bool load_origin(PGconn *down, Report *r)
{
    const char *p[1] = {r->stream_name};
    PGresult *res = conn_query(down, "status", origin_privilege_sql, 0, NULL, 1);

    if (!res)
        return false;
    r->origin_readable = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!r->origin_readable) {
        report_warn(r, xasprintf("this role may not read replication origin %s: applied "
                                 "position unknown (connect as the role that runs start)",
                                 r->stream_name));
        return true;
    }
    if (!(res = conn_query(down, "status", origin_sql, 1, p, 1)))
        return false;
    r->have_applied = !PQgetisnull(res, 0, 0) && lsn_parse(PQgetvalue(res, 0, 0), &r->applied_lsn);
    PQclear(res);
    return true;
}

/* Tables per sync state (state version 3 and later). */
static bool load_sync(PGconn *tgt, Report *r)
{
    PGresult *res = conn_query(tgt, "status",
                               "SELECT count(*) FROM pg_catalog.pg_attribute WHERE attrelid = "
                               "'pgrelocate.tables'::regclass AND attname = 'sync_state'",
                               0, NULL, 1);
    bool has = res && atoi(PQgetvalue(res, 0, 0)) > 0;

    PQclear(res);
    if (!has)
        return res != NULL; /* state older than version 3: nothing to show */
    res = conn_query(tgt, "status",
                     "SELECT count(*) FILTER (WHERE sync_state = 'pending'), count(*) FILTER "
                     "(WHERE sync_state IN ('resync', 'resync_ack', 'syncing')), count(*) FILTER "
                     "(WHERE sync_state = 'ready'), count(sync_state) FROM pgrelocate.tables",
                     0, NULL, 4);
    if (!res)
        return false;
    r->sync_pending = atoi(PQgetvalue(res, 0, 0));
    r->sync_syncing = atoi(PQgetvalue(res, 0, 1));
    r->sync_ready = atoi(PQgetvalue(res, 0, 2));
    r->sync_tracked = atoi(PQgetvalue(res, 0, 3)) > 0;
    PQclear(res);
    return true;
}

/* The oldest snapshot pgrelocate's sessions hold on the source: a sync
 * group's walsender since it exported its snapshot (its session's start),
 * any other session since its transaction began; and its xmin's age. */
static bool load_hold(PGconn *src, Report *r)
{
    PGresult *res = conn_query(
        src, "status",
        "SELECT count(*), coalesce(max(extract(epoch FROM pg_catalog.clock_timestamp() - CASE "
        "WHEN backend_type = 'walsender' THEN backend_start ELSE xact_start END)), 0), "
        "coalesce(max(pg_catalog.age(backend_xmin)), 0), (SELECT count(*) FROM "
        "pg_catalog.pg_replication_slots WHERE temporary AND slot_name LIKE 'pgrelocate\\_%') "
        "FROM pg_catalog.pg_stat_activity WHERE application_name LIKE 'pgrelocate%' AND "
        "backend_xmin IS NOT NULL AND pid <> pg_catalog.pg_backend_pid()",
        0, NULL, 4);

    if (!res)
        return false;
    r->hold_sessions = atoi(PQgetvalue(res, 0, 0));
    r->hold_age_s = real_value(res, 0, 1);
    r->hold_xmin_age = atoll(PQgetvalue(res, 0, 2));
    r->hold_temp_slots = atoi(PQgetvalue(res, 0, 3));
    r->hold_checked = true;
    PQclear(res);
    return true;
}

/* Read the target in one read-only snapshot, so the numbers agree. */
static bool load_target(PGconn *tgt, TableFilter *filter, Report *r)
{
    bool ok = conn_script(tgt, "status", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") &&
              load_migration(tgt, r) && load_tables(tgt, filter, r) && load_totals(tgt, r) &&
              load_post_data_and_events(tgt, r) && load_cutovers(tgt, r) && load_sync(tgt, r) &&
              (!r->direction || strcmp(r->direction, "forward") != 0 || load_origin(tgt, r));

    if (PQtransactionStatus(tgt) != PQTRANS_IDLE)
        ok = conn_script(tgt, "status", ok ? "COMMIT" : "ROLLBACK") && ok;
    return ok;
}

/* Lag: the source's WAL position minus what the target holds, which is the
 * origin's progress or, when further, the slot's confirmed_flush_lsn (start
 * confirms only what is durable on the target, and when idle the source's
 * keepalive position).  Seconds come from the walsender's own measurement
 * (pg_stat_replication); pgrelocate does not store commit times, so without
 * it they are unknown, except that no bytes behind means 0 s. */
static void derive_lag(Report *r)
{
    Lsn done = r->have_applied ? r->applied_lsn : LSN_INVALID;

    if (r->slot.exists && r->slot.confirmed_flush > done)
        done = r->slot.confirmed_flush;
    r->lag_bytes = -1;
    if (!r->have_source_lsn || done == LSN_INVALID) {
        r->lag_s = -1;
        return;
    }
    r->lag_bytes = r->source_lsn > done ? (int64_t)(r->source_lsn - done) : 0;
    if (r->lag_bytes == 0)
        r->lag_s = 0;
}

static void warn_about_slot(Report *r)
{
    char size[32];
    const char *name = r->replication_name;

    if (r->phase >= PHASE_DONE)
        return; /* after a cutover (or rollback) the forward slot is no longer used */
    if (!r->slot.exists) {
        report_warn(r, xasprintf("replication slot %s does not exist on the source: changes "
                                 "after it was lost cannot be followed",
                                 name));
        return;
    }
    if (!r->slot.active && r->phase != PHASE_DONE)
        report_warn(r, xasprintf("replication slot %s is not in use (start is not running): "
                                 "the source keeps WAL for it until start runs again or "
                                 "cleanup drops it",
                                 name));
    if (strcmp(r->slot.wal_status, "lost") == 0 || strcmp(r->slot.wal_status, "unreserved") == 0)
        report_warn(r, xasprintf("replication slot %s has wal_status %s: the source removed or "
                                 "is about to remove WAL it still needs",
                                 name, r->slot.wal_status));
    if (r->slot.retained_bytes > STATUS_MAX_RETAINED_WAL_BYTES)
        report_warn(r, xasprintf("the slot keeps %s of WAL on the source (more than 20 GB): "
                                 "check that start runs and keeps up, and the source's free disk",
                                 size_format_bytes(r->slot.retained_bytes, size, sizeof(size))));
}

/* The stream's upstream side (the source; the target in reverse): its slot,
 * WAL position and the walsender's lag; then the lag.  In reverse, the
 * applied position is the reverse origin's on the source. */
static bool load_source(PGconn *src, PGconn *tgt, Report *r)
{
    bool reverse = strcmp(r->direction, "reverse") == 0;
    PGconn *up = reverse ? tgt : src;
    char pid[16];
    const char *p[1] = {pid};
    PGresult *res;

    if (reverse && !load_origin(src, r))
        return false;
    if (!slot_info(up, r->stream_name, &r->slot))
        return false;
    snprintf(pid, sizeof(pid), "%d", r->slot.active_pid);
    if (!(res = conn_query(up, "status", source_sql, 1, p, 2)))
        return false;
    r->have_source_lsn =
        !PQgetisnull(res, 0, 0) && lsn_parse(PQgetvalue(res, 0, 0), &r->source_lsn);
    r->lag_s = real_value(res, 0, 1);
    PQclear(res);
    r->source_checked = true;
    if (!reverse && !load_hold(src, r))
        return false;
    derive_lag(r);
    warn_about_slot(r);
    return true;
}

/* ---- JSON ---------------------------------------------------------------
 * One document per report (pretty-printed; with --watch one compact
 * document per line).  Keys are stable; unknown values are null:
 *   format_version  1
 *   at              server time of the report, UTC ISO 8601
 *   source          source as recorded by copy/start (never a password)
 *   mode            "copy" or "start"
 *   phase           schema, data, large-objects, post-data, sequences,
 *                   analyze, follow, done
 *   replication_name, started_at, updated_at, finished_at
 *   copy            {tables, tables_copied, chunks, chunks_done, rows_done,
 *                    bytes_done, bytes_estimate, percent, elapsed_seconds,
 *                    bytes_per_second, rows_per_second, eta_seconds}
 *                   rows_done = sum(rows_copied) of done chunks; percent and
 *                   eta from the planner's per-chunk estimates
 *   tables_filter   --tables as given, or null; then copy and tables cover
 *                   only the matching tables
 *   tables_in_migration  how many tables the migration has
 *   sync            null for a copy under one snapshot; else {ready, syncing,
 *                   pending}: tables per per-table sync state
 *   source_hold     null without --source; else {sessions, oldest_seconds,
 *                   xmin_age, temporary_slots}: snapshots pgrelocate holds
 *                   on the source (VACUUM cannot remove rows newer than the
 *                   oldest)
 *   tables          [{name, state (pending, copying, copied, replicating),
 *                     chunks, chunks_done, rows_done, bytes_done,
 *                     bytes_estimate}], biggest estimate first, all tables
 *                   (that --tables matches)
 *   post_data       {entries_done, last_done_at} (the total is not recorded)
 *   replication     null for copy; else {direction, stream, applied_lsn,
 *                    source_checked, source_lsn, lag_bytes, lag_seconds,
 *                    slot}: the stream that runs in this phase, direction
 *                    "forward" until the cutover, "reverse" after it (the
 *                    target's changes to the source: source_lsn and slot
 *                    are then the target's, applied_lsn the source's), null
 *                    once done or rolled back (nothing runs; every value
 *                    null); slot is null without --source, else {exists,
 *                    active, wal_status, confirmed_flush_lsn,
 *                    retained_wal_bytes}
 *   warnings        [text]
 *   events          [{at, level, context, message}]: up to 5, errors first,
 *                    then newest first
 *   skipped_transactions [{at, message}]: what --skip-transaction left out,
 *                    oldest first (up to 20)
 *   cutovers        {total, latest: [{id, direction (cutover, rollback),
 *                    dry_run, outcome (done, aborted, recovered; null while
 *                    unfinished), step, reason, pause_ms, started_at,
 *                    finished_at, fence_lsn}]}: the latest 5, oldest first
 */

static json_t *opt_real(double v)
{
    return v < 0 || !isfinite(v) ? json_null() : json_real(round(v * 1000.0) / 1000.0);
}

static json_t *opt_int(int64_t v)
{
    return v < 0 ? json_null() : json_integer((json_int_t)v);
}

/* Text from the server is UTF-8 (client_encoding pinned); anything else
 * still must not lose the whole document. */
static json_t *opt_str(const char *s)
{
    json_t *j = s ? json_string(s) : json_null();

    return j ? j : json_string("(not valid UTF-8)");
}

static json_t *opt_lsn(bool have, Lsn lsn)
{
    char text[LSN_TEXT_SIZE];

    return have ? json_string(lsn_format(lsn, text)) : json_null();
}

static json_t *json_copy_totals(const Report *r)
{
    return json_pack(
        "{s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o}", "tables", r->ntables,
        "tables_copied", r->tables_copied, "chunks", r->chunks, "chunks_done", r->chunks_done,
        "rows_done", (json_int_t)r->rows_done, "bytes_done", (json_int_t)r->bytes_done,
        "bytes_estimate", (json_int_t)r->bytes_estimate, "percent", opt_real(r->percent),
        "elapsed_seconds", opt_real(r->elapsed_s), "bytes_per_second", opt_real(r->rate_bytes_s),
        "rows_per_second", opt_real(r->rate_rows_s), "eta_seconds", opt_real(r->eta_s));
}

static json_t *json_tables(const Report *r)
{
    json_t *a = json_array();

    for (int i = 0; i < r->ntables; i++) {
        const TableStatus *t = &r->tables[i];

        json_array_append_new(
            a, json_pack("{s:o, s:s, s:i, s:i, s:I, s:I, s:I}", "name", opt_str(t->name), "state",
                         t->state, "chunks", t->chunks, "chunks_done", t->chunks_done, "rows_done",
                         (json_int_t)t->rows_done, "bytes_done", (json_int_t)t->bytes_done,
                         "bytes_estimate", (json_int_t)t->bytes_estimate));
    }
    return a;
}

static json_t *json_replication(const Report *r)
{
    json_t *slot = json_null();

    if (!r->replication_name)
        return json_null();
    if (r->source_checked)
        slot = json_pack("{s:b, s:b, s:o, s:o, s:o}", "exists", r->slot.exists, "active",
                         r->slot.active, "wal_status",
                         r->slot.exists ? json_string(r->slot.wal_status) : json_null(),
                         "confirmed_flush_lsn",
                         opt_lsn(r->slot.exists && r->slot.confirmed_flush != LSN_INVALID,
                                 r->slot.confirmed_flush),
                         "retained_wal_bytes",
                         r->slot.exists ? json_integer(r->slot.retained_bytes) : json_null());
    return json_pack("{s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:o}", "direction", opt_str(r->direction),
                     "stream", opt_str(r->stream_name), "applied_lsn",
                     opt_lsn(r->have_applied, r->applied_lsn), "source_checked", r->source_checked,
                     "source_lsn", opt_lsn(r->have_source_lsn, r->source_lsn), "lag_bytes",
                     opt_int(r->source_checked ? r->lag_bytes : -1), "lag_seconds",
                     opt_real(r->source_checked ? r->lag_s : -1), "slot", slot);
}

static json_t *json_events_and_warnings(const Report *r, json_t **warnings)
{
    json_t *a = json_array();

    for (int i = 0; i < r->nevents; i++)
        json_array_append_new(a, json_pack("{s:o, s:o, s:o, s:o}", "at", opt_str(r->events[i].at),
                                           "level", opt_str(r->events[i].level), "context",
                                           opt_str(r->events[i].context), "message",
                                           opt_str(r->events[i].message)));
    *warnings = json_array();
    for (int i = 0; i < r->nwarnings; i++)
        json_array_append_new(*warnings, json_string(r->warnings[i]));
    return a;
}

static json_t *json_cutovers(const Report *r)
{
    json_t *a = json_array();

    for (int i = 0; i < r->ncutovers; i++) {
        const StateCutoverRecord *c = &r->cutovers[i];

        json_array_append_new(
            a,
            json_pack("{s:i, s:o, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", c->id,
                      "direction", opt_str(c->direction), "dry_run", c->dry_run, "outcome",
                      opt_str(c->outcome), "step", opt_str(c->step), "reason", opt_str(c->reason),
                      "pause_ms", opt_int(c->pause_ms), "started_at", opt_str(c->started_at),
                      "finished_at", opt_str(c->finished_at), "fence_lsn", opt_str(c->fence_lsn)));
    }
    return json_pack("{s:i, s:o}", "total", r->cutovers_total, "latest", a);
}

/* [{at, message}] of the transactions --skip-transaction left out. */
static json_t *json_skips(const Report *r)
{
    json_t *a = json_array();

    for (int i = 0; i < r->nskips; i++)
        json_array_append_new(a, json_pack("{s:o, s:o}", "at", opt_str(r->skips[i].at), "message",
                                           opt_str(r->skips[i].message)));
    return a;
}

static void print_json(const Report *r, bool compact)
{
    json_t *warnings, *events = json_events_and_warnings(r, &warnings);
    json_t *root = json_pack(
        "{s:i, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:i, s:o, s:o, s:o, s:{s:I, s:o}, s:o, "
        "s:o, s:o, s:o, s:{s:I, s:I}, s:o, s:o}",
        "format_version", 1, "at", opt_str(r->now), "source", opt_str(r->source), "mode",
        r->replication_name ? "start" : "copy", "phase", opt_str(r->phase_name), "replication_name",
        opt_str(r->replication_name), "started_at", opt_str(r->started_at), "updated_at",
        opt_str(r->updated_at), "finished_at", opt_str(r->finished_at), "tables_filter",
        opt_str(r->filter), "tables_in_migration", r->ntables_all, "copy", json_copy_totals(r),
        "tables", json_tables(r), "replication", json_replication(r), "post_data", "entries_done",
        (json_int_t)r->post_data_done, "last_done_at", opt_str(r->post_data_last_at), "warnings",
        warnings, "events", events, "cutovers", json_cutovers(r), "skipped_transactions",
        json_skips(r), "schema_changes", "replayed", (json_int_t)r->ddl_replayed, "refused",
        (json_int_t)r->ddl_refused, "sync",
        r->sync_tracked ? json_pack("{s:i, s:i, s:i}", "ready", r->sync_ready, "syncing",
                                    r->sync_syncing, "pending", r->sync_pending)
                        : json_null(),
        "source_hold",
        r->hold_checked
            ? json_pack("{s:i, s:f, s:I, s:i}", "sessions", r->hold_sessions, "oldest_seconds",
                        r->hold_age_s, "xmin_age", (json_int_t)r->hold_xmin_age, "temporary_slots",
                        r->hold_temp_slots)
            : json_null());
    char *text =
        root ? json_dumps(root, JSON_PRESERVE_ORDER | (compact ? JSON_COMPACT : JSON_INDENT(2)))
             : NULL;

    if (text)
        printf("%s\n", text);
    else
        log_error("[status] could not build the JSON document");
    free(text);
    json_decref(root);
}

/* ---- text ---------------------------------------------------------------- */

/* 1234567 -> "1,234,567" into buf (at least 32 bytes); returns buf. */
static char *fmt_count(int64_t n, char *buf, size_t len)
{
    char digits[32];
    int nd = snprintf(digits, sizeof(digits), "%lld", (long long)(n < 0 ? -n : n));
    size_t o = 0;

    if (n < 0 && o + 1 < len)
        buf[o++] = '-';
    for (int i = 0; i < nd && o + 2 < len; i++) {
        if (i > 0 && (nd - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static void print_copy_line(const Report *r, FILE *out)
{
    char rows[32], done[32], est[32], rate[32], rrate[32], el[32], eta[32];

    fprintf(out, "copy         %d/%d tables, %d/%d chunks; %s rows, %s (%.1f%% of ~%s)\n",
            r->tables_copied, r->ntables, r->chunks_done, r->chunks,
            fmt_count(r->rows_done, rows, sizeof(rows)),
            size_format_bytes(r->bytes_done, done, sizeof(done)), r->percent,
            size_format_bytes(r->bytes_estimate, est, sizeof(est)));
    if (r->rate_bytes_s < 0) {
        fprintf(out, "             rate unknown until a chunk is done\n");
        return;
    }
    fprintf(out, "             %s/s, %s rows/s over %s; ETA %s\n",
            size_format_bytes((int64_t)r->rate_bytes_s, rate, sizeof(rate)),
            fmt_count((int64_t)r->rate_rows_s, rrate, sizeof(rrate)),
            size_format_seconds(r->elapsed_s, el, sizeof(el)),
            r->eta_s < 0 ? "unknown" : size_format_seconds(r->eta_s, eta, sizeof(eta)));
}

static void print_replication_line(const Report *r, FILE *out)
{
    char a[LSN_TEXT_SIZE], s[LSN_TEXT_SIZE], lag[32], kept[32];
    bool reverse = r->direction && strcmp(r->direction, "reverse") == 0;
    const char *up = reverse ? "target" : "source";

    if (!r->direction) {
        fprintf(out, "replication  %s: no stream runs (phase %s)\n", r->replication_name,
                r->phase_name);
        return;
    }
    if (reverse)
        fprintf(out, "replication  reverse, target to source, %s: applied on the source %s",
                r->stream_name, r->have_applied ? lsn_format(r->applied_lsn, a) : "unknown");
    else
        fprintf(out, "replication  %s: applied %s", r->stream_name,
                r->have_applied ? lsn_format(r->applied_lsn, a) : "none yet");
    if (!r->source_checked) {
        fprintf(out, "; give --source for %slag and retained WAL\n",
                reverse ? "the applied position, " : "");
        return;
    }
    fprintf(out, "; %s at %s", up, r->have_source_lsn ? lsn_format(r->source_lsn, s) : "unknown");
    if (r->lag_bytes < 0)
        fprintf(out, "; lag unknown\n");
    else if (r->lag_s < 0)
        fprintf(out, "; lag %s (seconds unknown: the %s measures none now)\n",
                size_format_bytes(r->lag_bytes, lag, sizeof(lag)), up);
    else
        fprintf(out, "; lag %s (%.1f s)\n", size_format_bytes(r->lag_bytes, lag, sizeof(lag)),
                r->lag_s);
    if (r->slot.exists)
        fprintf(out, "slot         %s, wal_status %s, retained WAL on the %s %s\n",
                r->slot.active ? "active" : "inactive", r->slot.wal_status, up,
                size_format_bytes(r->slot.retained_bytes, kept, sizeof(kept)));
}

static void print_tables(const Report *r, FILE *out)
{
    int shown = r->ntables < STATUS_TEXT_TABLES ? r->ntables : STATUS_TEXT_TABLES;
    int w = 5;

    for (int i = 0; i < shown; i++)
        if ((int)strlen(r->tables[i].name) > w)
            w = (int)strlen(r->tables[i].name);
    if (w > 48)
        w = 48;
    fprintf(out, "\n%-*s  %-11s  %9s  %15s  %10s  %10s\n", w, "TABLE", "STATE", "CHUNKS", "ROWS",
            "BYTES", "ESTIMATE");
    for (int i = 0; i < shown; i++) {
        const TableStatus *t = &r->tables[i];
        char chunks[32], rows[32], done[32], est[32];

        snprintf(chunks, sizeof(chunks), "%d/%d", t->chunks_done, t->chunks);
        fprintf(out, "%-*.*s  %-11s  %9s  %15s  %10s  %10s\n", w, w, t->name, t->state, chunks,
                fmt_count(t->rows_done, rows, sizeof(rows)),
                size_format_bytes(t->bytes_done, done, sizeof(done)),
                size_format_bytes(t->bytes_estimate, est, sizeof(est)));
    }
    if (r->ntables > shown)
        fprintf(out, "... and %d more\n", r->ntables - shown);
}

/* One line per run, oldest first:
 *   2024-05-02T10:00:00Z  cutover (dry run)  done        paused 41 ms
 *   2024-05-02T10:05:00Z  rollback           aborted     paused 2003 ms: <reason>
 *   2024-05-02T10:09:00Z  cutover            unfinished  at step switching */
static void print_cutovers(const Report *r, FILE *out)
{
    if (r->ncutovers == 0)
        return;
    if (r->cutovers_total > r->ncutovers)
        fprintf(out, "\ncutovers and rollbacks (%d, the latest %d shown, most recent last)\n",
                r->cutovers_total, r->ncutovers);
    else
        fprintf(out, "\ncutovers and rollbacks (%d, most recent last)\n", r->cutovers_total);
    for (int i = 0; i < r->ncutovers; i++) {
        const StateCutoverRecord *c = &r->cutovers[i];
        char what[32], pause[48];

        snprintf(what, sizeof(what), "%s%s", c->direction, c->dry_run ? " (dry run)" : "");
        if (!c->outcome)
            snprintf(pause, sizeof(pause), "at step %s", c->step);
        else if (c->pause_ms < 0)
            snprintf(pause, sizeof(pause), "no pause");
        else
            snprintf(pause, sizeof(pause), "paused %lld ms", (long long)c->pause_ms);
        fprintf(out, "%s  %-18s  %-10s  %s%s%s\n", c->started_at, what,
                c->outcome ? c->outcome : "unfinished", pause, c->reason ? ": " : "",
                c->reason ? c->reason : "");
    }
}

static void print_text(const Report *r, FILE *out)
{
    char count[32];

    fprintf(out, "pgrelocate status at %s\n", r->now);
    fprintf(out, "migration    %s from %s; phase %s; started %s, updated %s%s%s\n",
            r->replication_name ? "start" : "copy", r->source, r->phase_name, r->started_at,
            r->updated_at,
            !r->finished_at       ? ""
            : r->replication_name ? ", copy finished "
                                  : ", finished ",
            r->finished_at ? r->finished_at : "");
    if (r->filter)
        fprintf(out, "selection    --tables \"%s\": %d of the migration's %d tables shown\n",
                r->filter, r->ntables, r->ntables_all);
    print_copy_line(r, out);
    fprintf(out, "post-data    %s entries restored%s%s\n",
            fmt_count(r->post_data_done, count, sizeof(count)),
            r->post_data_last_at ? ", last at " : "",
            r->post_data_last_at ? r->post_data_last_at : "");
    if (r->replication_name)
        print_replication_line(r, out);
    if (r->ddl_replayed > 0 || r->ddl_refused > 0)
        fprintf(out, "schema       %lld schema changes replayed, %lld refused\n",
                (long long)r->ddl_replayed, (long long)r->ddl_refused);
    if (r->sync_tracked)
        fprintf(out, "sync         tables at their own points: %d ready, %d syncing, %d pending\n",
                r->sync_ready, r->sync_syncing, r->sync_pending);
    if (r->hold_checked)
        fprintf(
            out, "source hold  %s: oldest %.1f s (backend_xmin age %lld), %d temporary slot%s\n",
            r->hold_sessions ? "snapshots held" : "no snapshot held", r->hold_age_s,
            (long long)r->hold_xmin_age, r->hold_temp_slots, r->hold_temp_slots == 1 ? "" : "s");
    for (int i = 0; i < r->nwarnings; i++)
        fprintf(out, "WARNING: %s\n", r->warnings[i]);
    if (r->ntables > 0)
        print_tables(r, out);
    print_cutovers(r, out);
    if (r->nskips > 0)
        fprintf(out, "\nsource transactions left out (--skip-transaction; repair their rows by "
                     "hand, verify names them)\n");
    for (int i = 0; i < r->nskips; i++)
        fprintf(out, "%s  %s\n", r->skips[i].at, r->skips[i].message);
    if (r->nevents > 0)
        fprintf(out, "\nlast events (errors first)\n");
    for (int i = 0; i < r->nevents; i++)
        fprintf(out, "%s  %-7s [%s] %s\n", r->events[i].at, r->events[i].level,
                r->events[i].context, r->events[i].message);
}

/* ---- the command --------------------------------------------------------- */

/* (Re)open what is closed or broken.  The source only when given and the
 * migration follows changes. */
static bool ensure_conn(PGconn **conn, const ConnInfo *ci, ConnSide side)
{
    ConnOpts co = {.side = side,
                   .app_name = "pgrelocate status",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};

    if (*conn && PQstatus(*conn) == CONNECTION_OK)
        return true;
    conn_close(*conn);
    *conn = conn_open(ci, &co);
    return *conn != NULL;
}

/* Print a report; text is built first so a redraw never shows a blank
 * screen while the servers answer. */
static void emit(const StatusCtx *c, const Report *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem;

    if (c->o->json) {
        print_json(r, c->o->watch);
        fflush(stdout);
        return;
    }
    if (!(mem = open_memstream(&text, &len))) {
        print_text(r, stdout);
        fflush(stdout);
        return;
    }
    print_text(r, mem);
    fclose(mem);
    if (c->clear_screen)
        fputs("\033[H\033[2J", stdout);
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    free(text);
}

/* Every --tables pattern must match a table of the migration (checked
 * once: the filter remembers what matched). */
static bool filter_used(const StatusCtx *c)
{
    char *unmatched = c->filter ? tablefilter_unmatched(c->filter) : NULL;

    if (!unmatched)
        return true;
    log_msg(LOG_ERROR,
            "Only the tables this migration copies can be shown; a partition goes by its "
            "partitioned table's name.",
            "Check the names (pgrelocate status without --tables lists them all); a pattern "
            "without a dot matches the table name in every schema.",
            "--tables pattern%s %s matched no table of this migration",
            strchr(unmatched, ',') ? "s" : "", unmatched);
    free(unmatched);
    return false;
}

/* One report.  *no_state: nothing to show (the target holds no migration,
 * or --tables matches none of its tables). */
static bool report_once(StatusCtx *c, bool *no_state)
{
    Report r = {.lag_bytes = -1, .lag_s = -1, .filter = c->spec};
    bool exists, ok;

    if (!ensure_conn(&c->tgt, c->tci, CONN_TARGET) || !state_open(c->tgt, STATE_READ, &exists))
        return false;
    if (!exists) {
        *no_state = true;
        log_msg(LOG_ERROR, "The target database holds no pgrelocate state (schema pgrelocate).",
                "Start one with pgrelocate copy or pgrelocate start.", "no migration here");
        return false;
    }
    if (!load_target(c->tgt, c->filter, &r)) {
        report_free(&r);
        return false;
    }
    if (!filter_used(c)) {
        *no_state = true;
        report_free(&r);
        return false;
    }
    ok = true;
    if (r.direction && c->sci) {
        if (!ensure_conn(&c->src, c->sci, CONN_SOURCE) || !load_source(c->src, c->tgt, &r)) {
            report_warn(&r, xstrdup("could not read the slot on the source (see the error above)"));
            ok = false;
        }
    }
    emit(c, &r);
    report_free(&r);
    return ok;
}

/* Sleep ms, waking early when a signal asks to stop. */
static void pause_ms(int64_t ms)
{
    for (int64_t left = ms; left > 0 && !interrupt_requested; left -= 100) {
        struct timespec ts = {0, (left < 100 ? left : 100) * 1000000L};

        nanosleep(&ts, NULL);
    }
}

static int watch(StatusCtx *c)
{
    bool no_state = false;

    c->clear_screen = isatty(STDOUT_FILENO) && !c->o->json;
    interrupt_catch();
    for (int n = 0; !interrupt_requested; n++) {
        if (n > 0 && !c->clear_screen && !c->o->json)
            fputs("\n", stdout);
        report_once(c, &no_state);
        if (no_state)
            return EXIT_FAILED;
        pause_ms(c->o->interval_ms > 0 ? c->o->interval_ms : 2000);
    }
    return EXIT_OK;
}

int cmd_status(const Options *o)
{
    StatusCtx c = {.o = o};
    char err[256];
    bool no_state = false;
    int rc = EXIT_FAILED;

    c.spec = cli_join_list(&o->tables);
    if (c.spec && !(c.filter = tablefilter_parse(c.spec, err, sizeof(err)))) {
        log_msg(LOG_ERROR, NULL, "See \"pgrelocate status --help\" for the pattern syntax.",
                "invalid --tables: %s", err);
        rc = EXIT_USAGE;
    } else if (!(c.tci = conninfo_parse(o->target, err, sizeof(err))))
        log_error("invalid --target connection string: %s", err);
    else if (o->source && !(c.sci = conninfo_parse(o->source, err, sizeof(err))))
        log_error("invalid --source connection string: %s", err);
    else if (o->watch)
        rc = watch(&c);
    else
        rc = report_once(&c, &no_state) ? EXIT_OK : EXIT_FAILED;
    conn_close(c.tgt);
    conn_close(c.src);
    conninfo_destroy(c.tci);
    conninfo_destroy(c.sci);
    tablefilter_destroy(c.filter);
    free(c.spec);
    return rc;
}
