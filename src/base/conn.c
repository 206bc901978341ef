/*
 * conn.c: open, check, report, quote.
 */
#include "conn.h"

#include "log.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
                   "SET TimeZone = 'UTC'; SET statement_timeout = 0; SET lock_timeout = 0; "
                   "SET idle_in_transaction_session_timeout = 0; SET client_encoding = '%s';",
                   co->client_encoding ? co->client_encoding : "UTF8");
    if (co->side == CONN_SOURCE)
        strbuf_append(&sql, " SET row_security = off;");
    ok = conn_script(conn, co->side == CONN_SOURCE ? "source" : "target", sql.data);
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

char *conn_one_line(const char *msg)
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
    char *msg = conn_one_line(message);

    (void)arg;
    log_debug("[server] %s", msg);
    free(msg);
}

PGconn *conn_open(const ConnInfo *ci, const ConnOpts *co)
{
    const char *extra[8];
    const char **kw, **val;
    PGconn *conn;
    int e = 0;

    extra[e++] = "fallback_application_name";
    extra[e++] = co->app_name ? co->app_name : "pgrelocate";
    if (co->replication) {
        extra[e++] = "replication";
        extra[e++] = "database";
    }
    extra[e] = NULL;
    conninfo_params(ci, extra, &kw, &val);
    conn = PQconnectdbParams(kw, val, 0);
    free(kw);
    free(val);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        char *msg = conn_one_line(conn ? PQerrorMessage(conn) : "out of memory");

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

void conn_log_result_error(const PGresult *res, PGconn *conn, const char *ctx)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
    char *msg;

    if (!primary && res && PQresultErrorMessage(res)[0])
        primary = PQresultErrorMessage(res);
    if (!primary)
        primary = conn ? PQerrorMessage(conn) : "unknown error";
    msg = conn_one_line(primary);
    if (!*msg && res)
        log_msg(LOG_ERROR, detail, hint, "[%s] unexpected result status %s", ctx,
                PQresStatus(PQresultStatus(res)));
    else
        log_msg(LOG_ERROR, detail, hint, "[%s] %s", ctx, msg);
    free(msg);
}

/* true when res has the one status it must have; else logs the server's
 * error, or "[ctx] got result status X, expected Y" for a result of another
 * kind (rows where none were expected, or none where rows were). */
static bool expect_status(const PGresult *res, PGconn *conn, const char *ctx, ExecStatusType want)
{
    ExecStatusType st = PQresultStatus(res);

    if (st == want)
        return true;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        log_error("[%s] got result status %s, expected %s", ctx, PQresStatus(st),
                  PQresStatus(want));
    else
        conn_log_result_error(res, conn, ctx);
    return false;
}

bool conn_script(PGconn *conn, const char *ctx, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    bool ok = expect_status(res, conn, ctx, PGRES_COMMAND_OK);

    PQclear(res);
    return ok;
}

PGresult *conn_query(PGconn *conn, const char *ctx, const char *sql, int nparams,
                     const char *const *params, int nfields)
{
    return conn_query_bin(conn, ctx, sql, nparams, params, NULL, NULL, -1, nfields);
}

PGresult *conn_query_bin(PGconn *conn, const char *ctx, const char *sql, int nparams,
                         const char *const *params, const int *lengths, const int *formats,
                         int nrows, int nfields)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, lengths, formats, 0);

    if (!expect_status(res, conn, ctx, PGRES_TUPLES_OK)) {
        PQclear(res);
        return NULL;
    }
    if ((nrows >= 0 && PQntuples(res) != nrows) || (nfields >= 0 && PQnfields(res) != nfields)) {
        char rows[32], fields[32];

        snprintf(rows, sizeof(rows), nrows >= 0 ? "%d" : "any number of", nrows);
        snprintf(fields, sizeof(fields), nfields >= 0 ? "%d" : "any number of", nfields);
        log_error("[%s] got %d rows and %d fields, expected %s rows and %s fields", ctx,
                  PQntuples(res), PQnfields(res), rows, fields);
        PQclear(res);
        return NULL;
    }
    return res;
}

bool conn_call(PGconn *conn, const char *ctx, const char *sql, int nparams,
               const char *const *params, const int *lengths, const int *formats, int nrows)
{
    PGresult *res = conn_query_bin(conn, ctx, sql, nparams, params, lengths, formats, nrows, -1);

    PQclear(res);
    return res != NULL;
}

bool conn_command(PGconn *conn, const char *ctx, const char *sql, int nparams,
                  const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    bool ok = expect_status(res, conn, ctx, PGRES_COMMAND_OK);

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
