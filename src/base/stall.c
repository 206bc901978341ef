/*
 * stall.c: the monitor of waits without a deadline (see stall.h).  Owns the
 * list of watched sessions and the probe; does not touch a watched session
 * (its owner may be blocked in it), only reads its connection options
 * under the list's lock, which its owner takes to unwatch before closing.
 */
#include "stall.h"

#include "clock.h"
#include "log.h"
#include "strbuf.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define STALL_TICK_MS    1000
#define STALL_MAX_WARNED 16

struct StallWatch {
    StallWatch *next;
    PGconn *conn;
    ConnSide side;
    int fd;
    char ctx[96];
    int64_t since_ms;      /* the watch began: nothing is known to have arrived since */
    int64_t next_probe_ms; /* no probe or warning for it before this */
};

/* A probe's connection parameters, copied from a watched session. */
typedef struct Probe {
    char **kw, **val;
    char host[256], port[32];
} Probe;

static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t monitor_once = PTHREAD_ONCE_INIT;
static StallWatch *watches;
static pid_t monitor_pid; /* the process whose monitor thread runs */
static int idle_ms = STALL_IDLE_MS;

static const char *side_name(ConnSide side)
{
    return side == CONN_SOURCE ? "source" : "target";
}

/* How long w's session has received nothing: since the watch began, or
 * less when its TCP socket saw data since. */
static int64_t silent_ms(const StallWatch *w, int64_t now)
{
    int64_t silent = now - w->since_ms;
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    if (w->fd >= 0 && getsockopt(w->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
        (int64_t)ti.tcpi_last_data_recv < silent)
        silent = ti.tcpi_last_data_recv;
    return silent;
}

/* Copy w's connection parameters, with a short connect_timeout and without
 * replication, for a probe (under watch_lock: w->conn is alive). */
static void probe_from(const StallWatch *w, Probe *p)
{
    PQconninfoOption *opts = PQconninfo(w->conn);
    int n = 0, k = 0;
    char timeout[16];

    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        n++;
    p->kw = xcalloc((size_t)n + 3, sizeof(char *));
    p->val = xcalloc((size_t)n + 3, sizeof(char *));
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val || !o->val[0] || strcmp(o->keyword, "replication") == 0 ||
            strcmp(o->keyword, "connect_timeout") == 0 ||
            strcmp(o->keyword, "fallback_application_name") == 0)
            continue;
        p->kw[k] = xstrdup(o->keyword);
        p->val[k++] = xstrdup(o->val);
    }
    snprintf(timeout, sizeof(timeout), "%d", STALL_PROBE_CONNECT_S);
    p->kw[k] = xstrdup("connect_timeout");
    p->val[k++] = xstrdup(timeout);
    p->kw[k] = xstrdup("fallback_application_name");
    p->val[k++] = xstrdup("pgrelocate probe");
    PQconninfoFree(opts);
    snprintf(p->host, sizeof(p->host), "%s", PQhost(w->conn) ? PQhost(w->conn) : "?");
    snprintf(p->port, sizeof(p->port), "%s", PQport(w->conn) ? PQport(w->conn) : "?");
}

static void probe_free(Probe *p)
{
    for (int i = 0; p->kw[i]; i++) {
        free(p->kw[i]);
        free(p->val[i]);
    }
    free(p->kw);
    free(p->val);
}

/* Connect with p and run SELECT 1 within STALL_PROBE_CONNECT_S.  true when
 * the server answered (a refusal is an answer too); else *why says what
 * went unanswered (caller frees). */
static bool probe_answered(const Probe *p, char **why)
{
    int64_t deadline = clock_now_ms() + STALL_PROBE_CONNECT_S * 1000;
    ConnFailure failure;
    bool timed_out, answered = false;
    PGconn *c = conn_connect((const char *const *)p->kw, (const char *const *)p->val, deadline,
                             &failure, &timed_out);

    *why = NULL;
    if (failure == CONN_FAILURE_NONE) {
        answered = PQsendQuery(c, "SELECT 1") == 1;
        while (answered && PQisBusy(c))
            answered = conn_wait_socket(c, false, deadline) && PQconsumeInput(c) == 1;
        if (!answered)
            *why = xasprintf("a new connection got no answer to SELECT 1 within %d s",
                             STALL_PROBE_CONNECT_S);
    } else if (timed_out || failure == CONN_FAILURE_UNREACHABLE) {
        char *msg = conn_one_line(c ? PQerrorMessage(c) : "out of memory");

        *why = timed_out || !msg[0]
                   ? xasprintf("a new connection got no answer within %d s", STALL_PROBE_CONNECT_S)
                   : xasprintf("a new connection failed: %s", msg);
        free(msg);
    } else
        answered = true; /* refused, but by a server that answers */
    PQfinish(c);
    return answered;
}

/* Probe the server of the first session silent for idle_ms; warn for every
 * silent session on that server when the probe got no answer. */
static void probe_due(void)
{
    char ctx[STALL_MAX_WARNED][96];
    int64_t silent[STALL_MAX_WARNED];
    ConnSide side = CONN_SOURCE;
    int64_t start = clock_now_ms(), now;
    Probe p = {0};
    char *why = NULL;
    int nwarn = 0;

    pthread_mutex_lock(&watch_lock);
    for (StallWatch *w = watches; w && !p.kw; w = w->next)
        if (start >= w->next_probe_ms && silent_ms(w, start) >= idle_ms)
            probe_from(w, &p);
    pthread_mutex_unlock(&watch_lock);
    if (!p.kw)
        return;
    bool answered = probe_answered(&p, &why);

    pthread_mutex_lock(&watch_lock);
    now = clock_now_ms();
    for (StallWatch *w = watches; w; w = w->next) {
        if (start < w->next_probe_ms || silent_ms(w, now) < idle_ms ||
            strcmp(PQhost(w->conn) ? PQhost(w->conn) : "?", p.host) != 0 ||
            strcmp(PQport(w->conn) ? PQport(w->conn) : "?", p.port) != 0)
            continue;
        w->next_probe_ms = now + idle_ms;
        if (!answered && nwarn < STALL_MAX_WARNED) {
            snprintf(ctx[nwarn], sizeof(ctx[nwarn]), "%s", w->ctx);
            silent[nwarn++] = silent_ms(w, now);
            side = w->side;
        }
    }
    pthread_mutex_unlock(&watch_lock);
    for (int i = 0; i < nwarn; i++)
        log_msg(LOG_WARNING,
                "pgrelocate keeps waiting: the work goes on once the server answers again.",
                "Check whether the server is stopped (SIGSTOP, a debugger), hung or overloaded, "
                "and whether the network to it is down: look at its processes and its log.  "
                "Ctrl-C stops pgrelocate.",
                "[%s] waiting for the %s: nothing received for %lld s, and %s (host=%s port=%s)",
                ctx[i], side_name(side), (long long)(silent[i] / 1000), why, p.host, p.port);
    free(why);
    probe_free(&p);
}

static void *monitor_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec tick = {STALL_TICK_MS / 1000, (STALL_TICK_MS % 1000) * 1000000L};

        nanosleep(&tick, NULL);
        probe_due();
    }
    return NULL;
}

static void monitor_start(void)
{
    const char *t = getenv("PGRELOCATE_TEST_STALL_MS");
    pthread_attr_t attr;
    pthread_t th;

    if (t && atoi(t) > 0)
        idle_ms = atoi(t);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, monitor_main, NULL) == 0)
        monitor_pid = getpid();
    else
        log_debug("[stall] could not start the stall monitor: waits go unreported");
    pthread_attr_destroy(&attr);
}

StallWatch *stall_watch(PGconn *conn, ConnSide side, const char *ctx)
{
    StallWatch *w;

    if (!conn)
        return NULL;
    pthread_once(&monitor_once, monitor_start);
    /* a child forked after the monitor started has no monitor thread (and
     * maybe a lock some other thread held at the fork) */
    if (monitor_pid != getpid())
        return NULL;
    pthread_mutex_lock(&watch_lock);
    for (w = watches; w; w = w->next)
        if (w->conn == conn)
            break;
    if (w) {
        pthread_mutex_unlock(&watch_lock);
        return NULL;
    }
    w = xcalloc(1, sizeof(*w));
    w->conn = conn;
    w->side = side;
    w->fd = PQsocket(conn);
    snprintf(w->ctx, sizeof(w->ctx), "%s", ctx ? ctx : side_name(side));
    w->since_ms = clock_now_ms();
    w->next = watches;
    watches = w;
    pthread_mutex_unlock(&watch_lock);
    return w;
}

void stall_unwatch(StallWatch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&watch_lock);
    for (StallWatch **pp = &watches; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    pthread_mutex_unlock(&watch_lock);
    free(w);
}
