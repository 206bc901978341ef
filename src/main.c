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
    "source",   "target", "jobs",   "split-larger-than", "resume",   "new-snapshot",
    "no-owner", "no-acl", "pg-bin", "snapshot-grace",    "progress", "tables",
    NULL};
static const char *const copy_required[] = {"source", "target", NULL};
static const char *const start_options[] = {"source",
                                            "target",
                                            "jobs",
                                            "split-larger-than",
                                            "no-owner",
                                            "no-acl",
                                            "pg-bin",
                                            "snapshot-grace",
                                            "progress",
                                            "replica-identity-full",
                                            "slot-wait",
                                            "one-snapshot",
                                            "sync-group-size",
                                            "max-retained-wal",
                                            "protocol", /* values in binary or text */
                                            "metrics-listen",
                                            "tables",
                                            "skip-transaction",
                                            NULL};
static const char *const cleanup_options[] = {"source", "target", NULL};
static const char *const resync_options[] = {"source", "target",    "tables",
                                             "jobs",   "slot-wait", NULL};
static const char *const resync_required[] = {"source", "target", "tables", NULL};
static const char *const check_options[] = {"source", "target", "pg-bin", "json", "tables", NULL};
static const char *const status_options[] = {"target",   "source", "json", "watch",
                                             "interval", "tables", NULL};
static const char *const status_required[] = {"target", NULL};
static const char *const verify_options[] = {"source",          "target", "jobs",       "tables",
                                             "max-differences", "json",   "group-size", NULL};
static const char *const cutover_options[] = {
    "source",         "target",     "pgbouncer",     "pgbouncer-config",
    "database",       "max-pause",  "max-lag",       "sequence-headroom",
    "dry-run",        "no-reverse", "pause-command", "resume-command",
    "switch-command", NULL};

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
     "--tables moves a subset: the matching tables (a partitioned table with all its\n"
     "partitions), the sequences they own, and the schema around them; views over tables left\n"
     "out are left out too. A pattern that matches nothing, a foreign key from a chosen\n"
     "table to one left out, or a chosen table that inherits from one left out, is an error\n"
     "that changes nothing.\n"
     "\n"
     "Example:\n"
     "  pgrelocate copy --source postgresql://app@old-db/shop \\\n"
     "                  --target postgresql://app@new-db/shop --jobs 8",
     copy_options, copy_required},
    {"check", cmd_check, "preflight: what would block or slow a migration, and the fix",
     "pgrelocate check --source URI --target URI [--tables PATTERN] [--json]",
     "Connects to both servers, changes nothing, and reports PASS / WARN / FAIL lines.\n"
     "\n"
     "--tables checks a subset migration: the selection is resolved as copy and start would\n"
     "(a pattern matching nothing or a foreign key to a table left out is a FAIL), and the\n"
     "checks of tables (privileges, row-level security, replica identity, unlogged tables,\n"
     "materialized views, size and copy estimate) judge only the chosen tables. Without\n"
     "--tables, against a target where a migration with --tables has begun, the checks judge\n"
     "the selection recorded there.",
     check_options, copy_required},
    {"start", cmd_start, "copy the database, then follow its changes until the cutover",
     "pgrelocate start --source URI --target URI [options]",
     "Creates a publication and a logical replication slot (pgoutput) on the source, takes\n"
     "the schema at the slot's snapshot, and streams every change committed on the source\n"
     "since then, applying it to the target in commit order, exactly once, while the tables\n"
     "are copied and after, until you stop it (Ctrl-C or SIGTERM: it finishes the\n"
     "transaction at hand and saves its position). Run the same command again to go on from\n"
     "where it stopped, whatever the phase.\n"
     "\n"
     "Tables are copied in groups (one big table, or small ones up to --sync-group-size),\n"
     "each under the short snapshot of a temporary slot of its own: no snapshot holds back\n"
     "VACUUM on the source longer than one group's copy. A table's changes before its\n"
     "group's point are in its copy and skipped; later ones apply as soon as its rows are\n"
     "in. --one-snapshot copies everything under the slot's one snapshot instead, and\n"
     "follows only after the copy.\n"
     "\n"
     "The source needs wal_level = logical and a role with REPLICATION (RDS/Aurora:\n"
     "rds.logical_replication = 1 and rds_replication) that owns the tables (to publish\n"
     "them). Tables without primary key or replica identity are refused, because once\n"
     "published their UPDATEs and DELETEs would fail on the source; --replica-identity-full\n"
     "gives them REPLICA IDENTITY FULL instead (cleanup restores it). The target role must\n"
     "be a superuser (RDS/Aurora: rds_superuser): changes are applied in replica mode and\n"
     "progress is kept in a replication origin.\n"
     "\n"
     "When the target refuses a change (a constraint only the target has, a row changed\n"
     "there), apply stops and names the table, the key and the source transaction (its xid\n"
     "and commit LSN). Make the target accept it and run start again; or, as an expert,\n"
     "run start --skip-transaction LSN to leave that one transaction out (status and the\n"
     "event log keep it) and repair its rows on the target by hand: verify names them.\n"
     "\n"
     "The slot keeps WAL on the source until pgrelocate has applied it: do not leave a\n"
     "stopped migration for long, and run `pgrelocate cleanup` when you are done.\n"
     "\n"
     "Example:\n"
     "  pgrelocate start --source postgresql://app@old-db/shop \\\n"
     "                   --target postgresql://postgres@new-db/shop",
     start_options, copy_required},
    {"resync", cmd_resync, "copy chosen tables again while the others keep following",
     "pgrelocate resync --source URI --target URI --tables PATTERN [--jobs N]",
     "Empties the chosen tables on the target and copies them again from a new point of the\n"
     "source, while every other table keeps following; then their changes after that point\n"
     "apply again. Whatever the target held (rows changed, missing or extra there), the\n"
     "tables end equal to the source. The way out of an apply error on a table (fix its\n"
     "cause, then resync it), of a schema change that could not be replayed, and of a\n"
     "difference pgrelocate verify found.\n"
     "\n"
     "It asks the running pgrelocate start to hold the tables' changes; when none runs, it\n"
     "follows in this process until the tables are copied and following again. A partition\n"
     "goes with every partition of its partitioned table. Returns when done: 0; 1 on\n"
     "failure (run it again: the tables' changes wait until a resync completes); 2 when\n"
     "--tables names no table of the migration; 130 when interrupted.\n"
     "\n"
     "Example:\n"
     "  pgrelocate resync --source postgresql://app@old-db/shop \\\n"
     "                    --target postgresql://postgres@new-db/shop --tables public.orders",
     resync_options, resync_required},
    {"status", cmd_status, "where a migration stands: phase, tables, lag, retained WAL",
     "pgrelocate status --target URI [--source URI] [--tables PATTERN] [--json] [--watch]",
     "Reads the migration's state from the target (and the slot from the source when given):\n"
     "phase, tables, lag, the latest events, and the latest cutovers and rollbacks (dry runs\n"
     "too) with their outcome, measured pause and reason. --tables shows only the matching\n"
     "tables (a partition by its partitioned table's name), and the copy totals over them.",
     status_options, status_required},
    {"verify", cmd_verify, "compare source and target exactly: every row, the schema, sequences",
     "pgrelocate verify --source URI --target URI [--jobs N] [--tables PATTERN] [--json] "
     "[--max-differences N] [--group-size SIZE]",
     "Compares the two databases at one consistent point and reports every difference:\n"
     "rows missing on the target, extra rows, rows whose values differ (each named by its\n"
     "full primary key; tables without a key are compared as multisets of rows), and\n"
     "schema differences (tables, columns and types, indexes, constraints, sequence\n"
     "definitions, and sequences whose target value is behind the source's).\n"
     "\n"
     "Values are compared exactly: float8 -0 and 0 differ, numeric 1.0 and 1.00 differ,\n"
     "timestamps whatever the session time zone, jsonb, bytea, arrays, composites.\n"
     "Each server digests its rows per hash bucket in parallel (--jobs workers per side);\n"
     "only buckets that differ are read row by row.\n"
     "\n"
     "While pgrelocate start follows the source, both sides are compared at one exact\n"
     "source position (the follower pauses for an instant; if start is stopped, verify\n"
     "follows in-process meanwhile), so live writes cause no false difference. Tables are\n"
     "compared in groups of about --group-size, each at its own consistent point, so no\n"
     "snapshot stays open on the source longer than one group takes.\n"
     "\n"
     "Changes none of your data (while following it records its sync point in the\n"
     "target's pgrelocate schema and briefly creates a temporary slot on the source).\n"
     "Exit status: 0 everything matches, 3 differences found, 1 the comparison could not\n"
     "be done, 2 bad command line.\n"
     "\n"
     "Example:\n"
     "  pgrelocate verify --source postgresql://app@old-db/shop \\\n"
     "                    --target postgresql://app@new-db/shop --jobs 8",
     verify_options, copy_required},
    {"cutover", cmd_cutover, "switch the clients to the target with writes paused for a moment",
     "pgrelocate cutover --source URI --target URI --pgbouncer URI --pgbouncer-config FILE "
     "--database NAME [options]",
     "Run while `pgrelocate start` follows the source. In order: checks that replication is\n"
     "less than --max-lag behind; PAUSEs the database on pgbouncer (clients wait, they get no\n"
     "error; transactions in flight finish first); writes a fence on the source and waits\n"
     "until every source transaction before it is applied on the target; sets every sequence\n"
     "on the target to the source's value (plus --sequence-headroom; one further along on\n"
     "the target keeps its value, as it may have handed those out); points pgbouncer's\n"
     "database entry at the target (the entry in --pgbouncer-config is rewritten atomically,\n"
     "every other line kept, then RELOAD); RESUMEs. It prints the measured pause, each\n"
     "step's time, and how many sequences were set and kept.\n"
     "\n"
     "If anything fails, or the pause reaches --max-pause before the switch, writes resume on\n"
     "the source unchanged and replication goes on: nothing is lost, run it again later. A\n"
     "watchdog process resumes pgbouncer even if pgrelocate is killed while writes are\n"
     "paused. --dry-run does everything but the switch and resumes on the source.\n"
     "\n"
     "pgbouncer must run in pool_mode transaction (or statement) for PAUSE to wait only for\n"
     "transactions, the --pgbouncer user must be in its admin_users, and pgrelocate must be\n"
     "able to write --pgbouncer-config. Without pgbouncer, --pause-command, --resume-command\n"
     "and --switch-command do the same (the switch command gets PGRELOCATE_NEW_HOST,\n"
     "PGRELOCATE_NEW_PORT and PGRELOCATE_NEW_DBNAME in its environment).\n"
     "\n"
     "Example:\n"
     "  pgrelocate cutover --source postgresql://app@old-db/shop \\\n"
     "      --target postgresql://postgres@new-db/shop \\\n"
     "      --pgbouncer postgresql://admin@127.0.0.1:6432/pgbouncer \\\n"
     "      --pgbouncer-config /etc/pgbouncer/pgbouncer.ini --database shop --max-pause 2s",
     cutover_options, copy_required},
    {"rollback", cmd_rollback, "switch the clients back to the source after a cutover",
     "pgrelocate rollback --source URI --target URI --pgbouncer URI --pgbouncer-config FILE "
     "--database NAME [options]",
     "The cutover in the other direction: pause, wait until the reverse replication has\n"
     "brought every write made on the target to the source, set the source's sequences,\n"
     "point pgbouncer back at the source, resume. Writes made on the target are not lost.",
     cutover_options, copy_required},
    {"cleanup", cmd_cleanup, "remove the slot, publication, origin and state of a migration",
     "pgrelocate cleanup --source URI --target URI",
     "Drops what pgrelocate created: on the source the replication slot and the publication\n"
     "(and restores replica identities it changed), on the target the replication origin and\n"
     "the pgrelocate schema. Your copied tables and data stay. Safe to run twice.",
     cleanup_options, copy_required},
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
        log_msg(LOG_ERROR, NULL, NULL, "missing required option%s: %s", strchr(err, ',') ? "s" : "",
                err);
        fprintf(stderr, "Run \"pgrelocate %s --help\" for its options.\n", cmd->name);
        return EXIT_USAGE;
    }
    log_set_level(opts.verbose ? LOG_DEBUG : opts.quiet ? LOG_WARNING : LOG_INFO);
    return cmd->run(&opts);
}
