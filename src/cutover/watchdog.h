/*
 * watchdog.h: a child process that resumes paused writes when pgrelocate
 * cannot.  While armed it resumes the database on pgbouncer (or runs the
 * --resume-command) as soon as pgrelocate dies (its end of the socket
 * closes, whatever killed it, kill -9 included) or the deadline passes
 * before pgrelocate disarms it.  It opens its own admin connection when it
 * starts, so resuming needs nothing new at the worst moment.
 */
#ifndef PGRELOCATE_WATCHDOG_H
#define PGRELOCATE_WATCHDOG_H

#include <stdbool.h>

typedef struct Watchdog Watchdog;

typedef struct WatchdogOpts {
    const char *bouncer_uri;    /* pgbouncer admin console, or NULL */
    const char *dbname;         /* the database to RESUME */
    const char *resume_command; /* shell command when there is no pgbouncer, or NULL */
} WatchdogOpts;

/* Fork the watchdog; call it before opening other connections (the child
 * closes every inherited descriptor but its socket).  NULL after logging
 * (it could not reach the admin console). */
Watchdog *watchdog_start(const WatchdogOpts *o);

/* Writes are about to pause: resume them after deadline_ms unless
 * disarmed first.  false when the watchdog is gone (logged). */
bool watchdog_arm(Watchdog *w, int deadline_ms);

/* Writes were resumed by pgrelocate: nothing to do any more. */
bool watchdog_disarm(Watchdog *w);

/* Did the watchdog resume by itself (its deadline passed)?  Non-blocking. */
bool watchdog_fired(Watchdog *w);

/* Close the socket and reap the child (an armed watchdog resumes first);
 * frees w. */
void watchdog_stop(Watchdog *w);

#endif
