/*
 * test_ddl.c: the replay decision for captured schema changes (replayed,
 * replayed without CONCURRENTLY, ignored, refused with the reason), the
 * statement counting and word finding that decision rests on (comments,
 * quotes, dollar quotes), the capture record read back, and the capture
 * SQL's names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ddl.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void test_count_statements(void **state)
{
    static const struct {
        const char *query;
        int n;
    } cases[] = {
        {"ALTER TABLE t ADD COLUMN c int", 1},
        {"ALTER TABLE t ADD COLUMN c int;", 1},
        {"  ;; ALTER TABLE t ADD COLUMN c int ;  ; ", 1},
        {"ALTER TABLE t ADD c int; INSERT INTO t VALUES (1)", 2},
        {"ALTER TABLE t ADD c text DEFAULT 'a;b'", 1},
        {"ALTER TABLE t ADD c text DEFAULT E'a\\';b'", 1},
        {"ALTER TABLE \"x;y\" ADD c int", 1},
        {"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2 $$ LANGUAGE sql", 1},
        {"CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $x$ $body$ LANGUAGE sql", 1},
        {"ALTER TABLE t ADD c int -- ; not a statement\n", 1},
        {"ALTER TABLE t /* ; /* nested ; */ ; */ ADD c int", 1},
        {"PREPARE p AS SELECT $1; EXECUTE p(1)", 2},
        /* a function body in SQL: its semicolons are inside the statement */
        {"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN "
         "true THEN 2 END; END; ALTER TABLE t ADD c int",
         2},
        {"BEGIN; CREATE TABLE a (id int); INSERT INTO a VALUES (1); COMMIT", 4},
        {"", 0},
        {"-- only a comment", 0},
    };

    (void)state;
    for (size_t i = 0; i < NELEMS(cases); i++) {
        int n = ddl_count_statements(cases[i].query);

        if (n != cases[i].n)
            fail_msg("%s: %d statements, expected %d", cases[i].query, n, cases[i].n);
    }
}

static void test_strip_concurrently(void **state)
{
    char *s;

    (void)state;
    s = ddl_strip_concurrently("CREATE INDEX CONCURRENTLY i ON t (c)");
    assert_string_equal(s, "CREATE INDEX i ON t (c)");
    free(s);
    s = ddl_strip_concurrently("create unique index concurrently if not exists i on t (c)");
    assert_string_equal(s, "create unique index if not exists i on t (c)");
    free(s);
    s = ddl_strip_concurrently("DROP INDEX /* CONCURRENTLY */ \"CONCURRENTLY\"");
    assert_null(s); /* a comment and a quoted name are not the word */
    s = ddl_strip_concurrently("CREATE INDEX i ON t (c) WHERE c <> 'CONCURRENTLY'");
    assert_null(s);
}

static void test_nth_schema_statement(void **state)
{
    static const char multi[] =
        "ALTER TABLE t ADD c int; INSERT INTO t VALUES (1); UPDATE t SET c = 2;\n"
        "CREATE UNIQUE INDEX CONCURRENTLY i ON t (c); GRANT admins TO bob; "
        "GRANT SELECT ON t TO bob; CREATE ROLE x; COMMENT ON DATABASE d IS 'x'; "
        "BEGIN; CREATE TABLE a (id int); INSERT INTO a VALUES (1); COMMIT; "
        "ALTER TABLE a ADD b int";
    static const struct {
        int n;
        const char *tag, *stmt; /* NULL: cannot be told */
        int index;
    } cases[] = {
        {1, "ALTER TABLE", "ALTER TABLE t ADD c int", 1},
        {2, "CREATE INDEX", "CREATE UNIQUE INDEX CONCURRENTLY i ON t (c)", 4},
        {3, "GRANT", "GRANT SELECT ON t TO bob", 6},
        {4, "CREATE TABLE", "CREATE TABLE a (id int)", 10},
        {5, "ALTER TABLE", "ALTER TABLE a ADD b int", 13},
        {6, "ALTER TABLE", NULL, 13}, /* more schema changes than statements */
        {2, "ALTER TABLE", NULL, 4},  /* the words do not match the tag */
        {1, "CREATE TABLE", NULL, 1},
    };

    (void)state;
    for (size_t i = 0; i < NELEMS(cases); i++) {
        int index;
        char *stmt = ddl_nth_schema_statement(multi, cases[i].n, cases[i].tag, &index);

        if (cases[i].stmt == NULL && stmt != NULL)
            fail_msg("%d %s: %s, expected none", cases[i].n, cases[i].tag, stmt);
        if (cases[i].stmt != NULL) {
            if (stmt == NULL)
                fail_msg("%d %s: none, expected %s", cases[i].n, cases[i].tag, cases[i].stmt);
            assert_string_equal(stmt, cases[i].stmt);
            assert_int_equal(index, cases[i].index);
        }
        free(stmt);
    }
}

/* A command as the capture record would carry it. */
static DdlCommand cmd(const char *tag, const char *query, int rewrite, bool temp_only)
{
    DdlCommand c = {.tag = (char *)tag,
                    .query = (char *)query,
                    .search_path = (char *)"public",
                    .role = (char *)"app",
                    .rewrite = rewrite,
                    .temp_only = temp_only};

    return c;
}

static void test_judge_replays(void **state)
{
    static const struct {
        const char *tag, *query, *sql;
        int rewrite;
    } cases[] = {
        {"ALTER TABLE", "ALTER TABLE t ADD COLUMN c text", "ALTER TABLE t ADD COLUMN c text", 0},
        {"ALTER TABLE", "alter table t add column c int not null default 7",
         "alter table t add column c int not null default 7", 0},
        {"ALTER TABLE", "ALTER TABLE t DROP COLUMN c;", "ALTER TABLE t DROP COLUMN c;", 0},
        {"ALTER TABLE", "ALTER TABLE t RENAME COLUMN a TO b", "ALTER TABLE t RENAME COLUMN a TO b",
         0},
        /* a rewrite by a type change without a function in USING is exact */
        {"ALTER TABLE", "ALTER TABLE t ALTER c TYPE bigint", "ALTER TABLE t ALTER c TYPE bigint",
         DDL_REWRITE_TYPE},
        {"ALTER TABLE", "ALTER TABLE t ALTER c TYPE int USING c::int",
         "ALTER TABLE t ALTER c TYPE int USING c::int", DDL_REWRITE_TYPE},
        {"CREATE INDEX", "CREATE INDEX CONCURRENTLY i ON t (c)", "CREATE INDEX i ON t (c)", 0},
        {"DROP INDEX", "DROP INDEX CONCURRENTLY i", "DROP INDEX i", 0},
        {"CREATE INDEX", "CREATE INDEX i ON t USING btree (c)",
         "CREATE INDEX i ON t USING btree (c)", 0},
        {"ALTER TYPE", "ALTER TYPE mood ADD VALUE 'happy'", "ALTER TYPE mood ADD VALUE 'happy'", 0},
        {"CREATE TABLE", "/* migration 42 */ CREATE TABLE a (id int)",
         "/* migration 42 */ CREATE TABLE a (id int)", 0},
        {"GRANT", "GRANT SELECT ON public.large TO object",
         "GRANT SELECT ON public.large TO object", 0},
        {"REFRESH MATERIALIZED VIEW", "REFRESH MATERIALIZED VIEW mv",
         "REFRESH MATERIALIZED VIEW mv", 0},
        {"CREATE EXTENSION", "CREATE EXTENSION pg_trgm SCHEMA app",
         "CREATE EXTENSION pg_trgm SCHEMA app", 0},
        /* constant defaults, and a default set for later rows only */
        {"ALTER TABLE", "ALTER TABLE t ADD COLUMN c jsonb DEFAULT '{}'::jsonb",
         "ALTER TABLE t ADD COLUMN c jsonb DEFAULT '{}'::jsonb", 0},
        {"ALTER TABLE", "ALTER TABLE t ADD c numeric(10, 2) DEFAULT 0, ADD d text",
         "ALTER TABLE t ADD c numeric(10, 2) DEFAULT 0, ADD d text", 0},
        {"ALTER TABLE", "ALTER TABLE t ALTER c SET DEFAULT now()",
         "ALTER TABLE t ALTER c SET DEFAULT now()", 0},
        {"ALTER TABLE", "ALTER TABLE t ADD c int DEFAULT 1, ALTER d SET DEFAULT now()",
         "ALTER TABLE t ADD c int DEFAULT 1, ALTER d SET DEFAULT now()", 0},
        /* a stored generated column rewrites, with an immutable expression */
        {"ALTER TABLE", "ALTER TABLE t ADD c int GENERATED ALWAYS AS (a * 2) STORED",
         "ALTER TABLE t ADD c int GENERATED ALWAYS AS (a * 2) STORED", DDL_REWRITE_DEFAULT},
    };

    (void)state;
    for (size_t i = 0; i < NELEMS(cases); i++) {
        DdlCommand c = cmd(cases[i].tag, cases[i].query, cases[i].rewrite, false);
        DdlVerdict v;

        ddl_judge(&c, &v);
        if (v.action != DDL_REPLAY)
            fail_msg("%s: not replayed (%s)", cases[i].query, v.reason ? v.reason : "ignored");
        assert_string_equal(v.sql, cases[i].sql);
        if ((strstr(cases[i].query, "CONCURRENTLY") != NULL) != (v.note != NULL))
            fail_msg("%s: the note says CONCURRENTLY was dropped exactly when it was",
                     cases[i].query);
        ddl_verdict_free(&v);
    }
}

static void test_judge_multi_statement(void **state)
{
    static const char q[] = "ALTER TABLE t ADD c text; INSERT INTO t (c) VALUES ('x');\n"
                            "  CREATE INDEX CONCURRENTLY i ON t (c); UPDATE t SET c = 'y'";
    static const char rollback[] = "ALTER TABLE t ADD a int; BEGIN; ALTER TABLE t ADD b int; "
                                   "ROLLBACK; ALTER TABLE t ADD d int";
    static const char lo[] = "ALTER TABLE t ADD f int; GRANT SELECT ON LARGE OBJECT 5 TO r";
    /* expect: the sql replayed, or the reason refused, or NULL: ignored */
    static const struct {
        const char *tag, *query;
        int stmt, rewrite;
        bool nested;
        const char *table;
        DdlAction action;
        const char *expect, *note_or_hint;
    } cases[] = {
        {"ALTER TABLE", q, 1, 0, false, NULL, DDL_REPLAY, "ALTER TABLE t ADD c text",
         "(statement 1 of 4 in its query string)"},
        {"CREATE INDEX", q, 2, 0, false, NULL, DDL_REPLAY, "CREATE INDEX i ON t (c)",
         "(statement 3 of 4 in its query string) without CONCURRENTLY: it cannot run in the "
         "apply transaction, and the target serves no queries yet"},
        /* the statement's own checks apply to it, not to the string */
        {"ALTER TABLE", "UPDATE t SET a = now(); ALTER TABLE t ADD d timestamptz DEFAULT now()", 1,
         0, false, NULL, DDL_REFUSE,
         "ALTER TABLE added a column whose default is computed (a function or "
         "CURRENT_TIMESTAMP): the existing rows got its value at that moment, the target would "
         "get another",
         NULL},
        /* a table to copy again is named in the repair */
        {"ALTER TABLE", "ALTER TABLE t ADD d timestamptz DEFAULT clock_timestamp()", 1,
         DDL_REWRITE_DEFAULT, false, "public.t", DDL_REFUSE,
         "ALTER TABLE filled every row of the table with a volatile default or identity: the "
         "target would get other values",
         "Add the column without a default, then set its values with UPDATE (the rows follow "
         "through the stream). Table public.t has to be copied again, with the change in it: run "
         "pgrelocate cleanup, then pgrelocate start again (the database is copied anew)."},
        /* a ROLLBACK in the string takes a count back */
        {"ALTER TABLE", rollback, 1, 0, false, NULL, DDL_REFUSE,
         "ALTER TABLE came in a query string of 5 statements with a ROLLBACK: which statement ran "
         "it is not known",
         NULL},
        /* more schema changes counted than the string has */
        {"ALTER TABLE", q, 3, 0, false, NULL, DDL_REFUSE,
         "ALTER TABLE came in a query string of 4 statements, and which of them ran it cannot be "
         "told exactly",
         NULL},
        /* nested in a function the string called */
        {"ALTER TABLE", "SELECT add_columns(); ALTER TABLE t ADD e int", 0, 0, true, NULL,
         DDL_REFUSE, "ALTER TABLE ran inside another command (a function, DO block or procedure)",
         NULL},
        /* a large object's GRANT beside another schema change */
        {"GRANT", lo, 2, 0, false, NULL, DDL_IGNORE, NULL, NULL},
        {"ALTER TABLE", lo, 1, 0, false, NULL, DDL_REPLAY, "ALTER TABLE t ADD f int",
         "(statement 1 of 2 in its query string)"},
    };

    (void)state;
    for (size_t i = 0; i < NELEMS(cases); i++) {
        DdlCommand c = cmd(cases[i].tag, cases[i].query, cases[i].rewrite, false);
        DdlVerdict v;

        c.stmt = cases[i].stmt;
        c.nested = cases[i].nested;
        c.table = (char *)cases[i].table;
        ddl_judge(&c, &v);
        if (v.action != cases[i].action)
            fail_msg("case %zu (%s #%d): action %d, expected %d", i, cases[i].tag, cases[i].stmt,
                     (int)v.action, (int)cases[i].action);
        if (v.action == DDL_REPLAY) {
            assert_string_equal(v.sql, cases[i].expect);
            assert_string_equal(v.note, cases[i].note_or_hint);
        } else if (v.action == DDL_REFUSE) {
            assert_string_equal(v.reason, cases[i].expect);
            if (cases[i].note_or_hint)
                assert_string_equal(v.hint, cases[i].note_or_hint);
        }
        ddl_verdict_free(&v);
    }
}

static void test_judge_refuses(void **state)
{
    static const struct {
        const char *tag, *query;
        int rewrite;
        const char *reason;
    } cases[] = {
        {"ALTER TABLE", "ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now()",
         DDL_REWRITE_DEFAULT,
         "ALTER TABLE filled every row of the table with a volatile default or identity: the "
         "target would get other values"},
        {"ALTER TABLE", "ALTER TABLE t ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY",
         DDL_REWRITE_DEFAULT,
         "ALTER TABLE filled every row of the table with a volatile default or identity: the "
         "target would get other values"},
        {"ALTER TABLE", "ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now()", 0,
         "ALTER TABLE added a column whose default is computed (a function or CURRENT_TIMESTAMP): "
         "the existing rows got its value at that moment, the target would get another"},
        {"ALTER TABLE", "alter table t add d date not null default current_date", 0,
         "ALTER TABLE added a column whose default is computed (a function or CURRENT_TIMESTAMP): "
         "the existing rows got its value at that moment, the target would get another"},
        {"ALTER TABLE", "ALTER TABLE t ALTER c TYPE int USING random()::int", DDL_REWRITE_TYPE,
         "ALTER TABLE changed a column's type with a USING expression that calls a function: the "
         "target could get other values"},
        {"CREATE TABLE AS", "CREATE TABLE t2 AS SELECT * FROM t", 0,
         "CREATE TABLE AS cannot be replayed exactly: its rows are not in the stream"},
        {"SELECT INTO", "SELECT * INTO t2 FROM t", 0,
         "SELECT INTO cannot be replayed exactly: its rows are not in the stream"},
        {"ALTER TABLE", "ALTER TABLE t ADD c int; UPDATE t SET c = 1", 0,
         "ALTER TABLE came in a query string of 2 statements: replaying it could run other "
         "statements twice"},
        {"ALTER TABLE", "DO $$BEGIN ALTER TABLE t ADD c int; INSERT INTO t VALUES (1); END$$", 0,
         "ALTER TABLE ran inside another command (a function, DO block or procedure)"},
        {"CREATE TABLE", "SELECT make_partition(2027)", 0,
         "CREATE TABLE ran inside another command (a function, DO block or procedure)"},
    };

    (void)state;
    for (size_t i = 0; i < NELEMS(cases); i++) {
        DdlCommand c = cmd(cases[i].tag, cases[i].query, cases[i].rewrite, false);
        DdlVerdict v;

        ddl_judge(&c, &v);
        if (v.action != DDL_REFUSE)
            fail_msg("%s: not refused", cases[i].query);
        assert_string_equal(v.reason, cases[i].reason);
        assert_non_null(strstr(v.hint, "pgrelocate cleanup, then pgrelocate start again"));
        assert_null(v.sql);
        ddl_verdict_free(&v);
    }
}

static void test_judge_ignores(void **state)
{
    /* temporary objects; large objects (copied at the cutover) */
    DdlCommand cases[] = {
        cmd("CREATE TABLE", "CREATE TEMP TABLE x (a int)", 0, true),
        cmd("ALTER LARGE OBJECT", "ALTER LARGE OBJECT 1003 OWNER TO app", 0, false),
        cmd("GRANT", "GRANT UPDATE ON LARGE OBJECT 1003 TO app_reader", 0, false),
        cmd("REVOKE", "revoke select on large object 1004 from app_reader", 0, false),
        cmd("COMMENT", "COMMENT ON LARGE OBJECT 7 IS 'x'", 0, false),
        /* a command of an extension's script: the extension's statement runs it */
        cmd("CREATE FUNCTION", "CREATE EXTENSION pg_trgm SCHEMA app", 0, false),
        cmd("ALTER FUNCTION", "alter extension pg_trgm update", 0, false),
        /* tables outside the migration (--tables): said so */
        cmd("ALTER TABLE", "ALTER TABLE other ADD c int", 0, false),
    };
    DdlVerdict v;

    (void)state;
    cases[NELEMS(cases) - 1].outside = true;
    for (size_t i = 0; i < NELEMS(cases); i++) {
        ddl_judge(&cases[i], &v);
        if (v.action != DDL_IGNORE)
            fail_msg("%s: not ignored", cases[i].query);
        assert_null(v.sql);
        if (i < NELEMS(cases) - 1)
            ddl_verdict_free(&v);
    }
    assert_string_equal(v.note, "it touches only tables outside the migration (--tables)");
    ddl_verdict_free(&v);
}

static void test_parse(void **state)
{
    static const char body[] =
        "{\"tag\": \"ALTER TABLE\", \"role\": \"app\", \"query\": \"ALTER TABLE t ADD c int\", "
        "\"objects\": [{\"type\": \"table\", \"identity\": \"public.t\"}], \"rewrite\": 2, "
        "\"temp_only\": false, \"stmt\": 3, \"nested\": true, "
        "\"search_path\": \"\\\"$user\\\", public\"}";
    DdlCommand c;
    char *err = NULL;

    (void)state;
    assert_true(ddl_parse(body, strlen(body), &c, &err));
    assert_string_equal(c.tag, "ALTER TABLE");
    assert_string_equal(c.query, "ALTER TABLE t ADD c int");
    assert_string_equal(c.search_path, "\"$user\", public");
    assert_string_equal(c.role, "app");
    assert_int_equal(c.rewrite, DDL_REWRITE_DEFAULT);
    assert_false(c.temp_only);
    assert_int_equal(c.stmt, 3);
    assert_string_equal(c.table, "public.t");
    assert_true(c.nested);
    ddl_command_free(&c);

    /* cut short at every length: refused, never read past the end */
    for (size_t len = 0; len < strlen(body); len++) {
        char *copy = malloc(len ? len : 1);

        memcpy(copy, body, len);
        assert_false(ddl_parse(copy, len, &c, &err));
        assert_non_null(err);
        free(err);
        err = NULL;
        free(copy);
    }
    assert_false(ddl_parse("[1]", 3, &c, &err));
    free(err);
    assert_false(ddl_parse("{\"tag\": \"X\"}", 12, &c, &err));
    assert_string_equal(err, "the record lacks its tag, query or search_path");
    free(err);
}

static void test_capture_sql_names(void **state)
{
    DdlCaptureNames n = {.fn = "pgrelocate.\"m_ddl\"",
                         .on_end = "\"m_ddl_end\"",
                         .on_drop = "\"m_ddl_drop\"",
                         .on_rewrite = "\"m_ddl_rewrite\"",
                         .pub_literal = "'m'"};
    char *sql = ddl_capture_sql(&n), *un = ddl_uncapture_sql(&n);

    (void)state;
    assert_non_null(strstr(sql, "CREATE OR REPLACE FUNCTION pgrelocate.\"m_ddl\"() RETURNS "
                                "event_trigger"));
    assert_non_null(strstr(sql, "CREATE EVENT TRIGGER \"m_ddl_end\" ON ddl_command_end EXECUTE "
                                "FUNCTION pgrelocate.\"m_ddl\"()"));
    assert_non_null(strstr(sql, "CREATE EVENT TRIGGER \"m_ddl_drop\" ON sql_drop"));
    assert_non_null(strstr(sql, "CREATE EVENT TRIGGER \"m_ddl_rewrite\" ON table_rewrite"));
    assert_non_null(strstr(sql, "pub pg_catalog.text := 'm'; tables_re pg_catalog.text := NULL;"));
    assert_non_null(strstr(sql, "DO $pgr$ DECLARE r record; pub pg_catalog.text := 'm'; BEGIN"));
    assert_non_null(strstr(sql, "pg_logical_emit_message(true, 'pgrelocate.ddl'"));
    assert_string_equal(un, "DROP EVENT TRIGGER IF EXISTS \"m_ddl_end\"; DROP EVENT TRIGGER IF "
                            "EXISTS \"m_ddl_drop\"; DROP EVENT TRIGGER IF EXISTS "
                            "\"m_ddl_rewrite\"; DROP FUNCTION IF EXISTS pgrelocate.\"m_ddl\"()");
    free(sql);
    free(un);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count_statements),      cmocka_unit_test(test_strip_concurrently),
        cmocka_unit_test(test_judge_replays),         cmocka_unit_test(test_judge_refuses),
        cmocka_unit_test(test_judge_ignores),         cmocka_unit_test(test_parse),
        cmocka_unit_test(test_capture_sql_names),     cmocka_unit_test(test_nth_schema_statement),
        cmocka_unit_test(test_judge_multi_statement),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
