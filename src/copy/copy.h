/*
 * copy.h: the data phase.  N workers, each with its own source and target
 * connection, take chunks largest first.  For each chunk:
 *   source: BEGIN REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT s;
 *           COPY (rows of the chunk) TO STDOUT (binary, or text for types
 *           whose binary form carries server-specific OIDs)
 *   target: BEGIN; [TRUNCATE ONLY t when the chunk is the whole table];
 *           COPY t FROM STDIN [FREEZE]; mark the chunk done; COMMIT
 * Bytes pass from one connection to the other unparsed, the source's
 * row-sized messages gathered into larger ones.  The target sessions load
 * with synchronous_commit off, lz4 TOAST compression where the server has
 * it and a larger maintenance_work_mem (copy.c says why each is safe).
 * The TRUNCATE of a whole-table chunk holds its table's ACCESS EXCLUSIVE
 * lock until the chunk commits: readers of that table on the target wait.
 * The chunk's rows and its 'done' mark commit together, so after a crash a
 * chunk is either fully there and marked, or absent and pending: copied
 * exactly once.
 * Locks on the source last one chunk (COPY's ACCESS SHARE).
 *
 * When every chunk of a table is copied (in this run or an earlier one),
 * the table is "ready": the next worker free runs the job's table_ready
 * work for it (its index builds) before taking another chunk, so indexes
 * of copied tables are built while the rest of the data still copies.
 */
#ifndef PGRELOCATE_COPY_H
#define PGRELOCATE_COPY_H

#include "conninfo.h"
#include "metrics.h"
#include "progress.h"
#include "state.h"
#include "tablesync.h"

#include <signal.h>
#include <stdbool.h>

/* Work for a table whose rows are all copied, run on a worker thread with
 * that worker's target connection (idle, no transaction open).  worker is
 * the worker's number (0..jobs-1).  Returns false when the run must stop
 * (after logging why). */
typedef bool (*CopyTableReadyFn)(void *arg, int table_no, int worker, PGconn *tgt);

typedef struct CopyJob {
    const ConnInfo *source;
    const ConnInfo *target;
    const char *snapshot;        /* exported snapshot every chunk imports */
    const char *client_encoding; /* the target's server encoding */
    const StateTable *tables;    /* by table_no - 1 */
    int ntables;
    const StateChunk *chunks; /* pending ones are copied */
    int nchunks;
    int jobs;
    Progress *progress;
    volatile sig_atomic_t *interrupted; /* set by a signal: stop after current chunks */
    Metrics *metrics;                   /* counters to update, or NULL */
    CopyTableReadyFn table_ready;       /* or NULL */
    void *table_ready_arg;
    /* per-table sync, or NULL: every chunk under snapshot.  With it each
     * chunk reads under its group's snapshot, and a table's last chunk
     * marks it ready at its group's L in the chunk's transaction. */
    TableSync *sync;
} CopyJob;

/* Copy every pending chunk.  Returns true when all are done; false after an
 * error (logged with its chunk) or an interruption. */
bool copy_run(const CopyJob *job);

/* Run each SQL statement once on the target, jobs at a time (ANALYZE). */
bool copy_run_statements(const ConnInfo *target, char **statements, int n, int jobs,
                         Progress *progress, volatile sig_atomic_t *interrupted);

#endif
