/*
 * bouncerconf.h: one database entry of a pgbouncer.ini, read and rewritten
 * in place.  Only the value of that entry's line changes (its pairs in the
 * order they were, the named keywords replaced or appended); every other
 * byte of the file stays as it was.  The file is replaced atomically
 * (temporary file in the same directory, fsync, rename, fsync of the
 * directory).  Pure: no libpq, no server.
 */
#ifndef PGRELOCATE_BOUNCERCONF_H
#define PGRELOCATE_BOUNCERCONF_H

#include "strbuf.h"

#include <stdbool.h>
#include <stddef.h>

/* In text (len bytes, a whole pgbouncer.ini), find the [databases] entry
 * whose name is dbname (written bare or as a "quoted" name) and set the
 * pairs in set ({keyword, value, keyword, value, ..., NULL}) in its
 * connection string.  On success *out holds the new text (caller frees
 * with strbuf_free) and, if old_value is not NULL, *old_value the entry's
 * value before (caller frees).  false with a message in err when the file
 * has no such entry or has it twice (nothing is written to out then). */
bool bouncerconf_rewrite(const char *text, size_t len, const char *dbname, const char *const *set,
                         StrBuf *out, char **old_value, char *err, size_t errlen);

/* The value of keyword in the connection string of dbname's entry: a
 * malloc'd unquoted copy in *value, or NULL when the entry lacks it.
 * false with err when there is no such entry. */
bool bouncerconf_get(const char *text, size_t len, const char *dbname, const char *keyword,
                     char **value, char *err, size_t errlen);

/* Read a whole file into sb; false with err (errno text) otherwise. */
bool bouncerconf_read_file(const char *path, StrBuf *sb, char *err, size_t errlen);

/* Replace path's content with text atomically, keeping its permission
 * bits: write path.pgrelocate-XXXXXX in the same directory, fsync, rename
 * over path, fsync the directory.  false with err (the old file intact). */
bool bouncerconf_write_file(const char *path, const char *text, size_t len, char *err,
                            size_t errlen);

#endif
