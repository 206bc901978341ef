/*
 * main.c: pgrelocate's entry point: look up the command, parse its
 * options, set up logging, run it.
 */
#include "cli.h"
#include "commands.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const copy_options[] = {
    "source",  "target",   "jobs",   "split-larger-than", "resume", "new-snapshot",
    "no-owner", "no-acl",  "pg-bin", "snapshot-grace",    "progress", NULL};
static const char *const copy_required[] = {"source", "target", NULL};

static const CommandSpec commands[] = {
    {"copy", cmd_copy, "copy a whole database (schema and data) to an empty target database",
     "pgrelocate copy --source URI --target URI [options]",
     "Copies everything pg_dump would, from one consistent snapshot of the source: schema,\n"
     "rows (parallel binary COPY, big tables split into ctid ranges), large objects, then\n"
     "indexes, constraints and triggers (built in parallel after the rows), sequence values,\n"
     "and planner statistics (ANALYZE). The target database must exist and be empty.\n"
     "\n"
     "Progress is kept in the target (schema \"pgrelocate\"). If the copy is interrupted\n"
     "(Ctrl-C, a crash, kill -9), run the same command with --resume: finished chunks are\n"
     "kept and the rest continues from the same snapshot, which a small helper process keeps\n"
     "for --snapshot-grace after pgrelocate dies.\n"
     "\n"
     "The source role needs SELECT on every table. Roles are not copied (they belong to the\n"
     "server, not the database): create them on the target first, or use --no-owner --no-acl.\n"
     "\n"
     "Example:\n"
     "  pgrelocate copy --source postgresql://app@old-db/shop \\\n"
     "                  --target postgresql://app@new-db/shop --jobs 8",
     copy_options, copy_required},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const CommandSpec *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    const CommandSpec *cmd;
    Options opts;
    char err[512];

    log_set_program("pgrelocate");
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        cli_print_main_help(commands, N_COMMANDS, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("pgrelocate %s\n", PGRELOCATE_VERSION);
        return EXIT_OK;
    }
    cmd = find_command(argv[1]);
    if (!cmd) {
        log_msg(LOG_ERROR, NULL, "Run \"pgrelocate --help\" for the list of commands.",
                "unknown command \"%s\"", argv[1]);
        return EXIT_USAGE;
    }
    cli_defaults(&opts);
    if (!cli_parse(cmd, argc - 2, argv + 2, &opts, getenv, err, sizeof(err))) {
        log_msg(LOG_ERROR, NULL, NULL, "%s", err);
        fprintf(stderr, "Run \"pgrelocate %s --help\" for its options.\n", cmd->name);
        return EXIT_USAGE;
    }
    if (opts.help) {
        cli_print_command_help(cmd, stdout);
        return EXIT_OK;
    }
    if (!cli_check_required(cmd, &opts, err, sizeof(err))) {
        log_msg(LOG_ERROR, NULL, NULL, "missing required option%s: %s",
                strchr(err, ',') ? "s" : "", err);
        fprintf(stderr, "Run \"pgrelocate %s --help\" for its options.\n", cmd->name);
        return EXIT_USAGE;
    }
    log_set_level(opts.verbose ? LOG_DEBUG : opts.quiet ? LOG_WARNING : LOG_INFO);
    return cmd->run(&opts);
}
