/*
 * status.c: placeholder until `pgrelocate status` lands (being written now).
 */
#include "commands.h"

#include "log.h"

int cmd_status(const Options *opts)
{
    (void)opts;
    log_error("pgrelocate status is not available yet");
    return EXIT_FAILED;
}
