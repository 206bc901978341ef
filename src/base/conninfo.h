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

/* The timeouts every connection gets unless the user's string (or, for
 * connect_timeout, PGCONNECT_TIMEOUT) sets them: connect_timeout 10 s, TCP
 * keepalives (idle 10 s, interval 5 s, 3 probes) and tcp_user_timeout 30 s,
 * so a dead or black-holed peer is found in well under a minute.  Writes
 * keyword, value pairs and a NULL into out (CONNINFO_TIMEOUTS_MAX entries
 * at most); returns the number of strings written.  The strings are
 * static. */
#define CONNINFO_TIMEOUTS_MAX 13
int conninfo_timeouts(const ConnInfo *ci, const char **out);

/* The connect_timeout in force, in seconds (0: none), as libpq reads it:
 * the string's, else PGCONNECT_TIMEOUT, else ours; 1 counts as 2. */
int conninfo_connect_timeout_s(const ConnInfo *ci);

/* The password given in the string, or NULL. */
const char *conninfo_password(const ConnInfo *ci);

#endif
