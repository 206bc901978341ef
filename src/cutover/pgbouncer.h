/*
 * pgbouncer.h: pgbouncer's admin console (the virtual database
 * "pgbouncer"), spoken with libpq's simple query protocol: PAUSE, RESUME,
 * RELOAD and SHOW DATABASES for one database.  Every command waits with a
 * deadline; a PAUSE still draining in-flight transactions at its deadline
 * is undone by a RESUME from a second admin connection (pgbouncer answers
 * a waiting PAUSE only when the drain ends).  The config file is
 * bouncerconf.h's.
 */
#ifndef PGRELOCATE_PGBOUNCER_H
#define PGRELOCATE_PGBOUNCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Bouncer Bouncer;

typedef enum {
    BOUNCER_OK,
    BOUNCER_TIMEOUT, /* no answer before the deadline; the connection is unusable */
    BOUNCER_FAILED   /* error answer or lost connection (logged unless told not to) */
} BouncerStatus;

/* Connect to the admin console at uri (its dbname is replaced by
 * "pgbouncer"), giving up after timeout_ms.  NULL after logging the reason
 * and a fix (admin_users, the port). */
Bouncer *bouncer_connect(const char *uri, int timeout_ms);
void bouncer_close(Bouncer *b);
/* "host=... port=... user=..." without the password; owned by b. */
const char *bouncer_display(const Bouncer *b);

/* Send verb (PAUSE, RESUME, RELOAD, ...) with dbname quoted as pgbouncer
 * wants it, or with no argument when dbname is NULL, and do not wait.
 * false after logging. */
bool bouncer_send(Bouncer *b, const char *verb, const char *dbname);
/* Wait up to timeout_ms for the answer to what bouncer_send sent.  On
 * BOUNCER_FAILED the server's message is in err (not logged). */
BouncerStatus bouncer_wait(Bouncer *b, int timeout_ms, char *err, size_t errlen);

/* send + wait; logs failures with the fix.  RESUME of a database that is
 * not paused counts as done. */
BouncerStatus bouncer_run(Bouncer *b, const char *verb, const char *dbname, int timeout_ms);

/* PAUSE dbname and wait until pgbouncer reports the drain finished, at
 * most timeout_ms; on timeout a RESUME goes out on spare (a second admin
 * connection) so the database is never left paused, and b must be closed.
 * BOUNCER_TIMEOUT then; BOUNCER_FAILED after logging. */
BouncerStatus bouncer_pause(Bouncer *b, Bouncer *spare, const char *dbname, int timeout_ms);

/* One row of SHOW DATABASES. */
typedef struct BouncerDatabase {
    char host[256];
    int port;
    char database[256]; /* the server-side database name */
    bool paused;
    bool disabled;
} BouncerDatabase;

/* SHOW DATABASES, the row named dbname; *found false when there is none.
 * false after logging. */
bool bouncer_show_database(Bouncer *b, const char *dbname, BouncerDatabase *out, bool *found);

#endif
