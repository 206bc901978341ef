/*
 * cutover.h: `pgrelocate cutover` and `rollback`: move the clients from the
 * side they use to the other one with writes paused for a moment, nothing
 * lost.  Owns the order of the switch (preflight, pause, fence, drain,
 * sequences, reverse replication, switch, resume), its record in
 * pgrelocate.cutovers on the target, and the recovery of a run that died.
 * Pausing and switching are pgbouncer.c's (or the user's hook commands);
 * resuming when pgrelocate dies is watchdog.c's.
 */
#ifndef PGRELOCATE_CUTOVER_H
#define PGRELOCATE_CUTOVER_H

#include "commands.h" /* cmd_cutover, cmd_rollback */

#endif
