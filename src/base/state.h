/*
 * state.h: the migration's state, kept in the target database (schema
 * pgrelocate) so a crashed run resumes from any machine and `status` can
 * read it.  Tables:
 *   migration  one row: source, phase, snapshot, the schema archive
 *   tables     one row per copied table: names, column list, copy format
 *   chunks     one row per chunk: range, state; a chunk's rows and its
 *              'done' mark commit in the same target transaction (copy.c)
 *   post_data  post-data entries already restored
 *   events     what happened, with time (errors and milestones)
 *   cutovers   one row per cutover, rollback or dry run, with its step
 * The DDL and its version are stateschema.c's; every command opens the
 * state through state_open() (stateschema.h) first.  status reads through
 * statequery.h, the sync point protocol through syncpoint.h.
 */
#ifndef PGRELOCATE_STATE_H
#define PGRELOCATE_STATE_H

#include "lsn.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    PHASE_SCHEMA,        /* state created; pre-data being restored */
    PHASE_DATA,          /* plan saved; chunks being copied */
    PHASE_LARGE_OBJECTS, /* last phase that reads under the snapshot */
    PHASE_POST_DATA,     /* indexes, constraints, triggers, ... */
    PHASE_SEQUENCES,
    PHASE_ANALYZE,
    PHASE_FOLLOW, /* start: copy done, changes streaming */
    PHASE_DONE,
    PHASE_REVERSE,     /* cut over: the target is primary; changes flow back to the source */
    PHASE_ROLLED_BACK, /* rolled back: the source is primary again; nothing follows */
    PHASE_LAST = PHASE_ROLLED_BACK
} Phase;

const char *state_phase_name(Phase p);

/* Name of the reverse direction's slot and publication (on the target)
 * and replication origin (on the source), derived from the forward
 * replication name; caller frees. */
char *state_reverse_name(const char *replication_name);
/* The phase as stored now (a light read for followers). */
bool state_read_phase(PGconn *tgt, Phase *phase);

typedef struct StateTable {
    int table_no;
    char *schema_name;
    char *table_name;
    char *columns; /* quoted column list, "" for a table without columns */
    bool binary;   /* binary COPY is safe for its column types */
    int64_t bytes; /* estimate at planning */
    int64_t heap_blocks;
    int64_t toast_bytes; /* the TOAST part of bytes */
    /* per-table sync (tablesync.h): 0 when the table was copied under the
     * slot's one snapshot, 'p' pending, 'r' ready at sync_lsn */
    char sync_state;
    Lsn sync_lsn;
    char *root_schema; /* a partition's root (its sync group), or NULL */
    char *root_name;
} StateTable;

typedef struct StateChunk {
    int table_no;
    int chunk_no;
    int nchunks;
    int64_t blk_start; /* -1: whole table */
    int64_t blk_end;   /* -1: open end */
    int64_t est_bytes;
    bool done;
} StateChunk;

typedef struct MigrationState {
    Phase phase;
    bool follow;            /* started by `start` (copy, then follow changes) */
    char *replication_name; /* slot, publication and origin name; NULL for copy */
    Lsn slot_lsn;           /* the slot's consistent point */
    char *tables_filter;    /* --tables of the run that began it; NULL: every table */
    char *source;           /* display form */
    char *snapshot;         /* may be NULL */
    int snapshot_backend_pid;
    char *snapshot_taken_at; /* text timestamp */
    StateTable *tables;
    int ntables;
    StateChunk *chunks;
    int nchunks;
} MigrationState;

/* Record the slot's consistent point. */
bool state_set_slot_lsn(PGconn *tgt, Lsn lsn);
/* Replica identity changes made on the source (to undo at cleanup). */
bool state_record_identity(PGconn *tgt, const char *qualified, char original);
bool state_load_identity(PGconn *tgt, char ***qualified, char **original, int *n);
/* Load everything; caller frees with state_free. */
bool state_load(PGconn *tgt, MigrationState *st);
void state_free(MigrationState *st);

bool state_set_phase(PGconn *tgt, Phase phase);
bool state_set_snapshot(PGconn *tgt, const char *name, int backend_pid);
/* Store the schema archive file's bytes / write them back to path. */
bool state_save_archive(PGconn *tgt, const char *path);
bool state_restore_archive(PGconn *tgt, const char *path, bool may_be_missing);

/* Record the copy plan (tables, and chunks in the order to copy them), in
 * one transaction; state_load gives the chunks back in that order. */
bool state_save_plan(PGconn *tgt, const StateTable *tables, int ntables, const StateChunk *chunks,
                     int nchunks);
/* Mark the chunks of a table pending again (after TRUNCATE on a new
 * snapshot); runs in the caller's transaction. */
bool state_reset_table(PGconn *tgt, int table_no);

/* Mark a chunk done, inside the chunk's transaction.  Returns the
 * server's result as is (caller checks it for PGRES_COMMAND_OK and one row,
 * decides from its SQLSTATE whether to retry, and PQclears it). */
PGresult *state_mark_chunk_done(PGconn *tgt, int table_no, int chunk_no, int64_t rows,
                                int64_t bytes, double seconds);
/* Per-table sync: every table not yet tracked becomes pending, and the n
 * partitions table_no[i] name their roots.  Runs in its own transaction. */
bool state_track_sync(PGconn *tgt, int n, const int *table_no, char *const *root_schema,
                      char *const *root_name);
/* Inside the transaction of a chunk's done mark: when no chunk of the table
 * is pending any more, the table becomes ready at lsn.  Locks the table's
 * row first, so of two last chunks committing at once the later one sees
 * the other's mark.  Returns the server's result as
 * state_mark_chunk_done does. */
PGresult *state_mark_table_synced(PGconn *tgt, int table_no, Lsn lsn);

/* Back to phase data with no snapshot, so every table is copied again;
 * runs in the caller's transaction. */
bool state_restart_data(PGconn *tgt);

/* Post-data entries already restored, by dump id. */
bool state_load_post_done(PGconn *tgt, int **ids, int *n);
bool state_mark_post_done(PGconn *tgt, int dump_id, const char *desc);

/* Append to the event log (best effort: failures are logged, not fatal;
 * nothing is written into state of a version this binary refuses). */
void state_event(PGconn *tgt, const char *level, const char *context, const char *message);

/* The --protocol (auto, text, binary) a start of this migration was last
 * given, recorded as an event of context "protocol" (state_event); NULL in
 * *protocol when none was (caller frees).  false after logging. */
bool state_read_protocol(PGconn *tgt, char **protocol);

/* Target emptiness: counts user relations, routines and types outside
 * extensions and pgrelocate; example names one.  false on query failure. */
bool state_target_is_empty(PGconn *tgt, bool *empty, char **example);

/* ---- pgrelocate.cutovers ---- */

/* Where a pgbouncer entry points (before or after the switch). */
typedef struct StateEndpoint {
    char host[256];
    char port[32];
    char dbname[256];
} StateEndpoint;

/* A run that did not record its outcome (it was interrupted). */
typedef struct StateCutoverRun {
    int id;
    bool rollback;
    char step[32];
    StateEndpoint old_ep, new_ep;
} StateCutoverRun;

/* A new run at step 'prepared'; sets *id.  database: pgbouncer's entry,
 * may be NULL. */
bool state_cutover_begin(PGconn *tgt, bool rollback, bool dry_run, const char *database,
                         const StateEndpoint *old_ep, const StateEndpoint *new_ep, int *id);
bool state_cutover_step(PGconn *tgt, int id, const char *step);
/* The outcome (done, aborted); reason may be NULL; pause_ms <= 0 and a
 * fence of 0 are recorded as unknown. */
bool state_cutover_end(PGconn *tgt, int id, const char *outcome, const char *reason,
                       int64_t pause_ms, Lsn fence);
/* The unfinished runs, oldest first (caller frees *runs). */
bool state_cutover_unfinished(PGconn *tgt, StateCutoverRun **runs, int *n);
/* Close an interrupted run: recovered (its switch took effect) or aborted;
 * the reason names the step it stopped at. */
bool state_cutover_settle(PGconn *tgt, int id, bool switched);

#endif
