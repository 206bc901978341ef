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

static void test_utf8_or_escaped(void **state)
{
    static const char *const utf8_cases[][2] = {
        {"INDEX public caf\xc3\xa9_pkey", "INDEX public caf\xc3\xa9_pkey"}, /* UTF-8 */
        {"INDEX public caf\xe9_pkey", "INDEX public caf\\xE9_pkey"},        /* LATIN1 */
        {"Stra\xdf"
         "e",
         "Stra\\xDFe"},
        {"\xc0\xaf", "\\xC0\\xAF"},                     /* overlong '/' */
        {"\xed\xa0\x80", "\\xED\\xA0\\x80"},            /* a surrogate */
        {"\xf4\x90\x80\x80", "\\xF4\\x90\\x80\\x80"},   /* above U+10FFFF */
        {"\xf0\x9f\x98\x80 ok", "\xf0\x9f\x98\x80 ok"}, /* U+1F600 */
        {"cut \xe2\x82", "cut \\xE2\\x82"},             /* truncated at the end */
        {"", ""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        char *got = names_utf8_or_escaped(utf8_cases[i][0]);

        assert_string_equal(got, utf8_cases[i][1]);
        free(got);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_display),
                                       cmocka_unit_test(test_ident_display),
                                       cmocka_unit_test(test_utf8_or_escaped)};

    return cmocka_run_group_tests(tests, NULL, NULL);
}
