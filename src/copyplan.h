/*
 * copyplan.h: split the tables to copy into chunks for parallel workers.
 * Pure: no libpq.  A table at or below the split size is one chunk; a
 * bigger one (when the source can scan ctid ranges, PostgreSQL 14+) is cut
 * into block ranges of about the split size, the last range open-ended.
 * Chunks are ordered largest first so the longest work starts first.
 */
#ifndef PGRELOCATE_COPYPLAN_H
#define PGRELOCATE_COPYPLAN_H

#include <stdbool.h>
#include <stdint.h>

typedef struct PlanTable {
    int table_no;        /* caller's index of the table */
    int64_t bytes;       /* on-disk size, heap + TOAST */
    int64_t heap_blocks; /* heap blocks (for ctid ranges) */
} PlanTable;

typedef struct PlanChunk {
    int table_no;
    int chunk_no;      /* 1-based within its table */
    int nchunks;       /* chunks of its table */
    int64_t blk_start; /* -1: whole table (no ctid condition) */
    int64_t blk_end;   /* exclusive; -1: open end */
    int64_t est_bytes; /* the chunk's share of the table's bytes */
} PlanChunk;

/* Plan chunks for ntables tables.  split_bytes: size above which a table is
 * split; can_split: the source supports TID range scans.  Returns a
 * malloc'd array (caller frees) and its length in *nchunks. */
PlanChunk *copyplan_make(const PlanTable *tables, int ntables, int64_t split_bytes, bool can_split,
                         int *nchunks);

#endif
