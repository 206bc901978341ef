/*
 * copyplan.c: chunk planning.
 */
#include "copyplan.h"

#include "strbuf.h"

#include <stdlib.h>

static int by_size_desc(const void *a, const void *b)
{
    const PlanChunk *x = a, *y = b;

    if (x->est_bytes != y->est_bytes)
        return x->est_bytes > y->est_bytes ? -1 : 1;
    if (x->table_no != y->table_no)
        return x->table_no - y->table_no;
    return x->chunk_no - y->chunk_no;
}

/* How many ranges a table gets: enough that each holds about split_bytes,
 * never more than it has blocks. */
static int64_t ranges_for(const PlanTable *t, int64_t split_bytes)
{
    int64_t n;

    if (t->bytes <= split_bytes || t->heap_blocks < 2)
        return 1;
    n = (t->bytes + split_bytes - 1) / split_bytes;
    if (n > t->heap_blocks)
        n = t->heap_blocks;
    return n;
}

PlanChunk *copyplan_make(const PlanTable *tables, int ntables, int64_t split_bytes, bool can_split,
                         int *nchunks)
{
    PlanChunk *chunks;
    int64_t total = 0;
    int k = 0;

    for (int i = 0; i < ntables; i++)
        total += can_split ? ranges_for(&tables[i], split_bytes) : 1;
    chunks = xcalloc((size_t)total, sizeof(PlanChunk));
    for (int i = 0; i < ntables; i++) {
        const PlanTable *t = &tables[i];
        int64_t n = can_split ? ranges_for(t, split_bytes) : 1;

        for (int64_t c = 0; c < n; c++) {
            PlanChunk *ch = &chunks[k++];

            ch->table_no = t->table_no;
            ch->chunk_no = (int)c + 1;
            ch->nchunks = (int)n;
            if (n == 1) {
                ch->blk_start = -1;
                ch->blk_end = -1;
                ch->est_bytes = t->bytes;
            } else {
                ch->blk_start = t->heap_blocks * c / n;
                ch->blk_end = c + 1 == n ? -1 : t->heap_blocks * (c + 1) / n;
                ch->est_bytes = t->bytes / n + (c + 1 == n ? t->bytes % n : 0);
            }
        }
    }
    qsort(chunks, (size_t)k, sizeof(PlanChunk), by_size_desc);
    *nchunks = k;
    return chunks;
}
