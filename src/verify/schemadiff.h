/*
 * schemadiff.h: verify's schema comparison: tables, columns (type,
 * collation, NOT NULL, default, identity, generation), indexes (definition
 * and validity), constraints (definition, NOT VALID) and sequences
 * (definition; the target's value must have reached the source's).  Reads
 * both catalogs in whatever transaction each connection is in; changes
 * nothing.  The data comparison is verify.c's.
 */
#ifndef PGRELOCATE_SCHEMADIFF_H
#define PGRELOCATE_SCHEMADIFF_H

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct SchemaDiff {
    const char *kind;    /* "table", "column", "index", "constraint", "sequence" (static) */
    char *object;        /* quoted SQL name, e.g. public."Order".id */
    const char *problem; /* "missing on target", "extra on target", "different",
                          * "target behind source" (static) */
    char *source;        /* its definition (or value) on the source, NULL when absent */
    char *target;
    bool counts; /* false: reported but not a failure (a sequence behind while
                  * changes are still replicated: sequences are set at cutover) */
} SchemaDiff;

/* Which objects to compare: those of tables (and sequences owned by, or
 * named like, tables) for which keep(schema, name, arg) is true. */
typedef bool (*SchemaKeepFn)(const char *schema, const char *name, void *arg);

/* Compare; *out (caller frees with schemadiff_free) gets the differences
 * in (kind, name) order.  sequences_may_lag: a target sequence behind the
 * source's is reported with counts = false.  false after logging. */
bool schemadiff_run(PGconn *src, PGconn *tgt, SchemaKeepFn keep, void *arg, bool sequences_may_lag,
                    SchemaDiff **out, int *n);
void schemadiff_free(SchemaDiff *d, int n);

#endif
