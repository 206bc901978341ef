/*
 * snapshot.c: the snapshot keeper process.
 *
 * Pipes: result (child -> parent): one line, "OK <name> <backend pid>" or
 * "GONE <message>" or "ERR <message>".  control (parent -> child): the
 * byte 'r' means release now; 'k' that the state names the snapshot; end
 * of file without 'r' means the parent is gone: after 'k', hold for the
 * grace period, then exit; before it, exit at once.
 */
#include "snapshot.h"

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void close_inherited_fds(int keep1, int keep2)
{
    long max = sysconf(_SC_OPEN_MAX);
    int devnull = open("/dev/null", O_RDWR);

    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        if (devnull > STDERR_FILENO)
            close(devnull);
    }
    for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        if (fd != keep1 && fd != keep2)
            close((int)fd);
}

static void child_report(int fd, const char *kind, const char *text)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s %s\n", kind, text);
    char *nl;

    /* one line only */
    while ((nl = memchr(line, '\n', (size_t)n - 1)) != NULL)
        *nl = ' ';
    if (write(fd, line, (size_t)(n < (int)sizeof(line) ? n : (int)sizeof(line) - 1)) < 0)
        _exit(3);
}

/* Wait for release or parent death; on death hold up to grace_ms.  Returns
 * when the connection should end. */
static void child_wait(PGconn *conn, int control_fd, int64_t grace_ms)
{
    int64_t deadline = -1;
    bool kept = false; /* the parent recorded the snapshot in the state */

    for (;;) {
        struct pollfd pf[2];
        int n = 0, ctl = -1, sock, timeout = -1;

        if (control_fd >= 0) {
            ctl = n;
            pf[n++] = (struct pollfd){control_fd, POLLIN, 0};
        }
        sock = n;
        pf[n++] = (struct pollfd){PQsocket(conn), POLLIN, 0};
        if (deadline >= 0) {
            int64_t left = deadline - clock_now_ms();

            if (left <= 0)
                return;
            timeout = (int)(left > 60000 ? 60000 : left);
        }
        if (poll(pf, (nfds_t)n, timeout) < 0 && errno != EINTR)
            return;
        if (ctl >= 0 && pf[ctl].revents) {
            char c;
            ssize_t got = read(control_fd, &c, 1);

            if (got == 1 && c == 'r')
                return;
            if (got == 1 && c == 'k')
                kept = true;
            if (got <= 0) {
                /* parent gone: hold for the grace period, if the state names
                 * this snapshot; else nobody could ever use it */
                if (!kept)
                    return;
                close(control_fd);
                control_fd = -1;
                deadline = clock_now_ms() + grace_ms;
            }
        }
        /* the server closed us (a resuming run took over, or a restart) */
        if (pf[sock].revents && (!PQconsumeInput(conn) || PQstatus(conn) == CONNECTION_BAD))
            return;
    }
}

/* Replication connection: note our backend pid, then create the slot;
 * reports "OK snapshot pid lsn". */
static void child_create_slot(PGconn *conn, const char *slot, int result_fd)
{
    PGresult *res = conn_exec(conn, "snapshot", "SELECT pg_catalog.pg_backend_pid()");
    char *q, *sql, line[256], pid[16];

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        child_report(result_fd, "ERR", PQresultErrorMessage(res));
        _exit(1);
    }
    snprintf(pid, sizeof(pid), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    child_report(result_fd, "PID", pid);
    q = conn_quote_ident(conn, slot);
    sql = PQserverVersion(conn) >= 150000
              ? xasprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT 'export')", q)
              : xasprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput EXPORT_SNAPSHOT", q);
    res = conn_exec(conn, "snapshot", sql);
    free(q);
    free(sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 3) {
        child_report(result_fd, "ERR", PQresultErrorMessage(res));
        _exit(1);
    }
    snprintf(line, sizeof(line), "%s %s %s", PQgetvalue(res, 0, 2), pid, PQgetvalue(res, 0, 1));
    PQclear(res);
    child_report(result_fd, "OK", line);
}

static void child_main(const ConnInfo *source, const char *import_name, const char *slot,
                       int64_t grace_ms, int result_fd, int control_fd)
{
    /* the snapshot's session has catalog bounds (its queries end, and the
     * child reports ERR); the slot's may not (creating a slot waits for
     * running transactions: the parent bounds that by --slot-wait) */
    ConnOpts co = {.side = CONN_SOURCE,
                   .app_name = SNAPSHOT_APP_NAME,
                   .replication = slot != NULL,
                   .statement_timeout_ms = slot ? 0 : CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = slot ? 0 : CONN_CATALOG_LOCK_MS};
    PGconn *conn;
    PGresult *res;
    char line[256];

    setsid();
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_ERROR + 1); /* silent: the parent reports */
    conn = conn_open(source, &co);
    if (!conn) {
        child_report(result_fd, "ERR", "could not connect to the source");
        _exit(1);
    }
    if (slot) {
        child_create_slot(conn, slot, result_fd);
        close(result_fd);
        child_wait(conn, control_fd, grace_ms);
        PQfinish(conn);
        _exit(0);
    }
    res = conn_exec(conn, "snapshot", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        child_report(result_fd, "ERR", PQresultErrorMessage(res));
        _exit(1);
    }
    PQclear(res);
    if (import_name) {
        char *lit = conn_quote_literal(conn, import_name);
        char *sql = xasprintf("SET TRANSACTION SNAPSHOT %s", lit);

        res = conn_exec(conn, "snapshot", sql);
        free(sql);
        free(lit);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            child_report(result_fd, "GONE", PQresultErrorMessage(res));
            _exit(1);
        }
        PQclear(res);
    }
    res = conn_exec(conn, "snapshot",
                    "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.pg_backend_pid()");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        child_report(result_fd, "ERR", PQresultErrorMessage(res));
        _exit(1);
    }
    snprintf(line, sizeof(line), "%s %s", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
    PQclear(res);
    child_report(result_fd, "OK", line);
    close(result_fd);
    child_wait(conn, control_fd, grace_ms);
    PQclear(conn_exec(conn, "snapshot", "COMMIT"));
    PQfinish(conn);
    _exit(0);
}

/* Creating a slot waits for every transaction running on the source to
 * end.  Say which ones it waits for; give up after wait_ms. */
static void report_blockers(const ConnInfo *source)
{
    ConnOpts co = {.side = CONN_SOURCE,
                   .app_name = "pgrelocate",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
    PGconn *conn = conn_open(source, &co);
    PGresult *res;

    if (!conn)
        return;
    res = conn_exec(conn, "snapshot",
                    "SELECT 'pid ' || pid || ' (' || coalesce(usename, '?') || ', ' || state || "
                    "', transaction started ' || "
                    "round(extract(epoch FROM now() - xact_start)) || ' s ago)' "
                    "FROM pg_catalog.pg_stat_activity WHERE backend_xid IS NOT NULL "
                    "AND pid <> pg_catalog.pg_backend_pid() "
                    "UNION ALL SELECT 'prepared transaction ' || pg_catalog.quote_literal(gid) || "
                    "' (prepared ' || round(extract(epoch FROM now() - prepared)) || ' s ago)' "
                    "FROM pg_catalog.pg_prepared_xacts LIMIT 10");
    for (int i = 0; PQresultStatus(res) == PGRES_TUPLES_OK && i < PQntuples(res); i++)
        log_notice("[slot] waiting for %s to end", PQgetvalue(res, i, 0));
    PQclear(res);
    PQfinish(conn);
}

static bool wait_readable(const ConnInfo *source, int fd, int64_t wait_ms)
{
    int64_t deadline = clock_now_ms() + wait_ms, next_report = clock_now_ms() + 5000;

    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        int64_t left = deadline - clock_now_ms();

        if (left <= 0)
            break;
        if (poll(&pf, 1, (int)(left < 1000 ? left : 1000)) > 0)
            return true;
        if (clock_now_ms() >= next_report) {
            report_blockers(source);
            next_report = clock_now_ms() + 15000;
        }
    }
    log_msg(LOG_ERROR,
            "A logical replication slot can only be created once every transaction that was "
            "running when it was requested has ended.",
            "End or commit the long-running or prepared transactions named above (or wait for "
            "a quieter moment), then run pgrelocate start again. Nothing was left behind.",
            "[slot] gave up creating the replication slot after %lld s",
            (long long)(wait_ms / 1000));
    report_blockers(source);
    return false;
}

/* Read one line from the keeper, waiting until deadline_ms at most (0: no
 * limit); "" at end of file.  false when the deadline passed first. */
static bool read_line_by(int fd, char *buf, size_t cap, int64_t deadline_ms)
{
    size_t used = 0;

    while (used + 1 < cap) {
        struct pollfd pf = {fd, POLLIN, 0};
        int64_t left = deadline_ms - clock_now_ms();

        if (deadline_ms > 0 && (left <= 0 || poll(&pf, 1, (int)left) == 0)) {
            buf[used] = '\0';
            return false;
        }
        ssize_t n = read(fd, buf + used, 1);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || buf[used] == '\n')
            break;
        used++;
    }
    buf[used] = '\0';
    return true;
}

/* Read one line from the keeper (blocking); "" at end of file. */
static void read_line(int fd, char *buf, size_t cap)
{
    (void)read_line_by(fd, buf, cap, 0);
}

static SnapshotStatus parse_result(const char *buf, SnapshotKeeper *out)
{
    char lsn[64] = "";

    if (strncmp(buf, "OK ", 3) == 0 &&
        sscanf(buf + 3, "%63s %d %63s", out->name, &out->backend_pid, lsn) >= 2) {
        if (lsn[0] && !lsn_parse(lsn, &out->slot_lsn))
            return SNAPSHOT_ERROR;
        return SNAPSHOT_OK;
    }
    if (strncmp(buf, "GONE ", 5) == 0) {
        log_debug("[snapshot] previous snapshot cannot be imported: %s", buf + 5);
        return SNAPSHOT_GONE;
    }
    log_error("[snapshot] could not export a snapshot on the source: %s",
              strlen(buf) > 4 ? buf + 4 : "the keeper process ended early");
    return SNAPSHOT_ERROR;
}

/* Stop a slot creation that waits too long: end its walsender, so the
 * unfinished (ephemeral) slot goes away with it. */
static void cancel_slot_creation(const ConnInfo *source, int backend_pid)
{
    ConnOpts co = {.side = CONN_SOURCE,
                   .app_name = "pgrelocate",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
    PGconn *conn = conn_open(source, &co);
    char pid[16];
    const char *p[1] = {pid};

    if (!conn)
        return;
    snprintf(pid, sizeof(pid), "%d", backend_pid);
    PQclear(conn_exec_params(conn, "snapshot", "SELECT pg_catalog.pg_terminate_backend($1::int)", 1,
                             NULL, p, NULL, NULL, 0));
    PQfinish(conn);
}

static SnapshotStatus start_keeper(const ConnInfo *source, const char *import_name,
                                   const char *slot, int64_t grace_ms, int64_t wait_ms,
                                   SnapshotKeeper *out);

SnapshotStatus snapshot_keeper_start(const ConnInfo *source, const char *import_name,
                                     int64_t grace_ms, SnapshotKeeper *out)
{
    return start_keeper(source, import_name, NULL, grace_ms, -1, out);
}

SnapshotStatus snapshot_keeper_start_slot(const ConnInfo *source, const char *slot_name,
                                          int64_t grace_ms, int64_t wait_ms, SnapshotKeeper *out)
{
    return start_keeper(source, NULL, slot_name, grace_ms, wait_ms, out);
}

static SnapshotStatus start_keeper(const ConnInfo *source, const char *import_name,
                                   const char *slot, int64_t grace_ms, int64_t wait_ms,
                                   SnapshotKeeper *out)
{
    int result[2], control[2];
    SnapshotStatus st;

    memset(out, 0, sizeof(*out));
    out->control_fd = -1;
    if (pipe(result) < 0 || pipe(control) < 0) {
        log_error("[snapshot] could not create a pipe: %s", strerror(errno));
        return SNAPSHOT_ERROR;
    }
    fflush(NULL);
    out->pid = fork();
    if (out->pid < 0) {
        log_error("[snapshot] could not fork: %s", strerror(errno));
        return SNAPSHOT_ERROR;
    }
    if (out->pid == 0) {
        close(result[0]);
        close(control[1]);
        close_inherited_fds(result[1], control[0]);
        child_main(source, import_name, slot, grace_ms, result[1], control[0]);
    }
    close(result[1]);
    close(control[0]);
    fcntl(control[1], F_SETFD, FD_CLOEXEC);
    out->control_fd = control[1];
    if (slot) {
        char line[512];
        int walsender = 0;

        /* its connection and first query (no statement_timeout on a
         * walsender): connect_timeout and a catalog query's wait */
        int64_t first_ms = (int64_t)conninfo_connect_timeout_s(source) * 1000 +
                           conn_query_wait_ms(CONN_CATALOG_STATEMENT_MS);

        if (!read_line_by(result[0], line, sizeof(line), clock_now_ms() + first_ms)) {
            log_msg(LOG_ERROR, NULL,
                    "Check that the source is not stopped or overloaded, then run again.",
                    "[slot] timed out after %lld s waiting for the source to answer the "
                    "replication connection that creates the slot (%s)",
                    (long long)(first_ms / 1000), conninfo_display(source));
            kill(out->pid, SIGKILL);
            st = SNAPSHOT_ERROR;
            goto done;
        }
        if (sscanf(line, "PID %d", &walsender) != 1) {
            st = parse_result(line, out);
            goto done;
        }
        if (!wait_readable(source, result[0], wait_ms)) {
            cancel_slot_creation(source, walsender);
            st = SNAPSHOT_ERROR;
            goto done;
        }
    }
    {
        char line[512];

        read_line(result[0], line, sizeof(line));
        st = parse_result(line, out);
    }
done:
    close(result[0]);
    if (st != SNAPSHOT_OK) {
        snapshot_keeper_release(out);
        out->pid = 0;
    }
    return st;
}

void snapshot_keeper_release(SnapshotKeeper *k)
{
    if (k->control_fd >= 0) {
        ssize_t n = write(k->control_fd, "r", 1);

        (void)n;
        close(k->control_fd);
        k->control_fd = -1;
    }
    if (k->pid > 0) {
        while (waitpid(k->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        k->pid = 0;
    }
}

void snapshot_keeper_confirm(SnapshotKeeper *k)
{
    if (k->control_fd >= 0) {
        ssize_t n = write(k->control_fd, "k", 1);

        (void)n;
    }
}

void snapshot_keeper_abandon(SnapshotKeeper *k)
{
    if (k->control_fd >= 0) {
        close(k->control_fd);
        k->control_fd = -1;
    }
    k->pid = 0;
}

void snapshot_end_keeper_backend(PGconn *src, int backend_pid)
{
    char pid[16];
    const char *p[1] = {pid};

    if (backend_pid <= 0)
        return;
    snprintf(pid, sizeof(pid), "%d", backend_pid);
    PQclear(conn_exec_params(src, "snapshot",
                             "SELECT pg_catalog.pg_terminate_backend(pid) FROM "
                             "pg_catalog.pg_stat_activity WHERE pid = $1::int "
                             "AND application_name = '" SNAPSHOT_APP_NAME "'",
                             1, NULL, p, NULL, NULL, 0));
}
