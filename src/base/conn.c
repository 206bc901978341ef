/*
 * conn.c: open, check, report, quote.
 */
#include "conn.h"

#include "clock.h"
#include "log.h"
#include "stall.h"
#include "strbuf.h"

#include <libpq-events.h>

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <time.h>

static const char *side_name(ConnSide side)
{
    return side == CONN_SOURCE ? "source" : "target";
}

/* The client-side bound of a session's queries (see conn_set_query_wait):
 * kept with the connection as libpq instance data, freed with it. */
typedef struct QueryWait {
    ConnSide side;
    int statement_timeout_ms; /* the server's own bound, for the message */
    int wait_ms;              /* how long a query may go unanswered (0: no limit) */
    bool gave_up;             /* a query went unanswered: the socket is shut down */
} QueryWait;

static int query_wait_event(PGEventId id, void *info, void *pass)
{
    (void)pass;
    if (id == PGEVT_CONNDESTROY)
        free(PQinstanceData(((PGEventConnDestroy *)info)->conn, query_wait_event));
    return 1;
}

/* A catalog session's statement_timeout: CONN_CATALOG_STATEMENT_MS, or
 * for the tests PGRELOCATE_TEST_STATEMENT_MS (so that a stopped server's
 * deadline comes in seconds, not minutes). */
static int statement_timeout_of(const ConnOpts *co)
{
    const char *t = getenv("PGRELOCATE_TEST_STATEMENT_MS");

    if (co->statement_timeout_ms == CONN_CATALOG_STATEMENT_MS && t && atoi(t) > 0)
        return atoi(t);
    return co->statement_timeout_ms;
}

int conn_query_wait_ms(int statement_timeout_ms)
{
    int margin = statement_timeout_ms / 4;

    return statement_timeout_ms + (margin < CONN_QUERY_MARGIN_MS ? CONN_QUERY_MARGIN_MS : margin);
}

/* From now on conn's queries through this module wait at most
 * conn_query_wait_ms(statement_timeout_ms) (0: as long as it takes, watched
 * by stall.c).  false when libpq refuses the event procedure (out of
 * memory): the queries then wait unbounded. */
static bool set_query_wait(PGconn *conn, ConnSide side, int statement_timeout_ms)
{
    QueryWait *w;

    if (!PQregisterEventProc(conn, query_wait_event, "pgrelocate query wait", NULL))
        return false;
    w = xmalloc(sizeof(*w));
    w->side = side;
    w->statement_timeout_ms = statement_timeout_ms;
    w->wait_ms = statement_timeout_ms > 0 ? conn_query_wait_ms(statement_timeout_ms) : 0;
    w->gave_up = false;
    PQsetInstanceData(conn, query_wait_event, w);
    return true;
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
                   statement_timeout_of(co), co->lock_timeout_ms,
                   co->client_encoding ? co->client_encoding : "UTF8");
    /* the database's or role's own defaults (ALTER DATABASE ... SET, which
     * copy carries to the target) must not reach our sessions */
    strbuf_append(&sql, " SET default_transaction_read_only = off;");
    if (PQserverVersion(conn) >= 140000)
        strbuf_append(&sql, " SET idle_session_timeout = 0;");
    if (PQserverVersion(conn) >= 170000)
        strbuf_append(&sql, " SET transaction_timeout = 0;");
    if (co->side == CONN_SOURCE)
        strbuf_append(&sql, " SET row_security = off;");
    ok = conn_script(conn, co->side == CONN_SOURCE ? "source" : "target", sql.data);
    strbuf_free(&sql);
    return ok;
}

ConnStage conn_stage_of(ConnStatusType status)
{
    switch (status) {
    case CONNECTION_NEEDED:
    case CONNECTION_STARTED:
        return CONN_STAGE_RESOLVING;
    case CONNECTION_MADE:
    case CONNECTION_SSL_STARTUP:
    case CONNECTION_GSS_STARTUP:
        return CONN_STAGE_NEGOTIATING;
    case CONNECTION_AWAITING_RESPONSE:
        return CONN_STAGE_AUTHENTICATING;
    case CONNECTION_AUTH_OK:
        return CONN_STAGE_AUTHENTICATED;
    default:
        return CONN_STAGE_CHECKING;
    }
}

ConnFailure conn_classify_failure(ConnStage stage, bool timed_out, bool needs_password,
                                  bool used_password, const char *sqlstate)
{
    if (needs_password)
        return CONN_FAILURE_PASSWORD;
    if (timed_out || stage == CONN_STAGE_RESOLVING)
        return CONN_FAILURE_UNREACHABLE;
    if (stage != CONN_STAGE_AUTHENTICATING && stage != CONN_STAGE_AUTHENTICATED)
        return CONN_FAILURE_OTHER;
    /* The server's verdict on the login and its first check of the session
     * come in one read: the stage cannot tell 28P01 and pg_hba.conf's 28000
     * from 3D000 or a missing role's 28000 after authentication. */
    if (sqlstate && (strcmp(sqlstate, "3D000") == 0 || strcmp(sqlstate, "28000") == 0))
        return CONN_FAILURE_NAMES;
    if (sqlstate && sqlstate[0])
        return CONN_FAILURE_OTHER;
    if (used_password)
        return CONN_FAILURE_LOGIN; /* 28P01, or a name after a good password */
    return CONN_FAILURE_REFUSED;   /* refused during authentication: pg_hba.conf */
}

const char *conn_failure_hint(ConnFailure failure)
{
    switch (failure) {
    case CONN_FAILURE_UNREACHABLE:
        return "Check that the server is running and accepts connections at that host and port.";
    case CONN_FAILURE_PASSWORD:
        return "Check the user name and the password in ~/.pgpass, PGPASSFILE or PGPASSWORD.";
    case CONN_FAILURE_REFUSED:
        return "Allow this client in the server's pg_hba.conf (for replication connections, "
               "a \"replication\" line).";
    case CONN_FAILURE_NAMES:
        return "Check the database and user names in the connection string.";
    case CONN_FAILURE_LOGIN:
        return "Check the user name and the password in ~/.pgpass, PGPASSFILE or PGPASSWORD, "
               "and the database name in the connection string.";
    default:
        return NULL;
    }
}

/* The value of keyword in the parameters, else in the environment variable
 * env (as libpq falls back to it), else NULL. */
static const char *param_or_env(const char *const *kw, const char *const *val, const char *keyword,
                                const char *env)
{
    const char *v = NULL;

    for (int i = 0; kw[i]; i++)
        if (strcmp(kw[i], keyword) == 0 && val[i] && val[i][0])
            v = val[i];
    return v ? v : getenv(env);
}

/* connect_timeout as libpq reads it, in ms: 0 (none) when absent or not
 * positive, else at least 2 s. */
static int64_t connect_timeout_ms(const char *const *kw, const char *const *val)
{
    const char *v = param_or_env(kw, val, "connect_timeout", "PGCONNECT_TIMEOUT");
    int s = v ? atoi(v) : 0;

    return s <= 0 ? 0 : (int64_t)(s < 2 ? 2 : s) * 1000;
}

static bool several_hosts(const char *const *kw, const char *const *val)
{
    const char *h = param_or_env(kw, val, "host", "PGHOST");
    const char *a = param_or_env(kw, val, "hostaddr", "PGHOSTADDR");

    return (h && strchr(h, ',')) || (a && strchr(a, ','));
}

/* Whether a server accepts connections on the Unix socket of dir and port:
 * a connect() and close, only after a failure (the server's child sees no
 * startup packet; log_connections logs "connection received"). */
static bool unix_socket_answers(const char *dir, const char *port)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;
    bool ok;

    if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/.s.PGSQL.%s", dir,
                         port && port[0] ? port : "5432") >= sizeof(sa.sun_path))
        return false;
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return true; /* cannot tell */
    ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* libpq failed before its first poll: at the host lookup or at a Unix
 * socket nobody listens on (unreachable), or at a setting it refused (a
 * value libpq checks).  Tell them apart by trying the host it tried. */
static ConnFailure failure_at_start(PGconn *conn)
{
    const char *host = PQhost(conn);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    bool found;

    if (!host || !host[0] || host[0] == '@')
        return CONN_FAILURE_OTHER;
    if (host[0] == '/')
        found = unix_socket_answers(host, PQport(conn));
    else {
        found = getaddrinfo(host, NULL, &hints, &ai) == 0;
        if (ai)
            freeaddrinfo(ai);
    }
    return found ? CONN_FAILURE_OTHER : CONN_FAILURE_UNREACHABLE;
}

bool conn_wait_socket(PGconn *conn, bool for_write, int64_t deadline_ms)
{
    struct pollfd pfd = {.fd = PQsocket(conn), .events = for_write ? POLLOUT : POLLIN};

    if (pfd.fd < 0)
        return true; /* nothing to wait on: the next libpq call says what is wrong */
    for (;;) {
        int64_t left = deadline_ms - clock_now_ms();
        int rc;

        if (left <= 0)
            return false;
        rc = poll(&pfd, 1, (int)(left > INT32_MAX ? INT32_MAX : left));
        if (rc > 0 || (rc < 0 && errno != EINTR))
            return true; /* ready, or a poll error that the next libpq call reports */
        if (rc == 0)
            return false;
    }
}

/* Poll a started connection until it is made or fails, or the deadline
 * passes (0: per_host_ms per host, or no limit).  *at: the status the
 * failing poll began in. */
static bool poll_connect(PGconn *conn, int64_t deadline_ms, int64_t per_host_ms, ConnStatusType *at,
                         bool *timed_out)
{
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    char host[1024] = "";

    *at = CONNECTION_NEEDED;
    *timed_out = false;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        char now[sizeof(host)];

        /* connect_timeout counts per host, as in PQconnectdbParams */
        snprintf(now, sizeof(now), "%s:%s", PQhost(conn) ? PQhost(conn) : "",
                 PQport(conn) ? PQport(conn) : "");
        if (per_host_ms && strcmp(now, host) != 0) {
            memcpy(host, now, sizeof(host));
            deadline_ms = clock_now_ms() + per_host_ms;
        }
        if (!conn_wait_socket(conn, st == PGRES_POLLING_WRITING,
                              deadline_ms ? deadline_ms : INT64_MAX)) {
            *timed_out = true;
            return false;
        }
        *at = PQstatus(conn);
        st = PQconnectPoll(conn);
    }
    return st == PGRES_POLLING_OK;
}

/* Keeps the SQLSTATE of the results libpq makes; the server's refusal after
 * authentication (3D000, 28000) is one of them. */
static int keep_sqlstate(PGEventId id, void *info, void *pass)
{
    if (id == PGEVT_RESULTCREATE) {
        const char *s = PQresultErrorField(((PGEventResultCreate *)info)->result, PG_DIAG_SQLSTATE);

        if (s)
            snprintf(pass, 6, "%s", s);
    }
    return 1;
}

/* A failed attempt whose stage cannot tell pg_hba.conf's refusal from a
 * missing database or role: try once more with an event procedure that
 * keeps the SQLSTATE (libpq keeps none of a failed connection for us).
 * Only without a password, so a wrong one is never sent twice; an event
 * procedure on every connection would cost an allocation per result. */
static ConnFailure diagnose(const char *const *keywords, const char *const *values,
                            int64_t deadline_ms, int64_t per_host_ms)
{
    char sqlstate[6] = "";
    PGconn *conn = PQconnectStartParams(keywords, values, 0);
    ConnStatusType at;
    bool timed_out, ok;

    if (!conn || PQstatus(conn) == CONNECTION_BAD ||
        !PQregisterEventProc(conn, keep_sqlstate, "pgrelocate", sqlstate)) {
        PQfinish(conn);
        return CONN_FAILURE_OTHER;
    }
    ok = poll_connect(conn, deadline_ms, per_host_ms, &at, &timed_out);
    PQfinish(conn);
    if (ok)
        return CONN_FAILURE_OTHER; /* it went away: nothing to tell */
    if (timed_out)
        return CONN_FAILURE_REFUSED; /* no time to look closer: the first verdict */
    return conn_classify_failure(conn_stage_of(at), false, false, false, sqlstate);
}

PGconn *conn_connect(const char *const *keywords, const char *const *values, int64_t deadline_ms,
                     ConnFailure *failure, bool *timed_out)
{
    int64_t per_host_ms = deadline_ms ? 0 : connect_timeout_ms(keywords, values);
    ConnStatusType at;
    PGconn *conn;
    ConnStage stage;

    *timed_out = false;
    *failure = CONN_FAILURE_OTHER;
    if (per_host_ms && several_hosts(keywords, values)) {
        /* libpq moves on to the next host when one times out; only its
         * blocking connect can make it (no stage to judge by then) */
        conn = PQconnectdbParams(keywords, values, 0);
        if (conn && PQstatus(conn) == CONNECTION_OK)
            *failure = CONN_FAILURE_NONE;
        else if (conn && PQconnectionNeedsPassword(conn))
            *failure = CONN_FAILURE_PASSWORD;
        return conn;
    }
    conn = PQconnectStartParams(keywords, values, 0);
    if (!conn)
        return NULL;
    if (PQstatus(conn) == CONNECTION_BAD) {
        *failure = failure_at_start(conn);
        return conn;
    }
    if (poll_connect(conn, deadline_ms, per_host_ms, &at, timed_out)) {
        *failure = CONN_FAILURE_NONE;
        return conn;
    }
    stage = conn_stage_of(at);
    *failure = conn_classify_failure(stage, *timed_out, PQconnectionNeedsPassword(conn),
                                     PQconnectionUsedPassword(conn), NULL);
    if (*failure == CONN_FAILURE_REFUSED)
        *failure = diagnose(keywords, values, deadline_ms, per_host_ms);
    return conn;
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
    ConnFailure failure;
    bool timed_out;
    int e = 0;

    extra[e++] = "fallback_application_name";
    extra[e++] = co->app_name ? co->app_name : "pgrelocate";
    if (co->replication) {
        extra[e++] = "replication";
        extra[e++] = "database";
    }
    e += conninfo_timeouts(ci, extra + e);
    conninfo_params(ci, extra, &kw, &val);
    conn = conn_connect(kw, val, 0, &failure, &timed_out);
    free(kw);
    free(val);
    if (failure != CONN_FAILURE_NONE) {
        char *msg = conn_one_line(!conn       ? "out of memory"
                                  : timed_out ? "timeout expired"
                                              : PQerrorMessage(conn));

        if (timed_out)
            log_connect_timeout(ci, co, msg);
        else
            log_msg(LOG_ERROR, msg, conn_failure_hint(failure),
                    "could not connect to the %s%s (%s)", side_name(co->side),
                    co->replication ? " for replication" : "", conninfo_display(ci));
        free(msg);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, on_notice, NULL);
    set_query_wait(conn, co->side, statement_timeout_of(co));
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

char *conn_error_hint(const PGresult *res, PGconn *conn)
{
    const char *state = conn_sqlstate(res);
    const char *host = conn && PQhost(conn) ? PQhost(conn) : "?";
    const char *port = conn && PQport(conn) ? PQport(conn) : "?";
    const QueryWait *w = conn ? PQinstanceData(conn, query_wait_event) : NULL;

    if (strcmp(state, "53100") == 0) {
        const char *server = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);

        return xasprintf("%s%sThe disk of the %s at host=%s port=%s is full: free space on it (or "
                         "on the tablespace of the file named above).  Once space is freed, a "
                         "pgrelocate start still running goes on by itself, and one that stopped "
                         "resumes where it stopped when run again.",
                         server ? server : "", server ? "  " : "",
                         w ? side_name(w->side) : "server", host, port);
    }

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
    /* ours replaces the server's "Check free disk space." on a full disk */
    char *ours =
        hint && strcmp(conn_sqlstate(res), "53100") != 0 ? NULL : conn_error_hint(res, conn);
    const QueryWait *w = conn ? PQinstanceData(conn, query_wait_event) : NULL;
    char *msg;

    if (!res && w && w->gave_up) {
        free(ours); /* the wait that closed the connection said why */
        return;
    }
    if (ours)
        hint = ours;
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
    free(ours);
    /* syntax or access rule violation, feature not supported: the same
     * statement fails the same way next time */
    if (strncmp(conn_sqlstate(res), "42", 2) == 0 || strncmp(conn_sqlstate(res), "0A", 2) == 0)
        log_note_lasting_error();
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

/* Send a cancel request for conn's query, waiting at most
 * CONN_CANCEL_WAIT_MS: PQcancel waits for the server to close the cancel
 * connection, which a stopped postmaster never does, so it runs in a child
 * (PQcancel is safe there, as in a signal handler) that is killed when it
 * takes longer. */
void conn_cancel(PGconn *conn)
{
    PGcancel *cancel = PQgetCancel(conn);
    pid_t pid;
    int64_t deadline = clock_now_ms() + CONN_CANCEL_WAIT_MS;

    if (!cancel)
        return;
    pid = fork();
    if (pid == 0) {
        char err[256];

        _exit(PQcancel(cancel, err, sizeof(err)) ? 0 : 1);
    }
    while (pid > 0 && waitpid(pid, NULL, WNOHANG) == 0) {
        struct timespec tick = {0, 20 * 1000000L};

        if (clock_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
        nanosleep(&tick, NULL);
    }
    PQfreeCancel(cancel);
}

/* A query on a session with a client-side bound went unanswered for the
 * whole wait: say which server and what it waited for, cancel the query,
 * and shut the socket down so that this call and every later one on conn
 * fail at once (the caller still PQfinishes conn). */
static void give_up_query(PGconn *conn, const char *ctx, QueryWait *w)
{
    char *hint = xasprintf("The server's statement_timeout (%d s) would have ended a slow query "
                           "sooner: this server is stopped (SIGSTOP, a debugger), hung, or too "
                           "overloaded to run.  Check its processes and its log, then run again; "
                           "the query was cancelled and the connection closed.",
                           w->statement_timeout_ms / 1000);
    PGresult *res;

    log_msg(LOG_ERROR, NULL, hint,
            "[%s] timed out after %d s waiting for the %s to answer a query (host=%s port=%s)", ctx,
            w->wait_ms / 1000, side_name(w->side), PQhost(conn) ? PQhost(conn) : "?",
            PQport(conn) ? PQport(conn) : "?");
    free(hint);
    w->gave_up = true;
    conn_cancel(conn);
    if (PQsocket(conn) >= 0)
        shutdown(PQsocket(conn), SHUT_RDWR);
    while ((res = PQgetResult(conn)) != NULL)
        PQclear(res);
}

/* Run sql (simple protocol when params is NULL and nparams 0 and simple,
 * else extended with text or binary parameters, results in result_format)
 * as PQexec/PQexecParams do, returning the last result (caller PQclears;
 * NULL: nothing was sent, see PQerrorMessage).  On a session with a query
 * wait the call is asynchronous and polled: an answer that does not come in
 * time is logged and gives NULL with *gave_up set.  A session without one
 * waits as long as it takes, watched by stall.c (a stopped server is
 * reported every minute). */
static PGresult *exec_bounded(PGconn *conn, const char *ctx, const char *sql, bool simple,
                              int nparams, const Oid *types, const char *const *params,
                              const int *lengths, const int *formats, int result_format,
                              bool *gave_up)
{
    QueryWait *w = PQinstanceData(conn, query_wait_event);
    PGresult *last = NULL, *res;
    int64_t deadline;
    int rc;

    *gave_up = false;
    if (!w || w->wait_ms <= 0) {
        StallWatch *sw = stall_watch(conn, w ? w->side : CONN_TARGET, ctx);

        res = simple ? PQexec(conn, sql)
                     : PQexecParams(conn, sql, nparams, types, params, lengths, formats,
                                    result_format);
        stall_unwatch(sw);
        return res;
    }
    if (!(simple ? PQsendQuery(conn, sql)
                 : PQsendQueryParams(conn, sql, nparams, types, params, lengths, formats,
                                     result_format)))
        return NULL;
    deadline = clock_now_ms() + w->wait_ms;
    while ((rc = PQflush(conn)) == 1)
        if (!conn_wait_socket(conn, true, deadline))
            goto timed_out;
    for (;;) {
        while (rc == 0 && PQisBusy(conn)) {
            if (!conn_wait_socket(conn, false, deadline))
                goto timed_out;
            if (!PQconsumeInput(conn))
                break; /* PQgetResult reports it */
        }
        if ((res = PQgetResult(conn)) == NULL)
            return last;
        PQclear(last);
        last = res;
        /* as PQexec: a COPY or a lost connection ends the collection */
        if (PQresultStatus(res) == PGRES_COPY_IN || PQresultStatus(res) == PGRES_COPY_OUT ||
            PQresultStatus(res) == PGRES_COPY_BOTH || PQstatus(conn) == CONNECTION_BAD)
            return last;
    }
timed_out:
    PQclear(last);
    give_up_query(conn, ctx, w);
    *gave_up = true;
    return NULL;
}

PGresult *conn_exec(PGconn *conn, const char *ctx, const char *sql)
{
    bool gave_up;

    return exec_bounded(conn, ctx, sql, true, 0, NULL, NULL, NULL, NULL, 0, &gave_up);
}

PGresult *conn_exec_params(PGconn *conn, const char *ctx, const char *sql, int nparams,
                           const Oid *types, const char *const *params, const int *lengths,
                           const int *formats, int result_format)
{
    bool gave_up;

    return exec_bounded(conn, ctx, sql, false, nparams, types, params, lengths, formats,
                        result_format, &gave_up);
}

bool conn_script(PGconn *conn, const char *ctx, const char *sql)
{
    bool gave_up;
    PGresult *res = exec_bounded(conn, ctx, sql, true, 0, NULL, NULL, NULL, NULL, 0, &gave_up);
    bool ok = !gave_up && expect_status(res, conn, ctx, PGRES_COMMAND_OK);

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
    bool gave_up;
    PGresult *res =
        exec_bounded(conn, ctx, sql, false, nparams, NULL, params, lengths, formats, 0, &gave_up);

    if (gave_up || !expect_status(res, conn, ctx, PGRES_TUPLES_OK)) {
        PQclear(res);
        return NULL;
    }
    if ((nrows >= 0 && PQntuples(res) != nrows) || (nfields >= 0 && PQnfields(res) != nfields)) {
        char want[64];

        if (nrows >= 0 && nfields >= 0)
            snprintf(want, sizeof(want), "%d rows and %d fields", nrows, nfields);
        else if (nrows >= 0)
            snprintf(want, sizeof(want), "%d rows", nrows);
        else
            snprintf(want, sizeof(want), "%d fields", nfields);
        log_error("[%s] got %d rows and %d fields, expected %s", ctx, PQntuples(res),
                  PQnfields(res), want);
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
    bool gave_up;
    PGresult *res =
        exec_bounded(conn, ctx, sql, false, nparams, NULL, params, NULL, NULL, 0, &gave_up);
    bool ok = !gave_up && expect_status(res, conn, ctx, PGRES_COMMAND_OK);

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

char *conn_value_or_null(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}
