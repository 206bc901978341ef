/*
 * copyplan.h: split the tables to copy into chunks for parallel workers.
 * Pure: no libpq.  Work is measured as cost, not size: a TOAST byte costs
 * COPYPLAN_TOAST_COST heap bytes (the target compresses and chunks every
 * TOAST value again, which measured about 5 times slower per byte than
 * plain rows).  A table whose cost is at or below the split size, or at or
 * below one worker's fair share (the total cost over the jobs), is one
 * chunk: a whole-table chunk is loaded with TRUNCATE and COPY FREEZE, which
 * spares the target the hint-bit, visibility-map and freeze writes that
 * every page of a split table costs later (copy.h).  A costlier table (when
 * the source can scan ctid ranges, PostgreSQL 14+) is cut into block ranges
 * of about the split size in cost, the last range open-ended.  Chunks are
 * ordered costliest first, so the longest work starts first and TOAST-heavy
 * tables do not run alone at the end.
 */
#ifndef PGRELOCATE_COPYPLAN_H
#define PGRELOCATE_COPYPLAN_H

#include <stdbool.h>
#include <stdint.h>

#define COPYPLAN_TOAST_COST 5

typedef struct PlanTable {
    int table_no;        /* caller's index of the table */
    int64_t bytes;       /* on-disk size, heap + TOAST */
    int64_t heap_blocks; /* heap blocks (for ctid ranges) */
    int64_t toast_bytes; /* the TOAST part of bytes */
} PlanTable;

typedef struct PlanChunk {
    int table_no;
    int chunk_no;      /* 1-based within its table */
    int nchunks;       /* chunks of its table */
    int64_t blk_start; /* -1: whole table (no ctid condition) */
    int64_t blk_end;   /* exclusive; -1: open end */
    int64_t est_bytes; /* the chunk's share of the table's bytes */
    int64_t cost;      /* the chunk's share of the table's cost */
} PlanChunk;

/* The cost of copying a table: its bytes, TOAST bytes weighted. */
int64_t copyplan_cost(const PlanTable *t);

/* Plan chunks for ntables tables.  split_bytes: cost above which a table is
 * split, unless it is within the fair share of one of jobs workers (jobs < 1
 * counts as 1); can_split: the source supports TID range scans.  Returns a
 * malloc'd array, costliest chunk first (caller frees), and its length in
 * *nchunks. */
PlanChunk *copyplan_make(const PlanTable *tables, int ntables, int64_t split_bytes, int jobs,
                         bool can_split, int *nchunks);

#endif
