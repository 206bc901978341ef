/*
 * pgbouncer.c: the admin console client.  Commands go out with
 * PQsendQuery (pgbouncer's console speaks only the simple protocol) and
 * answers are awaited with poll() on the socket until a deadline, so a
 * PAUSE that waits for a long transaction never blocks pgrelocate.
 */
#include "pgbouncer.h"

#include "clock.h"
#include "conn.h"
#include "conninfo.h"
#include "log.h"
#include "strbuf.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct Bouncer {
    PGconn *conn;
    char *display;
};

/* pgbouncer answers every refusal with FATAL 08P01 ("not allowed", a
 * wrong password, an unknown user): what libpq saw of the attempt decides. */
static const char *connect_hint(ConnFailure failure)
{
    if (failure == CONN_FAILURE_UNREACHABLE)
        return "Check that pgbouncer listens at that host and port.";
    if (failure == CONN_FAILURE_PASSWORD)
        return conn_failure_hint(failure);
    return "Check that this user is listed in pgbouncer's admin_users setting.";
}

Bouncer *bouncer_connect(const char *uri, int timeout_ms)
{
    static const char *const extra[] = {"dbname", "pgbouncer", "fallback_application_name",
                                        "pgrelocate", NULL};
    char err[256];
    ConnInfo *ci = conninfo_parse(uri, err, sizeof(err));
    const char **kw, **val;
    Bouncer *b;
    ConnFailure failure;
    bool timed_out;
    char *msg;

    if (!ci) {
        log_msg(LOG_ERROR, err, "Give --pgbouncer as a libpq URI or conninfo string.",
                "invalid --pgbouncer connection string");
        return NULL;
    }
    b = xcalloc(1, sizeof(*b));
    conninfo_params(ci, extra, &kw, &val);
    b->conn = conn_connect(kw, val, clock_now_ms() + timeout_ms, &failure, &timed_out);
    free(kw);
    free(val);
    b->display = xasprintf("%s", conninfo_display(ci));
    conninfo_destroy(ci);
    if (failure == CONN_FAILURE_NONE)
        return b;
    msg = conn_one_line(!b->conn    ? "out of memory"
                        : timed_out ? "no answer in time"
                                    : PQerrorMessage(b->conn));
    log_msg(LOG_ERROR, msg, connect_hint(failure),
            "could not connect to the pgbouncer admin console (%s)", b->display);
    free(msg);
    bouncer_close(b);
    return NULL;
}

void bouncer_close(Bouncer *b)
{
    if (!b)
        return;
    PQfinish(b->conn);
    free(b->display);
    free(b);
}

const char *bouncer_display(const Bouncer *b)
{
    return b->display;
}

/* pgbouncer's admin parser takes a database name bare when it is made of
 * [0-9a-z_], else in double quotes with "" for a quote. */
static char *quote_dbname(const char *name)
{
    StrBuf sb;

    if (name[strspn(name, "0123456789abcdefghijklmnopqrstuvwxyz_")] == '\0' && name[0])
        return xstrdup(name);
    strbuf_init(&sb);
    strbuf_append(&sb, "\"");
    for (const char *p = name; *p; p++)
        strbuf_append(&sb, *p == '"' ? "\"\"" : (char[2]){*p, '\0'});
    strbuf_append(&sb, "\"");
    return strbuf_detach(&sb);
}

bool bouncer_send(Bouncer *b, const char *verb, const char *dbname)
{
    char *q = dbname ? quote_dbname(dbname) : NULL;
    char *sql = xasprintf("%s%s%s", verb, q ? " " : "", q ? q : "");
    bool ok = PQsendQuery(b->conn, sql) == 1;

    if (!ok) {
        char *msg = conn_one_line(PQerrorMessage(b->conn));

        log_msg(LOG_ERROR, msg, NULL, "[pgbouncer] could not send %s", sql);
        free(msg);
    }
    free(sql);
    free(q);
    return ok;
}

BouncerStatus bouncer_wait(Bouncer *b, int timeout_ms, char *err, size_t errlen)
{
    int64_t deadline = clock_now_ms() + timeout_ms;
    BouncerStatus st = BOUNCER_OK;
    PGresult *res;

    err[0] = '\0';
    for (;;) {
        if (!PQconsumeInput(b->conn)) {
            char *msg = conn_one_line(PQerrorMessage(b->conn));

            snprintf(err, errlen, "%s", msg);
            free(msg);
            return BOUNCER_FAILED;
        }
        if (!PQisBusy(b->conn))
            break;
        if (!conn_wait_socket(b->conn, false, deadline))
            return BOUNCER_TIMEOUT;
    }
    while ((res = PQgetResult(b->conn)) != NULL) {
        ExecStatusType rs = PQresultStatus(res);

        if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK && st == BOUNCER_OK) {
            char *msg = conn_one_line(PQresultErrorMessage(res));

            snprintf(err, errlen, "%s", msg[0] ? msg : PQresStatus(rs));
            free(msg);
            st = BOUNCER_FAILED;
        }
        PQclear(res);
    }
    return st;
}

/* Whether the console's user is in pgbouncer's admin_users: 1 yes, 0 no,
 * -1 cannot tell. */
static int user_is_admin(Bouncer *b)
{
    PGresult *res = PQexec(b->conn, "SHOW CONFIG");
    const char *user = PQuser(b->conn);
    int key = PQfnumber(res, "key"), value = PQfnumber(res, "value"), admin = -1;

    for (int i = 0;
         PQresultStatus(res) == PGRES_TUPLES_OK && key >= 0 && value >= 0 && i < PQntuples(res);
         i++) {
        char *list, *save = NULL;

        if (strcmp(PQgetvalue(res, i, key), "admin_users") != 0)
            continue;
        list = xstrdup(PQgetvalue(res, i, value));
        admin = 0;
        for (char *u = strtok_r(list, ", ", &save); u; u = strtok_r(NULL, ", ", &save))
            if (user && strcmp(u, user) == 0)
                admin = 1;
        free(list);
    }
    PQclear(res);
    return admin;
}

/* The hint for a failed command.  pgbouncer sends SQLSTATE 08P01 for every
 * console error, so its state decides: the user's rights, then whether the
 * database exists. */
static const char *hint_for(Bouncer *b, const char *verb, const char *dbname)
{
    BouncerDatabase d;
    bool found;

    if (user_is_admin(b) == 0)
        return "List this user in pgbouncer's admin_users setting.";
    if (dbname && bouncer_show_database(b, dbname, &d, &found) && !found)
        return "Name the database as it appears in the [databases] section of pgbouncer.ini "
               "(--database).";
    if (strcmp(verb, "RELOAD") == 0)
        return "Check pgbouncer's log: it may not be able to read the config file.";
    return NULL;
}

/* A RESUME that failed left the database running when SHOW DATABASES says
 * it is not paused (pgbouncer refuses to resume what is not paused). */
static bool not_paused(Bouncer *b, const char *dbname)
{
    BouncerDatabase d;
    bool found;

    return dbname && bouncer_show_database(b, dbname, &d, &found) && found && !d.paused;
}

BouncerStatus bouncer_run(Bouncer *b, const char *verb, const char *dbname, int timeout_ms)
{
    char err[512];
    BouncerStatus st;

    if (!bouncer_send(b, verb, dbname))
        return BOUNCER_FAILED;
    st = bouncer_wait(b, timeout_ms, err, sizeof(err));
    if (st == BOUNCER_FAILED && strcmp(verb, "RESUME") == 0 && not_paused(b, dbname))
        return BOUNCER_OK;
    if (st == BOUNCER_FAILED)
        log_msg(LOG_ERROR, err, hint_for(b, verb, dbname), "[pgbouncer] %s%s%s failed", verb,
                dbname ? " " : "", dbname ? dbname : "");
    else if (st == BOUNCER_TIMEOUT)
        log_msg(LOG_ERROR, NULL, NULL, "[pgbouncer] %s%s%s: no answer within %d ms", verb,
                dbname ? " " : "", dbname ? dbname : "", timeout_ms);
    return st;
}

BouncerStatus bouncer_pause(Bouncer *b, Bouncer *spare, const char *dbname, int timeout_ms)
{
    char err[512];
    BouncerStatus st;

    if (!bouncer_send(b, "PAUSE", dbname))
        return BOUNCER_FAILED;
    st = bouncer_wait(b, timeout_ms, err, sizeof(err));
    if (st == BOUNCER_OK)
        return BOUNCER_OK;
    /* The PAUSE may be in force (draining or done): undo it from the spare
     * connection, whatever the first one says. */
    if (bouncer_run(spare, "RESUME", dbname, 5000) != BOUNCER_OK)
        log_msg(LOG_ERROR, NULL,
                "Run RESUME on the pgbouncer admin console by hand if clients still wait.",
                "[pgbouncer] could not resume %s after an unfinished PAUSE", dbname);
    if (st == BOUNCER_FAILED)
        log_msg(LOG_ERROR, err, hint_for(spare, "PAUSE", dbname), "[pgbouncer] PAUSE %s failed",
                dbname);
    return st;
}

static void copy_field(PGresult *res, int row, const char *name, char *out, size_t outlen)
{
    int col = PQfnumber(res, name);

    snprintf(out, outlen, "%s",
             col >= 0 && !PQgetisnull(res, row, col) ? PQgetvalue(res, row, col) : "");
}

bool bouncer_show_database(Bouncer *b, const char *dbname, BouncerDatabase *out, bool *found)
{
    PGresult *res;
    bool ok = false;

    memset(out, 0, sizeof(*out));
    *found = false;
    res = PQexec(b->conn, "SHOW DATABASES");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQfnumber(res, "name") < 0 ||
        PQfnumber(res, "host") < 0 || PQfnumber(res, "port") < 0 ||
        PQfnumber(res, "database") < 0) {
        char *msg = conn_one_line(PQresultErrorMessage(res));

        log_msg(LOG_ERROR,
                msg[0] ? msg : "the answer lacks the name, host, port or database column", NULL,
                "[pgbouncer] SHOW DATABASES failed");
        free(msg);
        goto done;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        char name[256], num[32];

        copy_field(res, i, "name", name, sizeof(name));
        if (strcmp(name, dbname) != 0)
            continue;
        copy_field(res, i, "host", out->host, sizeof(out->host));
        copy_field(res, i, "database", out->database, sizeof(out->database));
        copy_field(res, i, "port", num, sizeof(num));
        out->port = atoi(num);
        copy_field(res, i, "paused", num, sizeof(num));
        out->paused = atoi(num) != 0;
        copy_field(res, i, "disabled", num, sizeof(num));
        out->disabled = atoi(num) != 0;
        *found = true;
    }
    ok = true;
done:
    PQclear(res);
    return ok;
}
