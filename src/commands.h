/*
 * commands.h: the subcommands main() dispatches to.  Each returns the
 * process exit code (see EXIT_* below).
 */
#ifndef PGRELOCATE_COMMANDS_H
#define PGRELOCATE_COMMANDS_H

#include "cli.h"

#define EXIT_OK          0
#define EXIT_FAILED      1   /* the work failed; the message says why */
#define EXIT_USAGE       2   /* bad command line */
#define EXIT_DIFFERENT   3   /* verify: source and target differ */
#define EXIT_INTERRUPTED 130 /* stopped by SIGINT/SIGTERM at a safe point */

int cmd_copy(const Options *opts);
int cmd_start(const Options *opts);
int cmd_cleanup(const Options *opts);
int cmd_check(const Options *opts);
int cmd_status(const Options *opts);
int cmd_verify(const Options *opts);
int cmd_cutover(const Options *opts);
int cmd_rollback(const Options *opts);
int cmd_resync(const Options *opts);

#endif
