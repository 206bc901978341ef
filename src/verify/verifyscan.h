/*
 * verifyscan.h: the data half of verify: which tables and columns are
 * compared, the SQL each server runs (per block range: a digest per hash
 * bucket; then the keys and hashes of the rows in differing buckets), and
 * the worker threads that run it under the snapshots verify.c took.
 * Owns no snapshot and reports nothing itself; verify.c prints.
 *
 * A row is hashed from ROW(common columns in name order)::text, printed
 * with pinned settings (extra_float_digits=3, TimeZone=UTC, ISO dates,
 * hex bytea, C money), so identical data gives identical text and any
 * difference (-0 vs 0, 1.0 vs 1.00, one byte of a 10 MB jsonb) a different
 * one.  Rows are matched by the source's primary key; tables without one
 * are compared as multisets of rows.
 */
#ifndef PGRELOCATE_VERIFYSCAN_H
#define PGRELOCATE_VERIFYSCAN_H

#include "conninfo.h"
#include "digest.h"

#include <libpq-fe.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct VerifyTable {
    char *schema_name;
    char *table_name;
    char *display;    /* names_display form */
    char **key_names; /* the source's primary key columns; nkey = 0: no key */
    int nkey;
    char **columns; /* common columns, by name (bytewise) */
    int ncolumns;
    int64_t bytes;     /* source pg_table_size */
    int64_t blocks[2]; /* heap blocks on [source, target] */
    int bucket_bits;
    DigestBucket *buckets[2];
    int64_t rows[2];
    int64_t missing, extra, changed; /* rows, every one counted */
    bool matview; /* a materialized view: refreshed on the target from the copied rows, so
                   * reported apart (a stale one on the source differs) */
} VerifyTable;

/* One reported difference (the first max_differences of the run). */
typedef struct VerifyDiff {
    const VerifyTable *table;
    DigestDiffKind kind;
    DigestRow row; /* its own copy: the key (or row text) that differs */
    int64_t copies;
} VerifyDiff;

typedef struct VerifyScan {
    VerifyTable *tables;
    int ntables;
    VerifyDiff *diffs;
    int ndiffs;
    int64_t total_diffs;
    int64_t scanned_bytes; /* what the workers read back: digests and rows */
} VerifyScan;

typedef bool (*VerifyKeepFn)(const char *schema, const char *name, void *arg);

/* The tables on both sides that keep() accepts, with their common columns
 * and the source's key; both connections read under their snapshots. */
bool verifyscan_list_tables(PGconn *src, PGconn *tgt, VerifyKeepFn keep, void *arg,
                            VerifyScan *out);

typedef struct VerifyScanSetup {
    const ConnInfo *conninfo[2]; /* source, target */
    const char *snapshot[2];     /* exported snapshots the workers import */
    int jobs;                    /* workers per side */
    int max_differences;         /* how many differences to keep for the report */
    bool utf8_bytes[2];          /* hash the UTF-8 form of the row text on this side
                                  * (verifyscan_utf8_sides) */
    volatile sig_atomic_t *stop; /* set by a signal: cancel the queries, return false */
} VerifyScanSetup;

/* Digest every table on both sides in parallel, drill into differing
 * buckets, fill the tables' counts and vs->diffs.  false after logging
 * (a worker's query failed), or when *stop was set (queries in flight are
 * cancelled). */
bool verifyscan_run(VerifyScan *vs, const VerifyScanSetup *setup);

/* Databases in different encodings hold the same characters as different
 * bytes, and the servers hash bytes: then each side that is not UTF8 hashes
 * its text converted to UTF-8.  Sets setup->utf8_bytes from the servers'
 * encodings (server_encoding of a connection to each). */
void verifyscan_utf8_sides(VerifyScanSetup *setup, PGconn *src, PGconn *tgt);

/* The SQL that pins the settings row text depends on beyond conn.c's. */
extern const char *const verifyscan_session_sql;

void verifyscan_free(VerifyScan *vs);

#endif
