/*
 * catalog.c: source catalog queries.
 */
#include "catalog.h"

#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <stdlib.h>
#include <string.h>

#define USER_TABLES_WHERE                                                                          \
    "c.relkind = 'r' AND c.relpersistence <> 't'"                                                  \
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate')"                     \
    " AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"                                            \
    " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"            \
    "                 AND d.objid = c.oid AND d.deptype = 'e')"                                    \
    " AND NOT (c.oid = ANY ($1::oid[]))"

/* Binary COPY carries type OIDs inside arrays and composites, and those
 * differ between servers for user-defined types; such columns (and types
 * without binary I/O) make the table use text COPY. */
static const char *const tables_sql =
    "SELECT n.nspname, c.relname,"
    "  pg_catalog.pg_table_size(c.oid),"
    "  pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int,"
    "  coalesce((SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', '"
    "                                         ORDER BY a.attnum)"
    "            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0"
    "              AND NOT a.attisdropped AND a.attgenerated = ''), ''),"
    "  NOT EXISTS ("
    "    SELECT 1 FROM pg_attribute a"
    "    JOIN pg_type t ON t.oid = a.atttypid"
    "    JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END"
    "    LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typlen = -1"
    "    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
    "      AND a.attgenerated = ''"
    "      AND (b.typtype IN ('c', 'd') OR b.typreceive::oid = 0 OR b.typsend::oid = 0"
    "           OR (e.oid IS NOT NULL AND (e.oid >= 16384 OR e.typtype IN ('c', 'd')))"
    "           OR (b.typtype IN ('r', 'm') AND b.oid >= 16384))),"
    "  CASE WHEN c.reltoastrelid = 0 THEN 0 ELSE pg_catalog.pg_table_size(c.reltoastrelid) END"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE " USER_TABLES_WHERE " ORDER BY 3 DESC, 1, 2";

static bool read_tables(PGconn *src, const char *excluded, Catalog *cat)
{
    PGresult *res = conn_query(src, "catalog", tables_sql, 1, &excluded, 7);

    if (!res)
        return false;
    cat->ntables = PQntuples(res);
    cat->tables = xcalloc((size_t)cat->ntables + 1, sizeof(StateTable));
    for (int i = 0; i < cat->ntables; i++) {
        StateTable *t = &cat->tables[i];

        t->table_no = i + 1;
        t->schema_name = xstrdup(PQgetvalue(res, i, 0));
        t->table_name = xstrdup(PQgetvalue(res, i, 1));
        t->bytes = atoll(PQgetvalue(res, i, 2));
        t->heap_blocks = atoll(PQgetvalue(res, i, 3));
        t->columns = xstrdup(PQgetvalue(res, i, 4));
        t->binary = PQgetvalue(res, i, 5)[0] == 't';
        t->toast_bytes = atoll(PQgetvalue(res, i, 6));
        cat->total_bytes += t->bytes;
    }
    PQclear(res);
    return true;
}

static bool read_sequences(PGconn *src, const char *excluded, Catalog *cat)
{
    PGresult *res = conn_query(
        src, "catalog",
        "SELECT n.nspname, c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'S' AND c.relpersistence <> 't'"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate')"
        " AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
        "                 AND d.objid = c.oid AND d.deptype = 'e')"
        " AND NOT (c.oid = ANY ($1::oid[]))"
        " ORDER BY 1, 2",
        1, &excluded, 2);

    if (!res)
        return false;
    cat->nsequences = PQntuples(res);
    cat->sequences = xcalloc((size_t)cat->nsequences + 1, sizeof(CatSequence));
    for (int i = 0; i < cat->nsequences; i++) {
        cat->sequences[i].schema_name = xstrdup(PQgetvalue(res, i, 0));
        cat->sequences[i].name = xstrdup(PQgetvalue(res, i, 1));
    }
    PQclear(res);
    return true;
}

bool catalog_read(PGconn *src, Catalog *cat)
{
    return catalog_read_subset(src, NULL, cat);
}

bool catalog_read_subset(PGconn *src, const char *excluded_oids, Catalog *cat)
{
    const char *excluded = excluded_oids ? excluded_oids : "{}";
    PGresult *res;

    memset(cat, 0, sizeof(*cat));
    if (!read_tables(src, excluded, cat) || !read_sequences(src, excluded, cat))
        return false;
    res = conn_query(src, "catalog",
                     "SELECT (SELECT count(*) FROM pg_largeobject_metadata),"
                     " pg_catalog.current_setting('block_size')::int",
                     0, NULL, 2);
    if (!res)
        return false;
    cat->large_objects = atoll(PQgetvalue(res, 0, 0));
    cat->block_size = atoi(PQgetvalue(res, 0, 1));
    PQclear(res);
    return true;
}

void catalog_free(Catalog *cat)
{
    for (int i = 0; i < cat->ntables; i++) {
        free(cat->tables[i].schema_name);
        free(cat->tables[i].table_name);
        free(cat->tables[i].columns);
    }
    for (int i = 0; i < cat->nsequences; i++) {
        free(cat->sequences[i].schema_name);
        free(cat->sequences[i].name);
    }
    free(cat->tables);
    free(cat->sequences);
    memset(cat, 0, sizeof(*cat));
}

bool catalog_server_info(PGconn *conn, ServerInfo *out)
{
    PGresult *res = conn_query(conn, "catalog",
                               "SELECT pg_catalog.current_setting('server_encoding'),"
                               " pg_catalog.current_database(),"
                               " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
                               0, NULL, 3);

    memset(out, 0, sizeof(*out));
    if (!res)
        return false;
    out->version_num = PQserverVersion(conn);
    out->encoding = xstrdup(PQgetvalue(res, 0, 0));
    out->dbname = xstrdup(PQgetvalue(res, 0, 1));
    out->superuser = PQgetvalue(res, 0, 2)[0] == 't';
    PQclear(res);
    return true;
}

void catalog_free_server_info(ServerInfo *si)
{
    free(si->encoding);
    free(si->dbname);
    memset(si, 0, sizeof(*si));
}

bool catalog_unreadable_tables(PGconn *src, const char *excluded_oids, char **names)
{
    const char *excluded = excluded_oids ? excluded_oids : "{}";
    PGresult *res = conn_query(
        src, "catalog",
        "SELECT count(*), pg_catalog.string_agg(x, ', ') FILTER (WHERE rn <= 5) FROM ("
        " SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)"
        "   AS x, row_number() OVER (ORDER BY n.nspname, c.relname) AS rn"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE " USER_TABLES_WHERE " AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT')) s",
        1, &excluded, 2);

    if (!res)
        return false;
    *names = strcmp(PQgetvalue(res, 0, 0), "0") == 0
                 ? NULL
                 : xasprintf("%s (%s table%s)", PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0),
                             strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? "" : "s");
    PQclear(res);
    return true;
}
