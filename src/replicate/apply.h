/*
 * apply.h: apply decoded pgoutput messages to the target.
 *
 * One target connection, in session_replication_role = replica (user
 * triggers and foreign keys do not fire: the source already checked them)
 * and with the replication origin set up, so every target transaction
 * records the source position it applied up to (exactly once after a
 * crash: restart streams from pg_replication_origin_progress).
 *
 * Relations are cached by source OID and mapped to target tables by name,
 * columns by name; a column the target lacks stops apply (schema drift).
 * One prepared statement per (relation, operation, set of columns present).
 * Statements go out in libpq pipeline mode, synchronised in groups; many
 * source transactions share one target transaction, committed when a
 * size, count or time bound is reached, or when the stream goes idle.
 * A schema change captured on the source (ddl.h) is replayed at its place,
 * in the target transaction of its source transaction, which then commits
 * at that source transaction's end; one that cannot be replayed exactly
 * stops apply with the repair.
 * An UPDATE or DELETE that finds no row is a conflict: apply stops with the
 * relation and key, and the target transaction is rolled back.
 * Memory does not grow with transaction size: changes are sent as they
 * arrive.
 */
#ifndef PGRELOCATE_APPLY_H
#define PGRELOCATE_APPLY_H

#include "lsn.h"
#include "pgoutput.h"
#include "tablesync.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct Apply Apply;

typedef struct ApplyStats {
    int64_t transactions; /* source transactions committed on the target */
    int64_t changes;      /* rows inserted, updated, deleted */
    int64_t batches;      /* target transactions */
    int64_t ddl;          /* schema changes replayed (committed or not) */
} ApplyStats;

/* Set up tgt for applying (replica role, origin session).  origin is the
 * replication origin's name (created when missing).  NULL after logging. */
Apply *apply_create(PGconn *tgt, const char *origin);
void apply_destroy(Apply *a);

/* The origin's committed progress on the target (where to restart). */
bool apply_origin_progress(PGconn *tgt, const char *origin, Lsn *lsn);

/* Apply one message.  false after logging: the target transaction is
 * rolled back and the caller must restart from apply_committed_lsn. */
bool apply_message(Apply *a, const PgoMessage *m);

/* Transactions that carry this replication origin (changes pgrelocate
 * applied on the other side) are committed empty: nothing loops back. */
void apply_set_skip_origin(Apply *a, const char *origin);

/* Leave out the source transaction whose commit record is at commit_lsn
 * (0: none): its changes are not applied, the origin moves past it, and an
 * event in the same target transaction records it (pgrelocate start
 * --skip-transaction). */
void apply_set_skip_lsn(Apply *a, Lsn commit_lsn);

/* Per-table sync: changes of tracked tables apply, are skipped or wait as
 * tablesync_decide says; its waits end when *stop is set (then
 * apply_message fails as on a lost connection).  Before the first
 * Relation message. */
void apply_set_sync(Apply *a, TableSync *sync, volatile sig_atomic_t *stop);

/* exact: rows held for multi-row statements never span source
 * transactions, so a failing statement names the one transaction it came
 * from (slower; the follower turns it on after an ambiguous failure). */
void apply_set_exact(Apply *a, bool exact);
/* Did the last failure come from a statement carrying the changes of
 * several source transactions (then retry with apply_set_exact)? */
bool apply_failure_ambiguous(const Apply *a);

/* Commit the open batch, if any, when at a transaction boundary. */
bool apply_commit(Apply *a);
/* True between Begin and Commit of a source transaction. */
bool apply_in_transaction(const Apply *a);
/* True when a batch is open (something not yet committed on the target). */
bool apply_batch_open(const Apply *a);

/* Whether the last failure came from a broken connection (reconnect and
 * retry) rather than from the data (stop). */
bool apply_connection_lost(const Apply *a);
/* The commit end LSN of the last source transaction durably committed. */
Lsn apply_committed_lsn(const Apply *a);
/* Time of the last committed source transaction (µs since 2000-01-01). */
int64_t apply_committed_time_us(const Apply *a);
void apply_get_stats(const Apply *a, ApplyStats *out);

#endif
