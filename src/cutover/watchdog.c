/*
 * watchdog.c: the resume-if-pgrelocate-dies child.  One stream socket
 * between parent and child carries one-line messages:
 *   child -> parent  "K" ready (admin connection open), "E" could not
 *                    start, "R" resumed by itself
 *   parent -> child  "A <ms>" armed with a deadline, "D" disarmed
 * End of file from the parent while armed means pgrelocate died: resume.
 */
#include "watchdog.h"

#include "clock.h"
#include "log.h"
#include "pgbouncer.h"
#include "proc.h"
#include "strbuf.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* The --resume-command's budget, as cutover gives it (then SIGKILL of its
 * process group): a hanging command must not hang the watchdog. */
#define WATCHDOG_COMMAND_MS 5000

struct Watchdog {
    pid_t pid;
    int sock;
    bool fired;
};

/* Child: resume, retrying on a fresh admin connection for a while. */
static bool child_resume(const WatchdogOpts *o, Bouncer **b)
{
    if (o->resume_command) {
        bool killed;
        int rc = proc_run_shell(o->resume_command, WATCHDOG_COMMAND_MS, &killed);

        if (killed)
            log_error("[watchdog] the resume command did not finish within %d ms: killed",
                      WATCHDOG_COMMAND_MS);
        else if (rc != 0)
            log_msg(LOG_ERROR, o->resume_command, NULL,
                    "[watchdog] the resume command failed (exit status %d)", rc);
        return rc == 0 && !killed;
    }
    for (int attempt = 0; attempt < 20; attempt++) {
        if (!*b)
            *b = bouncer_connect(o->bouncer_uri, 2000);
        if (*b && bouncer_run(*b, "RESUME", o->dbname, 2000) == BOUNCER_OK)
            return true;
        bouncer_close(*b);
        *b = NULL;
        usleep(250 * 1000);
    }
    return false;
}

static void child_say(int sock, const char *msg)
{
    (void)!send(sock, msg, strlen(msg), MSG_NOSIGNAL);
}

static void child_fire(const WatchdogOpts *o, Bouncer **b, const char *why, int sock)
{
    bool ok = child_resume(o, b);

    log_msg(ok ? LOG_WARNING : LOG_ERROR, NULL,
            ok ? NULL : "Run RESUME on the pgbouncer admin console by hand.",
            "[watchdog] %s: %s writes on %s", why, ok ? "resumed" : "could not resume", o->dbname);
    if (sock >= 0)
        child_say(sock, "R\n");
}

/* Child: read the parent's lines until it goes away. */
static void child_loop(const WatchdogOpts *o, Bouncer *b, int sock)
{
    bool armed = false;
    int64_t deadline = 0;
    char buf[256];
    size_t used = 0;

    for (;;) {
        struct pollfd pfd = {.fd = sock, .events = POLLIN};
        int timeout = armed ? (int)(deadline - clock_now_ms()) : -1;
        ssize_t n;
        char *nl;

        if (armed && timeout <= 0) {
            child_fire(o, &b, "the pause deadline passed", sock);
            armed = false;
            continue;
        }
        if (poll(&pfd, 1, timeout) == 0)
            continue;
        n = recv(sock, buf + used, sizeof(buf) - used - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (armed)
                child_fire(o, &b, "pgrelocate ended while writes were paused", -1);
            break;
        }
        used += (size_t)n;
        buf[used] = '\0';
        while ((nl = strchr(buf, '\n')) != NULL) {
            *nl = '\0';
            if (buf[0] == 'A') {
                armed = true;
                deadline = clock_now_ms() + atoi(buf + 1);
            } else if (buf[0] == 'D') {
                armed = false;
            }
            used -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, used + 1);
        }
        if (used >= sizeof(buf) - 1)
            used = 0;
    }
    bouncer_close(b);
}

static void child_main(const WatchdogOpts *o, int sock)
{
    Bouncer *b = NULL;

    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* The parent's server connections must end when the parent does. */
    for (int fd = 3; fd < 1024; fd++)
        if (fd != sock)
            close(fd);
    if (o->bouncer_uri && !(b = bouncer_connect(o->bouncer_uri, 5000))) {
        child_say(sock, "E\n");
        _exit(1);
    }
    child_say(sock, "K\n");
    child_loop(o, b, sock);
    _exit(0);
}

static bool read_line(int sock, int timeout_ms, char *c)
{
    struct pollfd pfd = {.fd = sock, .events = POLLIN};
    char buf[2];

    if (poll(&pfd, 1, timeout_ms) <= 0 || recv(sock, buf, 2, 0) != 2)
        return false;
    *c = buf[0];
    return true;
}

Watchdog *watchdog_start(const WatchdogOpts *o)
{
    int sv[2];
    pid_t pid;
    char c = 0;
    Watchdog *w;

    fflush(NULL);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        log_error("[watchdog] could not create a socket pair: %s", strerror(errno));
        return NULL;
    }
    if ((pid = fork()) < 0) {
        log_error("[watchdog] could not fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    if (pid == 0) {
        close(sv[0]);
        child_main(o, sv[1]);
    }
    close(sv[1]);
    w = xcalloc(1, sizeof(*w));
    w->pid = pid;
    w->sock = sv[0];
    if (!read_line(w->sock, 15000, &c) || c != 'K') {
        /* the child logged why */
        watchdog_stop(w);
        return NULL;
    }
    return w;
}

static bool say(Watchdog *w, const char *msg)
{
    if (send(w->sock, msg, strlen(msg), MSG_NOSIGNAL) == (ssize_t)strlen(msg))
        return true;
    log_error("[watchdog] the watchdog process is gone: %s", strerror(errno));
    return false;
}

bool watchdog_arm(Watchdog *w, int deadline_ms)
{
    char msg[32];

    snprintf(msg, sizeof(msg), "A %d\n", deadline_ms);
    return say(w, msg);
}

bool watchdog_disarm(Watchdog *w)
{
    return say(w, "D\n");
}

bool watchdog_fired(Watchdog *w)
{
    char c;

    while (!w->fired && read_line(w->sock, 0, &c))
        w->fired = c == 'R';
    return w->fired;
}

void watchdog_stop(Watchdog *w)
{
    int status;

    if (!w)
        return;
    close(w->sock);
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
        ;
    free(w);
}
