/*
 * sequences.h: set every target sequence (owned, identity, free-standing)
 * to the source's current value (at the cutover never backwards).
 * Sequence values are not transactional: reading them after the data is
 * copied gives values at least as high as any id in the copied rows.
 */
#ifndef PGRELOCATE_SEQUENCES_H
#define PGRELOCATE_SEQUENCES_H

#include "catalog.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* Copy last_value and is_called of each sequence; returns false after
 * logging the first failure. */
bool sequences_copy(PGconn *src, PGconn *tgt, const CatSequence *seqs, int n);

/* What sequences_sync_all did on the new side. */
typedef struct SeqSyncResult {
    int set;              /* given the old side's value (+ headroom) */
    int kept;             /* left alone: further along there already */
    char kept_names[512]; /* those, "a.b, c.d", cut short with "..." */
} SeqSyncResult;

/* Every sequence of from (user schemas, not pgrelocate's) set on to in
 * two round trips, for the cutover's pause: one query reads them all, one
 * statement sets them all.  headroom > 0 moves each used sequence that
 * many increments further (clamped to its bounds).  A sequence of to that
 * is further along in its own direction (larger for increment_by > 0,
 * smaller otherwise) keeps its value: it may have handed those values out
 * already, and going back would hand them out again.  *out filled.  false
 * after logging (a sequence from cannot read, or to lacks). */
bool sequences_sync_all(PGconn *from, PGconn *to, int64_t headroom, SeqSyncResult *out);

#endif
