/*
 * test_valueformat.c: which types travel in binary (built-in bases, enums,
 * domains, ranges and multiranges over safe types) and which fall back to
 * text (composites, arrays of non-built-in elements, reg* OIDs, extension
 * types, types missing from the catalog read); the --protocol words.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "valueformat.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const uint32_t dims_fields[] = {1700, 701, 25};
static const uint32_t pair_fields[] = {23, 16400};
static const uint32_t nested_fields[] = {16413, 1007};
static const uint32_t regs_fields[] = {23, 2205};

/* A small catalog: built-ins keep their real OIDs, user types from 16384. */
static const ValueType catalog[] = {
    {25, "text", 'b', true, true, 0, 0, 0, NULL, 0},
    {16413, "dims", 'c', true, true, 0, 0, 0, dims_fields, 3},
    {16414, "dims[]", 'b', true, true, 16413, 0, 0, NULL, 0},
    {16415, "nested", 'c', true, true, 0, 0, 0, nested_fields, 2},
    {16416, "regs", 'c', true, true, 0, 0, 0, regs_fields, 2},
    {23, "integer", 'b', true, true, 0, 0, 0, NULL, 0},
    {1007, "integer[]", 'b', true, true, 23, 0, 0, NULL, 0},
    {1700, "numeric", 'b', true, true, 0, 0, 0, NULL, 0},
    {3802, "jsonb", 'b', true, true, 0, 0, 0, NULL, 0},
    {2205, "regclass", 'b', true, true, 0, 0, 0, NULL, 0},
    {2210, "regclass[]", 'b', true, true, 2205, 0, 0, NULL, 0},
    {1033, "aclitem", 'b', false, false, 0, 0, 0, NULL, 0},
    {3904, "int4range", 'r', true, true, 0, 0, 23, NULL, 0},
    {3905, "int4range[]", 'b', true, true, 3904, 0, 0, NULL, 0},
    {16400, "mood", 'e', true, true, 0, 0, 0, NULL, 0},
    {16401, "mood[]", 'b', true, true, 16400, 0, 0, NULL, 0},
    {16402, "pair", 'c', true, true, 0, 0, 0, pair_fields, 2},
    {16403, "pair[]", 'b', true, true, 16402, 0, 0, NULL, 0},
    {16404, "posint", 'd', true, true, 0, 23, 0, NULL, 0},
    {16405, "posint[]", 'b', true, true, 16404, 0, 0, NULL, 0},
    {16406, "moods", 'd', true, true, 0, 16401, 0, NULL, 0},
    {16407, "floatrange", 'r', true, true, 0, 0, 701, NULL, 0},
    {16408, "hstore", 'b', true, true, 0, 0, 0, NULL, 0},
    {16409, "pairs", 'd', true, true, 0, 16402, 0, NULL, 0},
    {16410, "moodrange", 'r', true, true, 0, 0, 16400, NULL, 0},
    {16411, "moodmultirange", 'm', true, true, 0, 0, 16410, NULL, 0},
    {16412, "norecv", 'b', true, false, 0, 0, 0, NULL, 0},
    {701, "double precision", 'b', true, true, 0, 0, 0, NULL, 0},
};

static void test_safe_types(void **state)
{
    static const uint32_t safe[] = {23,    1007,  1700,  3802,  1033,  3904, 3905,
                                    16400, 16404, 16407, 16410, 16411, 701,  16413};
    const char *why;

    (void)state;
    for (size_t i = 0; i < NELEMS(safe); i++) {
        assert_true(valueformat_type_safe(catalog, NELEMS(catalog), safe[i], &why));
        assert_null(why);
    }
}

static void test_unsafe_types(void **state)
{
    static const struct {
        uint32_t oid;
        const char *why_starts;
    } unsafe[] = {
        {2205, "its binary form is an OID"},
        {2210, "its binary form is an OID"},
        {16401, "the binary form of an array embeds the OID of its element type"},
        {16402, "the binary form of a composite embeds"},
        {16403, "the binary form of an array embeds"},
        {16405, "the binary form of an array embeds"},
        {16406, "the binary form of an array embeds"},
        {16408, "it is not built into PostgreSQL"},
        {16409, "the binary form of a composite embeds"},
        {16412, "it has no binary receive function"},
        {16414, "the binary form of an array embeds"},
        {16415, "the binary form of a composite embeds"},
        {16416, "its binary form is an OID"},
        {99999, "its definition could not be read"},
    };
    const char *why;

    (void)state;
    for (size_t i = 0; i < NELEMS(unsafe); i++) {
        assert_false(valueformat_type_safe(catalog, NELEMS(catalog), unsafe[i].oid, &why));
        assert_non_null(why);
        assert_true(strncmp(why, unsafe[i].why_starts, strlen(unsafe[i].why_starts)) == 0);
    }
}

static void test_domain_cycle_is_refused(void **state)
{
    static const ValueType loop[] = {{16500, "a", 'd', true, true, 0, 16501, 0, NULL, 0},
                                     {16501, "b", 'd', true, true, 0, 16500, 0, NULL, 0}};
    const char *why;

    (void)state;
    assert_false(valueformat_type_safe(loop, NELEMS(loop), 16500, &why));
    assert_non_null(why);
}

static void test_protocol_words(void **state)
{
    ValueProtocol p = VALUE_PROTOCOL_TEXT;

    (void)state;
    assert_true(valueformat_parse_protocol("auto", &p));
    assert_int_equal(p, VALUE_PROTOCOL_AUTO);
    assert_true(valueformat_parse_protocol("binary", &p));
    assert_int_equal(p, VALUE_PROTOCOL_BINARY);
    assert_true(valueformat_parse_protocol("text", &p));
    assert_int_equal(p, VALUE_PROTOCOL_TEXT);
    assert_false(valueformat_parse_protocol("Binary", &p));
    assert_false(valueformat_parse_protocol("", &p));
    assert_int_equal(p, VALUE_PROTOCOL_TEXT);
    assert_string_equal(valueformat_protocol_name(VALUE_PROTOCOL_BINARY), "binary");
    assert_string_equal(valueformat_protocol_name(VALUE_PROTOCOL_TEXT), "text");
    assert_string_equal(valueformat_protocol_name(VALUE_PROTOCOL_AUTO), "auto");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safe_types),
        cmocka_unit_test(test_unsafe_types),
        cmocka_unit_test(test_domain_cycle_is_refused),
        cmocka_unit_test(test_protocol_words),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
