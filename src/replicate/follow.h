/*
 * follow.h: follow the source's changes and apply them to the target until
 * told to stop.
 *
 * Two threads per connection pair: the stream thread reads the
 * replication connection into a bounded queue and answers the server (so
 * keepalives never wait behind a slow apply); the apply thread decodes and
 * applies (apply.c).  Feedback reports as flushed only the commit end LSN
 * of source transactions committed on the target (synchronous_commit on),
 * or, when everything received is applied and nothing is open, the
 * server's last keepalive position.  Any connection loss tears both down,
 * and streaming restarts from the replication origin's progress: a
 * transaction is never applied twice nor skipped.
 */
#ifndef PGRELOCATE_FOLLOW_H
#define PGRELOCATE_FOLLOW_H

#include "conninfo.h"
#include "lsn.h"
#include "metrics.h"
#include "tablesync.h"

#include <libpq-fe.h>
#include "valueformat.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct FollowOpts {
    const ConnInfo *source;
    const ConnInfo *target;
    const char *slot;
    const char *publication;
    const char *origin;
    int proto_version;
    const char *client_encoding; /* the target's encoding, for both sides */
    int status_interval_ms;      /* how often to log progress (0: never) */
    int64_t max_retained_wal;    /* warn when the slot keeps more WAL than this */
    volatile sig_atomic_t *stop; /* set by a signal: finish the transaction, exit */
    Metrics *metrics;            /* counters to update, or NULL */
    const ConnInfo *control;     /* where pgrelocate.sync_points lives (NULL: target) */
    const char *skip_origin;     /* origin of our own changes on the source side, or NULL */
    const char *label;           /* log prefix, e.g. "follow" or "reverse" (NULL: follow) */
    Lsn skip_lsn; /* --skip-transaction: commit LSN of a source transaction to leave out */
    ValueProtocol protocol; /* values in binary or text (auto: binary where safe) */
    /* per-table sync shared with copy workers in this process; NULL: the
     * filter is read from the state when it lives on the side applied to
     * (control NULL or the target), else none */
    TableSync *sync;
} FollowOpts;

typedef enum {
    FOLLOW_STOPPED, /* asked to stop; progress saved */
    FOLLOW_FAILED,  /* an error apply cannot get past (logged) */
    FOLLOW_FINISHED /* a sync point told it to stop for good (cutover) */
} FollowResult;

FollowResult follow_run(const FollowOpts *o);

/* The --protocol recorded for the migration on the target (auto when none
 * is, or it cannot be read: logged). */
ValueProtocol follow_recorded_protocol(PGconn *tgt);

/* follow_run in a thread of this process, for commands (verify, cutover)
 * that need a follower when no pgrelocate start runs.  o (and what it
 * points to) must outlive the thread; o->stop is ignored (the thread has
 * its own).  NULL after logging. */
typedef struct FollowThread FollowThread;
FollowThread *follow_spawn(const FollowOpts *o);
/* Whether its follow_run has not returned yet (false once it stopped, on
 * an error it logged or when asked). */
bool follow_thread_alive(const FollowThread *t);
/* Ask it to stop (if it has not finished), wait, and free. */
FollowResult follow_join(FollowThread *t);

#endif
