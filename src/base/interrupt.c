/*
 * interrupt.c: the SIGINT/SIGTERM flag.  The handler only sets the flag;
 * the commands poll it (and pass its address to their workers).
 */
#include "interrupt.h"

volatile sig_atomic_t interrupt_requested;

static void on_signal(int sig)
{
    interrupt_requested = 1;
    signal(sig, SIG_DFL); /* a second signal stops at once */
}

void interrupt_catch(void)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}
