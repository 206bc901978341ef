/*
 * copyplan.c: chunk planning.
 */
#include "copyplan.h"

#include "strbuf.h"

#include <stdlib.h>

static int by_cost_desc(const void *a, const void *b)
{
    const PlanChunk *x = a, *y = b;

    if (x->cost != y->cost)
        return x->cost > y->cost ? -1 : 1;
    if (x->table_no != y->table_no)
        return x->table_no - y->table_no;
    return x->chunk_no - y->chunk_no;
}

int64_t copyplan_cost(const PlanTable *t)
{
    int64_t toast = t->toast_bytes < 0 ? 0 : t->toast_bytes > t->bytes ? t->bytes : t->toast_bytes;

    return t->bytes - toast + COPYPLAN_TOAST_COST * toast;
}

/* How many ranges a table gets: one when it costs no more than split_bytes
 * or than a worker's fair_share (splitting it would not shorten the run,
 * and a whole table is copied with FREEZE); else enough that each costs
 * about split_bytes, never more than it has blocks. */
static int64_t ranges_for(const PlanTable *t, int64_t split_bytes, int64_t fair_share)
{
    int64_t n, cost = copyplan_cost(t);

    if (cost <= split_bytes || cost <= fair_share || t->heap_blocks < 2)
        return 1;
    n = (cost + split_bytes - 1) / split_bytes;
    if (n > t->heap_blocks)
        n = t->heap_blocks;
    return n;
}

PlanChunk *copyplan_make(const PlanTable *tables, int ntables, int64_t split_bytes, int jobs,
                         bool can_split, int *nchunks)
{
    PlanChunk *chunks;
    int64_t total = 0, all_cost = 0, fair_share;
    int k = 0;

    for (int i = 0; i < ntables; i++)
        all_cost += copyplan_cost(&tables[i]);
    fair_share = all_cost / (jobs < 1 ? 1 : jobs);
    for (int i = 0; i < ntables; i++)
        total += can_split ? ranges_for(&tables[i], split_bytes, fair_share) : 1;
    chunks = xcalloc((size_t)total, sizeof(PlanChunk));
    for (int i = 0; i < ntables; i++) {
        const PlanTable *t = &tables[i];
        int64_t n = can_split ? ranges_for(t, split_bytes, fair_share) : 1, cost = copyplan_cost(t);

        for (int64_t c = 0; c < n; c++) {
            PlanChunk *ch = &chunks[k++];

            ch->table_no = t->table_no;
            ch->chunk_no = (int)c + 1;
            ch->nchunks = (int)n;
            if (n == 1) {
                ch->blk_start = -1;
                ch->blk_end = -1;
                ch->est_bytes = t->bytes;
                ch->cost = cost;
            } else {
                ch->blk_start = t->heap_blocks * c / n;
                ch->blk_end = c + 1 == n ? -1 : t->heap_blocks * (c + 1) / n;
                ch->est_bytes = t->bytes / n + (c + 1 == n ? t->bytes % n : 0);
                ch->cost = cost / n + (c + 1 == n ? cost % n : 0);
            }
        }
    }
    qsort(chunks, (size_t)k, sizeof(PlanChunk), by_cost_desc);
    *nchunks = k;
    return chunks;
}
