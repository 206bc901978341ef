/*
 * sequences.h: set every target sequence (owned, identity, free-standing)
 * to the source's current value.  Sequence values are not transactional:
 * reading them after the data is copied gives values at least as high as
 * any id in the copied rows.
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

/* Every sequence of from (user schemas, not pgrelocate's) set on to in
 * two round trips, for the cutover's pause: one query reads them all, one
 * statement sets them all.  headroom > 0 moves each used sequence that
 * many increments further (clamped to its bounds).  *count: sequences
 * set.  false after logging (a sequence from cannot read, or to lacks). */
bool sequences_sync_all(PGconn *from, PGconn *to, int64_t headroom, int *count);

#endif
