/*
 * progress.h: what a person sees while long work runs.
 *
 * Three modes: PROGRESS_TTY (stderr is a terminal: a live line per worker
 * and an overall bar with bytes, rate and ETA, redrawn a few times a
 * second by a background thread), PROGRESS_PLAIN (one line per finished
 * table and per phase, for logs and CI), PROGRESS_QUIET (nothing).
 *
 * Workers report through progress_worker_* (cheap, lock-free on the hot
 * path: progress_worker_add is called once per COPY row).  Everything
 * else takes an internal mutex.  Log messages printed while the live
 * display runs clear it first and redraw it after (log_set_hooks).
 *
 * The summary (progress_print_summary) goes to stdout: per phase and per
 * table, rows, bytes and seconds.
 */
#ifndef PGRELOCATE_PROGRESS_H
#define PGRELOCATE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { PROGRESS_QUIET, PROGRESS_PLAIN, PROGRESS_TTY } ProgressMode;

typedef struct Progress Progress;

/* Mode chosen by the caller (usually isatty(STDERR_FILENO) ? TTY : PLAIN).
 * nworkers: number of worker slots (0..nworkers-1). */
Progress *progress_create(ProgressMode mode, int nworkers);
void progress_destroy(Progress *p);

/* A phase begins ("schema", "data", "indexes", "sequences",
 * "large objects", "analyze"); the previous one ends.  The summary lists
 * phases with their durations. */
void progress_phase_begin(Progress *p, const char *phase);
void progress_phase_end(Progress *p);

/* Totals for the data phase: estimated bytes (on-disk size of what will be
 * copied) and number of chunks. */
void progress_set_total(Progress *p, int64_t total_bytes, int total_chunks);

/* Worker w starts a chunk.  label: e.g. "public.orders 3/8" (copied).
 * est_bytes: the chunk's share of total_bytes. */
void progress_worker_begin(Progress *p, int w, const char *label, int64_t est_bytes);
/* Hot path: bytes moved by worker w since the last call. */
void progress_worker_add(Progress *p, int w, int64_t bytes);
/* Chunk finished: rows copied; its est_bytes now count as done. */
void progress_worker_end(Progress *p, int w, int64_t rows);
/* Worker w is idle or doing something not measured in bytes
 * (label, e.g. "index public.orders_pkey"; NULL = idle). */
void progress_worker_status(Progress *p, int w, const char *label);

/* A table finished copying (all its chunks): recorded for the summary; in
 * PLAIN mode also printed as one line. */
void progress_table_done(Progress *p, const char *table, int64_t rows, int64_t bytes,
                         double seconds);

/* Start/stop the live display thread (TTY mode; no-op otherwise). */
void progress_start(Progress *p);
void progress_stop(Progress *p);

/* A consistent reading of the counters, for machine-readable output and
 * tests.  Additive to the display API: nothing above depends on it. */
typedef struct ProgressSnapshot {
    int64_t done_bytes; /* finished chunks' est_bytes + in-flight min(moved, est);
                         * never above total_bytes when that is set */
    int64_t total_bytes;
    int64_t moved_bytes; /* bytes workers actually moved (progress_worker_add) */
    int chunks_done;
    int total_chunks;
    double percent;          /* 0..100, rounded down to 0.1 */
    double rate_bytes_per_s; /* done bytes per second over the last few seconds */
} ProgressSnapshot;

void progress_get_snapshot(Progress *p, ProgressSnapshot *out);

/* Summary tables to out (phases, then tables sorted by seconds desc, at most
 * max_tables rows, "... and N more"), then totals. */
void progress_print_summary(Progress *p, FILE *out, int max_tables);

#endif
