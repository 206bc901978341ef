/*
 * digest.h: the pure half of verify: how rows are grouped into buckets and
 * summed (bucket count, sum parsing), how a table is split into block
 * ranges for parallel scans, how the rows fetched from differing buckets
 * are matched (by key, or as multisets for tables without a key), and how
 * a key is shown to people.  No libpq, no I/O: unit-tested alone.
 *
 * A row's hash is a 64-bit value the server computes from the row's text
 * (verify.c builds the SQL); a bucket is the hash's low bits, so a row and
 * its exact copy always land in the same bucket on both servers, whatever
 * their physical order.  A bucket's digest (row count, sum of hashes mod
 * 2^64) does not depend on row order either.
 */
#ifndef PGRELOCATE_DIGEST_H
#define PGRELOCATE_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct DigestBucket {
    int64_t rows;
    uint64_t sum; /* sum of the rows' hashes, mod 2^64 */
} DigestBucket;

/* log2 of the number of buckets for a table of about est_rows rows: a few
 * hundred rows per bucket, from 2^4 to 2^16 buckets. */
int digest_bucket_bits(int64_t est_rows);

/* Parse a decimal integer of any length (the text of a numeric sum, maybe
 * negative) into its value mod 2^64.  false if text is not an integer. */
bool digest_parse_sum(const char *text, uint64_t *out);

/* Add src's buckets into dst (n buckets each). */
void digest_add_buckets(DigestBucket *dst, const DigestBucket *src, size_t n);

/* The buckets whose digests differ, grouped into drill-down passes of at
 * most max_rows rows (the larger side's count; a bucket bigger than that
 * gets a pass of its own).  Each pass is an int8[] literal, "{3,17}".
 * Returns the number of passes; *passes is malloc'ed (NULL when none),
 * the caller frees each and the array. */
int digest_plan_passes(const DigestBucket *src, const DigestBucket *tgt, int nbuckets,
                       int64_t max_rows, char ***passes);

/* A block range [start, end) of a table's heap; end = -1: to the end (the
 * last range is open, so rows in blocks added since the size was read are
 * scanned too). */
typedef struct DigestRange {
    int64_t start;
    int64_t end;
} DigestRange;

/* How many ranges to scan a table of bytes (with TOAST) and nblocks heap
 * blocks in: ranges of at most 256 MB, and for tables above 32 MB at
 * least one per worker, so a big table keeps every worker busy; never
 * more ranges than blocks. */
int digest_range_count(int64_t bytes, int64_t nblocks, int jobs);

/* Split nblocks into ranges of about blocks_per_range blocks (at least
 * one range, the last open).  Returns the count; *out is malloc'ed, the
 * caller frees it. */
int digest_split_blocks(int64_t nblocks, int64_t blocks_per_range, DigestRange **out);

/* One row fetched from a differing bucket.  key: the key's values, each
 * followed by '\0' (PostgreSQL text never contains '\0'), keylen bytes in
 * all; for a table without a key, key is the row's text (for display) and
 * rows are matched by hash alone.  Owned by whoever filled it. */
typedef struct DigestRow {
    char *key;
    size_t keylen;
    uint64_t hash;
} DigestRow;

typedef enum {
    DIGEST_MISSING, /* on the source, not on the target */
    DIGEST_EXTRA,   /* on the target, not on the source */
    DIGEST_CHANGED  /* same key, different values */
} DigestDiffKind;

/* Called once per difference; for DIGEST_CHANGED src and tgt are both set,
 * otherwise the one that exists.  copies: for tables without a key, how
 * many copies of that row are missing or extra (else 1). */
typedef void (*DigestDiffFn)(DigestDiffKind kind, const DigestRow *src, const DigestRow *tgt,
                             int64_t copies, void *arg);

/* Match the source's and the target's rows of the same buckets (sorts both
 * arrays in place) and report each difference in key order (keyed) or
 * hash order (keyless).  Returns the number of differing rows (copies
 * counted one by one). */
int64_t digest_match_rows(DigestRow *src, size_t nsrc, DigestRow *tgt, size_t ntgt, bool keyed,
                          DigestDiffFn fn, void *arg);

/* "(id, \"Name\")=(42, 'O''Brien')": a key as people read it (and as SQL
 * accepts it): column names quoted when needed, values as literals,
 * quoted unless plainly numeric, with E'..\n..' escapes for control
 * characters so one difference stays on one line.  names: ncols column
 * names; key as in DigestRow.  Caller frees. */
char *digest_format_key(const char *const *names, int ncols, const char *key, size_t keylen);

/* A row's text for one line of output: control characters escaped as in
 * digest_format_key, cut after max_chars bytes with "...".  Caller frees. */
char *digest_format_row(const char *text, size_t len, size_t max_chars);

#endif
