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

/* Copy last_value and is_called of each sequence; returns false after
 * logging the first failure. */
bool sequences_copy(PGconn *src, PGconn *tgt, const CatSequence *seqs, int n);

#endif
