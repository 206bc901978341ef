/*
 * snapshot.h: the source snapshot every copy worker imports, held by a
 * small child process (the keeper) rather than by pgrelocate itself.
 *
 * Why a process: if pgrelocate is killed (kill -9, OOM, a lost terminal),
 * its connections die and an exported snapshot dies with them, so a resume
 * could only continue from a newer point in time.  The keeper notices its
 * parent is gone (its control pipe closes) and keeps the snapshot for at
 * most grace_ms, so `--resume` continues at the very same point; then it
 * lets go, because a held snapshot holds back VACUUM on the source.
 * On a normal end the parent releases it at once.
 *
 * The keeper detaches from the terminal's process group (Ctrl-C goes to
 * pgrelocate, which decides), closes every inherited descriptor, and
 * writes nothing to stdout/stderr.
 */
#ifndef PGRELOCATE_SNAPSHOT_H
#define PGRELOCATE_SNAPSHOT_H

#include "conninfo.h"
#include "lsn.h"

#include <libpq-fe.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SNAPSHOT_APP_NAME "pgrelocate snapshot"

typedef struct SnapshotKeeper {
    pid_t pid;       /* keeper process, 0 when none */
    int control_fd;  /* write end of the control pipe, -1 when none */
    char name[64];   /* exported snapshot identifier */
    int backend_pid; /* the keeper's backend on the source */
    Lsn slot_lsn;    /* with a slot: its consistent point */
} SnapshotKeeper;

typedef enum {
    SNAPSHOT_OK,
    SNAPSHOT_GONE, /* import of a previous snapshot failed: it no longer exists */
    SNAPSHOT_ERROR /* connection or other failure, already logged */
} SnapshotStatus;

/* Start a keeper that exports a new snapshot (import_name NULL) or imports
 * import_name and exports it again under a new name (resume).  Call before
 * any thread is started. */
SnapshotStatus snapshot_keeper_start(const ConnInfo *source, const char *import_name,
                                     int64_t grace_ms, SnapshotKeeper *out);

/* Create the logical replication slot slot_name (pgoutput) on a
 * replication connection and keep the snapshot it exports: every row the
 * snapshot does not show is in the slot's stream, and every row it shows
 * is not (no gap, no overlap).  Creating a slot waits for transactions
 * running on the source to end: after wait_ms the attempt is abandoned
 * (nothing is left behind) and the blocking sessions are named. */
SnapshotStatus snapshot_keeper_start_slot(const ConnInfo *source, const char *slot_name,
                                          int64_t grace_ms, int64_t wait_ms, SnapshotKeeper *out);

/* End a keeper of an earlier run through its backend (identified by pid
 * and by its application_name, so no other session is ever touched); the
 * keeper process notices and exits.  src is a normal source connection. */
void snapshot_end_keeper_backend(PGconn *src, int backend_pid);

/* Normal end: the keeper commits and exits now; waits for it. */
void snapshot_keeper_release(SnapshotKeeper *k);

/* The state now names the keeper's snapshot: if pgrelocate dies from now
 * on, the keeper holds it for the grace period so a resumed run continues
 * at it.  Before this, a dead parent's keeper lets go at once (no run could
 * find its snapshot). */
void snapshot_keeper_confirm(SnapshotKeeper *k);

/* Leave the keeper running on its grace period (interrupted run): close the
 * control pipe without releasing. */
void snapshot_keeper_abandon(SnapshotKeeper *k);

#endif
