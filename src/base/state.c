/*
 * state.c: what the migration's state holds on the target, read and
 * written: the migration row, the copy plan, post-data progress, replica
 * identity changes, events and cutover runs.  The DDL and its version are
 * stateschema.c's; status's reads are statequery.c's.
 */
#include "state.h"

#include "conn.h"
#include "log.h"
#include "names.h"
#include "stall.h"
#include "stateschema.h"
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

static bool load_tables(PGconn *tgt, MigrationState *st)
{
    PGresult *res = conn_query(tgt, "state",
                               "SELECT table_no, schema_name, table_name, columns, copy_binary, "
                               "bytes_estimate, heap_blocks, toast_bytes, "
                               /* version 3 columns, NULL in older state read as it is */
                               "to_jsonb(t)->>'sync_state', to_jsonb(t)->>'sync_lsn', "
                               "to_jsonb(t)->>'root_schema', to_jsonb(t)->>'root_name' "
                               "FROM pgrelocate.tables t ORDER BY table_no",
                               0, NULL, 12);

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
        t->sync_state = PQgetisnull(res, i, 8) ? 0 : PQgetvalue(res, i, 8)[0];
        if (!PQgetisnull(res, i, 9))
            lsn_parse(PQgetvalue(res, i, 9), &t->sync_lsn);
        t->root_schema = conn_value_or_null(res, i, 10);
        t->root_name = conn_value_or_null(res, i, 11);
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
    st->snapshot = conn_value_or_null(res, 0, 2);
    st->snapshot_backend_pid = PQgetisnull(res, 0, 3) ? 0 : atoi(PQgetvalue(res, 0, 3));
    st->snapshot_taken_at = conn_value_or_null(res, 0, 4);
    st->replication_name = conn_value_or_null(res, 0, 5);
    st->follow = st->replication_name != NULL;
    lsn_parse(PQgetvalue(res, 0, 6), &st->slot_lsn);
    st->tables_filter = conn_value_or_null(res, 0, 7);
    PQclear(res);
    return load_tables(tgt, st) && load_chunks(tgt, st);
}

void state_free(MigrationState *st)
{
    for (int i = 0; i < st->ntables; i++) {
        free(st->tables[i].schema_name);
        free(st->tables[i].table_name);
        free(st->tables[i].columns);
        free(st->tables[i].root_schema);
        free(st->tables[i].root_name);
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
    res =
        conn_exec_params(tgt, "state", "UPDATE pgrelocate.migration SET schema_archive = $1::bytea",
                         1, NULL, values, lengths, formats, 0);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        conn_log_result_error(res, tgt, "state");
    PQclear(res);
    strbuf_free(&sb);
    return ok;
}

bool state_restore_archive(PGconn *tgt, const char *path, bool may_be_missing)
{
    PGresult *res =
        conn_exec_params(tgt, "state", "SELECT schema_archive FROM pgrelocate.migration", 0, NULL,
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
    PGresult *res = conn_exec(tgt, "state", sql);
    bool ok = PQresultStatus(res) == PGRES_COPY_IN;
    StallWatch *sw;

    PQclear(res);
    if (!ok) {
        log_error("[state] %s", PQerrorMessage(tgt));
        return false;
    }
    sw = stall_watch(tgt, CONN_TARGET, "state"); /* a session without statement_timeout */
    ok = PQputCopyData(tgt, rows->data, (int)rows->len) == 1 && PQputCopyEnd(tgt, NULL) == 1;
    res = PQgetResult(tgt);
    stall_unwatch(sw);
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
                        1, params) &&
           conn_command(tgt, "state",
                        "UPDATE pgrelocate.tables SET sync_state = 'pending', sync_lsn = NULL "
                        "WHERE table_no = $1 AND sync_state IS NOT NULL",
                        1, params);
}

bool state_track_sync(PGconn *tgt, int n, const int *table_no, char *const *root_schema,
                      char *const *root_name)
{
    bool ok = conn_script(tgt, "state",
                          "BEGIN; UPDATE pgrelocate.tables SET sync_state = 'pending' "
                          "WHERE sync_state IS NULL");

    for (int i = 0; ok && i < n; i++) {
        char no[16];
        const char *p[3] = {no, root_schema[i], root_name[i]};

        snprintf(no, sizeof(no), "%d", table_no[i]);
        ok = conn_command(tgt, "state",
                          "UPDATE pgrelocate.tables SET root_schema = $2, root_name = $3 "
                          "WHERE table_no = $1",
                          3, p);
    }
    if (ok)
        return conn_script(tgt, "state", "COMMIT");
    conn_script(tgt, "state", "ROLLBACK");
    return false;
}

PGresult *state_mark_table_synced(PGconn *tgt, int table_no, Lsn lsn)
{
    char no[16], l[LSN_TEXT_SIZE];
    const char *p[2] = {no, l};
    PGresult *res;

    snprintf(no, sizeof(no), "%d", table_no);
    lsn_format(lsn, l);
    res = PQexecParams(tgt, "SELECT 1 FROM pgrelocate.tables WHERE table_no = $1 FOR UPDATE", 1,
                       NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return res;
    PQclear(res);
    /* a new statement: its snapshot sees chunks committed while we waited */
    return PQexecParams(tgt,
                        "UPDATE pgrelocate.tables SET sync_state = 'ready', sync_lsn = $2 "
                        "WHERE table_no = $1 AND sync_state IS NOT NULL AND NOT EXISTS ("
                        "SELECT 1 FROM pgrelocate.chunks c WHERE c.table_no = $1 "
                        "AND c.state <> 'done')",
                        2, NULL, p, NULL, NULL, 0);
}

PGresult *state_mark_chunk_done(PGconn *tgt, int table_no, int chunk_no, int64_t rows,
                                int64_t bytes, double seconds)
{
    char tno[16], cno[16], r[24], b[24], s[32];
    const char *params[5] = {tno, cno, r, b, s};

    snprintf(tno, sizeof(tno), "%d", table_no);
    snprintf(cno, sizeof(cno), "%d", chunk_no);
    snprintf(r, sizeof(r), "%lld", (long long)rows);
    snprintf(b, sizeof(b), "%lld", (long long)bytes);
    snprintf(s, sizeof(s), "%.3f", seconds);
    return conn_exec_params(tgt, "state",
                            "UPDATE pgrelocate.chunks SET state = 'done', rows_copied = $3, "
                            "bytes_copied = $4, seconds = $5, done_at = now() "
                            "WHERE table_no = $1 AND chunk_no = $2",
                            5, NULL, params, NULL, NULL, 0);
}

bool state_restart_data(PGconn *tgt)
{
    return conn_script(tgt, "state",
                       "UPDATE pgrelocate.migration SET phase = 'data', snapshot = NULL");
}

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
    int version;

    if (!tgt || PQstatus(tgt) != CONNECTION_OK || PQtransactionStatus(tgt) == PQTRANS_INERROR)
        return;
    /* never into state this binary refused (or that is not there) */
    if (!state_read_version(tgt, &version) || version < 1 || version > STATE_VERSION)
        return;
    res = conn_exec_params(tgt, "state",
                           "INSERT INTO pgrelocate.events (level, context, message) "
                           "SELECT $1, $2, $3 WHERE pg_catalog.to_regclass('pgrelocate.events') "
                           "IS NOT NULL",
                           3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        log_debug("[state] could not record event: %s", PQresultErrorMessage(res));
    PQclear(res);
}

bool state_read_protocol(PGconn *tgt, char **protocol)
{
    PGresult *res = conn_query(tgt, "state",
                               "SELECT (SELECT message FROM pgrelocate.events"
                               " WHERE context = 'protocol' ORDER BY id DESC LIMIT 1)",
                               0, NULL, 1);

    *protocol = NULL;
    if (!res)
        return false;
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        *protocol = xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return true;
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

bool state_cutover_begin(PGconn *tgt, bool rollback, bool dry_run, const char *database,
                         const StateEndpoint *old_ep, const StateEndpoint *new_ep, int *id)
{
    const char *p[9] = {rollback ? "rollback" : "cutover",
                        dry_run ? "true" : "false",
                        database,
                        old_ep->host,
                        old_ep->port,
                        old_ep->dbname,
                        new_ep->host,
                        new_ep->port,
                        new_ep->dbname};
    PGresult *res = conn_query(tgt, "cutover",
                               "INSERT INTO pgrelocate.cutovers (direction, dry_run, database, "
                               "step, old_host, old_port, old_dbname, new_host, new_port, "
                               "new_dbname) VALUES ($1, $2, $3, 'prepared', $4, $5, $6, $7, $8, "
                               "$9) RETURNING id",
                               9, p, 1);

    if (!res)
        return false;
    *id = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return true;
}

bool state_cutover_step(PGconn *tgt, int id, const char *step)
{
    char no[16];
    const char *p[2] = {no, step};

    snprintf(no, sizeof(no), "%d", id);
    return conn_command(tgt, "cutover", "UPDATE pgrelocate.cutovers SET step = $2 WHERE id = $1", 2,
                        p);
}

bool state_cutover_end(PGconn *tgt, int id, const char *outcome, const char *reason,
                       int64_t pause_ms, Lsn fence)
{
    char no[16], ms[32], lsn[LSN_TEXT_SIZE];
    const char *p[5] = {no, outcome, reason, pause_ms > 0 ? ms : NULL,
                        fence ? lsn_format(fence, lsn) : NULL};

    snprintf(no, sizeof(no), "%d", id);
    snprintf(ms, sizeof(ms), "%lld", (long long)pause_ms);
    return conn_command(tgt, "cutover",
                        "UPDATE pgrelocate.cutovers SET outcome = $2, reason = $3, pause_ms = $4, "
                        "fence_lsn = $5, finished_at = now() WHERE id = $1",
                        5, p);
}

static void copy_field(char *dst, size_t len, const PGresult *res, int row, int col)
{
    snprintf(dst, len, "%s", PQgetvalue(res, row, col));
}

bool state_cutover_unfinished(PGconn *tgt, StateCutoverRun **runs, int *n)
{
    PGresult *res = conn_query(tgt, "cutover",
                               "SELECT id, step, old_host, old_port, old_dbname, new_host, "
                               "new_port, new_dbname, direction = 'rollback' "
                               "FROM pgrelocate.cutovers WHERE outcome IS NULL ORDER BY id",
                               0, NULL, 9);

    if (!res)
        return false;
    *n = PQntuples(res);
    *runs = xcalloc((size_t)*n + 1, sizeof(StateCutoverRun));
    for (int i = 0; i < *n; i++) {
        StateCutoverRun *r = &(*runs)[i];

        r->id = atoi(PQgetvalue(res, i, 0));
        copy_field(r->step, sizeof(r->step), res, i, 1);
        copy_field(r->old_ep.host, sizeof(r->old_ep.host), res, i, 2);
        copy_field(r->old_ep.port, sizeof(r->old_ep.port), res, i, 3);
        copy_field(r->old_ep.dbname, sizeof(r->old_ep.dbname), res, i, 4);
        copy_field(r->new_ep.host, sizeof(r->new_ep.host), res, i, 5);
        copy_field(r->new_ep.port, sizeof(r->new_ep.port), res, i, 6);
        copy_field(r->new_ep.dbname, sizeof(r->new_ep.dbname), res, i, 7);
        r->rollback = PQgetvalue(res, i, 8)[0] == 't';
    }
    PQclear(res);
    return true;
}

bool state_cutover_settle(PGconn *tgt, int id, bool switched)
{
    char no[16];
    const char *p[2] = {no, switched ? "recovered" : "aborted"};

    snprintf(no, sizeof(no), "%d", id);
    return conn_command(tgt, "cutover",
                        "UPDATE pgrelocate.cutovers SET outcome = $2, finished_at = now(), "
                        "reason = 'interrupted at step ' || step WHERE id = $1",
                        2, p);
}
