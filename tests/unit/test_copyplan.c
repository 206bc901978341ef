/*
 * test_copyplan.c: chunk planning.  Every plan is checked against the same
 * invariants (each table's chunks numbered 1..n, ranges tiling [0, blocks)
 * with the last open-ended, estimated bytes summing to the table's bytes,
 * costliest first, cost = heap bytes + 5 x TOAST bytes), and listed cases
 * also pin the chunk counts and exact ranges.  Cases without jobs plan for
 * MANY_JOBS workers, whose fair share is below every split size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "copyplan.h"

#define NELEM(a)   (sizeof(a) / sizeof((a)[0]))
#define MAX_TABLES 6
#define GB         (INT64_C(1024) * 1024 * 1024)
#define TB         (GB * 1024)
#define MANY_JOBS  1000000

typedef struct PlanCase {
    const char *name;
    PlanTable tables[MAX_TABLES];
    int ntables;
    int64_t split_bytes;
    bool can_split;
    int want_chunks[MAX_TABLES]; /* per table, in the order of tables[] */
    int jobs;                    /* 0: MANY_JOBS */
} PlanCase;

static const PlanCase plan_cases[] = {
    {"no tables", {{0, 0, 0, 0}}, 0, 100, true, {0}, 0},
    {"small table is one chunk", {{7, 50, 10, 0}}, 1, 100, true, {1}, 0},
    {"table exactly at the split size is one chunk", {{7, 100, 10, 0}}, 1, 100, true, {1}, 0},
    {"one byte over the split size is two chunks", {{7, 101, 10, 0}}, 1, 100, true, {2}, 0},
    {"ceil(bytes / split) chunks",
     {{1, 1000, 100, 0}, {2, 1001, 100, 0}},
     2,
     100,
     true,
     {10, 11},
     0},
    {"never more chunks than blocks", {{1, 10 * GB, 4, 0}}, 1, GB, true, {4}, 0},
    {"all TOAST, no heap blocks", {{1, TB, 0, 0}}, 1, GB, true, {1}, 0},
    {"all TOAST, one heap block", {{1, TB, 1, 0}}, 1, GB, true, {1}, 0},
    {"all TOAST, two heap blocks", {{1, TB, 2, 0}}, 1, GB, true, {2}, 0},
    {"empty table", {{1, 0, 0, 0}}, 1, GB, true, {1}, 0},
    {"cannot split: one chunk each",
     {{1, TB, 134217728, 0}, {2, 10, 1, 0}},
     2,
     GB,
     false,
     {1, 1},
     0},
    {"1 TB in 1 GB pieces", {{1, TB, 134217728, 0}}, 1, GB, true, {1024}, 0},
    {"mixed tables",
     {{3, 100, 10, 0}, {1, 1000, 100, 0}, {4, 5000, 3, 0}, {2, 90, 50, 0}, {5, 0, 0, 0}},
     5,
     100,
     true,
     {1, 10, 3, 1, 1},
     0},
    {"TOAST counts five times: 300 bytes, all TOAST, split at 1000",
     {{1, 300, 20, 300}},
     1,
     1000,
     true,
     {2},
     0},
    {"TOAST at or below the split cost stays whole", {{1, 200, 20, 200}}, 1, 1000, true, {1}, 0},
    {"half TOAST", {{1, 1000, 100, 500}, {2, 1000, 100, 0}}, 2, 1000, true, {3, 1}, 0},
    {"TOAST bytes above bytes are capped", {{1, 100, 20, 900}}, 1, 400, true, {2}, 0},
    /* A table within one worker's fair share stays whole (COPY FREEZE)
     * whatever the split size: splitting it would not end the run sooner. */
    {"one job: nothing is split", {{1, TB, 134217728, 0}, {2, 10, 1, 0}}, 2, GB, true, {1, 1}, 1},
    {"two jobs, two tables of equal cost: both whole",
     {{1, 1000, 100, 0}, {2, 1000, 100, 0}},
     2,
     100,
     true,
     {1, 1},
     2},
    {"two jobs: the table above the fair share is split, the one within it is not",
     {{1, 1000, 100, 0}, {2, 1001, 100, 0}},
     2,
     100,
     true,
     {1, 11},
     2},
    {"the bench's shape with two jobs: accounts whole, TOAST-heavy docs in ranges",
     {{1, 1060, 130, 0}, {2, 430, 50, 430}},
     2,
     256,
     true,
     {1, 9},
     2},
    {"four jobs: the fair share is below both tables, both split",
     {{1, 1060, 130, 0}, {2, 430, 50, 430}},
     2,
     256,
     true,
     {5, 9},
     4},
};

static void check_table(const PlanCase *pc, const PlanTable *t, int want, const PlanChunk *chunks,
                        int nchunks)
{
    const PlanChunk **mine = calloc((size_t)want + 1, sizeof(*mine));
    int64_t sum = 0;
    int found = 0;

    assert_non_null(mine);
    for (int i = 0; i < nchunks; i++) {
        const PlanChunk *c = &chunks[i];

        if (c->table_no != t->table_no)
            continue;
        if (found == want || c->chunk_no < 1 || c->chunk_no > want || mine[c->chunk_no - 1] ||
            c->nchunks != want)
            fail_msg("%s: table %d: unexpected chunk %d/%d (want %d chunks)", pc->name, t->table_no,
                     c->chunk_no, c->nchunks, want);
        mine[c->chunk_no - 1] = c;
        found++;
        sum += c->est_bytes;
    }
    if (found != want)
        fail_msg("%s: table %d: %d chunks, want %d", pc->name, t->table_no, found, want);
    if (sum != t->bytes)
        fail_msg("%s: table %d: est_bytes sum to %" PRId64 ", want %" PRId64, pc->name, t->table_no,
                 sum, t->bytes);
    if (want == 1) {
        assert_int_equal(mine[0]->blk_start, -1);
        assert_int_equal(mine[0]->blk_end, -1);
    } else {
        assert_int_equal(mine[0]->blk_start, 0);
        for (int c = 0; c < want - 1; c++) {
            assert_true(mine[c]->blk_end > mine[c]->blk_start);
            assert_int_equal(mine[c + 1]->blk_start, mine[c]->blk_end);
        }
        assert_int_equal(mine[want - 1]->blk_end, -1);
        assert_true(mine[want - 1]->blk_start < t->heap_blocks);
        assert_true(want <= t->heap_blocks);
    }
    free(mine);
}

static void test_plans_hold_their_invariants(void **state)
{
    (void)state;
    for (size_t k = 0; k < NELEM(plan_cases); k++) {
        const PlanCase *pc = &plan_cases[k];
        int nchunks = -1, total = 0;
        PlanChunk *chunks = copyplan_make(pc->tables, pc->ntables, pc->split_bytes,
                                          pc->jobs ? pc->jobs : MANY_JOBS, pc->can_split, &nchunks);

        assert_non_null(chunks);
        for (int i = 0; i < pc->ntables; i++)
            total += pc->want_chunks[i];
        if (nchunks != total)
            fail_msg("%s: %d chunks, want %d", pc->name, nchunks, total);
        for (int i = 0; i < pc->ntables; i++)
            check_table(pc, &pc->tables[i], pc->want_chunks[i], chunks, nchunks);
        for (int i = 1; i < nchunks; i++)
            if (chunks[i].cost > chunks[i - 1].cost)
                fail_msg("%s: chunk %d (cost %" PRId64 ") after a cheaper one", pc->name, i,
                         chunks[i].cost);
        free(chunks);
    }
}

typedef struct ExactChunk {
    int table_no, chunk_no;
    int64_t blk_start, blk_end, est_bytes;
} ExactChunk;

static void check_exact(const PlanTable *tables, int ntables, int64_t split, const ExactChunk *want,
                        int nwant)
{
    int n = -1;
    PlanChunk *got = copyplan_make(tables, ntables, split, MANY_JOBS, true, &n);

    assert_int_equal(n, nwant);
    for (int i = 0; i < n; i++) {
        if (got[i].table_no != want[i].table_no || got[i].chunk_no != want[i].chunk_no ||
            got[i].blk_start != want[i].blk_start || got[i].blk_end != want[i].blk_end ||
            got[i].est_bytes != want[i].est_bytes)
            fail_msg("chunk %d: got table %d #%d [%" PRId64 ", %" PRId64 ") %" PRId64
                     " bytes, want table %d #%d [%" PRId64 ", %" PRId64 ") %" PRId64 " bytes",
                     i, got[i].table_no, got[i].chunk_no, got[i].blk_start, got[i].blk_end,
                     got[i].est_bytes, want[i].table_no, want[i].chunk_no, want[i].blk_start,
                     want[i].blk_end, want[i].est_bytes);
    }
    free(got);
}

static void test_even_split_has_equal_ranges(void **state)
{
    static const PlanTable t[] = {{9, 300, 10, 0}};
    static const ExactChunk want[] = {
        {9, 1, 0, 3, 100},
        {9, 2, 3, 6, 100},
        {9, 3, 6, -1, 100},
    };

    (void)state;
    check_exact(t, 1, 100, want, NELEM(want));
}

static void test_remainder_goes_to_the_last_chunk_which_sorts_first(void **state)
{
    static const PlanTable t[] = {{9, 301, 10, 0}};
    static const ExactChunk want[] = {
        {9, 4, 7, -1, 76},
        {9, 1, 0, 2, 75},
        {9, 2, 2, 5, 75},
        {9, 3, 5, 7, 75},
    };

    (void)state;
    check_exact(t, 1, 100, want, NELEM(want));
}

static void test_largest_first_then_table_then_chunk(void **state)
{
    static const PlanTable t[] = {
        {3, 100, 10, 0},
        {1, 300, 100, 0},
        {4, 5000, 3, 0},
        {2, 90, 50, 0},
    };
    static const ExactChunk want[] = {
        {4, 3, 2, -1, 1668}, {4, 1, 0, 1, 1666},  {4, 2, 1, 2, 1666},  {1, 1, 0, 33, 100},
        {1, 2, 33, 66, 100}, {1, 3, 66, -1, 100}, {3, 1, -1, -1, 100}, {2, 1, -1, -1, 90},
    };

    (void)state;
    check_exact(t, NELEM(t), 100, want, NELEM(want));
}

static void test_toast_heavy_table_starts_before_a_bigger_plain_one(void **state)
{
    /* the bench's shape: a 1000-byte plain table stays whole, a smaller
     * 600-byte table of which 500 TOAST (cost 100 + 2500) is split and its
     * pieces go first */
    static const PlanTable t[] = {
        {1, 1000, 100, 0},
        {2, 600, 60, 500},
    };
    static const ExactChunk want[] = {
        {2, 1, 0, 30, 300},
        {2, 2, 30, -1, 300},
        {1, 1, -1, -1, 1000},
    };

    (void)state;
    check_exact(t, NELEM(t), 2000, want, NELEM(want));
    assert_int_equal(copyplan_cost(&t[0]), 1000);
    assert_int_equal(copyplan_cost(&t[1]), 100 + 5 * 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plans_hold_their_invariants),
        cmocka_unit_test(test_even_split_has_equal_ranges),
        cmocka_unit_test(test_remainder_goes_to_the_last_chunk_which_sorts_first),
        cmocka_unit_test(test_largest_first_then_table_then_chunk),
        cmocka_unit_test(test_toast_heavy_table_starts_before_a_bigger_plain_one),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
