/*
 * applysql.c: the SQL text of apply's statements, built from a table's
 * quoted names and a shape (which columns are set, which find the row).
 * Owns no connection and no values: values always go as parameters.
 */
#include "applysql.h"

#include <stdlib.h>

/* " WHERE k = $n AND ...", or for FULL the one row (by tableoid and ctid)
 * whose columns are not distinct from $n, ... (any row of a table without
 * columns) */
static void append_where(StrBuf *sql, const ApplySqlTable *t, const ApplySqlShape *sh, int *param)
{
    bool first = true;

    if (sh->mode == APPLYSQL_WHERE_FULL)
        strbuf_appendf(sql, " WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM %s%s WHERE ",
                       t->partitioned ? "" : "ONLY ", t->qualified);
    else
        strbuf_append(sql, " WHERE ");
    for (int i = 0; i < t->ncols; i++) {
        if (sh->where[i] != '1')
            continue;
        if (!first)
            strbuf_append(sql, " AND ");
        first = false;
        if (sh->mode == APPLYSQL_WHERE_KEY)
            strbuf_appendf(sql, "%s = $%d", t->quoted[i], ++*param);
        else if (t->text_cmp[i]) /* the value as the column's type: it may come in binary */
            strbuf_appendf(sql, "%s::text IS NOT DISTINCT FROM $%d::%s::text", t->quoted[i],
                           ++*param, t->type_name[i]);
        else
            strbuf_appendf(sql, "%s IS NOT DISTINCT FROM $%d", t->quoted[i], ++*param);
    }
    if (sh->mode == APPLYSQL_WHERE_FULL)
        strbuf_append(sql, first ? "true LIMIT 1)" : " LIMIT 1)"); /* no column: any row */
}

static void build_insert(StrBuf *sql, const ApplySqlTable *t, const ApplySqlShape *sh, int *param)
{
    bool first = true;

    strbuf_appendf(sql, "INSERT INTO %s (", t->qualified);
    for (int i = 0; i < t->ncols; i++)
        if (sh->set[i] == '1') {
            strbuf_appendf(sql, "%s%s", first ? "" : ", ", t->quoted[i]);
            first = false;
        }
    if (first) { /* no column to write: every one unchanged or generated */
        strbuf_reset(sql);
        strbuf_appendf(sql, "INSERT INTO %s DEFAULT VALUES", t->qualified);
        return;
    }
    /* the source decided these values, identity columns included */
    strbuf_append(sql, t->has_always ? ") OVERRIDING SYSTEM VALUE VALUES " : ") VALUES ");
    for (int row = 0; row < (sh->rows ? sh->rows : 1); row++) {
        bool f = true;

        strbuf_append(sql, row ? ", (" : "(");
        for (int i = 0; i < t->ncols; i++)
            if (sh->set[i] == '1') {
                strbuf_appendf(sql, "%s$%d", f ? "" : ", ", ++*param);
                f = false;
            }
        strbuf_append(sql, ")");
    }
}

/* The where (key) columns, then the set columns: as typed parameters
 * ($1::int, ...) when param is given, else as the names pgr_v gives them
 * (w0, s3, ...). */
static void append_key_then_set(StrBuf *sql, const ApplySqlTable *t, const ApplySqlShape *sh,
                                int *param)
{
    bool first = true;

    for (int pass = 0; pass < 2; pass++) {
        const char *mask = pass == 0 ? sh->where : sh->set;

        for (int i = 0; i < t->ncols; i++) {
            if (mask[i] != '1')
                continue;
            strbuf_append(sql, first ? "" : ", ");
            first = false;
            if (param)
                strbuf_appendf(sql, "$%d::%s", ++*param, t->type_name[i]);
            else
                strbuf_appendf(sql, "%c%d", pass == 0 ? 'w' : 's', i);
        }
    }
}

/* UPDATE t SET c = v.s3 FROM (VALUES ($1::int, $2::text), ...) AS v(w0, s3)
 * WHERE t.k = v.w0: one statement, many keys (distinct in one statement:
 * an UPDATE ... FROM that finds a row twice applies only one of them). */
static void build_update_batch(StrBuf *sql, const ApplySqlTable *t, const ApplySqlShape *sh,
                               int *param)
{
    bool first = true;

    strbuf_appendf(sql, "UPDATE %s%s AS pgr_t SET ", t->partitioned ? "" : "ONLY ", t->qualified);
    for (int i = 0; i < t->ncols; i++)
        if (sh->set[i] == '1') {
            strbuf_appendf(sql, "%s%s = pgr_v.s%d", first ? "" : ", ", t->quoted[i], i);
            first = false;
        }
    strbuf_append(sql, " FROM (VALUES ");
    for (int row = 0; row < (sh->rows ? sh->rows : 1); row++) {
        strbuf_append(sql, row ? ", (" : "(");
        append_key_then_set(sql, t, sh, param);
        strbuf_append(sql, ")");
    }
    strbuf_append(sql, ") AS pgr_v (");
    append_key_then_set(sql, t, sh, NULL);
    strbuf_append(sql, ") WHERE ");
    first = true;
    for (int i = 0; i < t->ncols; i++)
        if (sh->where[i] == '1') {
            strbuf_appendf(sql, "%spgr_t.%s = pgr_v.w%d", first ? "" : " AND ", t->quoted[i], i);
            first = false;
        }
}

static void build_update(StrBuf *sql, const ApplySqlTable *t, const ApplySqlShape *sh, int *param)
{
    bool first = true;

    strbuf_appendf(sql, "UPDATE %s%s SET ", t->partitioned ? "" : "ONLY ", t->qualified);
    for (int i = 0; i < t->ncols; i++) {
        if (sh->set[i] != '1')
            continue;
        strbuf_appendf(sql, "%s%s = $%d", first ? "" : ", ", t->quoted[i], ++*param);
        first = false;
    }
    append_where(sql, t, sh, param);
}

char *applysql_build_statement(const ApplySqlTable *t, const ApplySqlShape *sh, int *nparams)
{
    StrBuf sql;
    int param = 0;

    strbuf_init(&sql);
    switch (sh->op) {
    case APPLYSQL_INSERT:
        build_insert(&sql, t, sh, &param);
        break;
    case APPLYSQL_UPDATE_BATCH:
        build_update_batch(&sql, t, sh, &param);
        break;
    case APPLYSQL_UPDATE:
        build_update(&sql, t, sh, &param);
        break;
    case APPLYSQL_DELETE:
        strbuf_appendf(&sql, "DELETE FROM %s%s", t->partitioned ? "" : "ONLY ", t->qualified);
        append_where(&sql, t, sh, &param);
        break;
    }
    *nparams = param;
    return strbuf_detach(&sql);
}

char *applysql_shape_key(const ApplySqlShape *sh, int ncols)
{
    return xasprintf("%d.%d.%d:%.*s|%.*s", (int)sh->op, (int)sh->mode, sh->rows, ncols,
                     sh->set ? sh->set : "", ncols, sh->where ? sh->where : "");
}

int applysql_param_of(const ApplySqlShape *sh, int param, int nparams, int nkey)
{
    int nset = nparams - nkey;

    if (sh->op != APPLYSQL_UPDATE)
        return param;
    return param < nset ? nkey + param : param - nset;
}

char *applysql_build_truncate(const char *const *qualified, int n, bool restart_identity,
                              bool cascade)
{
    StrBuf sql;

    strbuf_init(&sql);
    strbuf_append(&sql, "TRUNCATE ");
    for (int i = 0; i < n; i++)
        strbuf_appendf(&sql, "%s%s", i ? ", " : "", qualified[i]);
    if (restart_identity)
        strbuf_append(&sql, " RESTART IDENTITY");
    if (cascade)
        strbuf_append(&sql, " CASCADE");
    return strbuf_detach(&sql);
}

void applysql_append_set_generated(StrBuf *sql, const ApplySqlTable *t, int col, bool always)
{
    strbuf_appendf(sql, "%sALTER TABLE %s ALTER COLUMN %s SET GENERATED %s", sql->len ? "; " : "",
                   t->qualified, t->quoted[col], always ? "ALWAYS" : "BY DEFAULT");
}
