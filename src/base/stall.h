/*
 * stall.h: a report for the waits that legitimately have no deadline (a
 * copy chunk's COPY, index builds, ANALYZE, apply, verify's digests, the
 * schema's restore sessions).  A watched session that has received nothing
 * for STALL_IDLE_MS gets its server probed with a fresh connection
 * (connect_timeout STALL_PROBE_CONNECT_S, "SELECT 1"); when the probe gets
 * no answer (a stopped postmaster accepts TCP but never answers), a warning
 * names the host, the port, the waiting context and what to check, again
 * every STALL_IDLE_MS while it lasts.  The wait itself goes on (it rides
 * through a SIGCONT; Ctrl-C ends it as before); a probe that is answered
 * says nothing: the statement is just long.  One monitor thread, started by
 * the first watch, does the probing; the watched sessions are not touched.
 */
#ifndef PGRELOCATE_STALL_H
#define PGRELOCATE_STALL_H

#include "conn.h"

#include <libpq-fe.h>

/* Silence before the first probe and between warnings; the tests set
 * PGRELOCATE_TEST_STALL_MS to make it seconds. */
#define STALL_IDLE_MS         60000
#define STALL_PROBE_CONNECT_S 3

typedef struct StallWatch StallWatch;

/* Watch conn (on side, for "[ctx] ...") until stall_unwatch.  NULL (and
 * nothing to do) when conn is NULL or already watched.  Never fails
 * otherwise.  The caller unwatches before it closes conn. */
StallWatch *stall_watch(PGconn *conn, ConnSide side, const char *ctx);

/* Stop watching (NULL: nothing); frees w. */
void stall_unwatch(StallWatch *w);

#endif
