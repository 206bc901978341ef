/*
 * tablesync.h: per-table synchronisation while the stream runs.  Tables
 * are copied in groups (one big table, or several small ones); each group
 * reads under the snapshot of its own temporary logical slot, whose
 * consistent point L is exact, and the slot (with its snapshot) goes as
 * soon as the group's last chunk committed: no snapshot on the source is
 * older than one group's copy.
 *
 * States of a group, shared by the copy workers and the apply thread:
 *   PENDING -> SNAPSHOTTING -> SYNCING(L) -> READY(L)
 * (a table of a group is READY as soon as its own chunks are in and its
 * early indexes built).  Apply rule for a change of a source transaction
 * committed at c (pgoutput's Begin final_lsn), as PostgreSQL's own table
 * sync decides it:
 *   PENDING        skip: the table's snapshot, taken later, holds it
 *   SNAPSHOTTING   wait until L is known
 *   SYNCING(L)     c < L: skip (the copy holds it); else wait until READY
 *   READY(L)       c < L: skip; else apply
 * A table becomes ready on the target (pgrelocate.tables.sync_state) in
 * the transaction of its last chunk's done mark (state.h), so after a
 * crash it keeps its L and every other table is copied again.
 */
#ifndef PGRELOCATE_TABLESYNC_H
#define PGRELOCATE_TABLESYNC_H

#include "conninfo.h"
#include "lsn.h"

#include <libpq-fe.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct TableSync TableSync;

typedef enum { TABLESYNC_APPLY, TABLESYNC_SKIP, TABLESYNC_STOPPED } TableSyncVerdict;

typedef struct TableSyncHold {
    int groups_open;             /* groups whose snapshot is held now */
    double oldest_age_s;         /* age of the oldest of them (0: none) */
    int pending, syncing, ready; /* tables in each state */
} TableSyncHold;

/* An empty set; source and slot_prefix (copied) serve the temporary slots
 * (NULL for a follower that only filters).  Tables are numbered 1..ntables. */
TableSync *tablesync_create(const ConnInfo *source, const char *slot_prefix, int ntables,
                            int64_t slot_wait_ms);
void tablesync_destroy(TableSync *ts);

/* A new group: PENDING, or READY at lsn (copied by an earlier run). */
int tablesync_add_group(TableSync *ts, bool ready, Lsn lsn);
/* A table of group; chunks: its chunks still to copy in this run. */
void tablesync_add_table(TableSync *ts, int group, int table_no, const char *schema,
                         const char *name, int chunks);
/* A partitioned root whose changes pgoutput publishes under its own name
 * (publish_via_partition_root): it follows its group (all its partitions
 * are in one group). */
void tablesync_add_root(TableSync *ts, int group, const char *schema, const char *name);

/* The follower's filter from the state on the target alone (no copy in
 * this process): ready tables at their L, others PENDING.  *ts NULL when
 * the migration does not sync per table (every change applies).  false
 * after logging. */
bool tablesync_load(PGconn *tgt, TableSync **ts);

/* A follower's filter read by tablesync_load: take the states resync
 * writes on the target (resync.c).  A table asked for ('resync') waits
 * (SNAPSHOTTING) from now on, and the answer 'resync_ack' is written only
 * after that, so resync takes its snapshot once no change after it can be
 * applied to the table any more; 'syncing' at L and 'ready' at L as in the
 * copy.  false after logging. */
bool tablesync_refresh(TableSync *ts, PGconn *tgt);
/* Whether a resync is under way: apply then commits each source
 * transaction on its own (no lock of a table being resynced outlives the
 * transaction that took it, so resync's TRUNCATE never waits on a batch
 * that waits on resync). */
bool tablesync_resyncing(TableSync *ts);

/* ---- apply side ---- */

/* The entry for a relation as pgoutput names it, or -1 (not tracked:
 * apply). */
int tablesync_find(TableSync *ts, const char *schema, const char *name);
/* The rule above; waits (100 ms at a time) while it must, until *stop or
 * the copy gave up (TABLESYNC_STOPPED). */
TableSyncVerdict tablesync_decide(TableSync *ts, int entry, Lsn commit_lsn,
                                  volatile sig_atomic_t *stop);

/* ---- copy side ---- */

/* The snapshot to copy a chunk of table_no under (into snapshot, len >=
 * 64) and its group's L; the group's temporary slot is created by the
 * first chunk that asks.  false after logging (or when the copy stops). */
bool tablesync_acquire(TableSync *ts, int table_no, char *snapshot, size_t len, Lsn *lsn);
/* A chunk of table_no ended; committed: its rows and done mark are in.
 * The group's slot is dropped once its last chunk committed. */
void tablesync_release(TableSync *ts, int table_no, bool committed);
/* table_no's rows are all in (and its early indexes built): apply its
 * changes after L. */
void tablesync_table_ready(TableSync *ts, int table_no);
/* The copy stopped: waits end with TABLESYNC_STOPPED; slots are dropped. */
void tablesync_abort(TableSync *ts);
/* What is held now, for the status line. */
void tablesync_hold(TableSync *ts, TableSyncHold *out);

#endif
