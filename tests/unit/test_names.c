/*
 * test_names.c: display forms of identifiers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "names.h"

typedef struct Case {
    const char *schema, *name, *want;
} Case;

static const Case cases[] = {
    {"public", "orders", "public.orders"},
    {"public", "T", "public.\"T\""},
    {"public", "t", "public.t"},
    {"public", "select", "public.\"select\""},
    {"Sales \"EU\"", "x", "\"Sales \"\"EU\"\"\".x"},
    {"public", "a\nb", "public.\"a?b\""},
    {"public", "1abc", "public.\"1abc\""},
    {"public", "", "public.\"\""},
    {"public", "café_ü", "public.café_ü"},
    {"public", "Order \"Items\" ü", "public.\"Order \"\"Items\"\" ü\""},
};

static void test_display(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = names_display(cases[i].schema, cases[i].name);

        assert_string_equal(got, cases[i].want);
        free(got);
    }
}

static void test_ident_display(void **state)
{
    char *got;

    (void)state;
    got = names_ident_display("id");
    assert_string_equal(got, "id");
    free(got);
    got = names_ident_display("Order \"Id\"");
    assert_string_equal(got, "\"Order \"\"Id\"\"\"");
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_display),
                                       cmocka_unit_test(test_ident_display)};

    return cmocka_run_group_tests(tests, NULL, NULL);
}
