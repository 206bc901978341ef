/*
 * childorder.c: the pre-data restored with inheritance children in the
 * source's column order (see childorder.h).  Reads the children from the
 * source, rewrites their CREATE TABLE in pg_restore's SQL text, and runs
 * the text on its own target session in one transaction.  Owns no other
 * DDL: every statement but the children's CREATE TABLE is pg_dump's.
 */
#include "childorder.h"

#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows per child, ordered by (child oid, part, position, name):
 * (oid, part, position, name, definition, is local, name as pg_dump
 * quotes it):
 *   part 0: schema, name of the child
 *   part 1: a column: name, definition (type, collation, generation, NOT
 *           NULL; no default: pg_dump sets an inherited column's default
 *           in an entry of its own), attislocal
 *   part 2: a validated CHECK constraint: name, definition, conislocal
 *   part 3: a parent, in inhseqno order: schema, name
 * %s: the generation expression (PostgreSQL 12+) or NULL. */
static const char *const children_sql_fmt =
    "WITH kids AS (SELECT c.oid FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate') "
    "AND" CHILDORDER_DIFFERS_SQL ")"
    " SELECT k.oid, 0 AS part, 0 AS pos, n.nspname::text, c.relname::text, true, ''"
    " FROM kids k JOIN pg_catalog.pg_class c ON c.oid = k.oid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " UNION ALL SELECT k.oid, 1, a.attnum, a.attname::text,"
    "  pg_catalog.format_type(a.atttypid, a.atttypmod)"
    "  || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation"
    "   THEN ' COLLATE ' || pg_catalog.quote_ident(cn.nspname) || '.'"
    "    || pg_catalog.quote_ident(co.collname) ELSE '' END"
    "  || coalesce(' GENERATED ALWAYS AS (' || %s || ') STORED', '')"
    "  || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, a.attislocal,"
    "  pg_catalog.quote_ident(a.attname)"
    " FROM kids k JOIN pg_catalog.pg_attribute a ON a.attrelid = k.oid AND a.attnum > 0"
    "  AND NOT a.attisdropped"
    " JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
    " LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation"
    " LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace"
    " UNION ALL SELECT k.oid, 2, 0, o.conname::text, pg_catalog.pg_get_constraintdef(o.oid),"
    "  o.conislocal, pg_catalog.quote_ident(o.conname) FROM kids k JOIN pg_catalog.pg_constraint o "
    "ON o.conrelid = k.oid"
    "  AND o.contype = 'c' AND o.convalidated"
    " UNION ALL SELECT k.oid, 3, h.inhseqno, pn.nspname::text, p.relname::text, true, ''"
    " FROM kids k JOIN pg_catalog.pg_inherits h ON h.inhrelid = k.oid"
    " JOIN pg_catalog.pg_class p ON p.oid = h.inhparent"
    " JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace"
    " ORDER BY 1, 2, 3, 4";

/* One child's rows [begin, end) of the children query. */
typedef struct Child {
    const PGresult *res;
    int begin, end;
} Child;

static int part_of(const Child *c, int row)
{
    return atoi(PQgetvalue(c->res, row, 1));
}

static const char *field(const Child *c, int row, int col)
{
    return PQgetvalue(c->res, row, col);
}

/* Skip a quoted string or identifier starting at p (at its quote). */
static const char *skip_quoted(const char *p)
{
    char q = *p++;

    for (; *p; p++)
        if (*p == q) {
            if (p[1] != q)
                return p + 1;
            p++;
        }
    return p;
}

/* The first stop character at parenthesis depth 0 outside quotes, from
 * p up to end (NULL: the string's end); NULL when there is none. */
static const char *scan_to(const char *p, const char *end, char stop)
{
    int depth = 0;

    while (*p && (!end || p < end)) {
        if (*p == '\'' || *p == '"') {
            p = skip_quoted(p);
            continue;
        }
        if (*p == stop && depth == 0)
            return p;
        depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
        p++;
    }
    return NULL;
}

/* pg_dump's column list [p, end), "    item,\n    item", split into
 * items (without the indent); count in *n.  Caller frees the array and
 * its strings. */
static char **split_items(const char *p, const char *end, int *n)
{
    char **items = NULL;

    *n = 0;
    while (p < end) {
        const char *comma = scan_to(p, end, ',');
        const char *stop = comma ? comma : end;

        while (*p == ' ')
            p++;
        items = xrealloc(items, (size_t)(*n + 1) * sizeof(char *));
        items[(*n)++] = strndup(p, (size_t)(stop - p));
        p = comma ? comma + 2 : end; /* ",\n" */
    }
    return items;
}

/* The item of pg_dump's list that defines name (a column, or with
 * constraint a CONSTRAINT), or NULL. */
static const char *find_item(char **items, int n, const char *qname, bool constraint)
{
    size_t len = strlen(qname);

    for (int i = 0; i < n; i++) {
        const char *s = items[i];

        if (constraint != (strncmp(s, "CONSTRAINT ", 11) == 0))
            continue;
        if (constraint)
            s += 11;
        if (strncmp(s, qname, len) == 0 && s[len] == ' ')
            return items[i];
    }
    return NULL;
}

/* Whether pg_dump's column item has the words (a clause starting with a
 * capital letter) outside quotes and parentheses. */
static bool item_says(const char *item, const char *words)
{
    size_t len = strlen(words);

    for (const char *p = item; (p = scan_to(p, NULL, words[0])) != NULL; p++)
        if (p > item && p[-1] == ' ' && strncmp(p, words, len) == 0 &&
            (p[len] == '\0' || p[len] == ' '))
            return true;
    return false;
}

/* A column of the child's own, as pg_dump wrote it (its default
 * included), with what pg_dump leaves out when a parent has it (INHERITS
 * would bring it; INHERIT after the CREATE requires it): the generation
 * (then our definition: a generated column has no default) and NOT NULL. */
static void append_local_column(StrBuf *out, const char *item, const char *qname, const char *def)
{
    size_t len = strlen(def);
    bool not_null = len >= 9 && strcmp(def + len - 9, " NOT NULL") == 0;

    if (strstr(def, " GENERATED ALWAYS AS (") && !item_says(item, "GENERATED ALWAYS AS"))
        strbuf_appendf(out, "%s %s", qname, def);
    else
        strbuf_appendf(out, "%s%s", item,
                       not_null && !item_says(item, "NOT NULL") ? " NOT NULL" : "");
}

/* The new column list: every column in the source's order (pg_dump's text
 * for its own, ours for inherited ones), then pg_dump's constraints and
 * the inherited ones.  false when pg_dump's list is not what the source
 * says (then the table is left as pg_dump makes it). */
static bool build_list(const Child *c, char **items, int nitems, StrBuf *out)
{
    int used = 0;

    for (int row = c->begin; row < c->end; row++) {
        int part = part_of(c, row);
        bool local = field(c, row, 5)[0] == 't';
        const char *q = field(c, row, 6), *item;

        if (part != 1 && part != 2)
            continue;
        item = local ? find_item(items, nitems, q, part == 2) : NULL;
        if (local && !item)
            return false;
        used += local;
        strbuf_appendf(out, "%s    ", out->len ? ",\n" : "");
        if (item && part == 1)
            append_local_column(out, item, q, field(c, row, 4));
        else if (item)
            strbuf_append(out, item);
        else
            strbuf_appendf(out, "%s%s %s", part == 2 ? "CONSTRAINT " : "", q, field(c, row, 4));
    }
    return used == nitems;
}

/* After the CREATE TABLE: inherited columns and constraints marked as
 * such (as pg_dump --binary-upgrade does), then the parents attached. */
static void append_inherit(PGconn *tgt, const Child *c, const char *qname, StrBuf *out)
{
    char *rel = conn_quote_literal(tgt, qname);
    static const char *const what[] = {
        NULL,
        "UPDATE pg_catalog.pg_attribute SET attislocal = false WHERE attrelid = "
        "%s::pg_catalog.regclass AND attname = %s;\n",
        "UPDATE pg_catalog.pg_constraint SET conislocal = false WHERE conrelid = "
        "%s::pg_catalog.regclass AND contype = 'c' AND conname = %s;\n"};

    for (int row = c->begin; row < c->end; row++) {
        int part = part_of(c, row);

        if ((part == 1 || part == 2) && field(c, row, 5)[0] == 'f') {
            char *name = conn_quote_literal(tgt, field(c, row, 3));

            strbuf_appendf(out, what[part], rel, name);
            free(name);
        } else if (part == 3) {
            char *parent = conn_qualify(tgt, field(c, row, 3), field(c, row, 4));

            strbuf_appendf(out, "ALTER TABLE ONLY %s INHERIT %s;\n", qname, parent);
            free(parent);
        }
    }
    free(rel);
}

/* Rewrite the child's CREATE TABLE in *text: 1 done, 0 when its entry is
 * not there (a table --tables leaves out), -1 when it is not as expected
 * (then *text is unchanged). */
static int rewrite_child(PGconn *tgt, const Child *c, char **text)
{
    char *marker = xasprintf("(class 1259 OID %s)\n", field(c, c->begin, 0));
    char *qname = conn_qualify(tgt, field(c, c->begin, 3), field(c, c->begin, 4));
    const char *m = strstr(*text, marker), *create = m ? strstr(m, "\nCREATE ") : NULL;
    const char *open = create ? strstr(create, " (\n") : NULL;
    const char *close = open ? strstr(open, "\n)\nINHERITS (") : NULL;
    const char *parents_end = close ? scan_to(close + 13, NULL, ')') : NULL;
    const char *stmt_end = parents_end ? scan_to(parents_end + 1, NULL, ';') : NULL;
    char **items = NULL;
    int nitems = 0, outcome = m ? -1 : 0;
    StrBuf list, out;
    bool ok = stmt_end && (strncmp(create, "\nCREATE TABLE ", 14) == 0 ||
                           strncmp(create, "\nCREATE UNLOGGED TABLE ", 23) == 0);

    strbuf_init(&list);
    strbuf_init(&out);
    if (ok) {
        items = split_items(open + 3, close, &nitems);
        ok = build_list(c, items, nitems, &list);
    }
    if (ok) {
        strbuf_append_len(&out, *text, (size_t)(create + 1 - *text));
        strbuf_appendf(&out, "CREATE %sTABLE %s (\n%s\n)", create[8] == 'U' ? "UNLOGGED " : "",
                       qname, list.data);
        strbuf_append_len(&out, parents_end + 1, (size_t)(stmt_end - parents_end - 1));
        strbuf_append(&out, ";\n");
        append_inherit(tgt, c, qname, &out);
        strbuf_append(&out, stmt_end + 1);
        free(*text);
        *text = strbuf_detach(&out);
        outcome = 1;
    }
    for (int i = 0; i < nitems; i++)
        free(items[i]);
    free(items);
    strbuf_free(&list);
    strbuf_free(&out);
    free(marker);
    free(qname);
    return outcome;
}

/* pg_dump's "\restrict KEY" and "\unrestrict KEY" lines are psql's, not
 * SQL: blanked in place. */
static void blank_meta_commands(char *text)
{
    for (char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, "\\restrict ", 10) == 0 || strncmp(p, "\\unrestrict ", 12) == 0)
            for (char *q = p; *q && *q != '\n'; q++)
                *q = ' ';
}

/* The archive's encoding, from its "SET client_encoding = 'X';" line. */
static char *text_encoding(const char *text)
{
    const char *p = strstr(text, "\nSET client_encoding = '");
    const char *end = p ? strchr(p + 24, '\'') : NULL;

    return end ? strndup(p + 24, (size_t)(end - p - 24)) : NULL;
}

static bool target_is_superuser(PGconn *tgt, bool *super)
{
    PGresult *res = conn_query(
        tgt, "schema", "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user", 0,
        NULL, 1);

    if (!res)
        return false;
    *super = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return true;
}

/* Run the rewritten pre-data on a session of its own (its SET commands
 * stay there), in one transaction. */
static bool run_text(const ConnInfo *tgt_ci, const char *text)
{
    char *encoding = text_encoding(text);
    ConnOpts co = {CONN_TARGET, false, "pgrelocate pre-data", encoding, 0, 0};
    PGconn *conn = conn_open(tgt_ci, &co);
    char *sql = xasprintf("BEGIN;\n%s\nCOMMIT", text);
    bool ok = conn && conn_script(conn, "schema", sql);

    if (conn)
        conn_close(conn);
    free(sql);
    free(encoding);
    return ok;
}

/* Children in rows of the query, one Child each; count in *n. */
static Child *group_children(const PGresult *res, int *n)
{
    Child *kids = NULL;

    *n = 0;
    for (int row = 0; row < PQntuples(res); row++) {
        if (row > 0 && strcmp(PQgetvalue(res, row, 0), PQgetvalue(res, row - 1, 0)) == 0) {
            kids[*n - 1].end = row + 1;
            continue;
        }
        kids = xrealloc(kids, (size_t)(*n + 1) * sizeof(Child));
        kids[(*n)++] = (Child){res, row, row + 1};
    }
    return kids;
}

/* "public.b_star, public.c_star" */
static char *child_names(PGconn *tgt, const Child *kids, int n)
{
    StrBuf sb;

    strbuf_init(&sb);
    for (int i = 0; i < n; i++) {
        char *q =
            conn_qualify(tgt, field(&kids[i], kids[i].begin, 3), field(&kids[i], kids[i].begin, 4));

        strbuf_appendf(&sb, "%s%s", i ? ", " : "", q);
        free(q);
    }
    return strbuf_detach(&sb);
}

/* Rewrite every child in the pre-data text and run it; *handled false
 * when the text is not as expected. */
static bool restore_rewritten(const Child *kids, int n, PGconn *tgt, const PgTools *t,
                              const ConnInfo *tgt_ci, const char *archive, const SchemaOpts *so,
                              bool *handled)
{
    char *text = schema_pre_text(t, archive, so);
    int done = 0;
    bool ok = text != NULL;

    for (int i = 0; ok && i < n; i++) {
        int outcome = rewrite_child(tgt, &kids[i], &text);

        done += outcome == 1;
        if (outcome < 0) {
            char *q = child_names(tgt, &kids[i], 1);

            log_warning("[schema] the CREATE TABLE pg_dump wrote for %s is not as expected: its "
                        "columns keep pg_dump's order",
                        q);
            free(q);
        }
    }
    if (ok && done > 0) {
        blank_meta_commands(text);
        *handled = true;
        ok = run_text(tgt_ci, text);
        if (ok)
            log_info("[schema] %d inheriting table%s created in the source's column order", done,
                     done == 1 ? "" : "s");
    } else if (text)
        ok = true; /* nothing rewritten: pg_restore as usual */
    free(text);
    return ok;
}

bool childorder_restore_pre(PGconn *src, PGconn *tgt, const PgTools *t, const ConnInfo *tgt_ci,
                            const char *archive, const SchemaOpts *so, bool *handled)
{
    char *sql = xasprintf(children_sql_fmt, PQserverVersion(src) >= 120000
                                                ? "CASE WHEN a.attgenerated = 's' THEN "
                                                  "pg_catalog.pg_get_expr(d.adbin, d.adrelid) END"
                                                : "NULL");
    PGresult *res = conn_query(src, "schema", sql, 0, NULL, 7);
    Child *kids = NULL;
    int n = 0;
    bool super = false, ok = res != NULL;

    *handled = false;
    free(sql);
    if (ok)
        kids = group_children(res, &n);
    if (ok && n > 0)
        ok = target_is_superuser(tgt, &super);
    if (ok && n > 0 && !super) {
        char *names = child_names(tgt, kids, n);

        log_msg(LOG_WARNING,
                "pg_dump recreates them with their inherited columns first; putting them in the "
                "source's order needs a superuser on the target.",
                "If the application uses SELECT * or INSERT without a column list on them, "
                "copy again as a superuser of the target.",
                "[schema] %d inheriting table%s get another column order on the target: %s", n,
                n == 1 ? "" : "s", names);
        free(names);
    } else if (ok && n > 0)
        ok = restore_rewritten(kids, n, tgt, t, tgt_ci, archive, so, handled);
    free(kids);
    PQclear(res);
    return ok;
}
