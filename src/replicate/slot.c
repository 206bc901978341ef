/*
 * slot.c: publication, replica identity, slot and origin management.
 */
#include "slot.h"

#include "conn.h"
#include "ddl.h"
#include "log.h"
#include "strbuf.h"
#include "tablefilter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DDL_ATTEMPTS 30

#define USER_NS_WHERE                                                                              \
    " n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate')"                         \
    " AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"                                            \
    " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"            \
    "                 AND d.objid = c.oid AND d.deptype = 'e')"

bool slot_check_source(PGconn *src)
{
    PGresult *res = conn_query(src, "check",
                               "SELECT pg_catalog.current_setting('wal_level'),"
                               " r.rolsuper OR r.rolreplication OR EXISTS (SELECT 1 FROM pg_roles"
                               "   g WHERE g.rolname = 'rds_replication' AND"
                               "   pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER'))"
                               " FROM pg_roles r WHERE r.rolname = current_user",
                               0, NULL, 2);
    bool ok = res != NULL;

    if (ok && strcmp(PQgetvalue(res, 0, 0), "logical") != 0) {
        log_msg(LOG_ERROR,
                "Following changes needs logical decoding, which needs wal_level = logical.",
                "ALTER SYSTEM SET wal_level = logical; then restart the source server (on RDS "
                "and Aurora: rds.logical_replication = 1 in the parameter group; on Cloud SQL: "
                "cloudsql.logical_decoding = on).",
                "the source has wal_level = %s", PQgetvalue(res, 0, 0));
        ok = false;
    } else if (ok && PQgetvalue(res, 0, 1)[0] != 't') {
        log_msg(LOG_ERROR, NULL,
                "ALTER ROLE ... WITH REPLICATION (on RDS and Aurora: GRANT rds_replication TO "
                "the role).",
                "the source role may not use replication");
        ok = false;
    }
    PQclear(res);
    return ok;
}

/* Why the relation OID's own replica identity gives apply no key, or NULL:
 * NOTHING, DEFAULT without a primary key, INDEX without its index, or a
 * key with a generated column (pgoutput never sends those). */
#define KEYLESS_REASON(OID)                                                                        \
    "(SELECT CASE WHEN k.relreplident = 'f' THEN NULL"                                             \
    "   WHEN k.relreplident = 'n' THEN 'replica identity NOTHING'"                                 \
    "   WHEN i.indexrelid IS NULL THEN 'no primary key or replica identity'"                       \
    "   WHEN g.attname IS NOT NULL THEN pg_catalog.format("                                        \
    "     'its key includes the generated column %I, which logical decoding never sends',"         \
    "     g.attname) END"                                                                          \
    " FROM pg_class k LEFT JOIN pg_index i ON i.indrelid = k.oid AND CASE k.relreplident"          \
    "   WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END"                \
    " LEFT JOIN LATERAL (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = k.oid"            \
    "   AND a.attnum = ANY (i.indkey) AND a.attgenerated <> '' ORDER BY a.attnum LIMIT 1) g"       \
    "   ON true WHERE k.oid = " OID ")"

/* Every table and partitioned root whose changes apply could not match to
 * a target row, with the reason (PostgreSQL 13+).  A partition's changes
 * are published as its root's (publish_via_partition_root): the root's
 * identity decides what pgoutput sends, and a root with FULL identity
 * needs whole old rows from every partition. */
static const char *const identity_sql =
    "WITH rel AS ("
    "  SELECT c.oid, c.relkind, c.relreplident, n.nspname, c.relname,"
    "   CASE WHEN c.relispartition THEN pg_catalog.pg_partition_root(c.oid) END AS root"
    "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND" USER_NS_WHERE
    "   AND NOT (c.oid = ANY ($1::oid[]))),"
    " judged AS ("
    "  SELECT r.*, " KEYLESS_REASON(
        "r.oid") " AS own,"
                 "   " KEYLESS_REASON(
                     "r.root") " IS NOT NULL AS root_keyless,"
                               "   (SELECT rc.relreplident FROM pg_class rc WHERE rc.oid = r.root) "
                               "AS root_ident,"
                               "   (SELECT pg_catalog.format('%I.%I', rn.nspname, rc.relname) FROM "
                               "pg_class rc"
                               "    JOIN pg_namespace rn ON rn.oid = rc.relnamespace WHERE rc.oid "
                               "= r.root) AS root_name"
                               "  FROM rel r)"
                               " SELECT pg_catalog.quote_ident(nspname) || '.' || "
                               "pg_catalog.quote_ident(relname),"
                               "  CASE WHEN relkind = 'p' THEN 'partitioned, ' || own"
                               "    || ', and its partitions'' changes are published as its own'"
                               "   WHEN own IS NOT NULL THEN own"
                               "   ELSE 'partition of ' || root_name || ', which needs its whole "
                               "old rows' END"
                               " FROM judged"
                               " WHERE (relkind = 'p' AND root IS NULL AND own IS NOT NULL)"
                               "  OR (relkind = 'r' AND (own IS NOT NULL OR (root IS NOT NULL AND "
                               "relreplident <> 'f'"
                               "   AND (root_keyless OR root_ident = 'f'))))"
                               " ORDER BY 1";

/* Before PostgreSQL 13 partitions are published as themselves: a table's
 * own identity is all that counts. */
static const char *const identity_sql_12 =
    "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname),"
    " 'no primary key or replica identity'"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND" USER_NS_WHERE
    " AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS ("
    "   SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))"
    "  OR (c.relreplident = 'i' AND NOT EXISTS ("
    "   SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))"
    " AND NOT (c.oid = ANY ($1::oid[]))"
    " ORDER BY 1";

bool slot_tables_without_identity(PGconn *src, const char *excluded_oids, char **names,
                                  char ***list, int *n)
{
    const char *excluded = excluded_oids ? excluded_oids : "{}";
    PGresult *res =
        conn_query(src, "check", PQserverVersion(src) >= 130000 ? identity_sql : identity_sql_12, 1,
                   &excluded, 2);
    StrBuf sb;

    if (!res)
        return false;
    *n = PQntuples(res);
    *names = NULL;
    *list = xcalloc((size_t)*n + 1, sizeof(char *));
    strbuf_init(&sb);
    for (int i = 0; i < *n; i++) {
        (*list)[i] = xstrdup(PQgetvalue(res, i, 0));
        if (i < 10)
            strbuf_appendf(&sb, "%s%s", i ? ", " : "", PQgetvalue(res, i, 0));
        if (i < 10 && strcmp(PQgetvalue(res, i, 1), "no primary key or replica identity") != 0)
            strbuf_appendf(&sb, " (%s)", PQgetvalue(res, i, 1));
    }
    if (*n > 10)
        strbuf_appendf(&sb, " and %d more", *n - 10);
    if (*n > 0)
        *names = strbuf_detach(&sb);
    strbuf_free(&sb);
    PQclear(res);
    return true;
}

/* Run DDL on the live source: lock_timeout 2s, retried while the lock is
 * busy, so the application never waits behind us for long. */
static bool source_ddl(PGconn *src, const char *ctx, const char *sql)
{
    /* back to the session's own bound afterwards (RESET would give the
     * server's default, often none, to every later query of the session) */
    PGresult *was = conn_exec(src, ctx, "SHOW lock_timeout");
    char *saved = conn_quote_literal(
        src, PQresultStatus(was) == PGRES_TUPLES_OK ? PQgetvalue(was, 0, 0) : "10s");
    char *restore = xasprintf("SET lock_timeout = %s", saved);
    char *full = xasprintf("SET lock_timeout = '2s'; %s; %s", sql, restore);
    bool ok = false;

    for (int attempt = 1; attempt <= DDL_ATTEMPTS && !ok; attempt++) {
        PGresult *res = conn_exec(src, ctx, full);

        ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok && strcmp(conn_sqlstate(res), "55P03") == 0 && attempt < DDL_ATTEMPTS) {
            log_notice("[%s] waiting for a lock (attempt %d of %d)", ctx, attempt, DDL_ATTEMPTS);
            PQclear(res);
            PQclear(conn_exec(src, ctx, restore));
            usleep(500000);
            continue;
        }
        if (!ok)
            conn_log_result_error(res, src, ctx);
        PQclear(res);
        if (!ok)
            break;
    }
    PQclear(conn_exec(src, ctx, restore));
    PQclear(was);
    free(saved);
    free(restore);
    free(full);
    return ok;
}

bool slot_set_identity_full(PGconn *src, char **qualified, int n)
{
    for (int i = 0; i < n; i++) {
        char *sql = xasprintf("ALTER TABLE %s REPLICA IDENTITY FULL", qualified[i]);
        bool ok = source_ddl(src, "replica identity", sql);

        free(sql);
        if (!ok)
            return false;
        log_info("[replica identity] %s now has REPLICA IDENTITY FULL (restored by cleanup)",
                 qualified[i]);
    }
    return true;
}

bool slot_restore_identity(PGconn *src, const char *qualified, char original)
{
    const char *kind = original == 'n' ? "NOTHING" : original == 'f' ? "FULL" : "DEFAULT";
    char *sql = xasprintf("ALTER TABLE %s REPLICA IDENTITY %s", qualified, kind);
    bool ok = source_ddl(src, "replica identity", sql);

    free(sql);
    return ok;
}

bool slot_create_publication(PGconn *src, const char *name, const char *excluded_oids)
{
    const char *excluded = excluded_oids ? excluded_oids : "{}";
    PGresult *res = conn_query(
        src, "publication",
        "SELECT CASE c.relkind WHEN 'r' THEN 'ONLY ' ELSE '' END"
        " || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'"
        " AND" USER_NS_WHERE " AND NOT (c.oid = ANY ($1::oid[])) ORDER BY 1",
        1, &excluded, 1);
    char *q;
    StrBuf sql;
    bool ok;

    if (!res)
        return false;
    q = conn_quote_ident(src, name);
    strbuf_init(&sql);
    strbuf_appendf(&sql, "CREATE PUBLICATION %s", q);
    for (int i = 0; i < PQntuples(res); i++)
        strbuf_appendf(&sql, "%s%s", i ? ", " : " FOR TABLE ", PQgetvalue(res, i, 0));
    if (PQserverVersion(src) >= 130000)
        strbuf_append(&sql, " WITH (publish_via_partition_root = true)");
    ok = source_ddl(src, "publication", sql.data);
    if (ok)
        log_info("[publication] created %s for %d tables", name, PQntuples(res));
    strbuf_free(&sql);
    free(q);
    PQclear(res);
    return ok;
}

bool slot_drop_publication(PGconn *src, const char *name)
{
    char *q = conn_quote_ident(src, name);
    char *sql = xasprintf("DROP PUBLICATION IF EXISTS %s", q);
    bool ok = source_ddl(src, "publication", sql);

    free(q);
    free(sql);
    return ok;
}

bool slot_info(PGconn *src, const char *name, SlotInfo *out)
{
    const char *p[1] = {name};
    /* wal_status is 13+; a slot of 12 keeps all the WAL it needs (there is
     * no max_slot_wal_keep_size to take it away): "reserved". */
    char *sql = xasprintf(
        "SELECT active, coalesce(active_pid, 0), coalesce(confirmed_flush_lsn, '0/0')::text,"
        " coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn), 0)"
        "::bigint, %s FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
        PQserverVersion(src) >= 130000 ? "coalesce(wal_status, '')" : "'reserved'");
    PGresult *res = conn_query(src, "slot", sql, 1, p, 5);

    free(sql);

    memset(out, 0, sizeof(*out));
    if (!res)
        return false;
    if (PQntuples(res) == 1) {
        out->exists = true;
        out->active = PQgetvalue(res, 0, 0)[0] == 't';
        out->active_pid = atoi(PQgetvalue(res, 0, 1));
        lsn_parse(PQgetvalue(res, 0, 2), &out->confirmed_flush);
        out->retained_bytes = atoll(PQgetvalue(res, 0, 3));
        snprintf(out->wal_status, sizeof(out->wal_status), "%s", PQgetvalue(res, 0, 4));
    }
    PQclear(res);
    return true;
}

bool slot_drop(PGconn *src, const char *name)
{
    const char *p[1] = {name};
    SlotInfo si;
    PGresult *res;

    if (!slot_info(src, name, &si))
        return false;
    if (!si.exists)
        return true;
    if (si.active) {
        log_msg(LOG_ERROR, NULL,
                "Stop the pgrelocate process that streams from it (or end that pid), then run "
                "cleanup again.",
                "replication slot \"%s\" is in use by process %d", name, si.active_pid);
        return false;
    }
    res = conn_query(src, "slot", "SELECT pg_catalog.pg_drop_replication_slot($1)", 1, p, -1);
    PQclear(res);
    if (res)
        log_info("[slot] dropped replication slot %s", name);
    return res != NULL;
}

bool slot_drop_origin(PGconn *tgt, const char *name)
{
    const char *p[1] = {name};
    PGresult *res = conn_query(tgt, "origin",
                               "SELECT pg_catalog.pg_replication_origin_drop($1) WHERE "
                               "pg_catalog.pg_replication_origin_oid($1) IS NOT NULL",
                               1, p, -1);

    PQclear(res);
    return res != NULL;
}

/* ---- schema change capture (ddl.h) ---- */

const char *slot_ddl_capture_refusal(PGconn *src)
{
    PGresult *res;
    bool may;

    if (PQserverVersion(src) < DDL_MIN_SOURCE_VERSION)
        return "the source runs PostgreSQL before 14, whose pgoutput carries no logical "
               "messages";
    res = conn_query(src, "ddl",
                     "SELECT r.rolsuper OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles g"
                     "  WHERE g.rolname = 'rds_superuser'"
                     "  AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER'))"
                     " FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
                     0, NULL, 1);
    may = res && PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!res)
        return "the source role's rights could not be read";
    return may ? NULL
               : "the source role may not create event triggers (that needs a superuser; on RDS "
                 "and Aurora rds_superuser)";
}

/* The quoted names of migration name's capture objects, and its --tables
 * (tables_spec, NULL for all) as the literal of a regular expression; free
 * with free_capture_names. */
static void capture_names(PGconn *src, const char *name, const char *tables_spec,
                          DdlCaptureNames *n)
{
    char *fn = xasprintf("%s_ddl", name), *end = xasprintf("%s_ddl_end", name);
    char *drop = xasprintf("%s_ddl_drop", name), *rewrite = xasprintf("%s_ddl_rewrite", name);

    n->fn = conn_qualify(src, "pgrelocate", fn);
    n->on_end = conn_quote_ident(src, end);
    n->on_drop = conn_quote_ident(src, drop);
    n->on_rewrite = conn_quote_ident(src, rewrite);
    n->pub_literal = conn_quote_literal(src, name);
    n->tables_re_literal = NULL;
    if (tables_spec) {
        char err[256];
        TableFilter *f = tablefilter_parse(tables_spec, err, sizeof(err));
        char *re = f ? tablefilter_regex(f) : NULL;

        /* (resolved before: it parses) */
        n->tables_re_literal = re ? conn_quote_literal(src, re) : NULL;
        free(re);
        tablefilter_destroy(f);
    }
    free(fn);
    free(end);
    free(drop);
    free(rewrite);
}

static void free_capture_names(DdlCaptureNames *n)
{
    free((char *)n->fn);
    free((char *)n->on_end);
    free((char *)n->on_drop);
    free((char *)n->on_rewrite);
    free((char *)n->pub_literal);
    free((char *)n->tables_re_literal);
}

/* Install (or remove) migration name's capture on conn. */
static bool run_capture_sql(PGconn *conn, const char *name, const char *tables_spec, bool install)
{
    DdlCaptureNames n;
    char *sql;
    bool ok;

    capture_names(conn, name, tables_spec, &n);
    sql = install ? ddl_capture_sql(&n) : ddl_uncapture_sql(&n);
    ok = source_ddl(conn, "ddl", sql);
    if (ok && install)
        log_info("[ddl] schema changes here are captured (event trigger %s on %s) and replayed "
                 "on the other side in stream order",
                 n.on_end, PQdb(conn));
    free(sql);
    free_capture_names(&n);
    return ok;
}

bool slot_install_ddl_capture(PGconn *src, const char *name, const char *tables_spec)
{
    return run_capture_sql(src, name, tables_spec, true);
}

bool slot_drop_ddl_capture(PGconn *src, const char *name)
{
    bool ok = run_capture_sql(src, name, NULL, false);

    /* the schema goes when empty; it may hold another migration's capture */
    if (ok)
        PQclear(conn_exec(src, "slot",
                          "DO $$BEGIN DROP SCHEMA IF EXISTS pgrelocate; EXCEPTION WHEN "
                          "dependent_objects_still_exist THEN NULL; END$$"));
    return ok;
}
