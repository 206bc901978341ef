/*
 * conn.c: open, check, report, quote.
 */
#include "conn.h"

#include "log.h"
#include "strbuf.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *side_name(ConnSide side)
{
    return side == CONN_SOURCE ? "source" : "target";
}

static bool pin_settings(PGconn *conn, const ConnOpts *co)
{
    StrBuf sql;
    bool ok;

    strbuf_init(&sql);
    strbuf_appendf(&sql,
                   "SET search_path = pg_catalog; SET DateStyle = ISO; "
                   "SET IntervalStyle = postgres; SET extra_float_digits = 3; "
                   "SET TimeZone = 'UTC'; SET statement_timeout = %d; SET lock_timeout = %d; "
                   "SET idle_in_transaction_session_timeout = 0; SET client_encoding = '%s';",
                   co->statement_timeout_ms, co->lock_timeout_ms,
                   co->client_encoding ? co->client_encoding : "UTF8");
    if (co->side == CONN_SOURCE)
        strbuf_append(&sql, " SET row_security = off;");
    ok = conn_exec(conn, co->side == CONN_SOURCE ? "source" : "target", sql.data);
    strbuf_free(&sql);
    return ok;
}

static const char *connect_hint(const char *msg)
{
    if (strstr(msg, "password authentication failed") || strstr(msg, "no password supplied"))
        return "Check the user name and the password in ~/.pgpass, PGPASSFILE or PGPASSWORD.";
    if (strstr(msg, "does not exist"))
        return "Check the database and user names in the connection string.";
    if (strstr(msg, "Connection refused") || strstr(msg, "No such file or directory") ||
        strstr(msg, "could not translate host name") || strstr(msg, "timeout expired"))
        return "Check that the server is running and accepts connections at that host and "
               "port.";
    if (strstr(msg, "pg_hba.conf"))
        return "Allow this client in the server's pg_hba.conf (for replication connections, "
               "a \"replication\" line).";
    return NULL;
}

/* libpq's message may span lines; keep it to one line per reason. */
static char *one_line(const char *msg)
{
    char *s = xstrdup(msg ? msg : "");
    size_t n = strlen(s);

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    /* newlines and tabs become single spaces */
    char *o = s;

    for (char *p = s; *p; p++) {
        char c = *p == '\n' || *p == '\t' ? ' ' : *p;

        if (c == ' ' && o > s && o[-1] == ' ')
            continue;
        *o++ = c;
    }
    *o = '\0';
    return s;
}

/* Server notices (e.g. "drop cascades to ...") are detail for -v, and must
 * go through the log so they never break the progress display. */
static void on_notice(void *arg, const char *message)
{
    char *msg = one_line(message);

    (void)arg;
    log_debug("[server] %s", msg);
    free(msg);
}

static int64_t elapsed_ms(const struct timespec *since)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* A connection attempt that ran into connect_timeout: the host took the TCP
 * connection (or dropped the packets) but no server answered. */
static void log_connect_timeout(const ConnInfo *ci, const ConnOpts *co, const char *msg)
{
    log_msg(LOG_ERROR, msg,
            "Check that this host and port reach a running PostgreSQL server that is not "
            "stopped or overloaded, and not a stalled proxy, load balancer or a firewall that "
            "drops packets.  Set connect_timeout in the connection string to wait longer.",
            "timed out after %d s waiting for the %s to answer a connection%s (%s)",
            conninfo_connect_timeout_s(ci), side_name(co->side),
            co->replication ? " for replication" : "", conninfo_display(ci));
}

PGconn *conn_open(const ConnInfo *ci, const ConnOpts *co)
{
    const char *extra[8 + CONNINFO_TIMEOUTS_MAX];
    const char **kw, **val;
    PGconn *conn;
    int e = 0;
    struct timespec started;

    extra[e++] = "fallback_application_name";
    extra[e++] = co->app_name ? co->app_name : "pgrelocate";
    if (co->replication) {
        extra[e++] = "replication";
        extra[e++] = "database";
    }
    e += conninfo_timeouts(ci, extra + e);
    conninfo_params(ci, extra, &kw, &val);
    clock_gettime(CLOCK_MONOTONIC, &started);
    conn = PQconnectdbParams(kw, val, 0);
    free(kw);
    free(val);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        char *msg = one_line(conn ? PQerrorMessage(conn) : "out of memory");
        int timeout_s = conninfo_connect_timeout_s(ci);

        if (timeout_s > 0 && elapsed_ms(&started) >= (int64_t)timeout_s * 1000)
            log_connect_timeout(ci, co, msg);
        else
            log_msg(LOG_ERROR, msg, connect_hint(msg), "could not connect to the %s%s (%s)",
                    side_name(co->side), co->replication ? " for replication" : "",
                    conninfo_display(ci));
        free(msg);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, on_notice, NULL);
    if (!pin_settings(conn, co)) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

void conn_close(PGconn *conn)
{
    if (conn)
        PQfinish(conn);
}

const char *conn_sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    return s ? s : "";
}

bool conn_error_is_transient(const char *sqlstate, PGconn *conn)
{
    if (conn && PQstatus(conn) == CONNECTION_BAD)
        return true;
    return strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "57P01") == 0 ||
           strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0;
}

/* A hint for a query a timeout ended (the server's own message says only
 * "canceling statement due to ..."): which server, and what to look at. */
static char *timeout_hint(const PGresult *res, PGconn *conn)
{
    const char *state = conn_sqlstate(res);
    const char *host = conn && PQhost(conn) ? PQhost(conn) : "?";
    const char *port = conn && PQport(conn) ? PQport(conn) : "?";

    if (strcmp(state, "55P03") == 0)
        return xasprintf("Another session on host=%s port=%s holds a lock this query waited "
                         "for longer than lock_timeout; find it with pg_blocking_pids() and "
                         "pg_stat_activity, then end it or run again once it is done.",
                         host, port);
    if (strcmp(state, "57014") == 0)
        return xasprintf("The server at host=%s port=%s did not finish within its "
                         "statement_timeout, or the query was cancelled; check that it is not "
                         "overloaded and that no long-held lock blocks the query.",
                         host, port);
    return NULL;
}

void conn_log_result_error(const PGresult *res, PGconn *conn, const char *ctx)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
    char *ours = hint ? NULL : timeout_hint(res, conn);
    char *msg;

    if (ours)
        hint = ours;
    if (!primary && res && PQresultErrorMessage(res)[0])
        primary = PQresultErrorMessage(res);
    if (!primary)
        primary = conn ? PQerrorMessage(conn) : "unknown error";
    msg = one_line(primary);
    if (!*msg && res)
        log_msg(LOG_ERROR, detail, hint, "[%s] unexpected result status %s", ctx,
                PQresStatus(PQresultStatus(res)));
    else
        log_msg(LOG_ERROR, detail, hint, "[%s] %s", ctx, msg);
    free(msg);
    free(ours);
}

bool conn_exec(PGconn *conn, const char *ctx, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (!ok)
        conn_log_result_error(res, conn, ctx);
    PQclear(res);
    return ok;
}

PGresult *conn_query(PGconn *conn, const char *ctx, const char *sql, int nparams,
                     const char *const *params, int nfields)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        conn_log_result_error(res, conn, ctx);
        PQclear(res);
        return NULL;
    }
    if (nfields >= 0 && PQnfields(res) != nfields) {
        log_error("[%s] got %d fields, expected %d", ctx, PQnfields(res), nfields);
        PQclear(res);
        return NULL;
    }
    return res;
}

bool conn_command(PGconn *conn, const char *ctx, const char *sql, int nparams,
                  const char *const *params)
{
    return conn_command_bin(conn, ctx, sql, nparams, params, NULL, NULL);
}

bool conn_command_bin(PGconn *conn, const char *ctx, const char *sql, int nparams,
                      const char *const *params, const int *lengths, const int *formats)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, lengths, formats, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

    if (!ok)
        conn_log_result_error(res, conn, ctx);
    PQclear(res);
    return ok;
}

char *conn_quote_ident(PGconn *conn, const char *ident)
{
    char *q = PQescapeIdentifier(conn, ident, strlen(ident));
    char *out;

    if (!q) {
        log_error("could not quote identifier: %s", PQerrorMessage(conn));
        abort();
    }
    out = xstrdup(q);
    PQfreemem(q);
    return out;
}

char *conn_quote_literal(PGconn *conn, const char *value)
{
    char *q = PQescapeLiteral(conn, value, strlen(value));
    char *out;

    if (!q) {
        log_error("could not quote literal: %s", PQerrorMessage(conn));
        abort();
    }
    out = xstrdup(q);
    PQfreemem(q);
    return out;
}

char *conn_qualify(PGconn *conn, const char *schema, const char *name)
{
    char *s = conn_quote_ident(conn, schema);
    char *n = conn_quote_ident(conn, name);
    char *out = xasprintf("%s.%s", s, n);

    free(s);
    free(n);
    return out;
}
