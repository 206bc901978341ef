/*
 * statequery.c: the queries `status` runs on the pgrelocate schema.  Owns
 * their SQL and turns rows into the structs of statequery.h; owns neither
 * the schema (stateschema.c) nor what status makes of the numbers.
 */
#include "statequery.h"

#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Timestamps as ISO 8601 in UTC (the session's TimeZone is pinned to UTC). */
#define ISO "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'"

static const char migration_sql[] =
    "SELECT source, phase, replication_name, to_char(started_at, " ISO "), "
    "to_char(updated_at, " ISO "), to_char(finished_at, " ISO "), to_char(now(), " ISO ") "
    "FROM pgrelocate.migration";

static const char tables_sql_head[] =
    "SELECT t.schema_name, t.table_name, t.bytes_estimate, count(c.chunk_no), "
    "count(c.chunk_no) FILTER (WHERE c.state = 'done'), "
    "coalesce(sum(c.rows_copied) FILTER (WHERE c.state = 'done'), 0)::bigint, "
    "coalesce(sum(c.bytes_copied) FILTER (WHERE c.state = 'done'), 0)::bigint, ";
/* A COPY into the table running now (PostgreSQL 14+): the table is being
 * copied even before its first chunk is done. */
static const char tables_sql_inflight[] =
    "EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_copy p WHERE p.command = 'COPY FROM' "
    "AND p.datid = (SELECT oid FROM pg_catalog.pg_database "
    "WHERE datname = pg_catalog.current_database()) "
    "AND p.relid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', t.schema_name, "
    "t.table_name))) ";
/* The name --tables matches: a partition's root's (PostgreSQL 12+). */
static const char tables_sql_root[] =
    ", t.table_no, coalesce(r.nspname, t.schema_name), coalesce(r.relname, t.table_name) "
    "FROM pgrelocate.tables t LEFT JOIN pgrelocate.chunks c USING (table_no) "
    "LEFT JOIN LATERAL (SELECT rn.nspname, rc.relname FROM pg_catalog.pg_class rc "
    "  JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace "
    "  WHERE rc.oid = pg_catalog.pg_partition_root(pg_catalog.to_regclass("
    "    pg_catalog.format('%I.%I', t.schema_name, t.table_name)))) r ON true ";
static const char tables_sql_noroot[] =
    ", t.table_no, t.schema_name, t.table_name "
    "FROM pgrelocate.tables t LEFT JOIN pgrelocate.chunks c USING (table_no) "
    "LEFT JOIN LATERAL (SELECT NULL::name AS nspname, NULL::name AS relname) r ON true ";
static const char tables_sql_tail[] = "GROUP BY t.table_no, r.nspname, r.relname "
                                      "ORDER BY t.bytes_estimate DESC, t.schema_name, t.table_name";

/* Elapsed: from the start of the first chunk to the last done_at, or to now
 * while chunks are pending (an interrupted copy counts its pause). */
static const char totals_sql[] =
    "SELECT count(*), count(*) FILTER (WHERE state = 'done'), "
    "coalesce(sum(rows_copied) FILTER (WHERE state = 'done'), 0)::bigint, "
    "coalesce(sum(bytes_copied) FILTER (WHERE state = 'done'), 0)::bigint, "
    "coalesce(sum(est_bytes), 0)::bigint, "
    "coalesce(sum(est_bytes) FILTER (WHERE state = 'done'), 0)::bigint, "
    "extract(epoch FROM (CASE WHEN bool_and(state = 'done') THEN max(done_at) ELSE now() END) "
    "  - min(done_at - seconds * interval '1 second'))::float8 "
    "FROM pgrelocate.chunks WHERE $1::int[] IS NULL OR table_no = ANY ($1::int[])";

static const char post_data_sql[] =
    "SELECT count(*), to_char(max(done_at), " ISO ") FROM pgrelocate.post_data";

static const char events_sql[] =
    "SELECT to_char(at, " ISO "), level, context, message FROM pgrelocate.events "
    "ORDER BY level = 'error' DESC, id DESC LIMIT $1";
/* Source transactions left out by --skip-transaction (apply.c), oldest
 * first: kept apart from the latest events, never pushed out by them. */
static const char skips_sql[] =
    "SELECT to_char(at, " ISO "), level, context, message FROM pgrelocate.events "
    "WHERE context = 'apply' AND message LIKE 'skipped source transaction %' "
    "ORDER BY id LIMIT $1";

/* Schema changes (ddl.h): replayed ones each left an event in the target
 * transaction that ran them (apply.c), so each is counted once; a refused
 * one stopped apply, and the run recorded its error. */
static const char schema_changes_sql[] =
    "SELECT count(*) FILTER (WHERE context = 'apply' AND message LIKE 'replayed %'), "
    "count(*) FILTER (WHERE level = 'error' AND message LIKE '%schema change at % refused: %') "
    "FROM pgrelocate.events";

/* State of version 1 has pgrelocate.cutovers once a cutover or rollback
 * has run.  The latest runs, newest first, with how many there are. */
static const char cutovers_exist_sql[] =
    "SELECT pg_catalog.to_regclass('pgrelocate.cutovers') IS NOT NULL";
static const char cutovers_sql[] =
    "SELECT id, direction, dry_run, step, outcome, reason, pause_ms, to_char(started_at, " ISO
    "), to_char(finished_at, " ISO "), fence_lsn::text, count(*) OVER () "
    "FROM pgrelocate.cutovers ORDER BY id DESC LIMIT $1";

bool statequery_load_migration(PGconn *tgt, StateMigrationRow *m)
{
    PGresult *res = conn_query(tgt, "status", migration_sql, 0, NULL, 7);

    memset(m, 0, sizeof(*m));
    if (!res)
        return false;
    if (PQntuples(res) != 1) {
        log_error("[status] pgrelocate.migration has %d rows, expected 1", PQntuples(res));
        PQclear(res);
        return false;
    }
    m->source = conn_value_or_null(res, 0, 0);
    m->phase = conn_value_or_null(res, 0, 1);
    m->replication_name = conn_value_or_null(res, 0, 2);
    m->started_at = conn_value_or_null(res, 0, 3);
    m->updated_at = conn_value_or_null(res, 0, 4);
    m->finished_at = conn_value_or_null(res, 0, 5);
    m->now = conn_value_or_null(res, 0, 6);
    PQclear(res);
    return true;
}

void statequery_free_migration(StateMigrationRow *m)
{
    free(m->source);
    free(m->phase);
    free(m->replication_name);
    free(m->started_at);
    free(m->updated_at);
    free(m->finished_at);
    free(m->now);
    memset(m, 0, sizeof(*m));
}

bool statequery_load_tables(PGconn *tgt, StateTableRow **rows, int *n)
{
    StrBuf sql;
    PGresult *res;

    strbuf_init(&sql);
    strbuf_append(&sql, tables_sql_head);
    strbuf_append(&sql, PQserverVersion(tgt) >= 140000 ? tables_sql_inflight : "false ");
    strbuf_append(&sql, PQserverVersion(tgt) >= 120000 ? tables_sql_root : tables_sql_noroot);
    strbuf_append(&sql, tables_sql_tail);
    res = conn_query(tgt, "status", sql.data, 0, NULL, 11);
    strbuf_free(&sql);
    if (!res)
        return false;
    *n = PQntuples(res);
    *rows = xcalloc((size_t)*n + 1, sizeof(StateTableRow));
    for (int i = 0; i < *n; i++) {
        StateTableRow *t = &(*rows)[i];

        t->schema_name = xstrdup(PQgetvalue(res, i, 0));
        t->table_name = xstrdup(PQgetvalue(res, i, 1));
        t->bytes_estimate = atoll(PQgetvalue(res, i, 2));
        t->chunks = atoi(PQgetvalue(res, i, 3));
        t->chunks_done = atoi(PQgetvalue(res, i, 4));
        t->rows_done = atoll(PQgetvalue(res, i, 5));
        t->bytes_done = atoll(PQgetvalue(res, i, 6));
        t->in_flight = PQgetvalue(res, i, 7)[0] == 't';
        t->table_no = atoi(PQgetvalue(res, i, 8));
        t->root_schema = xstrdup(PQgetvalue(res, i, 9));
        t->root_name = xstrdup(PQgetvalue(res, i, 10));
    }
    PQclear(res);
    return true;
}

void statequery_free_tables(StateTableRow *rows, int n)
{
    for (int i = 0; rows && i < n; i++) {
        free(rows[i].schema_name);
        free(rows[i].table_name);
        free(rows[i].root_schema);
        free(rows[i].root_name);
    }
    free(rows);
}

bool statequery_load_totals(PGconn *tgt, const char *table_nos, StateCopyTotals *t)
{
    const char *p[1] = {table_nos};
    PGresult *res = conn_query(tgt, "status", totals_sql, 1, p, 7);

    if (!res)
        return false;
    t->chunks = atoi(PQgetvalue(res, 0, 0));
    t->chunks_done = atoi(PQgetvalue(res, 0, 1));
    t->rows_done = atoll(PQgetvalue(res, 0, 2));
    t->bytes_done = atoll(PQgetvalue(res, 0, 3));
    t->bytes_estimate = atoll(PQgetvalue(res, 0, 4));
    t->est_done = atoll(PQgetvalue(res, 0, 5));
    t->elapsed_s = PQgetisnull(res, 0, 6) ? -1.0 : atof(PQgetvalue(res, 0, 6));
    PQclear(res);
    return true;
}

bool statequery_load_post_data(PGconn *tgt, int64_t *done, char **last_at)
{
    PGresult *res = conn_query(tgt, "status", post_data_sql, 0, NULL, 2);

    if (!res)
        return false;
    *done = atoll(PQgetvalue(res, 0, 0));
    *last_at = conn_value_or_null(res, 0, 1);
    PQclear(res);
    return true;
}

static bool load_events(PGconn *tgt, const char *sql, StateEvent *events, int max, int *n)
{
    char limit[16];
    const char *p[1] = {limit};
    PGresult *res;

    snprintf(limit, sizeof(limit), "%d", max);
    *n = 0;
    if (!(res = conn_query(tgt, "status", sql, 1, p, 4)))
        return false;
    for (int i = 0; i < PQntuples(res) && i < max; i++) {
        StateEvent *e = &events[(*n)++];

        e->at = conn_value_or_null(res, i, 0);
        e->level = conn_value_or_null(res, i, 1);
        e->context = conn_value_or_null(res, i, 2);
        e->message = conn_value_or_null(res, i, 3);
    }
    PQclear(res);
    return true;
}

bool statequery_load_events(PGconn *tgt, StateEvent *events, int max, int *n)
{
    return load_events(tgt, events_sql, events, max, n);
}

bool statequery_load_skips(PGconn *tgt, StateEvent *events, int max, int *n)
{
    return load_events(tgt, skips_sql, events, max, n);
}

bool statequery_load_schema_changes(PGconn *tgt, int64_t *replayed, int64_t *refused)
{
    PGresult *res = conn_query(tgt, "status", schema_changes_sql, 0, NULL, 2);

    *replayed = *refused = 0;
    if (!res)
        return false;
    *replayed = atoll(PQgetvalue(res, 0, 0));
    *refused = atoll(PQgetvalue(res, 0, 1));
    PQclear(res);
    return true;
}

void statequery_free_event(StateEvent *e)
{
    free(e->at);
    free(e->level);
    free(e->context);
    free(e->message);
}

bool statequery_load_cutovers(PGconn *tgt, StateCutoverRecord *runs, int max, int *n, int *total)
{
    PGresult *res = conn_query(tgt, "status", cutovers_exist_sql, 0, NULL, 1);
    char limit[16];
    const char *p[1] = {limit};
    bool exists;

    *n = *total = 0;
    if (!res)
        return false;
    exists = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!exists)
        return true;
    snprintf(limit, sizeof(limit), "%d", max);
    if (!(res = conn_query(tgt, "status", cutovers_sql, 1, p, 11)))
        return false;
    *n = PQntuples(res) < max ? PQntuples(res) : max;
    *total = *n > 0 ? atoi(PQgetvalue(res, 0, 10)) : 0;
    for (int i = 0; i < *n; i++) {
        StateCutoverRecord *c = &runs[*n - 1 - i];

        c->id = atoi(PQgetvalue(res, i, 0));
        c->direction = conn_value_or_null(res, i, 1);
        c->dry_run = PQgetvalue(res, i, 2)[0] == 't';
        c->step = conn_value_or_null(res, i, 3);
        c->outcome = conn_value_or_null(res, i, 4);
        c->reason = conn_value_or_null(res, i, 5);
        c->pause_ms = PQgetisnull(res, i, 6) ? -1 : atoll(PQgetvalue(res, i, 6));
        c->started_at = conn_value_or_null(res, i, 7);
        c->finished_at = conn_value_or_null(res, i, 8);
        c->fence_lsn = conn_value_or_null(res, i, 9);
    }
    PQclear(res);
    return true;
}

void statequery_free_cutover(StateCutoverRecord *c)
{
    free(c->direction);
    free(c->step);
    free(c->started_at);
    free(c->outcome);
    free(c->reason);
    free(c->finished_at);
    free(c->fence_lsn);
}
