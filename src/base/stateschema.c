/*
 * stateschema.c: every CREATE of the pgrelocate schema, its version, and
 * the upgrade of older state.  Owns the DDL only: what the tables hold is
 * read and written by state.c (migration, plan, events, cutovers),
 * statequery.c (status) and syncpoint.c (the sync point protocol).
 */
#include "stateschema.h"

#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One statement of the schema and the version that brought it.  Each can
 * run again (IF NOT EXISTS, OR REPLACE): an upgrade from version v runs the
 * steps of later versions, over whatever version v made on demand. */
typedef struct SchemaStep {
    int since;
    const char *sql;
} SchemaStep;

static const SchemaStep schema_steps[] = {
    {1, "CREATE TABLE IF NOT EXISTS pgrelocate.migration ("
        "  id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),"
        "  source text NOT NULL, source_database text,"
        "  phase text NOT NULL,"
        "  replication_name text, slot_lsn pg_lsn, tables_filter text,"
        "  snapshot text, snapshot_backend_pid int, snapshot_taken_at timestamptz,"
        "  schema_archive bytea,"
        "  started_at timestamptz NOT NULL DEFAULT now(),"
        "  updated_at timestamptz NOT NULL DEFAULT now(),"
        "  finished_at timestamptz)"},
    {1, "CREATE TABLE IF NOT EXISTS pgrelocate.tables ("
        "  table_no int PRIMARY KEY, schema_name text NOT NULL, table_name text NOT NULL,"
        "  columns text NOT NULL, copy_binary bool NOT NULL,"
        "  bytes_estimate bigint NOT NULL, heap_blocks bigint NOT NULL,"
        "  toast_bytes bigint NOT NULL DEFAULT 0,"
        "  UNIQUE (schema_name, table_name))"},
    {1, "CREATE TABLE IF NOT EXISTS pgrelocate.chunks ("
        "  table_no int NOT NULL REFERENCES pgrelocate.tables, chunk_no int NOT NULL,"
        "  nchunks int NOT NULL, blk_start bigint NOT NULL, blk_end bigint NOT NULL,"
        "  est_bytes bigint NOT NULL, plan_order int NOT NULL DEFAULT 0,"
        "  state text NOT NULL DEFAULT 'pending'"
        "    CHECK (state IN ('pending', 'done')),"
        "  rows_copied bigint, bytes_copied bigint, seconds float8, done_at timestamptz,"
        "  PRIMARY KEY (table_no, chunk_no))"},
    {1, "CREATE TABLE IF NOT EXISTS pgrelocate.post_data ("
        "  dump_id int PRIMARY KEY, description text NOT NULL,"
        "  done_at timestamptz NOT NULL DEFAULT now())"},
    {1, "CREATE TABLE IF NOT EXISTS pgrelocate.replica_identity ("
        "  qualified_name text PRIMARY KEY, original \"char\" NOT NULL)"},
    {1, "CREATE TABLE IF NOT EXISTS pgrelocate.events ("
        "  id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),"
        "  level text NOT NULL, context text NOT NULL, message text NOT NULL)"},
    {1, "CREATE OR REPLACE VIEW pgrelocate.table_progress AS"
        "  SELECT t.schema_name, t.table_name, count(*) AS chunks,"
        "         count(*) FILTER (WHERE c.state = 'done') AS chunks_done,"
        "         sum(c.rows_copied) AS rows_copied, sum(c.bytes_copied) AS bytes_copied,"
        "         CASE WHEN bool_and(c.state = 'done') THEN 'copied'"
        "              WHEN bool_or(c.state = 'done') THEN 'copying' ELSE 'pending' END AS state"
        "  FROM pgrelocate.tables t JOIN pgrelocate.chunks c USING (table_no)"
        "  GROUP BY t.schema_name, t.table_name"},
    /* cutover and rollback runs (cutover.c); version 1 made it at the first */
    {2, "CREATE TABLE IF NOT EXISTS pgrelocate.cutovers ("
        "  id serial PRIMARY KEY,"
        "  direction text NOT NULL CHECK (direction IN ('cutover', 'rollback')),"
        "  dry_run bool NOT NULL,"
        "  database text,"
        "  step text NOT NULL,"
        "  old_host text, old_port text, old_dbname text,"
        "  new_host text, new_port text, new_dbname text,"
        "  reverse_name text,"
        "  fence_lsn pg_lsn,"
        "  pause_ms bigint,"
        "  outcome text CHECK (outcome IN ('done', 'aborted', 'recovered')),"
        "  reason text,"
        "  started_at timestamptz NOT NULL DEFAULT now(),"
        "  finished_at timestamptz)"},
    /* the sync point protocol (syncpoint.c); version 1 made it when a
     * follower or a caller first needed it.  One live row at a time. */
    {2, "CREATE TABLE IF NOT EXISTS pgrelocate.sync_points ("
        "  id bigserial PRIMARY KEY,"
        "  state text NOT NULL DEFAULT 'requested',"
        "  target_lsn pg_lsn, applied_lsn pg_lsn,"
        "  expires_at timestamptz NOT NULL,"
        "  requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
        "  reached_at timestamptz, detail text)"},
    {2, "CREATE UNIQUE INDEX IF NOT EXISTS sync_points_one_live ON pgrelocate.sync_points "
        "((true)) WHERE state IN ('requested', 'holding', 'advancing', 'reached', 'finish')"},
    {2, "CREATE TABLE IF NOT EXISTS pgrelocate.schema_version ("
        "  id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),"
        "  version int NOT NULL,"
        "  written_by text NOT NULL,"
        "  upgraded_from int,"
        "  updated_at timestamptz NOT NULL DEFAULT now())"},
    /* per-table sync (tablesync.h): NULL sync_state for a table copied
     * under the one snapshot of the slot; 'ready' commits with its last
     * chunk, at sync_lsn; resync asks ('resync'), the follower answers
     * ('resync_ack'), resync copies ('syncing' at sync_lsn); a partition's
     * root names the group it syncs in */
    {3, "ALTER TABLE pgrelocate.tables"
        "  ADD COLUMN IF NOT EXISTS sync_state text CHECK (sync_state IN ('pending', 'ready',"
        "    'resync', 'resync_ack', 'syncing')),"
        "  ADD COLUMN IF NOT EXISTS sync_lsn pg_lsn,"
        "  ADD COLUMN IF NOT EXISTS root_schema text,"
        "  ADD COLUMN IF NOT EXISTS root_name text"},
};

#define N_SCHEMA_STEPS ((int)(sizeof(schema_steps) / sizeof(schema_steps[0])))

/* Run the steps newer than version from, in the caller's transaction. */
static bool run_steps(PGconn *tgt, int from)
{
    for (int i = 0; i < N_SCHEMA_STEPS; i++)
        if (schema_steps[i].since > from && !conn_script(tgt, "state", schema_steps[i].sql))
            return false;
    return true;
}

/* Record STATE_VERSION (upgraded_from: 0 for a new schema). */
static bool write_version(PGconn *tgt, int from)
{
    char version[16], previous[16];
    const char *p[3] = {version, PGRELOCATE_VERSION, from > 0 ? previous : NULL};

    snprintf(version, sizeof(version), "%d", STATE_VERSION);
    snprintf(previous, sizeof(previous), "%d", from);
    return conn_command(tgt, "state",
                        "INSERT INTO pgrelocate.schema_version (version, written_by, "
                        "upgraded_from) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
                        "version = EXCLUDED.version, written_by = EXCLUDED.written_by, "
                        "upgraded_from = EXCLUDED.upgraded_from, updated_at = now()",
                        3, p);
}

bool state_create(PGconn *tgt, const char *source_display, const char *source_dbname,
                  const char *replication_name, const char *tables_filter)
{
    const char *params[4] = {source_display, source_dbname, replication_name, tables_filter};

    if (!conn_script(tgt, "state",
                     "BEGIN; CREATE SCHEMA pgrelocate; COMMENT ON SCHEMA pgrelocate IS "
                     "'pgrelocate migration state; removed by pgrelocate cleanup'") ||
        !run_steps(tgt, 0) || !write_version(tgt, 0))
        goto fail;
    if (!conn_command(tgt, "state",
                      "INSERT INTO pgrelocate.migration (source, source_database, phase, "
                      "replication_name, tables_filter) VALUES ($1, $2, 'schema', $3, $4)",
                      4, params))
        goto fail;
    return conn_script(tgt, "state", "COMMIT");
fail:
    conn_script(tgt, "state", "ROLLBACK");
    return false;
}

bool state_read_version(PGconn *tgt, int *version)
{
    PGresult *res = conn_query(tgt, "state",
                               "SELECT pg_catalog.to_regclass('pgrelocate.migration') IS NOT NULL, "
                               "pg_catalog.to_regclass('pgrelocate.schema_version') IS NOT NULL",
                               0, NULL, 2);
    bool has_migration, has_version;

    if (!res)
        return false;
    has_migration = PQgetvalue(res, 0, 0)[0] == 't';
    has_version = PQgetvalue(res, 0, 1)[0] == 't';
    PQclear(res);
    *version = has_version || has_migration ? 1 : 0;
    if (!has_version)
        return true;
    res =
        conn_query(tgt, "state", "SELECT max(version) FROM pgrelocate.schema_version", 0, NULL, 1);
    if (!res)
        return false;
    if (!PQgetisnull(res, 0, 0))
        *version = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return true;
}

static void refuse_newer(int version)
{
    char *detail = xasprintf("The target's pgrelocate schema is at version %d; this pgrelocate "
                             "(%s) understands versions 1 to %d.",
                             version, PGRELOCATE_VERSION, STATE_VERSION);

    log_msg(LOG_ERROR, detail,
            "Run this command with the pgrelocate release that last worked on this migration, "
            "or a newer one.",
            "the pgrelocate state on the target is newer than this pgrelocate");
    free(detail);
}

/* Bring older state up to STATE_VERSION: one transaction, under
 * a lock that one upgrader at a time takes (SHARE UPDATE EXCLUSIVE lets the
 * state's readers and writers go on).  Another process may have upgraded
 * it meanwhile: then nothing is left to do. */
static bool upgrade(PGconn *tgt)
{
    char message[128];
    const char *p[1] = {message};
    int now = 0;

    if (!conn_script(tgt, "state",
                     "BEGIN; LOCK TABLE pgrelocate.migration IN SHARE UPDATE EXCLUSIVE MODE") ||
        !state_read_version(tgt, &now))
        goto fail;
    if (now >= STATE_VERSION) {
        if (!conn_script(tgt, "state", "COMMIT"))
            return false;
        if (now > STATE_VERSION)
            refuse_newer(now);
        return now == STATE_VERSION;
    }
    snprintf(message, sizeof(message),
             "upgraded the pgrelocate state from version %d to %d (pgrelocate %s)", now,
             STATE_VERSION, PGRELOCATE_VERSION);
    if (!run_steps(tgt, now) || !write_version(tgt, now) ||
        !conn_command(tgt, "state",
                      "INSERT INTO pgrelocate.events (level, context, message) "
                      "VALUES ('info', 'state', $1)",
                      1, p))
        goto fail;
    if (!conn_script(tgt, "state", "COMMIT"))
        return false;
    log_info("[state] %s", message);
    return true;
fail:
    conn_script(tgt, "state", "ROLLBACK");
    return false;
}

bool state_open(PGconn *tgt, StateAccess access, bool *exists)
{
    int version;

    *exists = false;
    if (!state_read_version(tgt, &version))
        return false;
    if (version > STATE_VERSION) {
        refuse_newer(version);
        return false;
    }
    *exists = version > 0;
    if (version > 0 && version < STATE_VERSION && access == STATE_WRITE)
        return upgrade(tgt);
    return true;
}
