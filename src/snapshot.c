/*
 * snapshot.c: the snapshot keeper process.
 *
 * Pipes: result (child -> parent): one line, "OK <name> <backend pid>" or
 * "GONE <message>" or "ERR <message>".  control (parent -> child): the
 * byte 'r' means release now; end of file without it means the parent is
 * gone: hold for the grace period, then exit.
 */
#include "snapshot.h"

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
#include <time.h>
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

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for release or parent death; on death hold up to grace_ms.  Returns
 * when the connection should end. */
static void child_wait(PGconn *conn, int control_fd, int64_t grace_ms)
{
    int64_t deadline = -1;

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
            int64_t left = deadline - now_ms();

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
            if (got <= 0) { /* parent gone: hold for the grace period */
                close(control_fd);
                control_fd = -1;
                deadline = now_ms() + grace_ms;
            }
        }
        /* the server closed us (a resuming run took over, or a restart) */
        if (pf[sock].revents && (!PQconsumeInput(conn) || PQstatus(conn) == CONNECTION_BAD))
            return;
    }
}

static void child_main(const ConnInfo *source, const char *import_name, int64_t grace_ms,
                       int result_fd, int control_fd)
{
    ConnOpts co = {.side = CONN_SOURCE, .app_name = SNAPSHOT_APP_NAME};
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
    res = PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    PQclear(res);
    if (import_name) {
        char *lit = conn_quote_literal(conn, import_name);
        char *sql = xasprintf("SET TRANSACTION SNAPSHOT %s", lit);

        res = PQexec(conn, sql);
        free(sql);
        free(lit);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            child_report(result_fd, "GONE", PQresultErrorMessage(res));
            _exit(1);
        }
        PQclear(res);
    }
    res = PQexec(conn, "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.pg_backend_pid()");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        child_report(result_fd, "ERR", PQresultErrorMessage(res));
        _exit(1);
    }
    snprintf(line, sizeof(line), "%s %s", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
    PQclear(res);
    child_report(result_fd, "OK", line);
    close(result_fd);
    child_wait(conn, control_fd, grace_ms);
    PQclear(PQexec(conn, "COMMIT"));
    PQfinish(conn);
    _exit(0);
}

static SnapshotStatus read_result(int fd, SnapshotKeeper *out)
{
    char buf[512];
    size_t used = 0;
    ssize_t n;

    while (used + 1 < sizeof(buf) && (n = read(fd, buf + used, sizeof(buf) - 1 - used)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        used += (size_t)n;
        if (memchr(buf, '\n', used))
            break;
    }
    buf[used] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (strncmp(buf, "OK ", 3) == 0 &&
        sscanf(buf + 3, "%63s %d", out->name, &out->backend_pid) == 2)
        return SNAPSHOT_OK;
    if (strncmp(buf, "GONE ", 5) == 0) {
        log_debug("[snapshot] previous snapshot cannot be imported: %s", buf + 5);
        return SNAPSHOT_GONE;
    }
    log_error("[snapshot] could not export a snapshot on the source: %s",
              used > 4 ? buf + 4 : "the keeper process ended early");
    return SNAPSHOT_ERROR;
}

SnapshotStatus snapshot_keeper_start(const ConnInfo *source, const char *import_name,
                                     int64_t grace_ms, SnapshotKeeper *out)
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
        child_main(source, import_name, grace_ms, result[1], control[0]);
    }
    close(result[1]);
    close(control[0]);
    fcntl(control[1], F_SETFD, FD_CLOEXEC);
    out->control_fd = control[1];
    st = read_result(result[0], out);
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

void snapshot_keeper_abandon(SnapshotKeeper *k)
{
    if (k->control_fd >= 0) {
        close(k->control_fd);
        k->control_fd = -1;
    }
    k->pid = 0;
}
