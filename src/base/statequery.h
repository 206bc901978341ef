/*
 * statequery.h: the read side of the pgrelocate schema that `status` shows:
 * the migration row, per-table copy progress, totals, post-data, events and
 * cutover runs.  Reads only, in the caller's transaction (status takes one
 * REPEATABLE READ snapshot so the numbers agree).  Timestamps are ISO 8601
 * text in UTC.  Works on every state version state_open accepts.
 */
#ifndef PGRELOCATE_STATEQUERY_H
#define PGRELOCATE_STATEQUERY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct StateMigrationRow {
    char *source, *phase, *replication_name;           /* replication_name: NULL for copy */
    char *started_at, *updated_at, *finished_at, *now; /* finished_at may be NULL */
} StateMigrationRow;

/* One copied table and its chunks. */
typedef struct StateTableRow {
    int table_no;
    char *schema_name, *table_name;
    char *root_schema, *root_name; /* its partition root's name, else its own */
    int64_t bytes_estimate;
    int chunks, chunks_done;
    int64_t rows_done, bytes_done; /* of done chunks */
    bool in_flight;                /* a COPY into it runs now (PostgreSQL 14+) */
} StateTableRow;

/* The copy as a whole (or of some tables). */
typedef struct StateCopyTotals {
    int chunks, chunks_done;
    int64_t rows_done, bytes_done, bytes_estimate;
    int64_t est_done; /* estimate of the done chunks */
    double elapsed_s; /* first chunk's start to the last done (or now); -1 unknown */
} StateCopyTotals;

typedef struct StateEvent {
    char *at, *level, *context, *message;
} StateEvent;

/* A row of pgrelocate.cutovers: a cutover, rollback or dry run. */
typedef struct StateCutoverRecord {
    int id;
    char *direction, *step, *started_at; /* never NULL */
    char *outcome;                       /* done, aborted, recovered; NULL: unfinished */
    char *reason, *finished_at, *fence_lsn;
    bool dry_run;
    int64_t pause_ms; /* -1: none measured (it never paused) */
} StateCutoverRecord;

/* Each returns false after logging ([status] context).  Strings are
 * malloc'ed; the caller frees them (statequery_free_* for arrays). */
bool statequery_load_migration(PGconn *tgt, StateMigrationRow *m);
void statequery_free_migration(StateMigrationRow *m);
/* Every table, biggest estimate first. */
bool statequery_load_tables(PGconn *tgt, StateTableRow **rows, int *n);
void statequery_free_tables(StateTableRow *rows, int n);
/* table_nos: an int[] literal of the tables to count, NULL for all. */
bool statequery_load_totals(PGconn *tgt, const char *table_nos, StateCopyTotals *t);
bool statequery_load_post_data(PGconn *tgt, int64_t *done, char **last_at);
/* Up to max events, errors first, then newest first. */
bool statequery_load_events(PGconn *tgt, StateEvent *events, int max, int *n);
void statequery_free_event(StateEvent *e);
/* The first max source transactions --skip-transaction left out, oldest
 * first (free each with statequery_free_event). */
bool statequery_load_skips(PGconn *tgt, StateEvent *events, int max, int *n);
/* Captured schema changes replayed on this side (one event each, committed
 * with the change) and refused (a run stopped on each). */
bool statequery_load_schema_changes(PGconn *tgt, int64_t *replayed, int64_t *refused);
/* The latest max runs, oldest first, and how many there are in all
 * (none before the first cutover in state of version 1). */
bool statequery_load_cutovers(PGconn *tgt, StateCutoverRecord *runs, int max, int *n, int *total);
void statequery_free_cutover(StateCutoverRecord *c);

#endif
