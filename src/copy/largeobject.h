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

/* What largeobject_sync changed on the side it brought up to date. */
typedef struct LoSyncResult {
    int created, changed, removed, fixed; /* fixed: owner or privileges */
    int64_t bytes;
} LoSyncResult;

/* Make to's large objects those of from: the same oids, owners,
 * privileges (NULL as its default) and contents (an md5 of each side's
 * contents, computed by the server: only 32 bytes per object cross the
 * network).  Creates what is missing, rewrites what differs, unlinks
 * what from does not have.  Logical decoding carries no large object:
 * cutover and rollback call this before and inside the pause.  Each object
 * in its own transaction on to.  false after logging (ctx prefixes). */
bool largeobject_sync(PGconn *from, PGconn *to, const char *ctx, LoSyncResult *out);

typedef struct LoDiff {
    char oid[16];
    const char *problem; /* "missing on target", "extra on target", "contents differ",
                          * "owner differs", "privileges differ" (static) */
} LoDiff;

/* Compare the two sides' large objects as largeobject_sync does; the
 * differences into *diffs (caller frees), counted in *n.  false after
 * logging. */
bool largeobject_compare(PGconn *src, PGconn *tgt, LoDiff **diffs, int *n);

#endif
