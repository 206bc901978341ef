/*
 * pauseguard.h: the pause's own deadline inside pgrelocate.  A server
 * stopped or stalled inside the pause (SIGSTOP, a hung host: the kernel
 * still acknowledges, nobody answers) would hold a libpq call for ever and
 * the cutover with it.  At --max-pause the guard shuts down the sockets of
 * the old side's connections, so the call at hand fails at once and the
 * cutover aborts and resumes writes; a grace later, those of the new side.
 * Owns a thread; never touches the PGconn objects, only their sockets.
 */
#ifndef PGRELOCATE_PAUSEGUARD_H
#define PGRELOCATE_PAUSEGUARD_H

#include <libpq-fe.h>
#include <stdbool.h>

#define PAUSEGUARD_MAX_CONNS 4

typedef struct PauseGuardSide {
    const char *side;  /* "source" / "target" */
    const char *where; /* "host=... port=..." for the message */
    PGconn *conns[PAUSEGUARD_MAX_CONNS];
} PauseGuardSide;

typedef struct PauseGuard PauseGuard;

/* Fire in after_ms on first's connections, after_ms + grace_ms on
 * second's (NULL entries skipped); ctx prefixes the message.  The sides'
 * strings must outlive the guard.  NULL when no thread could start. */
PauseGuard *pauseguard_start(const char *ctx, int after_ms, int grace_ms,
                             const PauseGuardSide *first, const PauseGuardSide *second);

/* Stop and free the guard; false when it fired (a connection it names was
 * shut down and is unusable).  NULL is a guard that never fired. */
bool pauseguard_stop(PauseGuard *g);

#endif
