/*
 * test_tablefilter.c: the --tables pattern language.  Table-driven: each
 * case is a spec and names that must match or not; bad specs must fail
 * with their exact message; unmatched patterns are reported as written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tablefilter.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

typedef struct MatchCase {
    const char *spec;
    const char *schema;
    const char *table;
    bool want;
} MatchCase;

static const MatchCase match_cases[] = {
    {"orders", "public", "orders", true},
    {"orders", "sales", "orders", true}, /* unqualified: any schema */
    {"orders", "public", "orders2", false},
    {"ORDERS", "public", "orders", true}, /* unquoted folds to lower case */
    {"ORDERS", "public", "ORDERS", false},
    {"\"ORDERS\"", "public", "ORDERS", true}, /* quoted keeps case */
    {"\"ORDERS\"", "public", "orders", false},
    {"public.orders", "public", "orders", true},
    {"public.orders", "sales", "orders", false},
    {"public.*", "public", "anything", true},
    {"public.*", "publicx", "anything", false},
    {"*.orders", "x", "orders", true},
    {"*", "any", "thing", true},
    {"ord*", "s", "ord", true},
    {"ord*", "s", "orders", true},
    {"ord*", "s", "xorders", false},
    {"*ers", "s", "orders", true},
    {"o*d*s", "s", "orders", true},
    {"o*d*s", "s", "ordersx", false},
    {"a*b*c", "s", "aXbYbZc", true},
    {"a*b*c", "s", "aXbYbZ", false},
    {"t?", "s", "t1", true},
    {"t?", "s", "t", false},
    {"t?", "s", "t12", false},
    {"t?", "s", "t\xc3\xa9", true}, /* ? is one character, not one byte */
    {"t??", "s", "t\xc3\xa9", false},
    {"\"t*\"", "s", "t*", true}, /* quoted star is literal */
    {"\"t*\"", "s", "tx", false},
    {"\"a.b\"", "s", "a.b", true}, /* quoted dot is part of the name */
    {"\"a.b\"", "a", "b", false},
    {"\"a,b\"", "s", "a,b", true}, /* quoted comma does not split */
    {"\"say \"\"hi\"\"\"", "s", "say \"hi\"", true},
    {"\"My Schema\".\"My Table\"", "My Schema", "My Table", true},
    {"\"My Schema\".t*", "My Schema", "tab", true},
    {"pre\"FIX\"*", "s", "preFIXed", true}, /* mixed quoted and unquoted */
    {"pre\"FIX\"*", "s", "prefixed", false},
    {"a, b ,c", "s", "b", true}, /* blanks around patterns ignored */
    {"a,b", "s", "c", false},
    {"\xc3\xa9t\xc3\xa9", "s", "\xc3\xa9t\xc3\xa9", true},
    {"*", "s", "", true},
};

static void test_match_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(match_cases); i++) {
        const MatchCase *c = &match_cases[i];
        char err[256] = "";
        TableFilter *f = tablefilter_parse(c->spec, err, sizeof(err));

        if (!f)
            fail_msg("spec %s: parse failed: %s", c->spec, err);
        if (tablefilter_match(f, c->schema, c->table) != c->want)
            fail_msg("spec %s against %s.%s: want %s", c->spec, c->schema, c->table,
                     c->want ? "match" : "no match");
        tablefilter_destroy(f);
    }
}

typedef struct BadCase {
    const char *spec;
    const char *want_err;
} BadCase;

static const BadCase bad_cases[] = {
    {"", "--tables has an empty pattern in \"\""},
    {"a,,b", "--tables has an empty pattern in \"a,,b\""},
    {"a, ", "--tables has an empty pattern in \"a, \""},
    {"a.b.c", "--tables pattern \"a.b.c\" has more than one dot: write SCHEMA.TABLE or TABLE "
              "(quote a name that holds a dot)"},
    {"\"abc", "--tables pattern \"\"abc\" has an unterminated double quote"},
    {"s.", "--tables pattern \"s.\" has an empty table name"},
    {".t", "--tables pattern \".t\" has an empty schema name"},
};

static void test_bad_specs(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(bad_cases); i++) {
        char err[256] = "";
        TableFilter *f = tablefilter_parse(bad_cases[i].spec, err, sizeof(err));

        if (f)
            fail_msg("spec \"%s\" parsed, want an error", bad_cases[i].spec);
        assert_string_equal(err, bad_cases[i].want_err);
    }
}

static void test_unmatched_names_patterns_as_written(void **state)
{
    char err[256];
    TableFilter *f = tablefilter_parse(" public.a* , B,\"C\" ", err, sizeof(err));
    char *u;

    (void)state;
    assert_non_null(f);
    assert_int_equal(tablefilter_count(f), 3);
    u = tablefilter_unmatched(f);
    assert_string_equal(u, "public.a*, B, \"C\"");
    free(u);
    assert_true(tablefilter_match(f, "public", "abc"));
    assert_false(tablefilter_match(f, "public", "c"));
    u = tablefilter_unmatched(f);
    assert_string_equal(u, "B, \"C\"");
    free(u);
    assert_true(tablefilter_match(f, "x", "b"));
    assert_true(tablefilter_match(f, "x", "C"));
    assert_null(tablefilter_unmatched(f));
    tablefilter_destroy(f);
}

static void test_every_matching_pattern_counts(void **state)
{
    char err[256];
    TableFilter *f = tablefilter_parse("t*,*1", err, sizeof(err));

    (void)state;
    assert_true(tablefilter_match(f, "s", "t1"));
    assert_null(tablefilter_unmatched(f)); /* both patterns matched t1 */
    tablefilter_destroy(f);
}

static void test_regex_for_the_server(void **state)
{
    char err[256];
    TableFilter *f = tablefilter_parse("public.order*, \"Big\".\"a.b\", t?", err, sizeof(err));
    char *re;

    (void)state;
    assert_non_null(f);
    re = tablefilter_regex(f);
    assert_string_equal(re, "^(?:(?:public\\u0001order[^\\u0001]*)|(?:Big\\u0001a\\u002eb)|"
                            "(?:[^\\u0001]*\\u0001t[^\\u0001]))$");
    free(re);
    tablefilter_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_cases),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_unmatched_names_patterns_as_written),
        cmocka_unit_test(test_every_matching_pattern_counts),
        cmocka_unit_test(test_regex_for_the_server),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
