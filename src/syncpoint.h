/*
 * syncpoint.h: stop the follower at an exact source position, for the
 * instant a caller needs.
 *
 * verify needs the target exactly as the source was at one LSN; cutover
 * needs every source transaction up to the fence applied and nothing
 * after.  Both talk to the follower (a running `pgrelocate start`, or one
 * the caller runs in-process with follow_spawn) through the table
 * pgrelocate.sync_points on the target:
 *
 *   1. syncpoint_hold: the follower finishes the source transaction it is
 *      in, commits its batch and applies nothing more.  Streaming goes on
 *      into its bounded queue (and the slot keeps the rest).
 *   2. syncpoint_advance(lsn): it applies every source transaction that
 *      committed before lsn and none that committed at or after it, then
 *      holds again and reports it is there.  It knows nothing committed
 *      before lsn is still on its way once the stream has passed lsn (a
 *      later transaction, a keepalive, or the logical message this call
 *      emits on the source).
 *   3. the caller reads the target (e.g. takes a snapshot), then
 *      syncpoint_release (apply goes on) or syncpoint_finish (the follower
 *      exits: cutover).
 *
 * A hold the caller abandons (crash, lost connection) expires after its
 * timeout: the follower never waits forever.  One sync point at a time.
 */
#ifndef PGRELOCATE_SYNCPOINT_H
#define PGRELOCATE_SYNCPOINT_H

#include "lsn.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct SyncPoint SyncPoint;

/* Is a follower applying to this target now?  (It holds an advisory lock
 * on the target while it runs.) */
bool syncpoint_follower_running(PGconn *tgt, bool *running);

/* Ask the follower to hold at its next transaction boundary and wait until
 * it does (up to wait_ms).  expire_ms: the follower resumes by itself if
 * the caller has not released it after this long.  NULL after logging
 * (no follower, timeout, ...).  tgt stays the caller's; it must not be in a
 * transaction. */
SyncPoint *syncpoint_hold(PGconn *tgt, int wait_ms, int expire_ms);

/* Move a held follower to exactly lsn (see above); src is a normal
 * connection to the source, used to emit a logical message after lsn so an
 * idle source cannot stall the wait.  false after logging (timeout, the
 * follower failed, or it had already applied past lsn). */
bool syncpoint_advance(SyncPoint *sp, PGconn *src, Lsn lsn, int wait_ms);

/* Where the follower holds: the end LSN of the last source transaction it
 * committed on the target. */
Lsn syncpoint_applied_lsn(const SyncPoint *sp);

/* Let apply go on; frees sp. */
void syncpoint_release(SyncPoint *sp);

/* Tell the follower to exit at this point (after cutover); frees sp.
 * Waits up to wait_ms for it to have exited. */
bool syncpoint_finish(SyncPoint *sp, int wait_ms);

#endif
