/*
 * stateschema.h: the pgrelocate schema on the target as a whole: every
 * table's DDL, the version of that schema, and the check every command
 * makes before it reads or writes the state (refuse state newer than this
 * binary; upgrade older state in place when the command writes).
 *
 * Versions:
 *   1  the schema before it had a version (no pgrelocate.schema_version);
 *      cutovers and sync_points made when first needed
 *   2  every table made with the schema; pgrelocate.schema_version
 */
#ifndef PGRELOCATE_STATESCHEMA_H
#define PGRELOCATE_STATESCHEMA_H

#include <libpq-fe.h>
#include <stdbool.h>

/* The version this binary creates, and the newest it reads. */
#define STATE_VERSION 3

typedef enum {
    STATE_READ, /* status, check, cleanup: older state is used as it is */
    STATE_WRITE /* start, verify, cutover, rollback: older state is upgraded first */
} StateAccess;

/* Does the target hold pgrelocate state this binary can use?  Returns true
 * with *exists false when it holds none.  State of a newer version than
 * STATE_VERSION is refused (false, logged with both versions; nothing
 * changed).  With STATE_WRITE, older state is brought to STATE_VERSION in
 * one transaction, logged once (and in the event log).  false after
 * logging when a query fails. */
bool state_open(PGconn *tgt, StateAccess access, bool *exists);

/* The state's version without judging it: 0 when the target holds no
 * state, 1 for state made before versions.  For check, which reports a
 * version it cannot use as a FAIL of its own.  false after logging. */
bool state_read_version(PGconn *tgt, int *version);

/* Create the schema at STATE_VERSION and the migration row (phase
 * schema), in one transaction.  replication_name: NULL for a copy;
 * tables_filter: the --tables spec, NULL for all tables. */
bool state_create(PGconn *tgt, const char *source_display, const char *source_dbname,
                  const char *replication_name, const char *tables_filter);

#endif
