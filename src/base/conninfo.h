/*
 * conninfo.h: a user's connection string, parsed once (libpq URI or
 * key=value), and the forms pgrelocate needs of it: parameters for
 * PQconnectdbParams, a display form without the password for messages, and
 * a password-less conninfo for child processes (pg_dump, pg_restore), whose
 * password travels in their environment, never in argv.
 * Uses libpq's PQconninfoParse only; needs no server.
 */
#ifndef PGRELOCATE_CONNINFO_H
#define PGRELOCATE_CONNINFO_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ConnInfo ConnInfo;

/* Parse text.  On failure returns NULL and writes a message into err that
 * never quotes the input (it may hold a password). */
ConnInfo *conninfo_parse(const char *text, char *err, size_t errlen);
void conninfo_destroy(ConnInfo *ci);

/* The value of keyword, or NULL when the string did not set it. */
const char *conninfo_get(const ConnInfo *ci, const char *keyword);

/* "host=db1 port=5432 dbname=app user=alice" (only what was given; never
 * the password).  Owned by ci. */
const char *conninfo_display(const ConnInfo *ci);

/* Keywords/values for PQconnectdbParams (expand_dbname = 0): the user's
 * settings, then extra (keyword, value, ..., NULL) overriding the same
 * keywords.  Arrays are NULL-terminated; free both with free() (the strings
 * are owned by ci and extra). */
void conninfo_params(const ConnInfo *ci, const char *const *extra, const char ***keywords,
                     const char ***values);

/* A conninfo string "k='v' ..." with every setting except the password, plus
 * extra pairs; for children.  Caller frees. */
char *conninfo_for_child(const ConnInfo *ci, const char *const *extra);

/* The password given in the string, or NULL. */
const char *conninfo_password(const ConnInfo *ci);

#endif
