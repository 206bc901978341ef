/*
 * tableset.h: which of the source's relations a `--tables` run moves.
 * Patterns (tablefilter.h) are matched against ordinary tables and
 * partitioned roots; a partitioned table brings all its partitions (a
 * partition cannot be chosen alone).  Left out: every other table, the
 * sequences those own (unless a chosen table's default uses them), and
 * views and materialized views that read anything left out (transitively).
 * Refused: a pattern matching nothing (or only partitions: named with
 * their root), a chosen table inheriting from one left out, and a foreign
 * key from a chosen table to one left out (the target could not create
 * either).
 * Does not own: how each step applies the set (catalog, slot, schema).
 */
#ifndef PGRELOCATE_TABLESET_H
#define PGRELOCATE_TABLESET_H

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct TableSet {
    char *excluded_oids;  /* oid[] literal of every relation left out, "{}" when none */
    char **dump_excludes; /* pg_dump --exclude-table patterns naming them exactly */
    int ndump_excludes;
    int nchosen; /* tables matched (partitions not counted) */
} TableSet;

/* Resolve spec on src (outside any snapshot: the names as they are now).
 * Logs the reason and the fix, and returns false, when spec is malformed,
 * a pattern matches no table, or a chosen table inherits from or has a
 * foreign key to one left out.  Free with tableset_free. */
bool tableset_resolve(PGconn *src, const char *spec, TableSet *out);
void tableset_free(TableSet *ts);

#endif
