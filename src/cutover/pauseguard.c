/*
 * pauseguard.c: a thread that waits on a condition variable until the
 * pause's deadline or pauseguard_stop, whichever comes first.
 */
#include "pauseguard.h"

#include "log.h"
#include "strbuf.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

struct PauseGuard {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping, fired;
    const char *ctx;
    int after_ms, grace_ms;
    PauseGuardSide sides[2];
    int socks[2][PAUSEGUARD_MAX_CONNS]; /* taken at start: the thread reads no PGconn */
};

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Wait until ts or stop; true when the deadline came first. */
static bool wait_until(PauseGuard *g, const struct timespec *ts)
{
    int rc = 0;

    while (!g->stopping && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&g->cond, &g->lock, ts);
    return !g->stopping;
}

static void shut(PauseGuard *g, int i, int waited_ms)
{
    const PauseGuardSide *s = &g->sides[i];

    if (!s->side)
        return;
    /* which server holds the call is not known here: the old side's
     * connections go first, the new side's if that did not end it */
    log_msg(LOG_ERROR, NULL,
            "Check that the source and the target are running, not stopped or overloaded, and "
            "the network to them.  Writes resume where they were.",
            "%s a query was still unanswered %d ms into the pause: closing the connections to "
            "the %s (%s)",
            g->ctx, waited_ms, s->side, s->where);
    for (int k = 0; k < PAUSEGUARD_MAX_CONNS; k++)
        if (g->socks[i][k] >= 0)
            shutdown(g->socks[i][k], SHUT_RDWR);
}

static void *guard_main(void *arg)
{
    PauseGuard *g = arg;
    struct timespec ts;

    pthread_mutex_lock(&g->lock);
    deadline_in(&ts, g->after_ms);
    if (wait_until(g, &ts)) {
        g->fired = true;
        shut(g, 0, g->after_ms);
        deadline_in(&ts, g->grace_ms);
        if (wait_until(g, &ts))
            shut(g, 1, g->after_ms + g->grace_ms);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

PauseGuard *pauseguard_start(const char *ctx, int after_ms, int grace_ms,
                             const PauseGuardSide *first, const PauseGuardSide *second)
{
    PauseGuard *g = xcalloc(1, sizeof(*g));
    pthread_condattr_t attr;

    g->ctx = ctx;
    g->after_ms = after_ms;
    g->grace_ms = grace_ms;
    g->sides[0] = *first;
    if (second)
        g->sides[1] = *second;
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < PAUSEGUARD_MAX_CONNS; k++)
            g->socks[i][k] = g->sides[i].conns[k] ? PQsocket(g->sides[i].conns[k]) : -1;
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&g->thread, NULL, guard_main, g) != 0) {
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->cond);
        free(g);
        return NULL;
    }
    return g;
}

bool pauseguard_stop(PauseGuard *g)
{
    bool fired;

    if (!g)
        return true;
    pthread_mutex_lock(&g->lock);
    g->stopping = true;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->thread, NULL);
    fired = g->fired;
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
    free(g);
    return !fired;
}
