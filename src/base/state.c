/*
 * state.c: the pgrelocate schema on the target.
 */
#include "state.h"

#include "conn.h"
#include "log.h"
#include "names.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const phase_names[] = {"schema",    "data",       "large-objects", "post-data",
                                          "sequences", "analyze",    "follow",        "done",
                                          "reverse",   "rolled-back"};

const char *state_phase_name(Phase p)
{
    return phase_names[p];
}

static Phase phase_from_name(const char *s)
{
    for (int i = 0; i <= PHASE_LAST; i++)
        if (strcmp(s, phase_names[i]) == 0)
            return (Phase)i;
    return PHASE_SCHEMA;
}

char *state_reverse_name(const char *replication_name)
{
    return xasprintf("%s_reverse", replication_name);
}

bool state_read_phase(PGconn *tgt, Phase *phase)
{
    PGresult *res = conn_query(tgt, "state", "SELECT phase FROM pgrelocate.migration", 0, NULL, 1);

    if (!res)
        return false;
    if (PQntuples(res) != 1) {
        log_error("[state] expected one migration row, found %d", PQntuples(res));
        PQclear(res);
        return false;
    }
    *phase = phase_from_name(PQgetvalue(res, 0, 0));
    PQclear(res);
    return true;
}

static const char *const create_sql =
    "BEGIN;"
    "CREATE SCHEMA pgrelocate;"
    "COMMENT ON SCHEMA pgrelocate IS 'pgrelocate migration state; "
    "removed by pgrelocate cleanup';"
    "CREATE TABLE pgrelocate.migration ("
    "  id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),"
    "  source text NOT NULL, source_database text,"
    "  phase text NOT NULL,"
    "  replication_name text, slot_lsn pg_lsn, tables_filter text,"
    "  snapshot text, snapshot_backend_pid int, snapshot_taken_at timestamptz,"
    "  schema_archive bytea,"
    "  started_at timestamptz NOT NULL DEFAULT now(),"
    "  updated_at timestamptz NOT NULL DEFAULT now(),"
    "  finished_at timestamptz);"
    "CREATE TABLE pgrelocate.tables ("
    "  table_no int PRIMARY KEY, schema_name text NOT NULL, table_name text NOT NULL,"
    "  columns text NOT NULL, copy_binary bool NOT NULL,"
    "  bytes_estimate bigint NOT NULL, heap_blocks bigint NOT NULL,"
    "  toast_bytes bigint NOT NULL DEFAULT 0,"
    "  UNIQUE (schema_name, table_name));"
    "CREATE TABLE pgrelocate.chunks ("
    "  table_no int NOT NULL REFERENCES pgrelocate.tables, chunk_no int NOT NULL,"
    "  nchunks int NOT NULL, blk_start bigint NOT NULL, blk_end bigint NOT NULL,"
    "  est_bytes bigint NOT NULL, plan_order int NOT NULL DEFAULT 0,"
    "  state text NOT NULL DEFAULT 'pending'"
    "    CHECK (state IN ('pending', 'done')),"
    "  rows_copied bigint, bytes_copied bigint, seconds float8, done_at timestamptz,"
    "  PRIMARY KEY (table_no, chunk_no));"
    "CREATE TABLE pgrelocate.post_data ("
    "  dump_id int PRIMARY KEY, description text NOT NULL,"
    "  done_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE pgrelocate.replica_identity ("
    "  qualified_name text PRIMARY KEY, original \"char\" NOT NULL);"
    "CREATE TABLE pgrelocate.events ("
    "  id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),"
    "  level text NOT NULL, context text NOT NULL, message text NOT NULL);"
    "CREATE VIEW pgrelocate.table_progress AS"
    "  SELECT t.schema_name, t.table_name, count(*) AS chunks,"
    "         count(*) FILTER (WHERE c.state = 'done') AS chunks_done,"
    "         sum(c.rows_copied) AS rows_copied, sum(c.bytes_copied) AS bytes_copied,"
    "         CASE WHEN bool_and(c.state = 'done') THEN 'copied'"
    "              WHEN bool_or(c.state = 'done') THEN 'copying' ELSE 'pending' END AS state"
    "  FROM pgrelocate.tables t JOIN pgrelocate.chunks c USING (table_no)"
    "  GROUP BY t.schema_name, t.table_name;";

bool state_exists(PGconn *tgt, bool *exists)
{
    PGresult *res =
        conn_query(tgt, "state",
                   "SELECT pg_catalog.to_regclass('pgrelocate.migration') IS NOT NULL", 0, NULL, 1);

    if (!res)
        return false;
    *exists = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return true;
}

bool state_create(PGconn *tgt, const char *source_display, const char *source_dbname,
                  const char *replication_name, const char *tables_filter)
{
    const char *params[4] = {source_display, source_dbname, replication_name, tables_filter};

    if (!conn_script(tgt, "state", create_sql))
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

static char *dup_or_null(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

static bool load_tables(PGconn *tgt, MigrationState *st)
{
    PGresult *res = conn_query(tgt, "state",
                               "SELECT table_no, schema_name, table_name, columns, copy_binary, "
                               "bytes_estimate, heap_blocks, toast_bytes FROM pgrelocate.tables "
                               "ORDER BY table_no",
                               0, NULL, 8);

    if (!res)
        return false;
    st->ntables = PQntuples(res);
    st->tables = xcalloc((size_t)st->ntables + 1, sizeof(StateTable));
    for (int i = 0; i < st->ntables; i++) {
        StateTable *t = &st->tables[i];

        t->table_no = atoi(PQgetvalue(res, i, 0));
        t->schema_name = xstrdup(PQgetvalue(res, i, 1));
        t->table_name = xstrdup(PQgetvalue(res, i, 2));
        t->columns = xstrdup(PQgetvalue(res, i, 3));
        t->binary = PQgetvalue(res, i, 4)[0] == 't';
        t->bytes = atoll(PQgetvalue(res, i, 5));
        t->heap_blocks = atoll(PQgetvalue(res, i, 6));
        t->toast_bytes = atoll(PQgetvalue(res, i, 7));
    }
    PQclear(res);
    return true;
}

static bool load_chunks(PGconn *tgt, MigrationState *st)
{
    PGresult *res = conn_query(tgt, "state",
                               "SELECT table_no, chunk_no, nchunks, blk_start, blk_end, est_bytes, "
                               "state = 'done' FROM pgrelocate.chunks "
                               "ORDER BY plan_order, est_bytes DESC, table_no, chunk_no",
                               0, NULL, 7);

    if (!res)
        return false;
    st->nchunks = PQntuples(res);
    st->chunks = xcalloc((size_t)st->nchunks + 1, sizeof(StateChunk));
    for (int i = 0; i < st->nchunks; i++) {
        StateChunk *c = &st->chunks[i];

        c->table_no = atoi(PQgetvalue(res, i, 0));
        c->chunk_no = atoi(PQgetvalue(res, i, 1));
        c->nchunks = atoi(PQgetvalue(res, i, 2));
        c->blk_start = atoll(PQgetvalue(res, i, 3));
        c->blk_end = atoll(PQgetvalue(res, i, 4));
        c->est_bytes = atoll(PQgetvalue(res, i, 5));
        c->done = PQgetvalue(res, i, 6)[0] == 't';
    }
    PQclear(res);
    return true;
}

bool state_load(PGconn *tgt, MigrationState *st)
{
    PGresult *res;

    memset(st, 0, sizeof(*st));
    res = conn_query(tgt, "state",
                     "SELECT phase, source, snapshot, snapshot_backend_pid, "
                     "snapshot_taken_at::text, replication_name, "
                     "coalesce(slot_lsn, '0/0')::text, tables_filter FROM pgrelocate.migration",
                     0, NULL, 8);
    if (!res)
        return false;
    if (PQntuples(res) != 1) {
        log_error("[state] pgrelocate.migration has %d rows, expected 1", PQntuples(res));
        PQclear(res);
        return false;
    }
    st->phase = phase_from_name(PQgetvalue(res, 0, 0));
    st->source = xstrdup(PQgetvalue(res, 0, 1));
    st->snapshot = dup_or_null(res, 0, 2);
    st->snapshot_backend_pid = PQgetisnull(res, 0, 3) ? 0 : atoi(PQgetvalue(res, 0, 3));
    st->snapshot_taken_at = dup_or_null(res, 0, 4);
    st->replication_name = dup_or_null(res, 0, 5);
    st->follow = st->replication_name != NULL;
    lsn_parse(PQgetvalue(res, 0, 6), &st->slot_lsn);
    st->tables_filter = dup_or_null(res, 0, 7);
    PQclear(res);
    return load_tables(tgt, st) && load_chunks(tgt, st);
}

void state_free(MigrationState *st)
{
    for (int i = 0; i < st->ntables; i++) {
        free(st->tables[i].schema_name);
        free(st->tables[i].table_name);
        free(st->tables[i].columns);
    }
    free(st->tables);
    free(st->chunks);
    free(st->source);
    free(st->snapshot);
    free(st->snapshot_taken_at);
    free(st->replication_name);
    free(st->tables_filter);
    memset(st, 0, sizeof(*st));
}

bool state_set_phase(PGconn *tgt, Phase phase)
{
    const char *params[1] = {state_phase_name(phase)};

    return conn_command(tgt, "state",
                        "UPDATE pgrelocate.migration SET phase = $1, updated_at = now(), "
                        "finished_at = CASE WHEN $1 IN ('done', 'follow') THEN now() END",
                        1, params);
}

bool state_set_snapshot(PGconn *tgt, const char *name, int backend_pid)
{
    char pid[16];
    const char *params[2] = {name, pid};

    snprintf(pid, sizeof(pid), "%d", backend_pid);
    return conn_command(tgt, "state",
                        "UPDATE pgrelocate.migration SET snapshot = $1, "
                        "snapshot_backend_pid = $2, updated_at = now(), "
                        "snapshot_taken_at = coalesce(snapshot_taken_at, now())",
                        2, params);
}

bool state_save_archive(PGconn *tgt, const char *path)
{
    FILE *f = fopen(path, "rb");
    StrBuf sb;
    char buf[65536];
    size_t n;
    PGresult *res;
    const char *values[1];
    int lengths[1], formats[1] = {1};
    bool ok;

    if (!f) {
        log_error("[state] could not read \"%s\": %m", path);
        return false;
    }
    strbuf_init(&sb);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        strbuf_append_len(&sb, buf, n);
    fclose(f);
    values[0] = sb.data;
    lengths[0] = (int)sb.len;
    res = PQexecParams(tgt, "UPDATE pgrelocate.migration SET schema_archive = $1::bytea", 1, NULL,
                       values, lengths, formats, 0);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        conn_log_result_error(res, tgt, "state");
    PQclear(res);
    strbuf_free(&sb);
    return ok;
}

bool state_restore_archive(PGconn *tgt, const char *path, bool may_be_missing)
{
    PGresult *res = PQexecParams(tgt, "SELECT schema_archive FROM pgrelocate.migration", 0, NULL,
                                 NULL, NULL, NULL, 1);
    FILE *f;
    bool ok;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        if (may_be_missing) /* interrupted before the schema was dumped: dump it now */
            log_debug("[state] no schema archive yet");
        else
            log_error("[state] the schema archive of the interrupted run is missing");
        PQclear(res);
        return false;
    }
    f = fopen(path, "wb");
    ok = f && fwrite(PQgetvalue(res, 0, 0), 1, (size_t)PQgetlength(res, 0, 0), f) ==
                  (size_t)PQgetlength(res, 0, 0);
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok)
        log_error("[state] could not write \"%s\": %m", path);
    PQclear(res);
    return ok;
}

/* Append s escaped for COPY's text format. */
static void copy_text(StrBuf *sb, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\\':
            strbuf_append(sb, "\\\\");
            break;
        case '\t':
            strbuf_append(sb, "\\t");
            break;
        case '\n':
            strbuf_append(sb, "\\n");
            break;
        case '\r':
            strbuf_append(sb, "\\r");
            break;
        default:
            strbuf_append_len(sb, s, 1);
        }
    }
}

/* COPY rows (already in text format) into a state table. */
static bool copy_rows(PGconn *tgt, const char *sql, const StrBuf *rows)
{
    PGresult *res = PQexec(tgt, sql);
    bool ok = PQresultStatus(res) == PGRES_COPY_IN;

    PQclear(res);
    if (!ok) {
        log_error("[state] %s", PQerrorMessage(tgt));
        return false;
    }
    ok = PQputCopyData(tgt, rows->data, (int)rows->len) == 1 && PQputCopyEnd(tgt, NULL) == 1;
    res = PQgetResult(tgt);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        conn_log_result_error(res, tgt, "state");
        ok = false;
    }
    PQclear(res);
    while ((res = PQgetResult(tgt)) != NULL)
        PQclear(res);
    return ok;
}

bool state_save_plan(PGconn *tgt, const StateTable *tables, int ntables, const StateChunk *chunks,
                     int nchunks)
{
    StrBuf t, c;
    bool ok;

    strbuf_init(&t);
    strbuf_init(&c);
    for (int i = 0; i < ntables; i++) {
        strbuf_appendf(&t, "%d\t", tables[i].table_no);
        copy_text(&t, tables[i].schema_name);
        strbuf_append(&t, "\t");
        copy_text(&t, tables[i].table_name);
        strbuf_append(&t, "\t");
        copy_text(&t, tables[i].columns);
        strbuf_appendf(&t, "\t%s\t%lld\t%lld\t%lld\n", tables[i].binary ? "t" : "f",
                       (long long)tables[i].bytes, (long long)tables[i].heap_blocks,
                       (long long)tables[i].toast_bytes);
    }
    for (int i = 0; i < nchunks; i++)
        strbuf_appendf(&c, "%d\t%d\t%d\t%lld\t%lld\t%lld\t%d\n", chunks[i].table_no,
                       chunks[i].chunk_no, chunks[i].nchunks, (long long)chunks[i].blk_start,
                       (long long)chunks[i].blk_end, (long long)chunks[i].est_bytes, i);
    ok = conn_script(tgt, "state", "BEGIN") &&
         copy_rows(tgt,
                   "COPY pgrelocate.tables (table_no, schema_name, table_name, columns, "
                   "copy_binary, bytes_estimate, heap_blocks, toast_bytes) FROM STDIN",
                   &t) &&
         copy_rows(tgt,
                   "COPY pgrelocate.chunks (table_no, chunk_no, nchunks, blk_start, blk_end, "
                   "est_bytes, plan_order) FROM STDIN",
                   &c) &&
         conn_script(tgt, "state", "UPDATE pgrelocate.migration SET phase = 'data'; COMMIT");
    if (!ok)
        conn_script(tgt, "state", "ROLLBACK");
    strbuf_free(&t);
    strbuf_free(&c);
    return ok;
}

bool state_reset_table(PGconn *tgt, int table_no)
{
    char no[16];
    const char *params[1] = {no};

    snprintf(no, sizeof(no), "%d", table_no);
    return conn_command(tgt, "state",
                        "UPDATE pgrelocate.chunks SET state = 'pending', rows_copied = NULL, "
                        "bytes_copied = NULL, seconds = NULL, done_at = NULL WHERE table_no = $1",
                        1, params);
}

const char *const state_chunk_done_sql =
    "UPDATE pgrelocate.chunks SET state = 'done', rows_copied = $3, bytes_copied = $4, "
    "seconds = $5, done_at = now() WHERE table_no = $1 AND chunk_no = $2";

bool state_load_post_done(PGconn *tgt, int **ids, int *n)
{
    PGresult *res =
        conn_query(tgt, "state", "SELECT dump_id FROM pgrelocate.post_data", 0, NULL, 1);

    if (!res)
        return false;
    *n = PQntuples(res);
    *ids = xcalloc((size_t)*n + 1, sizeof(int));
    for (int i = 0; i < *n; i++)
        (*ids)[i] = atoi(PQgetvalue(res, i, 0));
    PQclear(res);
    return true;
}

bool state_mark_post_done(PGconn *tgt, int dump_id, const char *desc)
{
    char id[16], *text = names_utf8_or_escaped(desc);
    const char *params[2] = {id, text};
    bool ok;

    snprintf(id, sizeof(id), "%d", dump_id);
    ok = conn_command(tgt, "state",
                      "INSERT INTO pgrelocate.post_data (dump_id, description) VALUES ($1, $2) "
                      "ON CONFLICT (dump_id) DO NOTHING",
                      2, params);
    free(text);
    return ok;
}

void state_event(PGconn *tgt, const char *level, const char *context, const char *message)
{
    const char *params[3] = {level, context, message};
    PGresult *res;

    if (!tgt || PQstatus(tgt) != CONNECTION_OK)
        return;
    res = PQexecParams(tgt,
                       "INSERT INTO pgrelocate.events (level, context, message) "
                       "SELECT $1, $2, $3 WHERE pg_catalog.to_regclass('pgrelocate.events') "
                       "IS NOT NULL",
                       3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        log_debug("[state] could not record event: %s", PQresultErrorMessage(res));
    PQclear(res);
}

bool state_target_is_empty(PGconn *tgt, bool *empty, char **example)
{
    static const char *const sql =
        "WITH user_ns AS ("
        "  SELECT oid, nspname FROM pg_namespace"
        "  WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate')"
        "    AND nspname !~ '^pg_(toast|temp_|toast_temp_)'),"
        " ext AS (SELECT objid, classid FROM pg_depend WHERE deptype = 'e'),"
        " objs AS ("
        "  SELECT 'relation ' || pg_catalog.quote_ident(n.nspname) || '.' ||"
        "         pg_catalog.quote_ident(c.relname) AS what"
        "  FROM pg_class c JOIN user_ns n ON n.oid = c.relnamespace"
        "  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
        "    AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_class'::regclass"
        "                    AND ext.objid = c.oid)"
        "  UNION ALL"
        "  SELECT 'function ' || pg_catalog.quote_ident(n.nspname) || '.' ||"
        "         pg_catalog.quote_ident(p.proname)"
        "  FROM pg_proc p JOIN user_ns n ON n.oid = p.pronamespace"
        "  WHERE NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_proc'::regclass"
        "                    AND ext.objid = p.oid)"
        "  UNION ALL"
        "  SELECT 'schema ' || pg_catalog.quote_ident(n.nspname) FROM user_ns n"
        "  WHERE n.nspname <> 'public'"
        "    AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_namespace'::regclass"
        "                    AND ext.objid = n.oid)"
        "  UNION ALL"
        "  SELECT 'large object ' || oid FROM pg_largeobject_metadata)"
        "SELECT count(*), min(what) FROM objs";
    PGresult *res = conn_query(tgt, "target", sql, 0, NULL, 2);

    if (!res)
        return false;
    *empty = strcmp(PQgetvalue(res, 0, 0), "0") == 0;
    *example = *empty ? NULL
                      : xasprintf("It holds %s object%s, e.g. %s.", PQgetvalue(res, 0, 0),
                                  strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? "" : "s",
                                  PQgetvalue(res, 0, 1));
    PQclear(res);
    return true;
}

bool state_set_slot_lsn(PGconn *tgt, Lsn lsn)
{
    char text[LSN_TEXT_SIZE];
    const char *p[1] = {lsn_format(lsn, text)};

    return conn_command(tgt, "state", "UPDATE pgrelocate.migration SET slot_lsn = $1::pg_lsn", 1,
                        p);
}

bool state_record_identity(PGconn *tgt, const char *qualified, char original)
{
    char o[2] = {original, 0};
    const char *p[2] = {qualified, o};

    return conn_command(tgt, "state",
                        "INSERT INTO pgrelocate.replica_identity VALUES ($1, $2) "
                        "ON CONFLICT (qualified_name) DO NOTHING",
                        2, p);
}

bool state_load_identity(PGconn *tgt, char ***qualified, char **original, int *n)
{
    PGresult *res =
        conn_query(tgt, "state", "SELECT qualified_name, original FROM pgrelocate.replica_identity",
                   0, NULL, 2);

    if (!res)
        return false;
    *n = PQntuples(res);
    *qualified = xcalloc((size_t)*n + 1, sizeof(char *));
    *original = xcalloc((size_t)*n + 1, 1);
    for (int i = 0; i < *n; i++) {
        (*qualified)[i] = xstrdup(PQgetvalue(res, i, 0));
        (*original)[i] = PQgetvalue(res, i, 1)[0];
    }
    PQclear(res);
    return true;
}
