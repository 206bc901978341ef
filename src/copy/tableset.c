/*
 * tableset.c: resolving --tables on the source.
 */
#include "tableset.h"

#include "conn.h"
#include "log.h"
#include "names.h"
#include "strbuf.h"
#include "tablefilter.h"

#include <stdlib.h>
#include <string.h>

#define USER_REL_WHERE                                                                             \
    " c.relpersistence <> 't'"                                                                     \
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate')"                     \
    " AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"                                            \
    " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"            \
    "                 AND d.objid = c.oid AND d.deptype = 'e')"

/* The tables a pattern can name: ordinary tables and partitioned roots. */
static const char *const candidates_sql =
    "SELECT c.oid, n.nspname, c.relname FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND" USER_REL_WHERE " ORDER BY 2, 3";

/* $1: the chosen roots.  chosen = roots and their partitions; out = every
 * other user table, then (recursively) sequences owned by something left
 * out that no chosen table's default uses, and views reading something
 * left out. */
#define CHOSEN_CTE                                                                                 \
    "WITH RECURSIVE chosen(oid) AS ("                                                              \
    "  SELECT unnest($1::oid[])"                                                                   \
    "  UNION ALL"                                                                                  \
    "  SELECT i.inhrelid FROM pg_inherits i JOIN chosen ch ON i.inhparent = ch.oid"                \
    "  JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relispartition), "

static const char *const excluded_sql = CHOSEN_CTE
    "out(oid) AS ("
    "  SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE c.relkind IN ('r', 'p') AND" USER_REL_WHERE
    "    AND c.oid NOT IN (SELECT oid FROM chosen)"
    "  UNION"
    "  SELECT dep.oid FROM out o, LATERAL ("
    "    SELECT d.objid AS oid FROM pg_depend d JOIN pg_class s ON s.oid = d.objid"
    "    WHERE d.refobjid = o.oid AND d.classid = 'pg_class'::regclass"
    "      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')"
    "      AND s.relkind = 'S'"
    "      AND NOT EXISTS (SELECT 1 FROM pg_depend u"
    "        JOIN pg_attrdef ad ON u.classid = 'pg_attrdef'::regclass AND u.objid = ad.oid"
    "        WHERE u.refobjid = s.oid AND u.refclassid = 'pg_class'::regclass"
    "          AND ad.adrelid IN (SELECT oid FROM chosen))"
    "    UNION ALL"
    "    SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
    "    WHERE d.refobjid = o.oid AND d.classid = 'pg_rewrite'::regclass"
    "      AND d.refclassid = 'pg_class'::regclass AND r.ev_class <> o.oid) dep)"
    " SELECT c.oid, n.nspname, c.relname, c.relkind FROM out"
    " JOIN pg_class c ON c.oid = out.oid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " ORDER BY 2, 3";

/* $1: chosen roots, $2: relations left out. */
static const char *const dangling_fk_sql = CHOSEN_CTE
    "fk AS (SELECT DISTINCT ON (k.conname, k.conrelid) k.conname, k.conrelid, k.confrelid"
    "  FROM pg_constraint k WHERE k.contype = 'f' AND k.conrelid IN (SELECT oid FROM chosen)"
    "    AND k.confrelid = ANY($2::oid[]))"
    " SELECT count(*) OVER (), pg_catalog.format('%I on %I.%I references %I.%I', fk.conname,"
    "   an.nspname, a.relname, bn.nspname, b.relname)"
    " FROM fk JOIN pg_class a ON a.oid = fk.conrelid"
    " JOIN pg_namespace an ON an.oid = a.relnamespace"
    " JOIN pg_class b ON b.oid = fk.confrelid JOIN pg_namespace bn ON bn.oid = b.relnamespace"
    " ORDER BY 2 LIMIT 5";

/* $1: chosen roots.  Chosen tables that inherit (INHERITS, not PARTITION
 * OF: a chosen root brings its partitions) from a table left out: pg_dump
 * would write CREATE TABLE child (...) INHERITS (parent) without the
 * parent, and the pre-data restore would fail. */
static const char *const orphan_child_sql = CHOSEN_CTE
    "orphan AS (SELECT i.inhrelid, i.inhparent FROM pg_inherits i"
    "  WHERE i.inhrelid IN (SELECT oid FROM chosen) AND i.inhparent NOT IN (SELECT oid FROM "
    "chosen))"
    " SELECT count(*) OVER (), pg_catalog.format('%I.%I inherits from %I.%I',"
    "   an.nspname, a.relname, bn.nspname, b.relname)"
    " FROM orphan o JOIN pg_class a ON a.oid = o.inhrelid"
    " JOIN pg_namespace an ON an.oid = a.relnamespace"
    " JOIN pg_class b ON b.oid = o.inhparent JOIN pg_namespace bn ON bn.oid = b.relnamespace"
    " ORDER BY 2 LIMIT 5";

/* Partitions (which a pattern cannot choose alone) with their root, for
 * the error about a pattern that matched no table. */
static const char *const partitions_sql =
    "SELECT n.nspname, c.relname, pg_catalog.format('%I.%I is a partition of %I.%I',"
    "  n.nspname, c.relname, rn.nspname, r.relname)"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " JOIN pg_class r ON r.oid = pg_catalog.pg_partition_root(c.oid)"
    " JOIN pg_namespace rn ON rn.oid = r.relnamespace"
    " WHERE c.relispartition AND c.relkind IN ('r', 'p') AND" USER_REL_WHERE " ORDER BY 1, 2";

/* A pg_dump pattern that names exactly one relation: both parts in double
 * quotes (no wildcards, case kept), inner quotes doubled. */
static void append_dump_part(StrBuf *sb, const char *name)
{
    strbuf_append(sb, "\"");
    for (const char *p = name; *p; p++)
        strbuf_append(sb, *p == '"' ? "\"\"" : (char[2]){*p, '\0'});
    strbuf_append(sb, "\"");
}

/* The partitions the unmatched patterns name ("a is a partition of b; ..."),
 * or NULL when they name none (or on an error).  Caller frees. */
static char *partitions_named(PGconn *src, const char *unmatched)
{
    char err[256];
    TableFilter *f = tablefilter_parse(unmatched, err, sizeof(err));
    PGresult *res = f && PQserverVersion(src) >= 120000
                        ? conn_query(src, "tables", partitions_sql, 0, NULL, 3)
                        : NULL;
    StrBuf list;
    int n = 0;

    strbuf_init(&list);
    for (int i = 0; res && i < PQntuples(res) && n < 5; i++)
        if (tablefilter_match(f, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)))
            strbuf_appendf(&list, "%s%s", n++ ? "; " : "", PQgetvalue(res, i, 2));
    PQclear(res);
    tablefilter_destroy(f);
    if (n)
        return strbuf_detach(&list);
    strbuf_free(&list);
    return NULL;
}

/* Match the candidates; the chosen oids as an oid[] literal.  False after
 * logging a pattern that matched nothing. */
static bool choose(PGconn *src, TableFilter *f, const char *spec, StrBuf *roots, int *nchosen)
{
    PGresult *res = conn_query(src, "tables", candidates_sql, 0, NULL, 3);
    char *unmatched, *partitions;

    if (!res)
        return false;
    strbuf_append(roots, "{");
    for (int i = 0; i < PQntuples(res); i++)
        if (tablefilter_match(f, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2)))
            strbuf_appendf(roots, "%s%s", (*nchosen)++ ? "," : "", PQgetvalue(res, i, 0));
    strbuf_append(roots, "}");
    PQclear(res);
    if ((unmatched = tablefilter_unmatched(f)) == NULL)
        return true;
    if ((partitions = partitions_named(src, unmatched)) != NULL)
        log_msg(LOG_ERROR, partitions,
                "Choose the partitioned table instead: its partitions come with it (a partition "
                "cannot be moved without its parent).",
                "--tables pattern%s %s matched only partitions on the source (in \"%s\")",
                strchr(unmatched, ',') ? "s" : "", unmatched, spec);
    else
        log_msg(LOG_ERROR,
                "Patterns are matched against the names of ordinary and partitioned tables "
                "(not partitions, views or sequences); unquoted letters are folded to lower case.",
                "Check the spelling, quote mixed-case names (--tables '\"Orders\"'), or list the "
                "tables with psql's \\dt.",
                "--tables pattern%s %s matched no table on the source (in \"%s\")",
                strchr(unmatched, ',') ? "s" : "", unmatched, spec);
    free(partitions);
    free(unmatched);
    return false;
}

static bool read_excluded(PGconn *src, const char *roots, TableSet *ts)
{
    const char *p[1] = {roots};
    PGresult *res = conn_query(src, "tables", excluded_sql, 1, p, 4);
    StrBuf oids, views;

    if (!res)
        return false;
    strbuf_init(&oids);
    strbuf_init(&views);
    strbuf_append(&oids, "{");
    ts->dump_excludes = xcalloc((size_t)PQntuples(res) + 1, sizeof(char *));
    for (int i = 0; i < PQntuples(res); i++) {
        StrBuf pat;
        char kind = PQgetvalue(res, i, 3)[0];

        strbuf_appendf(&oids, "%s%s", i ? "," : "", PQgetvalue(res, i, 0));
        strbuf_init(&pat);
        append_dump_part(&pat, PQgetvalue(res, i, 1));
        strbuf_append(&pat, ".");
        append_dump_part(&pat, PQgetvalue(res, i, 2));
        ts->dump_excludes[ts->ndump_excludes++] = strbuf_detach(&pat);
        if ((kind == 'v' || kind == 'm') && views.len < 1000) {
            char *name = names_display(PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));

            strbuf_appendf(&views, "%s%s", views.len ? ", " : "", name);
            free(name);
        }
    }
    strbuf_append(&oids, "}");
    ts->excluded_oids = strbuf_detach(&oids);
    if (views.len)
        log_notice("[tables] left out because they read tables left out: %s", views.data);
    strbuf_free(&views);
    PQclear(res);
    return true;
}

/* res lists reasons to refuse the selection: (count, description) rows.
 * Logs them as one error with fix, headed "<count> <one|many>"; true when
 * there are none.  Clears res. */
static bool none_listed(PGresult *res, const char *fix, const char *one, const char *many)
{
    StrBuf list;
    bool ok = PQntuples(res) == 0;

    strbuf_init(&list);
    for (int i = 0; i < PQntuples(res); i++)
        strbuf_appendf(&list, "%s%s", i ? "; " : "", PQgetvalue(res, i, 1));
    if (!ok)
        log_msg(LOG_ERROR, list.data, fix, "%s %s", PQgetvalue(res, 0, 0),
                strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? one : many);
    strbuf_free(&list);
    PQclear(res);
    return ok;
}

static bool check_foreign_keys(PGconn *src, const char *roots, const TableSet *ts)
{
    const char *p[2] = {roots, ts->excluded_oids};
    PGresult *res = conn_query(src, "tables", dangling_fk_sql, 2, p, 2);

    return res && none_listed(res,
                              "Add the referenced tables to --tables: the target cannot create a "
                              "foreign key to a table it does not have.",
                              "foreign key from chosen tables to tables --tables leaves out",
                              "foreign keys from chosen tables to tables --tables leaves out");
}

/* Refuse chosen inheritance children whose parent is left out. */
static bool check_inheritance(PGconn *src, const char *roots)
{
    const char *p[1] = {roots};
    PGresult *res = conn_query(src, "tables", orphan_child_sql, 1, p, 2);

    return res && none_listed(res,
                              "Add the parent tables to --tables, or leave the child tables out: "
                              "the target cannot create a table that inherits from one it does "
                              "not have.",
                              "chosen table inherits from tables --tables leaves out",
                              "chosen tables inherit from tables --tables leaves out");
}

bool tableset_resolve(PGconn *src, const char *spec, TableSet *ts)
{
    char err[512];
    TableFilter *f = tablefilter_parse(spec, err, sizeof(err));
    StrBuf roots;
    bool ok;

    memset(ts, 0, sizeof(*ts));
    if (!f) {
        log_msg(LOG_ERROR, NULL,
                "Write SCHEMA.TABLE or TABLE, with * and ? as wildcards and \"double quotes\" "
                "around names to take literally; separate patterns with commas.",
                "%s", err);
        return false;
    }
    strbuf_init(&roots);
    ok = choose(src, f, spec, &roots, &ts->nchosen) && check_inheritance(src, roots.data) &&
         read_excluded(src, roots.data, ts) && check_foreign_keys(src, roots.data, ts);
    if (ok)
        log_info("[tables] %d table%s chosen by --tables, %d relation%s left out", ts->nchosen,
                 ts->nchosen == 1 ? "" : "s", ts->ndump_excludes,
                 ts->ndump_excludes == 1 ? "" : "s");
    strbuf_free(&roots);
    tablefilter_destroy(f);
    if (!ok)
        tableset_free(ts);
    return ok;
}

void tableset_free(TableSet *ts)
{
    for (int i = 0; i < ts->ndump_excludes; i++)
        free(ts->dump_excludes[i]);
    free(ts->dump_excludes);
    free(ts->excluded_oids);
    memset(ts, 0, sizeof(*ts));
}
