/*
 * test_size.c: sizes and durations as people write them (1024-based units,
 * fractions, spaces before the unit) and as the tool prints them (three
 * significant digits, the unit switching where the rounded value would
 * reach 1024; clock-style durations).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "size.h"

#define NELEM(a)  (sizeof(a) / sizeof((a)[0]))
#define UNTOUCHED INT64_C(-777)
#define KB        INT64_C(1024)
#define MB        (KB * 1024)
#define GB        (MB * 1024)
#define TB        (GB * 1024)

typedef struct ParseCase {
    const char *text;
    bool ok;
    int64_t want;
} ParseCase;

static const ParseCase byte_cases[] = {
    {"0", true, 0},
    {"1", true, 1},
    {"123B", true, 123},
    {"64kB", true, 64 * KB},
    {"64KB", true, 64 * KB},
    {"0.5kB", true, 512},
    {"10MB", true, 10 * MB},
    {"1.5GB", true, 3 * GB / 2},
    {"2TB", true, 2 * TB},
    {" 5 MB", true, 5 * MB},
    {"5MB", true, 5 * MB},
    {"8000000TB", true, 8000000 * TB},
    {"", false, 0},
    {" ", false, 0},
    {"MB", false, 0},
    {"-1", false, 0},
    {"-1MB", false, 0},
    {"+1MB", false, 0},
    {"1XB", false, 0},
    {"1 MB extra", false, 0},
    {"1mb", false, 0},
    {"1PB", false, 0},
    {"1e400", false, 0},
    {"inf", false, 0},
    {"nan", false, 0},
    {"9000000TB", false, 0},
    {"99999999999999999999", false, 0},
};

static const ParseCase duration_cases[] = {
    {"0", true, 0},         {"2", true, 2000},    {"250ms", true, 250},
    {"2s", true, 2000},     {"2sec", true, 2000}, {"1.5s", true, 1500},
    {"3min", true, 180000}, {"5m", true, 300000}, {"1h", true, 3600000},
    {" 30 s", true, 30000}, {"", false, 0},       {"s", false, 0},
    {"ms", false, 0},       {"-1s", false, 0},    {"1d", false, 0},
    {"1 hour", false, 0},   {"1e400s", false, 0}, {"3000000000000h", false, 0},
};

static void check_parse_cases(const char *what, bool (*parse)(const char *, int64_t *),
                              const ParseCase *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const ParseCase *c = &cases[i];
        int64_t got = UNTOUCHED;
        bool ok = parse(c->text, &got);

        if (ok != c->ok)
            fail_msg("%s \"%s\": returned %d, expected %d", what, c->text, ok, c->ok);
        if (ok && got != c->want)
            fail_msg("%s \"%s\": got %" PRId64 ", expected %" PRId64, what, c->text, got, c->want);
    }
}

static void test_bytes_parse_with_1024_based_units(void **state)
{
    (void)state;
    check_parse_cases("bytes", size_parse_bytes, byte_cases, NELEM(byte_cases));
}

static void test_durations_parse_to_ms_and_bare_numbers_are_seconds(void **state)
{
    (void)state;
    check_parse_cases("duration", size_parse_duration_ms, duration_cases, NELEM(duration_cases));
}

static void test_null_text_is_rejected(void **state)
{
    int64_t got = UNTOUCHED;

    (void)state;
    assert_false(size_parse_bytes(NULL, &got));
    assert_false(size_parse_duration_ms(NULL, &got));
    assert_int_equal(got, UNTOUCHED);
}

typedef struct BytesFormatCase {
    int64_t bytes;
    const char *want;
} BytesFormatCase;

static const BytesFormatCase bytes_format_cases[] = {
    {0, "0 B"},
    {1, "1 B"},
    {1023, "1023 B"},
    {1024, "1.00 kB"},
    {1536, "1.50 kB"},
    {10 * KB - 6, "9.99 kB"},
    {10 * KB - 1, "10.0 kB"},
    {10 * KB, "10.0 kB"},
    {10475274, "9.99 MB"}, /* 9.99 MB */
    {10 * MB - 1, "10.0 MB"},
    {10 * MB, "10.0 MB"},
    {104752742, "99.9 MB"}, /* 99.9 MB */
    {100 * MB - 1, "100 MB"},
    {100 * MB, "100 MB"},
    {1023 * MB, "1023 MB"},
    {GB - 1, "1.00 GB"},
    {GB, "1.00 GB"},
    {2 * GB, "2.00 GB"},
    {3 * GB / 2, "1.50 GB"},
    {TB, "1.00 TB"},
    {1024 * TB, "1.00 PB"},
    {INT64_MAX, "8192 PB"},
    {-1, "-1 B"},
};

static void test_bytes_format_with_three_significant_digits(void **state)
{
    char buf[32];

    (void)state;
    for (size_t i = 0; i < NELEM(bytes_format_cases); i++) {
        const BytesFormatCase *c = &bytes_format_cases[i];

        assert_ptr_equal(size_format_bytes(c->bytes, buf, sizeof(buf)), buf);
        if (strcmp(buf, c->want) != 0)
            fail_msg("%" PRId64 " bytes: got \"%s\", expected \"%s\"", c->bytes, buf, c->want);
    }
}

typedef struct SecondsFormatCase {
    double seconds;
    const char *want;
} SecondsFormatCase;

static const SecondsFormatCase seconds_format_cases[] = {
    {0, "0:00"},       {0.4, "0:00"},           {7, "0:07"},
    {59.4, "0:59"},    {59.5, "1:00"},          {725, "12:05"},
    {3599, "59:59"},   {3599.5, "1:00:00"},     {3600, "1:00:00"},
    {3723, "1:02:03"}, {48 * 3600, "48:00:00"}, {-1, "--:--"},
    {-0.1, "--:--"},   {INFINITY, "--:--"},     {NAN, "--:--"},
    {1e30, "--:--"},
};

static void test_seconds_format_as_clock_and_unknown_as_dashes(void **state)
{
    char buf[32];

    (void)state;
    for (size_t i = 0; i < NELEM(seconds_format_cases); i++) {
        const SecondsFormatCase *c = &seconds_format_cases[i];

        assert_ptr_equal(size_format_seconds(c->seconds, buf, sizeof(buf)), buf);
        if (strcmp(buf, c->want) != 0)
            fail_msg("%g s: got \"%s\", expected \"%s\"", c->seconds, buf, c->want);
    }
}

static void test_formatting_is_cut_to_the_buffer(void **state)
{
    char *buf = malloc(4);

    (void)state;
    assert_non_null(buf);
    assert_string_equal(size_format_bytes(2 * GB, buf, 4), "2.0");
    assert_string_equal(size_format_seconds(3723, buf, 4), "1:0");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_parse_with_1024_based_units),
        cmocka_unit_test(test_durations_parse_to_ms_and_bare_numbers_are_seconds),
        cmocka_unit_test(test_null_text_is_rejected),
        cmocka_unit_test(test_bytes_format_with_three_significant_digits),
        cmocka_unit_test(test_seconds_format_as_clock_and_unknown_as_dashes),
        cmocka_unit_test(test_formatting_is_cut_to_the_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
