/*
 * largeobject.h: copy large objects (pg_largeobject) with their data.
 * Their metadata (oid, owner, privileges, comments) comes with the
 * pre-data schema; this fills in the bytes, 1 MB at a time, reading under
 * the copy snapshot.  Each object is written in its own target
 * transaction, truncated first, so a redo is idempotent.
 */
#ifndef PGRELOCATE_LARGEOBJECT_H
#define PGRELOCATE_LARGEOBJECT_H

#include "progress.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* src must be in a transaction using the copy snapshot.  Sets *count and
 * *bytes.  Returns false after logging the first failure. */
bool largeobject_copy(PGconn *src, PGconn *tgt, Progress *progress, int64_t *count, int64_t *bytes);

#endif
