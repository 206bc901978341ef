/*
 * cli.h: commands and options as tables; parsing and help text.  Pure (no
 * libpq): main() looks the command up, parses its options into Options,
 * and calls the command's function.
 */
#ifndef PGRELOCATE_CLI_H
#define PGRELOCATE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A repeatable option's values, in the order given. */
#define CLI_MAX_LIST 64
typedef struct OptList {
    const char *items[CLI_MAX_LIST];
    int n;
} OptList;

/* Every option of every command lands here; a command reads what it owns. */
typedef struct Options {
    const char *source; /* libpq URI or conninfo; may hold a password */
    const char *target;
    int jobs;
    int64_t split_larger_than; /* bytes */
    bool resume;
    bool new_snapshot;
    bool no_owner;
    bool no_acl;
    const char *pg_bin;         /* directory holding pg_dump/pg_restore */
    int64_t snapshot_grace_ms;  /* keep the snapshot this long after a crash */
    const char *progress;       /* "auto", "tty", "plain", "none" */
    bool replica_identity_full; /* start: give tables without a key REPLICA IDENTITY FULL */
    int64_t slot_wait_ms;       /* start: give up creating the slot after this long */
    bool one_snapshot;          /* start: the whole copy under the slot's snapshot */
    int64_t sync_group_size;    /* start: small tables share a snapshot up to this size */
    int64_t max_retained_wal;   /* start: warn when the slot keeps more WAL than this */
    const char *protocol;       /* start: "auto", "text", "binary"; NULL: as recorded */
    const char *metrics_listen; /* start: ADDR:PORT for Prometheus metrics, or NULL */
    /* start: commit LSN of a source transaction to leave out */
    const char *skip_transaction;
    OptList tables;        /* copy, start, verify: --tables patterns (each may be a comma list) */
    bool json;             /* check, status: machine-readable output on stdout */
    bool watch;            /* status: redraw every interval until Ctrl-C */
    int64_t interval_ms;   /* status --watch period */
    int max_differences;   /* verify: differing rows listed (all are counted) */
    int64_t group_size;    /* verify: a new consistent point after this much table data */
    const char *pgbouncer; /* cutover: pgbouncer admin console URI */
    const char *pgbouncer_config;  /* cutover: pgbouncer.ini to rewrite */
    const char *database;          /* cutover: the database's name in pgbouncer */
    int64_t max_pause_ms;          /* cutover: give up and resume after this long */
    int64_t max_lag;               /* cutover: refuse to begin when further behind (bytes) */
    const char *sequence_headroom; /* cutover: move sequences this many steps further */
    bool dry_run;                  /* cutover: pause, drain, measure, resume; no switch */
    bool no_reverse;               /* cutover: no replication target -> source afterwards */
    const char *pause_command;     /* cutover without pgbouncer: pause writes */
    const char *resume_command;    /* ... resume them */
    const char *switch_command;    /* ... point clients at the other side */
    bool verbose;
    bool quiet;
    bool help;
} Options;

typedef enum {
    OPT_BOOL,
    OPT_INT,   /* 1..1024 (workers) */
    OPT_COUNT, /* 0..1000000000 */
    OPT_SIZE,
    OPT_DURATION,
    OPT_STRING,
    OPT_LIST
} OptKind;

typedef struct OptionSpec {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 if none */
    OptKind kind;
    size_t offset;       /* offsetof(Options, field) */
    const char *env;     /* environment variable read when the option is absent, or NULL */
    const char *metavar; /* shown in help, e.g. "URI" */
    const char *help;
} OptionSpec;

typedef int (*CommandFn)(const Options *opts);

typedef struct CommandSpec {
    const char *name;
    CommandFn run;
    const char *summary;         /* one line for the command list */
    const char *usage;           /* "pgrelocate copy --source URI --target URI [options]" */
    const char *details;         /* paragraphs shown by COMMAND --help */
    const char *const *options;  /* names of the options it takes, NULL-terminated */
    const char *const *required; /* names that must be set, NULL-terminated */
} CommandSpec;

/* Fill opts with defaults. */
void cli_defaults(Options *opts);

/* Parse argv (after the command word) into opts; missing options are read
 * from their environment variables (getenv_fn, usually getenv).  On error
 * writes one line "unknown option ..."/"... expects a size" into err and
 * returns false. */
bool cli_parse(const CommandSpec *cmd, int argc, char **argv, Options *opts,
               char *(*getenv_fn)(const char *), char *err, size_t errlen);

/* Which required options are missing: writes "--source, --target" style
 * text into err and returns false; true when all present (or --help). */
bool cli_check_required(const CommandSpec *cmd, const Options *opts, char *err, size_t errlen);

const OptionSpec *cli_find_option(const char *name);

/* The values of a list option joined with ",", or NULL when it has none.
 * Caller frees. */
char *cli_join_list(const OptList *list);
void cli_print_command_help(const CommandSpec *cmd, FILE *out);
void cli_print_main_help(const CommandSpec *cmds, size_t ncmds, FILE *out);

#endif
