/*
 * tablefilter.h: the --tables PATTERN language.  Pure (no libpq): parses a
 * comma-separated list of psql-style patterns and matches schema and table
 * names against it; which relations a run then moves is decided by the
 * caller (tableset.c for copy and start).
 *
 *   PATTERN  := [PART "."] PART         one dot at most (outside quotes)
 *   PART     := unquoted characters and "double-quoted" runs, mixed
 *   unquoted: ASCII letters fold to lower case; * matches any run of
 *             characters (also none), ? exactly one character (UTF-8 aware)
 *   quoted:   taken literally, case kept, "" is one double quote; * ? . ,
 *             inside quotes are ordinary characters
 * A pattern without a dot matches the table name in every schema.
 * Blanks around a pattern are ignored; an empty pattern is an error.
 */
#ifndef PGRELOCATE_TABLEFILTER_H
#define PGRELOCATE_TABLEFILTER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct TableFilter TableFilter;

/* Parse spec (one or more comma-separated patterns).  Returns a filter to
 * free with tablefilter_destroy, or NULL with a one-line reason naming the
 * bad pattern in err. */
TableFilter *tablefilter_parse(const char *spec, char *err, size_t errlen);
void tablefilter_destroy(TableFilter *f);

/* Does schema.table match any pattern?  Each pattern that matches is
 * remembered (see tablefilter_unmatched). */
bool tablefilter_match(TableFilter *f, const char *schema, const char *table);

/* Patterns that matched nothing since the filter was parsed, as written by
 * the user and separated by ", ", or NULL when every pattern matched.
 * Caller frees. */
char *tablefilter_unmatched(const TableFilter *f);

/* The patterns as one regular expression (PostgreSQL ARE) that matches
 * schema || chr(1) || table exactly when tablefilter_match does: for SQL
 * that runs on the server (the schema-change capture).  Caller frees. */
char *tablefilter_regex(const TableFilter *f);

/* Number of patterns. */
int tablefilter_count(const TableFilter *f);

#endif
