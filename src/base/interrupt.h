/*
 * interrupt.h: the SIGINT/SIGTERM flag the long-running commands share.
 * The first signal sets interrupt_requested (stop at the next safe point:
 * end of chunk, transaction or query); the handler then restores the
 * default action, so a second signal stops the process at once.
 */
#ifndef PGRELOCATE_INTERRUPT_H
#define PGRELOCATE_INTERRUPT_H

#include <signal.h>

/* Set by the first SIGINT or SIGTERM; never cleared. */
extern volatile sig_atomic_t interrupt_requested;

/* Catch SIGINT and SIGTERM into interrupt_requested (once per signal). */
void interrupt_catch(void);

#endif
