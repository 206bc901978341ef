/*
 * conn.h: libpq connections as pgrelocate opens them (normal and
 * replication=database), checked results, server error reporting with
 * context, and identifier quoting.  Every session gets pinned settings:
 * search_path=pg_catalog (so no user object can shadow what we call),
 * DateStyle=ISO, IntervalStyle=postgres, extra_float_digits=3, TimeZone=UTC,
 * no statement/idle/lock timeouts of the user's (only the ones the caller
 * asks for in ConnOpts), and on the source row_security=off (an RLS table
 * errors instead of being copied short).  Every connection gets
 * connect_timeout, TCP keepalives and tcp_user_timeout unless the user's
 * connection string sets them (conninfo_timeouts).
 */
#ifndef PGRELOCATE_CONN_H
#define PGRELOCATE_CONN_H

#include "conninfo.h"

#include <libpq-fe.h>
#include <stdbool.h>

typedef enum { CONN_SOURCE, CONN_TARGET } ConnSide;

typedef struct ConnOpts {
    ConnSide side;
    bool replication;            /* replication=database walsender connection */
    const char *app_name;        /* fallback_application_name, e.g. "pgrelocate copy" */
    const char *client_encoding; /* NULL: UTF8 */
    /* statement_timeout and lock_timeout of the session (0: none): catalog
     * and state connections take CONN_CATALOG_*; connections that COPY,
     * build indexes, ANALYZE, apply or compare rows take none */
    int statement_timeout_ms;
    int lock_timeout_ms;
} ConnOpts;

/* Bounds of catalog and state queries: a lock held by someone else is
 * named after 10 s instead of waited on for ever. */
#define CONN_CATALOG_STATEMENT_MS 60000
#define CONN_CATALOG_LOCK_MS      10000

/* Connect and pin the session settings.  On failure logs
 * "could not connect to the source (host=...)" with the server's reason and
 * a hint, and returns NULL. */
PGconn *conn_open(const ConnInfo *ci, const ConnOpts *co);
void conn_close(PGconn *conn);

/* Run sql (no parameters) expecting PGRES_COMMAND_OK or PGRES_TUPLES_OK;
 * logs the server's error with ctx and returns false otherwise. */
bool conn_exec(PGconn *conn, const char *ctx, const char *sql);

/* Run sql with text parameters, expect rows with exactly nfields columns
 * (nfields < 0: any).  Returns the result (caller PQclears) or NULL after
 * logging. */
PGresult *conn_query(PGconn *conn, const char *ctx, const char *sql, int nparams,
                     const char *const *params, int nfields);

/* Same for a statement that returns no rows (PGRES_COMMAND_OK). */
bool conn_command(PGconn *conn, const char *ctx, const char *sql, int nparams,
                  const char *const *params);

/* conn_command with per-parameter lengths and formats (1 = binary), as in
 * PQexecParams; either may be NULL. */
bool conn_command_bin(PGconn *conn, const char *ctx, const char *sql, int nparams,
                      const char *const *params, const int *lengths, const int *formats);

/* Log a failed result: "[ctx] primary" with the server's DETAIL and HINT. */
void conn_log_result_error(const PGresult *res, PGconn *conn, const char *ctx);

/* SQLSTATE of a failed result, or "" (never NULL). */
const char *conn_sqlstate(const PGresult *res);

/* True for errors where reconnecting and redoing the unit of work is right
 * (class 08, admin shutdown, serialization failure, deadlock). */
bool conn_error_is_transient(const char *sqlstate, PGconn *conn);

/* Quoted identifier / schema-qualified name; caller frees with free(). */
char *conn_quote_ident(PGconn *conn, const char *ident);
char *conn_qualify(PGconn *conn, const char *schema, const char *name);
/* Quoted literal; caller frees with free(). */
char *conn_quote_literal(PGconn *conn, const char *value);

#endif
