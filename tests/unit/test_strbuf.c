/*
 * test_strbuf.c: the growable string: contents and terminator after append,
 * appendf and append_len (NUL bytes inside), growth past the initial
 * capacity many times and exactly at its edge, detach and reuse, and the
 * allocation helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "strbuf.h"

static void assert_buf(const StrBuf *sb, const char *want, size_t want_len)
{
    if (sb->data == NULL) { /* detached: empty, owning nothing */
        assert_int_equal(want_len, 0);
        assert_int_equal(sb->len, 0);
        assert_int_equal(sb->cap, 0);
        return;
    }
    assert_int_equal(sb->len, want_len);
    assert_true(sb->cap > sb->len);
    assert_memory_equal(sb->data, want, want_len);
    assert_int_equal(sb->data[sb->len], '\0');
}

static void test_init_is_empty_and_terminated(void **state)
{
    StrBuf sb;

    (void)state;
    strbuf_init(&sb);
    assert_non_null(sb.data);
    assert_buf(&sb, "", 0);
    strbuf_free(&sb);
    assert_null(sb.data);
    assert_int_equal(sb.len, 0);
}

typedef struct AppendCase {
    const char *pieces[6];
    const char *want;
} AppendCase;

static const AppendCase append_cases[] = {
    {{"abc", NULL}, "abc"},
    {{"abc", "def", NULL}, "abcdef"},
    {{"", "x", "", NULL}, "x"},
    {{"0123456789012345678901234567890123456789012345678901234567890123456789", NULL},
     "0123456789012345678901234567890123456789012345678901234567890123456789"},
    {{"0123456789012345678901234567890", "12345678901234567890123456789012", "3", NULL},
     "0123456789012345678901234567890123456789012345678901234567890123"},
};

static void test_append_concatenates(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(append_cases) / sizeof(append_cases[0]); i++) {
        StrBuf sb;

        strbuf_init(&sb);
        for (const char *const *p = append_cases[i].pieces; *p; p++)
            strbuf_append(&sb, *p);
        assert_buf(&sb, append_cases[i].want, strlen(append_cases[i].want));
        strbuf_free(&sb);
    }
}

static void test_appendf_grows_past_capacity_many_times(void **state)
{
    static char want[200000];
    size_t wlen = 0;
    StrBuf sb;

    (void)state;
    strbuf_init(&sb);
    for (int i = 0; i < 20000; i++) {
        strbuf_appendf(&sb, "%d,", i);
        wlen += (size_t)snprintf(want + wlen, sizeof(want) - wlen, "%d,", i);
        assert_int_equal(sb.len, wlen);
    }
    assert_buf(&sb, want, wlen);
    strbuf_free(&sb);
}

static void test_appendf_of_one_long_argument(void **state)
{
    char *big = malloc(100001);
    StrBuf sb;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', 100000);
    big[100000] = '\0';
    strbuf_init(&sb);
    strbuf_append(&sb, "<");
    strbuf_appendf(&sb, "%s>%d", big, 42);
    assert_int_equal(sb.len, 100004);
    assert_int_equal(sb.data[0], '<');
    assert_memory_equal(sb.data + 1, big, 100000);
    assert_string_equal(sb.data + 100001, ">42");
    strbuf_free(&sb);
    free(big);
}

/* appendf output ending exactly at, one before and one past the capacity */
static void test_appendf_at_the_capacity_edge(void **state)
{
    (void)state;
    for (size_t extra = 0; extra < 4; extra++) {
        StrBuf sb;
        char want[256];
        size_t cap, fill;

        strbuf_init(&sb);
        cap = sb.cap;
        fill = cap - 2 + extra - 1;
        memset(want, 'a', fill);
        want[fill] = '\0';
        strbuf_append(&sb, "a");
        strbuf_appendf(&sb, "%s", want + 1);
        assert_buf(&sb, want, fill);
        strbuf_appendf(&sb, "%c", 'b');
        want[fill] = 'b';
        assert_buf(&sb, want, fill + 1);
        strbuf_free(&sb);
    }
}

static void test_append_len_keeps_nul_bytes(void **state)
{
    static const char bytes[] = {'a', '\0', 'b', '\0', 'c'};
    StrBuf sb;

    (void)state;
    strbuf_init(&sb);
    strbuf_append_len(&sb, bytes, sizeof(bytes));
    assert_buf(&sb, bytes, sizeof(bytes));
    strbuf_append_len(&sb, "zzz", 0);
    assert_buf(&sb, bytes, sizeof(bytes));
    for (int i = 0; i < 100; i++)
        strbuf_append_len(&sb, bytes, sizeof(bytes));
    assert_int_equal(sb.len, 101 * sizeof(bytes));
    for (size_t i = 0; i < sb.len; i++)
        assert_int_equal(sb.data[i], bytes[i % sizeof(bytes)]);
    assert_int_equal(sb.data[sb.len], '\0');
    strbuf_free(&sb);
}

static void test_reset_empties_and_keeps_capacity(void **state)
{
    StrBuf sb;
    size_t cap;

    (void)state;
    strbuf_init(&sb);
    for (int i = 0; i < 100; i++)
        strbuf_append(&sb, "0123456789");
    cap = sb.cap;
    strbuf_reset(&sb);
    assert_buf(&sb, "", 0);
    assert_int_equal(sb.cap, cap);
    strbuf_append(&sb, "again");
    assert_buf(&sb, "again", 5);
    strbuf_free(&sb);
}

static void test_detach_hands_over_and_leaves_buffer_reusable(void **state)
{
    StrBuf sb;
    char *first, *second;

    (void)state;
    strbuf_init(&sb);
    for (int i = 0; i < 50; i++)
        strbuf_appendf(&sb, "[%02d]", i);
    first = strbuf_detach(&sb);
    assert_int_equal(strlen(first), 200);
    assert_memory_equal(first, "[00][01]", 8);
    assert_string_equal(first + 196, "[49]");
    assert_buf(&sb, "", 0);
    assert_ptr_not_equal(sb.data, first);

    strbuf_append(&sb, "second");
    second = strbuf_detach(&sb);
    assert_string_equal(second, "second");
    assert_string_equal(first + 196, "[49]");
    assert_buf(&sb, "", 0);
    strbuf_free(&sb);
    free(first);
    free(second);
}

static void test_detach_of_empty_buffer_is_empty_string(void **state)
{
    StrBuf sb;
    char *s;

    (void)state;
    strbuf_init(&sb);
    s = strbuf_detach(&sb);
    assert_string_equal(s, "");
    strbuf_free(&sb);
    free(s);
}

static void test_allocation_helpers(void **state)
{
    char *a = xstrdup("hello");
    char *b = xasprintf("%s-%d-%s", a, 7, "x");
    unsigned char *z = xcalloc(16, 4);
    char *m = xmalloc(0);
    char *r = xrealloc(NULL, 8);

    (void)state;
    assert_string_equal(a, "hello");
    assert_string_equal(b, "hello-7-x");
    for (int i = 0; i < 64; i++)
        assert_int_equal(z[i], 0);
    assert_non_null(m);
    memcpy(r, "1234567", 8);
    r = xrealloc(r, 4096);
    assert_string_equal(r, "1234567");
    free(a);
    free(b);
    free(z);
    free(m);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_empty_and_terminated),
        cmocka_unit_test(test_append_concatenates),
        cmocka_unit_test(test_appendf_grows_past_capacity_many_times),
        cmocka_unit_test(test_appendf_of_one_long_argument),
        cmocka_unit_test(test_appendf_at_the_capacity_edge),
        cmocka_unit_test(test_append_len_keeps_nul_bytes),
        cmocka_unit_test(test_reset_empties_and_keeps_capacity),
        cmocka_unit_test(test_detach_hands_over_and_leaves_buffer_reusable),
        cmocka_unit_test(test_detach_of_empty_buffer_is_empty_string),
        cmocka_unit_test(test_allocation_helpers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
