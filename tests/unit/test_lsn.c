/*
 * test_lsn.c: the one textual form of an LSN: parsing what the server prints
 * (either case, 1 to 8 hex digits per half), rejecting anything else without
 * touching the output, and formatting that parses back to the same value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lsn.h"

#define NELEM(a)  (sizeof(a) / sizeof((a)[0]))
#define UNTOUCHED UINT64_C(0xDEADBEEFCAFEF00D)

typedef struct ParseCase {
    const char *text;
    bool ok;
    Lsn want;
} ParseCase;

static const ParseCase parse_cases[] = {
    {"0/0", true, 0},
    {"0/1", true, 1},
    {"1/0", true, UINT64_C(0x100000000)},
    {"16/B374D848", true, UINT64_C(0x16B374D848)},
    {"16/b374d848", true, UINT64_C(0x16B374D848)},
    {"aBcDeF01/23456789", true, UINT64_C(0xABCDEF0123456789)},
    {"00000000/00000001", true, 1},
    {"FFFFFFFF/FFFFFFFF", true, UINT64_MAX},
    {"ffffffff/ffffffff", true, UINT64_MAX},
    {"", false, 0},
    {"1", false, 0},
    {"1/", false, 0},
    {"/1", false, 0},
    {"/", false, 0},
    {"G/0", false, 0},
    {"0/G", false, 0},
    {"123456789/0", false, 0},
    {"0/123456789", false, 0},
    {"000000000/0", false, 0},
    {"0/1 ", false, 0},
    {" 0/1", false, 0},
    {"0 /1", false, 0},
    {"0/1x", false, 0},
    {"0/1/2", false, 0},
    {"0//1", false, 0},
    {"-1/0", false, 0},
    {"+1/0", false, 0},
    {"0x1/0", false, 0},
    {"1.5/0", false, 0},
};

static void test_parse_accepts_server_form_and_rejects_the_rest(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(parse_cases); i++) {
        const ParseCase *c = &parse_cases[i];
        Lsn got = UNTOUCHED;
        bool ok = lsn_parse(c->text, &got);

        if (ok != c->ok)
            fail_msg("\"%s\": lsn_parse returned %d, expected %d", c->text, ok, c->ok);
        if (got != (c->ok ? c->want : UNTOUCHED))
            fail_msg("\"%s\": got %" PRIX64 ", expected %" PRIX64, c->text, got,
                     c->ok ? c->want : UNTOUCHED);
    }
}

static void test_parse_rejects_null(void **state)
{
    Lsn got = UNTOUCHED;

    (void)state;
    assert_false(lsn_parse(NULL, &got));
    assert_int_equal(got, UNTOUCHED);
}

typedef struct FormatCase {
    Lsn lsn;
    const char *want;
} FormatCase;

static const FormatCase format_cases[] = {
    {0, "0/0"},
    {1, "0/1"},
    {UINT64_C(0x100000000), "1/0"},
    {UINT64_C(0x16B374D848), "16/B374D848"},
    {UINT64_C(0x00000000FFFFFFFF), "0/FFFFFFFF"},
    {UINT64_MAX, "FFFFFFFF/FFFFFFFF"},
};

static void test_format_prints_upper_hex_halves_and_parses_back(void **state)
{
    /* exact size on the heap, so ASan catches a write past LSN_TEXT_SIZE */
    char *buf = malloc(LSN_TEXT_SIZE);

    (void)state;
    assert_non_null(buf);
    for (size_t i = 0; i < NELEM(format_cases); i++) {
        Lsn back = UNTOUCHED;

        assert_ptr_equal(lsn_format(format_cases[i].lsn, buf), buf);
        assert_string_equal(buf, format_cases[i].want);
        assert_true(lsn_parse(buf, &back));
        assert_int_equal(back, format_cases[i].lsn);
    }
    free(buf);
}

static void test_round_trip_over_many_values(void **state)
{
    char buf[LSN_TEXT_SIZE];
    uint64_t x = UINT64_C(0x9E3779B97F4A7C15);

    (void)state;
    for (int i = 0; i < 10000; i++) {
        Lsn back = UNTOUCHED;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        lsn_format(x, buf);
        assert_true(lsn_parse(buf, &back));
        assert_int_equal(back, x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_accepts_server_form_and_rejects_the_rest),
        cmocka_unit_test(test_parse_rejects_null),
        cmocka_unit_test(test_format_prints_upper_hex_halves_and_parses_back),
        cmocka_unit_test(test_round_trip_over_many_values),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
