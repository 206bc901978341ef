/*
 * check.c: placeholder until `pgrelocate check` lands (being written now).
 */
#include "commands.h"

#include "log.h"

int cmd_check(const Options *opts)
{
    (void)opts;
    log_error("pgrelocate check is not available yet");
    return EXIT_FAILED;
}
