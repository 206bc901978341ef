/*
 * schemafix.c: after pg_restore, the names of foreign keys cloned onto
 * partitions as the source has them (see schemafix.h).  Runs on the
 * target as one transaction per level of the partition tree; renames only
 * what differs, so a resumed run finds nothing left to do.
 */
#include "schemafix.h"

#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A partition tree deeper than this is not renamed further. */
#define FIX_MAX_LEVELS 16

/* Every foreign key cloned from a parent's: (key, its name, its table's
 * schema and name), key = "table referenced-table parent-table parent-name",
 * sorted bytewise on both servers. */
static const char *const clones_sql =
    "SELECT pg_catalog.format('%I.%I %s %I.%I %I', n.nspname, c.relname,"
    "  coalesce(pg_catalog.format('%I.%I', fn.nspname, f.relname), '-'), pn.nspname, pc.relname,"
    "  p.conname) COLLATE \"C\" AS key, k.conname, n.nspname, c.relname"
    " FROM pg_catalog.pg_constraint k"
    " JOIN pg_catalog.pg_class c ON c.oid = k.conrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " JOIN pg_catalog.pg_constraint p ON p.oid = k.conparentid"
    " JOIN pg_catalog.pg_class pc ON pc.oid = p.conrelid"
    " JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace"
    " LEFT JOIN pg_catalog.pg_class f ON f.oid = k.confrelid"
    " LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace"
    " WHERE k.contype = 'f' AND k.conparentid <> 0 AND k.conrelid <> 0"
    " ORDER BY 1, k.conname::text COLLATE \"C\"";

/* Is row i's key shared with its neighbour (ambiguous: left alone)? */
static bool duplicate_key(PGresult *res, int i)
{
    const char *k = PQgetvalue(res, i, 0);

    return (i > 0 && strcmp(k, PQgetvalue(res, i - 1, 0)) == 0) ||
           (i + 1 < PQntuples(res) && strcmp(k, PQgetvalue(res, i + 1, 0)) == 0);
}

/* The renames one level needs, as two passes of ALTER TABLE (to
 * temporary names, then to the source's); their count in *n. */
static void plan_renames(PGconn *tgt, PGresult *s, PGresult *t, StrBuf *first, StrBuf *second,
                         int *n)
{
    int i = 0, j = 0;

    *n = 0;
    while (i < PQntuples(s) && j < PQntuples(t)) {
        int cmp = strcmp(PQgetvalue(s, i, 0), PQgetvalue(t, j, 0));

        if (cmp < 0) {
            i++;
            continue;
        }
        if (cmp > 0) {
            j++;
            continue;
        }
        if (!duplicate_key(s, i) && !duplicate_key(t, j) &&
            strcmp(PQgetvalue(s, i, 1), PQgetvalue(t, j, 1)) != 0) {
            char *rel = conn_qualify(tgt, PQgetvalue(t, j, 2), PQgetvalue(t, j, 3));
            char *from = conn_quote_ident(tgt, PQgetvalue(t, j, 1));
            char *to = conn_quote_ident(tgt, PQgetvalue(s, i, 1));

            strbuf_appendf(first, "ALTER TABLE %s RENAME CONSTRAINT %s TO pgrelocate_rename_%d;\n",
                           rel, from, *n);
            strbuf_appendf(second, "ALTER TABLE %s RENAME CONSTRAINT pgrelocate_rename_%d TO %s;\n",
                           rel, *n, to);
            log_debug("[schema] foreign key %s on %s: renamed to %s as on the source", from, rel,
                      to);
            (*n)++;
            free(rel);
            free(from);
            free(to);
        }
        i++;
        j++;
    }
}

bool schemafix_constraint_names(PGconn *src, PGconn *tgt, int *renamed)
{
    *renamed = 0;
    if (PQserverVersion(src) < 110000 || PQserverVersion(tgt) < 110000)
        return true; /* no foreign keys on partitioned tables */
    for (int level = 0; level < FIX_MAX_LEVELS; level++) {
        PGresult *s = conn_query(src, "schema", clones_sql, 0, NULL, 4);
        PGresult *t = s ? conn_query(tgt, "schema", clones_sql, 0, NULL, 4) : NULL;
        StrBuf sql, second;
        int n = 0;
        bool ok;

        if (!t) {
            PQclear(s);
            return false;
        }
        strbuf_init(&sql);
        strbuf_init(&second);
        strbuf_append(&sql, "BEGIN;\n");
        plan_renames(tgt, s, t, &sql, &second, &n);
        strbuf_appendf(&sql, "%sCOMMIT", second.data);
        ok = n == 0 || conn_script(tgt, "schema", sql.data);
        if (!ok)
            PQclear(conn_exec(tgt, "schema", "ROLLBACK"));
        strbuf_free(&sql);
        strbuf_free(&second);
        PQclear(s);
        PQclear(t);
        *renamed += n;
        if (!ok || n == 0)
            return ok;
    }
    return true;
}

/* ---- the database's own settings, ACL and comment ---- */

/* Settings of this database: (role or NULL, name, value), in their order. */
static const char *const db_settings_sql =
    "SELECT r.rolname, pg_catalog.split_part(c.setting, '=', 1),"
    "  pg_catalog.substr(c.setting, pg_catalog.strpos(c.setting, '=') + 1)"
    " FROM pg_catalog.pg_db_role_setting s"
    " JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase"
    " LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole"
    " CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) WITH ORDINALITY AS c(setting, nr)"
    " WHERE d.datname = pg_catalog.current_database() AND (s.setrole = 0 OR r.oid IS NOT NULL)"
    " ORDER BY s.setrole <> 0, r.rolname, c.nr";

/* Privileges on this database other than its owner's: (grantee, NULL for
 * PUBLIC; privilege; grantable) in the ACL's order (granted in that order,
 * the target's ACL lists them alike), with the comment in column 3 of row
 * 0 (a row of NULLs when there are no privileges). */
static const char *const db_acl_sql =
    "SELECT g.rolname, a.privilege_type, a.is_grantable,"
    "  pg_catalog.shobj_description(d.oid, 'pg_database')"
    " FROM pg_catalog.pg_database d"
    " LEFT JOIN LATERAL pg_catalog.aclexplode(coalesce(d.datacl,"
    "   pg_catalog.acldefault('d', d.datdba))) WITH ORDINALITY a ON a.grantee <> d.datdba"
    " LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee"
    " WHERE d.datname = pg_catalog.current_database() AND (a.grantee = 0 OR g.oid IS NOT NULL"
    "   OR a.grantee IS NULL)"
    " ORDER BY a.ordinality";

/* Settings whose value is a list of quoted elements (GUC_LIST_QUOTE, as
 * pg_dump knows them): set in the session first, then stored FROM
 * CURRENT, so the target parses the list as the source stored it. */
static bool list_setting(const char *name)
{
    static const char *const lists[] = {"search_path", "temp_tablespaces",
                                        "session_preload_libraries", "local_preload_libraries"};

    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        if (strcmp(name, lists[i]) == 0)
            return true;
    return false;
}

static bool role_exists(PGconn *tgt, const char *role, bool *exists)
{
    const char *p[1] = {role};
    PGresult *res =
        conn_query(tgt, "schema", "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", 1, p, 1);

    if (!res)
        return false;
    *exists = PQntuples(res) == 1;
    PQclear(res);
    return true;
}

/* One setting, in its own transaction: a refusal is a warning. */
static void apply_setting(PGconn *tgt, const char *dbq, const char *role, const char *name,
                          const char *value)
{
    char *nq = conn_quote_ident(tgt, name), *rq = role ? conn_quote_ident(tgt, role) : NULL;
    char *target =
        role ? xasprintf("ROLE %s IN DATABASE %s", rq, dbq) : xasprintf("DATABASE %s", dbq);
    char *sql, *lit = conn_quote_literal(tgt, value);
    const char *p[2] = {name, value};
    PGresult *res = NULL;

    if (list_setting(name)) {
        sql = xasprintf("ALTER %s SET %s FROM CURRENT", target, nq);
        PQclear(conn_exec(tgt, "schema", "BEGIN"));
        res = conn_exec_params(tgt, "schema", "SELECT pg_catalog.set_config($1, $2, true)", 2, NULL,
                               p, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            PQclear(res);
            res = conn_exec(tgt, "schema", sql);
        }
    } else {
        sql = xasprintf("ALTER %s SET %s TO %s", target, nq, lit);
        PQclear(conn_exec(tgt, "schema", "BEGIN"));
        res = conn_exec(tgt, "schema", sql);
    }
    if (PQresultStatus(res) == PGRES_COMMAND_OK)
        PQclear(conn_exec(tgt, "schema", "COMMIT"));
    else {
        log_warning("[schema] the target refused the setting %s = %s of %s: %s", name, value,
                    role ? role : "the database", PQresultErrorMessage(res));
        PQclear(conn_exec(tgt, "schema", "ROLLBACK"));
    }
    PQclear(res);
    free(sql);
    free(lit);
    free(target);
    free(nq);
    free(rq);
}

static bool copy_settings(PGconn *src, PGconn *tgt, const char *dbq)
{
    PGresult *res = conn_query(src, "schema", db_settings_sql, 0, NULL, 3);
    StrBuf missing;
    bool ok = res != NULL;

    strbuf_init(&missing);
    for (int i = 0; ok && i < PQntuples(res); i++) {
        const char *role = PQgetisnull(res, i, 0) ? NULL : PQgetvalue(res, i, 0);
        bool exists = true;

        ok = !role || role_exists(tgt, role, &exists);
        if (ok && exists)
            apply_setting(tgt, dbq, role, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
        else if (ok)
            strbuf_appendf(&missing, "%s%s (%s)", missing.len ? ", " : "", role,
                           PQgetvalue(res, i, 1));
    }
    if (ok && missing.len)
        log_msg(LOG_WARNING, NULL,
                "Create those roles on the target and set them with ALTER ROLE ... IN DATABASE "
                "... SET.",
                "[schema] settings of roles the target does not have were not carried: %s",
                missing.data);
    strbuf_free(&missing);
    PQclear(res);
    return ok;
}

static bool same_privilege(PGresult *a, int i, PGresult *b, int j)
{
    return PQgetisnull(a, i, 0) == PQgetisnull(b, j, 0) &&
           strcmp(PQgetvalue(a, i, 0), PQgetvalue(b, j, 0)) == 0 &&
           strcmp(PQgetvalue(a, i, 1), PQgetvalue(b, j, 1)) == 0 &&
           strcmp(PQgetvalue(a, i, 2), PQgetvalue(b, j, 2)) == 0;
}

static bool listed(PGresult *in, PGresult *row_of, int i)
{
    for (int j = 0; j < PQntuples(in); j++)
        if (same_privilege(row_of, i, in, j))
            return true;
    return false;
}

/* "GRANT CONNECT ON DATABASE d TO r WITH GRANT OPTION;" and the like.
 * NULL for a row of NULLs (no privileges), a grantee the target lacks
 * (named in *missing when given), or a privilege that is not one of a
 * database's (the word goes into SQL). */
static char *privilege_sql(PGconn *tgt, PGresult *res, int i, const char *dbq, bool grant,
                           StrBuf *missing)
{
    const char *priv = PQgetvalue(res, i, 1);
    char *who, *out;
    bool exists = true;

    if (PQgetisnull(res, i, 1) || (strcmp(priv, "CONNECT") != 0 && strcmp(priv, "CREATE") != 0 &&
                                   strcmp(priv, "TEMPORARY") != 0))
        return NULL;
    if (!PQgetisnull(res, i, 0) && (!role_exists(tgt, PQgetvalue(res, i, 0), &exists) || !exists)) {
        if (missing && !exists)
            strbuf_appendf(missing, "%s%s (%s)", missing->len ? ", " : "", PQgetvalue(res, i, 0),
                           priv);
        return NULL;
    }
    who = PQgetisnull(res, i, 0) ? xstrdup("PUBLIC") : conn_quote_ident(tgt, PQgetvalue(res, i, 0));
    out = grant ? xasprintf("GRANT %s ON DATABASE %s TO %s%s;", priv, dbq, who,
                            PQgetvalue(res, i, 2)[0] == 't' ? " WITH GRANT OPTION" : "")
                : xasprintf("REVOKE %s ON DATABASE %s FROM %s CASCADE;", priv, dbq, who);
    free(who);
    return out;
}

static bool copy_acl_and_comment(PGconn *src, PGconn *tgt, const char *dbq, bool no_acl)
{
    PGresult *s = conn_query(src, "schema", db_acl_sql, 0, NULL, 4);
    PGresult *t = s ? conn_query(tgt, "schema", db_acl_sql, 0, NULL, 4) : NULL;
    StrBuf sql, missing;
    bool ok = t != NULL;

    strbuf_init(&sql);
    strbuf_init(&missing);
    for (int j = 0; ok && !no_acl && j < PQntuples(t); j++) {
        char *q = listed(s, t, j) ? NULL : privilege_sql(tgt, t, j, dbq, false, NULL);

        strbuf_append(&sql, q ? q : "");
        free(q);
    }
    for (int i = 0; ok && !no_acl && i < PQntuples(s); i++) {
        char *q = listed(t, s, i) ? NULL : privilege_sql(tgt, s, i, dbq, true, &missing);

        strbuf_append(&sql, q ? q : "");
        free(q);
    }
    if (missing.len)
        log_msg(LOG_WARNING, NULL,
                "Create those roles on the target and grant them with GRANT ... ON DATABASE.",
                "[schema] the database's privileges of roles the target does not have were not "
                "carried: %s",
                missing.data);
    strbuf_free(&missing);
    if (ok && (PQgetisnull(s, 0, 3) != PQgetisnull(t, 0, 3) ||
               strcmp(PQgetvalue(s, 0, 3), PQgetvalue(t, 0, 3)) != 0)) {
        char *lit =
            PQgetisnull(s, 0, 3) ? xstrdup("NULL") : conn_quote_literal(tgt, PQgetvalue(s, 0, 3));

        strbuf_appendf(&sql, "COMMENT ON DATABASE %s IS %s;", dbq, lit);
        free(lit);
    }
    if (ok && sql.len) {
        /* one transaction; a role that does not own the target database may
         * not grant on it: the copy goes on, and verify shows the difference */
        char *all = xasprintf("BEGIN; %s COMMIT", sql.data);
        PGresult *res = conn_exec(tgt, "schema", all);

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            log_msg(LOG_WARNING, NULL,
                    "Connect to the target as the owner of its database or a superuser, or set "
                    "them by hand.",
                    "[schema] the database's privileges and comment were not carried: %s",
                    PQresultErrorMessage(res));
            PQclear(conn_exec(tgt, "schema", "ROLLBACK"));
        }
        PQclear(res);
        free(all);
    }
    strbuf_free(&sql);
    PQclear(s);
    PQclear(t);
    return ok;
}

bool schemafix_database(PGconn *src, PGconn *tgt, bool no_acl)
{
    PGresult *res = conn_query(tgt, "schema", "SELECT pg_catalog.current_database()", 0, NULL, 1);
    char *dbq;
    bool ok;

    if (!res)
        return false;
    dbq = conn_quote_ident(tgt, PQgetvalue(res, 0, 0));
    PQclear(res);
    ok = copy_settings(src, tgt, dbq) && copy_acl_and_comment(src, tgt, dbq, no_acl);
    free(dbq);
    return ok;
}
