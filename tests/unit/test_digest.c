/*
 * test_digest.c: verify's pure parts: bucket sizing, sums mod 2^64, block
 * ranges, row matching (keyed and multiset) and key display.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "digest.h"

static void test_bucket_bits(void **state)
{
    (void)state;
    assert_int_equal(digest_bucket_bits(-1), 4);
    assert_int_equal(digest_bucket_bits(0), 4);
    assert_int_equal(digest_bucket_bits(4096), 4);
    assert_int_equal(digest_bucket_bits(4097), 5);
    assert_int_equal(digest_bucket_bits(1000000), 12);
    assert_int_equal(digest_bucket_bits((int64_t)1 << 40), 16);
}

static void test_parse_sum(void **state)
{
    uint64_t v;

    (void)state;
    assert_true(digest_parse_sum("0", &v));
    assert_true(v == 0);
    assert_true(digest_parse_sum("-1", &v));
    assert_true(v == UINT64_MAX);
    assert_true(digest_parse_sum("18446744073709551616", &v)); /* 2^64 */
    assert_true(v == 0);
    assert_true(digest_parse_sum("18446744073709551617", &v));
    assert_true(v == 1);
    /* a numeric sum as the server prints it; mod 2^64 worked out with Python */
    assert_true(digest_parse_sum("-2931231489789192539506", &v));
    assert_true(v == UINT64_C(1800817930626167438));
    assert_false(digest_parse_sum("", &v));
    assert_false(digest_parse_sum("-", &v));
    assert_false(digest_parse_sum("12.5", &v));
    assert_false(digest_parse_sum("NaN", &v));
}

static void test_parse_sum_is_additive(void **state)
{
    uint64_t a, b, c;

    (void)state;
    /* sums of chunks add up to the sum of the table, mod 2^64 */
    assert_true(digest_parse_sum("-9223372036854775808", &a));
    assert_true(digest_parse_sum("9223372036854775807", &b));
    assert_true(digest_parse_sum("-1", &c));
    assert_true(a + b == c);
}

static void test_split_blocks(void **state)
{
    DigestRange *r;
    int n;

    (void)state;
    n = digest_split_blocks(0, 1024, &r);
    assert_int_equal(n, 1);
    assert_true(r[0].start == 0 && r[0].end == -1);
    free(r);
    n = digest_split_blocks(2048, 1024, &r);
    assert_int_equal(n, 2);
    assert_true(r[0].start == 0 && r[0].end == 1024);
    assert_true(r[1].start == 1024 && r[1].end == -1);
    free(r);
    n = digest_split_blocks(2049, 1024, &r);
    assert_int_equal(n, 3);
    assert_true(r[1].end == 2048 && r[2].start == 2048 && r[2].end == -1);
    free(r);
    n = digest_split_blocks(10, 0, &r);
    assert_int_equal(n, 10);
    free(r);
}

static void test_range_count(void **state)
{
    const int64_t MB = 1024 * 1024;

    (void)state;
    assert_int_equal(digest_range_count(0, 0, 4), 1);            /* empty: one open range */
    assert_int_equal(digest_range_count(8 * MB, 1024, 4), 1);    /* small: one */
    assert_int_equal(digest_range_count(100 * MB, 12800, 4), 4); /* one per worker */
    assert_int_equal(digest_range_count(100 * MB, 12800, 2), 2);
    assert_int_equal(digest_range_count(40 * MB, 5120, 8), 2);        /* not below 32 MB each */
    assert_int_equal(digest_range_count(10240 * MB, 1310720, 4), 40); /* at most 256 MB each */
    /* TOAST-heavy: 100 MB in 10 heap blocks: split by blocks, no more ranges than blocks */
    assert_int_equal(digest_range_count(100 * MB, 10, 4), 4);
    assert_int_equal(digest_range_count(100 * MB, 3, 4), 3);
}

static void test_plan_passes(void **state)
{
    DigestBucket s[6] = {{10, 1}, {10, 2}, {700, 3}, {0, 0}, {5, 5}, {3, 9}};
    DigestBucket t[6] = {{10, 1}, {10, 7}, {700, 4}, {2, 8}, {5, 5}, {300, 9}};
    char **p;
    int n;

    (void)state;
    /* differing: 1 (10 rows), 2 (700), 3 (2), 5 (300); at most 1000 a pass */
    n = digest_plan_passes(s, t, 6, 1000, &p);
    assert_int_equal(n, 2);
    assert_string_equal(p[0], "{1,2,3}");
    assert_string_equal(p[1], "{5}");
    for (int i = 0; i < n; i++)
        free(p[i]);
    free(p);
    /* a bucket above the limit still gets its own pass */
    n = digest_plan_passes(s, t, 6, 100, &p);
    assert_int_equal(n, 4);
    assert_string_equal(p[0], "{1}");
    assert_string_equal(p[1], "{2}");
    assert_string_equal(p[2], "{3}");
    assert_string_equal(p[3], "{5}");
    for (int i = 0; i < n; i++)
        free(p[i]);
    free(p);
    /* nothing differs: no pass */
    n = digest_plan_passes(s, s, 6, 100, &p);
    assert_int_equal(n, 0);
    assert_null(p);
}

typedef struct Seen {
    char text[1024];
    int64_t n;
} Seen;

static void record(DigestDiffKind kind, const DigestRow *s, const DigestRow *t, int64_t copies,
                   void *arg)
{
    Seen *seen = arg;
    const DigestRow *r = s ? s : t;
    size_t len = strlen(seen->text);

    snprintf(seen->text + len, sizeof(seen->text) - len, "%s:%s*%lld;",
             kind == DIGEST_MISSING ? "missing"
             : kind == DIGEST_EXTRA ? "extra"
                                    : "changed",
             r->key, (long long)copies);
    seen->n++;
}

#define ROW(k, h)                                                                                  \
    {                                                                                              \
        (char *)(k), sizeof(k), (h)                                                                \
    }

static void test_match_keyed(void **state)
{
    DigestRow src[] = {ROW("3", 30), ROW("1", 10), ROW("2", 20), ROW("5", 50)};
    DigestRow tgt[] = {ROW("2", 21), ROW("1", 10), ROW("4", 40), ROW("5", 50)};
    Seen seen = {{0}, 0};

    (void)state;
    assert_int_equal(digest_match_rows(src, 4, tgt, 4, true, record, &seen), 3);
    assert_string_equal(seen.text, "changed:2*1;missing:3*1;extra:4*1;");
}

static void test_match_keyed_composite_keys_do_not_run_together(void **state)
{
    /* ("a", "bc") and ("ab", "c") are different keys */
    DigestRow src[] = {{(char *)"a\0bc", 5, 1}};
    DigestRow tgt[] = {{(char *)"ab\0c", 5, 1}};
    Seen seen = {{0}, 0};

    (void)state;
    assert_int_equal(digest_match_rows(src, 1, tgt, 1, true, record, &seen), 2);
}

static void test_match_keyless_counts_duplicates(void **state)
{
    /* source: x twice, y once; target: x once, y once, z three times */
    DigestRow src[] = {ROW("x", 7), ROW("y", 9), ROW("x", 7)};
    DigestRow tgt[] = {ROW("z", 3), ROW("x", 7), ROW("z", 3), ROW("y", 9), ROW("z", 3)};
    Seen seen = {{0}, 0};

    (void)state;
    assert_int_equal(digest_match_rows(src, 3, tgt, 5, false, record, &seen), 4);
    assert_string_equal(seen.text, "extra:z*3;missing:x*1;");
}

static void test_match_empty_sides(void **state)
{
    DigestRow src[] = {ROW("1", 1), ROW("2", 2)};
    Seen seen = {{0}, 0};

    (void)state;
    assert_int_equal(digest_match_rows(src, 2, NULL, 0, true, record, &seen), 2);
    assert_string_equal(seen.text, "missing:1*1;missing:2*1;");
    assert_int_equal(digest_match_rows(NULL, 0, NULL, 0, false, record, &seen), 0);
}

typedef struct KeyCase {
    const char *names[3];
    int n;
    const char *key;
    size_t keylen;
    const char *want;
} KeyCase;

static void test_format_key(void **state)
{
    static const KeyCase cases[] = {
        {{"id"}, 1, "42", 3, "(id)=(42)"},
        {{"id"}, 1, "-1.50", 6, "(id)=(-1.50)"},
        {{"id"}, 1, "1e5", 4, "(id)=('1e5')"},
        {{"a", "Order Id"}, 2, "x\0O'Brien", 10, "(a, \"Order Id\")=('x', 'O''Brien')"},
        {{"k"}, 1, "a'b\nc\\d", 8, "(k)=(E'a''b\\nc\\\\d')"},
        {{"u"},
         1,
         "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
         37,
         "(u)=('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')"},
        {{"ü"}, 1, "größe", 8, "(ü)=('größe')"},
        {{"t"}, 1, "", 1, "(t)=('')"},
        {{"t"}, 1, "tab\there", 9, "(t)=(E'tab\\there')"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = digest_format_key(cases[i].names, cases[i].n, cases[i].key, cases[i].keylen);

        assert_string_equal(got, cases[i].want);
        free(got);
    }
}

static void test_format_row(void **state)
{
    char *got;

    (void)state;
    got = digest_format_row("(1,\"a\nb\")", 9, 100);
    assert_string_equal(got, "(1,\"a\\nb\")");
    free(got);
    got = digest_format_row("abcdef", 6, 3);
    assert_string_equal(got, "abc...");
    free(got);
    /* "ü" is two bytes: never cut in the middle */
    got = digest_format_row("aü", 3, 2);
    assert_string_equal(got, "a...");
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_bits),
        cmocka_unit_test(test_parse_sum),
        cmocka_unit_test(test_parse_sum_is_additive),
        cmocka_unit_test(test_split_blocks),
        cmocka_unit_test(test_range_count),
        cmocka_unit_test(test_plan_passes),
        cmocka_unit_test(test_match_keyed),
        cmocka_unit_test(test_match_keyed_composite_keys_do_not_run_together),
        cmocka_unit_test(test_match_keyless_counts_duplicates),
        cmocka_unit_test(test_match_empty_sides),
        cmocka_unit_test(test_format_key),
        cmocka_unit_test(test_format_row),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
