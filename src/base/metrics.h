/*
 * metrics.h: Prometheus text-format metrics of a running migration, served
 * over HTTP (libmicrohttpd, its own thread: a slow scraper never blocks
 * the stream).  Writers update atomics; nothing here takes a lock that the
 * copy or apply paths wait on.
 */
#ifndef PGRELOCATE_METRICS_H
#define PGRELOCATE_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct Metrics {
    atomic_int_fast64_t phase; /* Phase (state.h) */
    atomic_int_fast64_t copy_bytes;
    atomic_int_fast64_t copy_rows;
    atomic_int_fast64_t copy_chunks_done;
    atomic_int_fast64_t apply_transactions;
    atomic_int_fast64_t apply_changes;
    atomic_int_fast64_t lag_bytes;          /* source WAL end - what is durable on the target */
    atomic_int_fast64_t retained_wal_bytes; /* -1 unknown */
    atomic_int_fast64_t errors;             /* filled from the log when rendered */
    /* captured schema changes replayed (ddl.h) */
    atomic_int_fast64_t apply_schema_changes;
    struct MHD_Daemon *daemon;
} Metrics;

/* Parse "ADDR:PORT" ("127.0.0.1:9187", "[::1]:9187", "localhost:9187") and
 * start serving GET /metrics.  false after logging. */
bool metrics_start(Metrics *m, const char *listen);
void metrics_stop(Metrics *m);

/* The text format body; caller frees. */
char *metrics_render(const Metrics *m);

#endif
