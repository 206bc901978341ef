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
 * timeout: the follower never waits forever.  One sync point at a time;
 * the caller's session holds an advisory lock on its id meanwhile, so the
 * next caller expires a row whose caller is gone at once.
 */
#ifndef PGRELOCATE_SYNCPOINT_H
#define PGRELOCATE_SYNCPOINT_H

#include "conninfo.h"
#include "lsn.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
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

/* What ends a caller's waits early: a signal flag (stop: "interrupted"),
 * or a follower the caller runs in-process that returned (alive(arg)
 * false: it stopped on an error it logged).  Either field may be NULL. */
typedef struct SyncWatch {
    volatile sig_atomic_t *stop;
    bool (*alive)(void *arg);
    void *arg;
} SyncWatch;

/* syncpoint_hold, with every wait of this sync point (hold and advance)
 * also ended by w (NULL: never; it must outlive the sync point). */
SyncPoint *syncpoint_hold_watched(PGconn *tgt, int wait_ms, int expire_ms, const SyncWatch *w);

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

/* ---- The follower's side ----
 *
 * SyncHold is shared by the follower's control loop (which talks to the
 * table) and its apply thread (which holds): the control loop sets want
 * and until_lsn; the apply thread reports status and applied_lsn. */
typedef enum {
    SYNC_WANT_NONE,
    SYNC_WANT_HOLD,    /* hold at the next transaction boundary */
    SYNC_WANT_ADVANCE, /* apply what committed before until_lsn, then hold */
    SYNC_WANT_FINISH   /* commit and stop following */
} SyncWant;

typedef enum {
    SYNC_RUNNING, /* applying */
    SYNC_HOLDING, /* held at a boundary (want HOLD) */
    SYNC_REACHED, /* held with everything before until_lsn applied */
    SYNC_FINISHED /* the apply thread stopped for good */
} SyncStatus;

typedef struct SyncHold {
    pthread_mutex_t lock;
    uint64_t gen; /* bumped by every change of want: a report names the want it answers */
    SyncWant want;
    Lsn until_lsn;
    SyncStatus status;
    Lsn applied_lsn;
} SyncHold;

void syncpoint_hold_init(SyncHold *h);
/* What the control loop wants now, and its generation. */
SyncWant syncpoint_hold_want(SyncHold *h, Lsn *until_lsn, uint64_t *gen);
/* The apply thread's answer to the want of generation gen (ignored when
 * the want has changed since: a late answer must not pass for a new one). */
void syncpoint_hold_report(SyncHold *h, uint64_t gen, SyncStatus status, Lsn applied_lsn);

typedef struct SyncFollower SyncFollower;

/* Connect the control session to the table's database (the migration's
 * target): LISTEN for requests, hold the advisory lock that tells callers
 * a follower runs.  NULL after logging (the caller may retry later). */
SyncFollower *syncpoint_follower_open(const ConnInfo *control);
/* Read requests and write back progress; never blocks for long.  Call
 * every few ms while a sync point is active, else at least every second.
 * Returns false when the control connection is lost (reopen it). */
bool syncpoint_follower_poll(SyncFollower *f, SyncHold *h);
/* True while a request is being served (poll often). */
bool syncpoint_follower_busy(const SyncFollower *f);
/* Tell a waiting syncpoint_finish that the follower has stopped. */
void syncpoint_follower_finished(SyncFollower *f);
void syncpoint_follower_close(SyncFollower *f);

#endif
