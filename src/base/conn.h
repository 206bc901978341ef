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
#include <stdint.h>

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

/* Why a connection attempt failed, as far as libpq lets us tell without
 * reading its message (which the server and libpq may translate): libpq
 * keeps no SQLSTATE of a failed connection for its caller, so this comes
 * from how far the attempt got and whether a password was asked for. */
typedef enum {
    CONN_FAILURE_NONE,        /* connected */
    CONN_FAILURE_OTHER,       /* no better guess: the message must say it */
    CONN_FAILURE_UNREACHABLE, /* no server answered: refused, no socket, unknown host, timeout */
    CONN_FAILURE_PASSWORD,    /* a password was wanted and missing, or sent and refused */
    CONN_FAILURE_REFUSED,     /* refused before any password exchange: pg_hba.conf */
    CONN_FAILURE_NAMES,       /* authenticated, then refused: no such database or role */
    CONN_FAILURE_LOGIN,       /* a password was sent, then refused: it, or a name */
} ConnFailure;

/* How far a failed attempt got, from the libpq status it was in when it
 * failed. */
typedef enum {
    CONN_STAGE_RESOLVING,      /* not connected: host lookup, socket, connect() */
    CONN_STAGE_NEGOTIATING,    /* connected: startup packet, SSL or GSS negotiation */
    CONN_STAGE_AUTHENTICATING, /* waiting for the server's verdict on who we are */
    CONN_STAGE_AUTHENTICATED,  /* the server accepted us, then set up the session */
    CONN_STAGE_CHECKING,       /* target_session_attrs and other checks after that */
} ConnStage;

/* The stage a libpq status belongs to. */
ConnStage conn_stage_of(ConnStatusType status);

/* Classify a failed attempt from its stage, whether our deadline or
 * connect_timeout ended it, libpq's PQconnectionNeedsPassword and
 * PQconnectionUsedPassword, and the SQLSTATE of the server's refusal when
 * it came after authentication (NULL or "": none seen); pure. */
ConnFailure conn_classify_failure(ConnStage stage, bool timed_out, bool needs_password,
                                  bool used_password, const char *sqlstate);

/* The HINT for a failure of a PostgreSQL server connection, or NULL. */
const char *conn_failure_hint(ConnFailure failure);

/* Start a connection with PQconnectStartParams and poll it until it is
 * made or fails, or deadline_ms passes (clock_now_ms; 0: libpq's own
 * connect_timeout, per host, as PQconnectdbParams).  Never NULL but out of
 * memory; on failure *failure says why (*timed_out: our deadline or
 * connect_timeout passed, PQerrorMessage may be empty).  A refusal during
 * authentication without a password is tried once more to tell pg_hba.conf
 * from a missing database or role.  Caller PQfinishes. */
PGconn *conn_connect(const char *const *keywords, const char *const *values, int64_t deadline_ms,
                     ConnFailure *failure, bool *timed_out);

/* Wait until conn's socket is readable (or writable) or deadline_ms
 * passes (clock_now_ms); false on timeout. */
bool conn_wait_socket(PGconn *conn, bool for_write, int64_t deadline_ms);

/* Bounds of catalog and state queries: a lock held by someone else is
 * named after 10 s instead of waited on for ever. */
#define CONN_CATALOG_STATEMENT_MS 60000
#define CONN_CATALOG_LOCK_MS      10000

/* A session with a statement_timeout also gets a client-side bound on the
 * queries conn_script, conn_query*, conn_call and conn_command run: a
 * server that is stopped (SIGSTOP, hung: its kernel still acknowledges TCP,
 * so keepalives do not end the wait) never fires its statement_timeout.
 * The query is sent asynchronously and the socket polled; after
 * conn_query_wait_ms(statement_timeout) without an answer the call logs
 * "[ctx] timed out after N s waiting for the source to answer a query
 * (host=... port=...)", cancels the query (waiting at most
 * CONN_CANCEL_WAIT_MS for the cancel), shuts the connection's socket down
 * and fails; every later call on that connection fails at once. */
#define CONN_QUERY_MARGIN_MS 5000
#define CONN_CANCEL_WAIT_MS  2000

/* Send a cancel request for conn's query, waiting at most
 * CONN_CANCEL_WAIT_MS for it to be delivered (PQcancel waits for the
 * server to close the cancel connection, which a stopped postmaster never
 * does).  Whether the query ends is for the caller to wait for. */
void conn_cancel(PGconn *conn);

/* The client-side wait of a session with this statement_timeout: a
 * quarter more, at least CONN_QUERY_MARGIN_MS more; pure. */
int conn_query_wait_ms(int statement_timeout_ms);

/* Connect and pin the session settings.  On failure logs
 * "could not connect to the source (host=...)" with the server's reason and
 * a hint, and returns NULL. */
PGconn *conn_open(const ConnInfo *ci, const ConnOpts *co);
void conn_close(PGconn *conn);

/* Run sql, one or more statements without parameters (simple protocol:
 * "SET a = 1; SET b = 2", "UPDATE ...; COMMIT"), none of which returns
 * rows: the last result must be PGRES_COMMAND_OK.  Logs the server's
 * error (or the unexpected status) with ctx and returns false otherwise. */
bool conn_script(PGconn *conn, const char *ctx, const char *sql);

/* sql (one or more statements, simple protocol) as PQexec runs it, within
 * the session's bounds: the client-side query wait on a session with a
 * statement_timeout (see above), else as long as it takes, reported by
 * stall.c when the server stops answering.  Returns the last result for
 * the caller to judge (a COPY's PGRES_COPY_IN/OUT included; caller
 * PQclears), or NULL when nothing could be sent or the wait ran out (then
 * logged with ctx). */
PGresult *conn_exec(PGconn *conn, const char *ctx, const char *sql);

/* conn_exec of one statement with parameters, as PQexecParams takes them
 * (types, lengths and formats may be NULL; result_format 1: binary). */
PGresult *conn_exec_params(PGconn *conn, const char *ctx, const char *sql, int nparams,
                           const Oid *types, const char *const *params, const int *lengths,
                           const int *formats, int result_format);

/* Run one query with text parameters; it must return PGRES_TUPLES_OK with
 * exactly nfields columns (nfields < 0: any).  Returns the result (caller
 * PQclears) or NULL after logging. */
PGresult *conn_query(PGconn *conn, const char *ctx, const char *sql, int nparams,
                     const char *const *params, int nfields);

/* conn_query with per-parameter lengths and formats (1 = binary) as in
 * PQexecParams (either may be NULL), and a row count (nrows < 0: any): a
 * result of another shape is logged as "got N rows and M fields, expected
 * ..." and gives NULL. */
PGresult *conn_query_bin(PGconn *conn, const char *ctx, const char *sql, int nparams,
                         const char *const *params, const int *lengths, const int *formats,
                         int nrows, int nfields);

/* A SELECT run for its effect ("SELECT pg_catalog.setval(...)"): as
 * conn_query_bin with any number of fields, the rows discarded.  false
 * after logging. */
bool conn_call(PGconn *conn, const char *ctx, const char *sql, int nparams,
               const char *const *params, const int *lengths, const int *formats, int nrows);

/* A result field as a new string, or NULL when the field is SQL NULL;
 * caller frees. */
char *conn_value_or_null(const PGresult *res, int row, int col);

/* One statement with text parameters that returns no rows: it must return
 * PGRES_COMMAND_OK.  false after logging. */
bool conn_command(PGconn *conn, const char *ctx, const char *sql, int nparams,
                  const char *const *params);

/* The HINT pgrelocate gives for a failed result, or NULL (caller frees):
 * for a lock or statement timeout (55P03, 57014) which server and what to
 * look at; for a full disk (53100) the server's hint, which server, and
 * that rerunning start resumes. */
char *conn_error_hint(const PGresult *res, PGconn *conn);

/* Log a failed result: "[ctx] primary" with the server's DETAIL and HINT
 * (or conn_error_hint's, when the server gives none or the disk is full). */
void conn_log_result_error(const PGresult *res, PGconn *conn, const char *ctx);

/* libpq's message (which may span lines, end in a newline, or be NULL) on
 * one line: newlines and tabs become single spaces.  Caller frees. */
char *conn_one_line(const char *msg);

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
