/*
 * test_applysql.c: the SQL apply builds, statement by statement (insert,
 * update, delete, batched update; by key and by replica identity FULL),
 * on plain and hostile names, and the quoting that keeps names names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "applysql.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* A table as the tests describe it: raw names, quoted by the module. */
typedef struct TableDef {
    const char *schema, *name;
    int ncols;
    const char *cols[4];
    const char *types[4];
    bool text_cmp[4];
    bool partitioned, has_always;
} TableDef;

/* public.orders (id integer key, note text, amount numeric) */
static const TableDef plain = {"public",
                               "orders",
                               3,
                               {"id", "note", "amount"},
                               {"integer", "text", "numeric"},
                               {false, false, false},
                               false,
                               false};

/* Names that break SQL built by hand: quotes, a statement, unicode, a
 * reserved word; a json column (no btree equality); partitioned; an
 * identity GENERATED ALWAYS column. */
static const TableDef hostile = {"we\"ird",
                                 "Tab\"; DROP TABLE x; --",
                                 4,
                                 {"\"", "größe", "列 名", "select"},
                                 {"integer", "text", "json", "public.\"my type\""},
                                 {false, false, true, false},
                                 true,
                                 true};

/* public.bare (): a table without columns (all dropped, or none made) */
static const TableDef bare = {"public", "bare", 0, {NULL}, {NULL}, {false}, false, false};

#define QBARE    "\"public\".\"bare\""
#define QPLAIN   "\"public\".\"orders\""
#define QHOSTILE "\"we\"\"ird\".\"Tab\"\"; DROP TABLE x; --\""

typedef struct Table {
    ApplySqlTable t;
    char *qualified;
    char *quoted[4];
    char *types[4];
} Table;

/* Quoted names as apply gets them from PQescapeIdentifier (conn_quote_ident):
 * always quoted, quotes doubled. */
static char *quote_ident(const char *name)
{
    StrBuf sb;

    strbuf_init(&sb);
    strbuf_append(&sb, "\"");
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            strbuf_append(&sb, "\"");
        strbuf_append_len(&sb, p, 1);
    }
    strbuf_append(&sb, "\"");
    return strbuf_detach(&sb);
}

static char *qualify(const char *schema, const char *name)
{
    char *s = quote_ident(schema);
    char *n = quote_ident(name);
    char *out = xasprintf("%s.%s", s, n);

    free(s);
    free(n);
    return out;
}

static void table_open(Table *tb, const TableDef *d)
{
    memset(tb, 0, sizeof(*tb));
    tb->qualified = qualify(d->schema, d->name);
    for (int i = 0; i < d->ncols; i++) {
        tb->quoted[i] = quote_ident(d->cols[i]);
        tb->types[i] = (char *)d->types[i];
    }
    tb->t = (ApplySqlTable){.qualified = tb->qualified,
                            .ncols = d->ncols,
                            .quoted = tb->quoted,
                            .text_cmp = d->text_cmp,
                            .type_name = tb->types,
                            .partitioned = d->partitioned,
                            .has_always = d->has_always};
}

static void table_close(Table *tb)
{
    free(tb->qualified);
    for (int i = 0; i < 4; i++)
        free(tb->quoted[i]);
}

typedef struct StmtCase {
    const char *what;
    const TableDef *table;
    ApplySqlOp op;
    ApplySqlWhere mode;
    const char *set, *where;
    int rows;
    const char *want;
    int want_nparams;
} StmtCase;

static const StmtCase stmt_cases[] = {
    {"insert of one row, every column", &plain, APPLYSQL_INSERT, APPLYSQL_WHERE_NONE, "111", NULL,
     0, "INSERT INTO " QPLAIN " (\"id\", \"note\", \"amount\") VALUES ($1, $2, $3)", 3},
    {"insert of three rows without a generated column", &plain, APPLYSQL_INSERT,
     APPLYSQL_WHERE_NONE, "101", NULL, 3,
     "INSERT INTO " QPLAIN " (\"id\", \"amount\") VALUES ($1, $2), ($3, $4), ($5, $6)", 6},
    {"insert with no column to write", &plain, APPLYSQL_INSERT, APPLYSQL_WHERE_NONE, "000", NULL, 0,
     "INSERT INTO " QPLAIN " DEFAULT VALUES", 0},
    {"update by key, unchanged TOAST column left out", &plain, APPLYSQL_UPDATE, APPLYSQL_WHERE_KEY,
     "101", "100", 0, "UPDATE ONLY " QPLAIN " SET \"id\" = $1, \"amount\" = $2 WHERE \"id\" = $3",
     3},
    {"update by RI FULL: NULLs match, one row", &plain, APPLYSQL_UPDATE, APPLYSQL_WHERE_FULL, "011",
     "111", 0,
     "UPDATE ONLY " QPLAIN " SET \"note\" = $1, \"amount\" = $2 WHERE (tableoid, ctid) = "
     "(SELECT tableoid, ctid FROM ONLY " QPLAIN " WHERE \"id\" IS NOT DISTINCT FROM $3 AND "
     "\"note\" IS NOT DISTINCT FROM $4 AND \"amount\" IS NOT DISTINCT FROM $5 LIMIT 1)",
     5},
    {"delete by key", &plain, APPLYSQL_DELETE, APPLYSQL_WHERE_KEY, "000", "100", 0,
     "DELETE FROM ONLY " QPLAIN " WHERE \"id\" = $1", 1},
    {"delete by RI FULL, an unchanged TOAST column left out", &plain, APPLYSQL_DELETE,
     APPLYSQL_WHERE_FULL, "000", "110", 0,
     "DELETE FROM ONLY " QPLAIN " WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM ONLY " QPLAIN
     " WHERE \"id\" IS NOT DISTINCT FROM $1 AND \"note\" IS NOT DISTINCT FROM $2 LIMIT 1)",
     2},
    {"delete by RI FULL from a table without columns: any row", &bare, APPLYSQL_DELETE,
     APPLYSQL_WHERE_FULL, "", "", 0,
     "DELETE FROM ONLY " QBARE " WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM ONLY " QBARE
     " WHERE true LIMIT 1)",
     0},
    {"insert into a table without columns", &bare, APPLYSQL_INSERT, APPLYSQL_WHERE_NONE, "", NULL,
     0, "INSERT INTO " QBARE " DEFAULT VALUES", 0},
    {"batched update of two rows by key, typed values", &plain, APPLYSQL_UPDATE_BATCH,
     APPLYSQL_WHERE_KEY, "011", "100", 2,
     "UPDATE ONLY " QPLAIN " AS pgr_t SET \"note\" = pgr_v.s1, \"amount\" = pgr_v.s2 FROM "
     "(VALUES ($1::integer, $2::text, $3::numeric), ($4::integer, $5::text, $6::numeric)) AS "
     "pgr_v (w0, s1, s2) WHERE pgr_t.\"id\" = pgr_v.w0",
     6},
    {"batched update, rows 0 means one", &plain, APPLYSQL_UPDATE_BATCH, APPLYSQL_WHERE_KEY, "001",
     "100", 0,
     "UPDATE ONLY " QPLAIN " AS pgr_t SET \"amount\" = pgr_v.s2 FROM (VALUES ($1::integer, "
     "$2::numeric)) AS pgr_v (w0, s2) WHERE pgr_t.\"id\" = pgr_v.w0",
     2},
    {"hostile insert, identity GENERATED ALWAYS overridden", &hostile, APPLYSQL_INSERT,
     APPLYSQL_WHERE_NONE, "1111", NULL, 0,
     "INSERT INTO " QHOSTILE " (\"\"\"\", \"größe\", \"列 名\", \"select\") OVERRIDING SYSTEM "
     "VALUE VALUES ($1, $2, $3, $4)",
     4},
    {"hostile update by RI FULL, json compared as text, partitioned", &hostile, APPLYSQL_UPDATE,
     APPLYSQL_WHERE_FULL, "0100", "1110", 0,
     "UPDATE " QHOSTILE " SET \"größe\" = $1 WHERE (tableoid, ctid) = (SELECT tableoid, ctid "
     "FROM " QHOSTILE " WHERE \"\"\"\" IS NOT DISTINCT FROM $2 AND \"größe\" IS NOT DISTINCT "
     "FROM $3 AND \"列 名\"::text IS NOT DISTINCT FROM $4::json::text LIMIT 1)",
     4},
    {"hostile batched update, quoted type name", &hostile, APPLYSQL_UPDATE_BATCH,
     APPLYSQL_WHERE_KEY, "0001", "1000", 2,
     "UPDATE " QHOSTILE " AS pgr_t SET \"select\" = pgr_v.s3 FROM (VALUES ($1::integer, "
     "$2::public.\"my type\"), ($3::integer, $4::public.\"my type\")) AS pgr_v (w0, s3) WHERE "
     "pgr_t.\"\"\"\" = pgr_v.w0",
     4},
    {"hostile delete by a two-column key", &hostile, APPLYSQL_DELETE, APPLYSQL_WHERE_KEY, "0000",
     "1001", 0, "DELETE FROM " QHOSTILE " WHERE \"\"\"\" = $1 AND \"select\" = $2", 2},
};

static void test_statements(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEMS(stmt_cases); i++) {
        const StmtCase *c = &stmt_cases[i];
        ApplySqlShape sh = {.op = c->op,
                            .set = (char *)c->set,
                            .where = (char *)c->where,
                            .mode = c->mode,
                            .rows = c->rows};
        Table tb;
        int nparams = -1;
        char *got;

        table_open(&tb, c->table);
        got = applysql_build_statement(&tb.t, &sh, &nparams);
        if (strcmp(got, c->want) != 0 || nparams != c->want_nparams)
            print_error("%s:\n got  %s (%d)\n want %s (%d)\n", c->what, got, nparams, c->want,
                        c->want_nparams);
        assert_string_equal(got, c->want);
        assert_int_equal(nparams, c->want_nparams);
        free(got);
        table_close(&tb);
    }
}

static void test_shape_key(void **state)
{
    char set[] = "101", where[] = "100", other[] = "110";
    const ApplySqlShape shapes[] = {
        {APPLYSQL_INSERT, set, NULL, APPLYSQL_WHERE_NONE, 0},
        {APPLYSQL_INSERT, set, NULL, APPLYSQL_WHERE_NONE, 4},
        {APPLYSQL_INSERT, other, NULL, APPLYSQL_WHERE_NONE, 0},
        {APPLYSQL_UPDATE, set, where, APPLYSQL_WHERE_KEY, 0},
        {APPLYSQL_UPDATE, set, where, APPLYSQL_WHERE_FULL, 0},
        {APPLYSQL_UPDATE, set, other, APPLYSQL_WHERE_KEY, 0},
        {APPLYSQL_UPDATE_BATCH, set, where, APPLYSQL_WHERE_KEY, 0},
        {APPLYSQL_UPDATE_BATCH, set, where, APPLYSQL_WHERE_KEY, 16},
        {APPLYSQL_DELETE, set, where, APPLYSQL_WHERE_KEY, 0},
    };
    char *keys[NELEMS(shapes)];

    (void)state;
    for (size_t i = 0; i < NELEMS(shapes); i++)
        keys[i] = applysql_shape_key(&shapes[i], 3);
    for (size_t i = 0; i < NELEMS(shapes); i++) {
        char *again = applysql_shape_key(&shapes[i], 3);

        assert_string_equal(again, keys[i]); /* the same shape, the same key */
        free(again);
        for (size_t j = i + 1; j < NELEMS(shapes); j++)
            assert_string_not_equal(keys[i], keys[j]);
    }
    for (size_t i = 0; i < NELEMS(shapes); i++)
        free(keys[i]);
}

/* Held values come key columns first; the plain UPDATE wants the set
 * columns first. */
static void test_param_of(void **state)
{
    const ApplySqlShape update = {.op = APPLYSQL_UPDATE};
    const ApplySqlShape batch = {.op = APPLYSQL_UPDATE_BATCH};
    const ApplySqlShape insert = {.op = APPLYSQL_INSERT};
    const int want_update[] = {2, 3, 4, 0, 1}; /* 2 key + 3 set columns */

    (void)state;
    for (int v = 0; v < 5; v++)
        assert_int_equal(applysql_param_of(&update, v, 5, 2), want_update[v]);
    for (int v = 0; v < 10; v++) {
        assert_int_equal(applysql_param_of(&batch, v, 10, 2), v);
        assert_int_equal(applysql_param_of(&insert, v, 10, 0), v);
    }
}

static void test_truncate(void **state)
{
    const char *const names[] = {QPLAIN, QHOSTILE};
    char *got;

    (void)state;
    got = applysql_build_truncate(names, 2, true, true);
    assert_string_equal(got, "TRUNCATE " QPLAIN ", " QHOSTILE " RESTART IDENTITY CASCADE");
    free(got);
    got = applysql_build_truncate(names, 1, false, false);
    assert_string_equal(got, "TRUNCATE " QPLAIN);
    free(got);
    got = applysql_build_truncate(names + 1, 1, false, true);
    assert_string_equal(got, "TRUNCATE " QHOSTILE " CASCADE");
    free(got);
}

static void test_set_generated(void **state)
{
    Table tb;
    StrBuf before, after;

    (void)state;
    table_open(&tb, &hostile);
    strbuf_init(&before);
    strbuf_init(&after);
    applysql_append_set_generated(&before, &tb.t, 0, false);
    applysql_append_set_generated(&before, &tb.t, 3, false);
    applysql_append_set_generated(&after, &tb.t, 0, true);
    assert_string_equal(
        before.data, "ALTER TABLE " QHOSTILE " ALTER COLUMN \"\"\"\" SET GENERATED BY DEFAULT; "
                     "ALTER TABLE " QHOSTILE " ALTER COLUMN \"select\" SET GENERATED BY DEFAULT");
    assert_string_equal(after.data,
                        "ALTER TABLE " QHOSTILE " ALTER COLUMN \"\"\"\" SET GENERATED ALWAYS");
    strbuf_free(&before);
    strbuf_free(&after);
    table_close(&tb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statements),    cmocka_unit_test(test_shape_key),
        cmocka_unit_test(test_param_of),      cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_set_generated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
