/*
 * verifypoint.h: the moment verify compares: one snapshot on each side,
 * exported for verify's workers.
 *
 * While `pgrelocate start` follows the source (or could: the migration is
 * in its follow phase and its slot exists, then a follower runs in this
 * process for the while), both snapshots show the same instant: the
 * follower is held at a transaction boundary (syncpoint.h), a temporary
 * logical slot created on the source gives an exact LSN X and a snapshot
 * of exactly X, the follower applies everything committed before X and
 * holds, the target's snapshot is taken, and the follower goes on at once.
 * After a cutover the same holds with the roles swapped: the target is
 * upstream and the reverse follower applies its changes to the source.
 * Otherwise each side's snapshot is taken one after the other, and the
 * description says so.
 */
#ifndef PGRELOCATE_VERIFYPOINT_H
#define PGRELOCATE_VERIFYPOINT_H

#include "conninfo.h"
#include "follow.h"
#include "syncpoint.h"

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct VerifyPoint {
    char *snapshot[2];           /* exported snapshot names: [source, target] */
    char description[512];       /* for the report */
    bool live;                   /* at a replication position: changes are still flowing */
    volatile sig_atomic_t *stop; /* set before verifypoint_open: ends every wait at once */
    /* internal */
    SyncWatch watch; /* what ends a sync point's waits: stop, our follower's end */
    FollowOpts fo;
    FollowThread *follower; /* one this process runs, or NULL */
    int up;                 /* the side changes flow from: 0 source, 1 target (reverse) */
    char *replication_name; /* of the direction followed */
    char *skip_origin;      /* reverse: the forward origin, never sent back */
    char *encoding;
} VerifyPoint;

/* Find out how points can be taken (a following migration: live; else
 * separate snapshots) and start an in-process follower if one is needed.
 * Every wait then ends as soon as *vp->stop is set (vp->stop may be NULL)
 * or that follower stops on an error.
 * conn[side]: idle connections.  false after logging; verifypoint_end
 * frees what was set up either way. */
bool verifypoint_open(VerifyPoint *vp, const ConnInfo *const ci[2], PGconn *conn[2]);

/* Take a point: each conn[side] (idle) is left in a REPEATABLE READ READ
 * ONLY transaction holding its side's snapshot, exported as
 * vp->snapshot[side]; vp->description says how.  false after logging. */
bool verifypoint_take(VerifyPoint *vp, const ConnInfo *const ci[2], PGconn *conn[2]);

/* End the point's transactions (the source's snapshot is no longer held)
 * so another can be taken. */
bool verifypoint_release(VerifyPoint *vp, PGconn *conn[2]);

/* Stop a follower this process started (its progress is saved) and free
 * the rest. */
void verifypoint_end(VerifyPoint *vp);

#endif
