/*
 * cli.c: the option table, argv parsing and help text.
 */
#include "cli.h"

#include "size.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define OPT(f) offsetof(Options, f)

static const OptionSpec option_table[] = {
    {"source", 's', OPT_STRING, OPT(source), "PGRELOCATE_SOURCE", "URI",
     "source database: libpq URI or conninfo (postgresql://user@host/db); "
     "passwords belong in ~/.pgpass or PGPASSFILE, never on the command line"},
    {"target", 't', OPT_STRING, OPT(target), "PGRELOCATE_TARGET", "URI",
     "target database (copy, start: it must exist and be empty)"},
    {"jobs", 'j', OPT_INT, OPT(jobs), "PGRELOCATE_JOBS", "N",
     "parallel workers: copy and index workers; verify: connections per side (default: 4)"},
    {"split-larger-than", 0, OPT_SIZE, OPT(split_larger_than), NULL, "SIZE",
     "copy tables whose copy costs more than SIZE, and more than one job's share of the whole "
     "copy, in parallel ctid ranges of about SIZE each; TOAST bytes count 5 times "
     "(default: 256MB)"},
    {"resume", 0, OPT_BOOL, OPT(resume), NULL, NULL,
     "continue an interrupted run from the state kept in the target"},
    {"new-snapshot", 0, OPT_BOOL, OPT(new_snapshot), NULL, NULL,
     "with --resume: accept that tables not yet copied are copied from a newer point in time"},
    {"no-owner", 0, OPT_BOOL, OPT(no_owner), NULL, NULL,
     "do not set object owners on the target (when the source's roles do not exist there)"},
    {"no-acl", 0, OPT_BOOL, OPT(no_acl), NULL, NULL, "do not copy privileges (GRANT/REVOKE)"},
    {"pg-bin", 0, OPT_STRING, OPT(pg_bin), "PGRELOCATE_PG_BIN", "DIR",
     "directory with pg_dump and pg_restore (default: the newest installed)"},
    {"snapshot-grace", 0, OPT_DURATION, OPT(snapshot_grace_ms), NULL, "DURATION",
     "if pgrelocate dies, keep the source snapshot this long for --resume (default: 5min; "
     "0 = release at once)"},
    {"progress", 0, OPT_STRING, OPT(progress), "PGRELOCATE_PROGRESS", "MODE",
     "auto, tty, plain or none (default: auto: live on a terminal, plain lines otherwise)"},
    {"replica-identity-full", 0, OPT_BOOL, OPT(replica_identity_full), NULL, NULL,
     "give tables without primary key REPLICA IDENTITY FULL on the source (undone by "
     "cleanup) instead of refusing to start"},
    {"protocol", 0, OPT_STRING, OPT(protocol), NULL, "MODE",
     "how values travel from the source while following: auto (binary where every published "
     "column type is safe in binary, PostgreSQL 14+), text, or binary (default: text, or what "
     "this migration's start was last given)"},
    {"one-snapshot", 0, OPT_BOOL, OPT(one_snapshot), NULL, NULL,
     "start: copy every table under the replication slot's one snapshot, held on the source "
     "for the whole copy, and follow only after it (the mode before per-table sync)"},
    {"sync-group-size", 0, OPT_SIZE, OPT(sync_group_size), NULL, "SIZE",
     "start: copy small tables together under one short snapshot until they reach SIZE; a "
     "bigger table gets a snapshot of its own (default: 256MB)"},
    {"slot-wait", 0, OPT_DURATION, OPT(slot_wait_ms), NULL, "DURATION",
     "how long to wait for running source transactions when creating the replication slot "
     "(default: 5min)"},
    {"max-retained-wal", 0, OPT_SIZE, OPT(max_retained_wal), NULL, "SIZE",
     "warn when the replication slot keeps more WAL than this on the source (default: 20GB)"},
    {"metrics-listen", 0, OPT_STRING, OPT(metrics_listen), "PGRELOCATE_METRICS_LISTEN", "ADDR:PORT",
     "serve Prometheus metrics over HTTP at ADDR:PORT (e.g. 127.0.0.1:9187)"},
    {"skip-transaction", 0, OPT_STRING, OPT(skip_transaction), NULL, "LSN",
     "for experts: leave out the source transaction committed at LSN (the one an apply error "
     "names), recorded in the event log; repair its rows on the target by hand (verify names "
     "them)"},
    {"tables", 0, OPT_LIST, OPT(tables), NULL, "PATTERN",
     "only the tables matching PATTERN (copy, start: moved; verify: compared; check: judged; "
     "status: shown; resync: copied again): comma-separated, "
     "repeatable, psql-style "
     "(schema.table, * and ?, \"Quoted\" names literal; no schema: any schema)"},
    {"json", 0, OPT_BOOL, OPT(json), NULL, NULL, "print JSON on stdout instead of text"},
    {"watch", 'w', OPT_BOOL, OPT(watch), NULL, NULL, "show again every --interval until Ctrl-C"},
    {"interval", 0, OPT_DURATION, OPT(interval_ms), NULL, "DURATION",
     "how often --watch refreshes (default: 2s)"},
    {"max-differences", 0, OPT_COUNT, OPT(max_differences), NULL, "N",
     "list at most N differing rows; all are counted (default: 100)"},
    {"group-size", 0, OPT_SIZE, OPT(group_size), NULL, "SIZE",
     "take a new consistent point after about SIZE of table data, so no snapshot stays open "
     "on the source longer than comparing that much takes (default: 10GB)"},
    {"pgbouncer", 0, OPT_STRING, OPT(pgbouncer), "PGRELOCATE_PGBOUNCER", "URI",
     "pgbouncer's admin console (postgresql://admin@host:6432/pgbouncer); the user must be "
     "in its admin_users"},
    {"pgbouncer-config", 0, OPT_STRING, OPT(pgbouncer_config), "PGRELOCATE_PGBOUNCER_CONFIG",
     "FILE", "the pgbouncer.ini pgbouncer runs with; its [databases] entry is rewritten"},
    {"database", 0, OPT_STRING, OPT(database), NULL, "NAME",
     "the database's name in pgbouncer's [databases] section"},
    {"max-pause", 0, OPT_DURATION, OPT(max_pause_ms), NULL, "DURATION",
     "longest pause of writes before the switch; past it writes resume on the old side and "
     "nothing changes (default: 2s)"},
    {"max-lag", 0, OPT_SIZE, OPT(max_lag), NULL, "SIZE",
     "refuse to pause while replication is further behind than this (default: 16MB)"},
    {"sequence-headroom", 0, OPT_STRING, OPT(sequence_headroom), NULL, "N",
     "set every sequence N increments beyond the old side's value (default: 0)"},
    {"dry-run", 0, OPT_BOOL, OPT(dry_run), NULL, NULL,
     "pause, wait for replication, set sequences, measure the pause, then resume on the old "
     "side without switching"},
    {"no-reverse", 0, OPT_BOOL, OPT(no_reverse), NULL, NULL,
     "do not replicate writes made on the new side back to the old one (no rollback then)"},
    {"pause-command", 0, OPT_STRING, OPT(pause_command), NULL, "CMD",
     "without pgbouncer: shell command that pauses writes and returns when none is in flight"},
    {"resume-command", 0, OPT_STRING, OPT(resume_command), NULL, "CMD",
     "without pgbouncer: shell command that resumes writes"},
    {"switch-command", 0, OPT_STRING, OPT(switch_command), NULL, "CMD",
     "without pgbouncer: shell command that points clients at PGRELOCATE_NEW_HOST, "
     "PGRELOCATE_NEW_PORT, PGRELOCATE_NEW_DBNAME"},
    {"verbose", 'v', OPT_BOOL, OPT(verbose), NULL, NULL, "print debugging detail"},
    {"quiet", 'q', OPT_BOOL, OPT(quiet), NULL, NULL, "print only warnings and errors"},
    {"help", 'h', OPT_BOOL, OPT(help), NULL, NULL, "show this help"},
};

#define N_OPTIONS (sizeof(option_table) / sizeof(option_table[0]))

void cli_defaults(Options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->jobs = 4;
    /* measured on the bench (pgbench 100 + TOAST-heavy documents, 2 jobs):
     * 256MB beat 1GB and 512MB by balancing the workers better */
    opts->split_larger_than = (int64_t)256 * 1024 * 1024;
    opts->snapshot_grace_ms = 5 * 60 * 1000;
    opts->progress = "auto";
    opts->slot_wait_ms = 5 * 60 * 1000;
    opts->interval_ms = 2000;
    opts->max_pause_ms = 2000;
    opts->max_lag = (int64_t)16 * 1024 * 1024;
    opts->max_retained_wal = (int64_t)20 * 1024 * 1024 * 1024;
    opts->max_differences = 100;
    opts->group_size = (int64_t)10 * 1024 * 1024 * 1024;
    opts->sync_group_size = (int64_t)256 * 1024 * 1024;
}

const OptionSpec *cli_find_option(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(option_table[i].name, name) == 0)
            return &option_table[i];
    return NULL;
}

char *cli_join_list(const OptList *list)
{
    size_t len = 0;
    char *out, *p;

    if (list->n == 0)
        return NULL;
    for (int i = 0; i < list->n; i++)
        len += strlen(list->items[i]) + 1;
    out = malloc(len);
    if (!out)
        abort();
    p = out;
    for (int i = 0; i < list->n; i++) {
        size_t n = strlen(list->items[i]);

        memcpy(p, list->items[i], n);
        p += n;
        *p++ = i + 1 < list->n ? ',' : '\0';
    }
    return out;
}

static bool command_takes(const CommandSpec *cmd, const char *name)
{
    if (strcmp(name, "help") == 0 || strcmp(name, "verbose") == 0 || strcmp(name, "quiet") == 0)
        return true;
    for (const char *const *o = cmd->options; o && *o; o++)
        if (strcmp(*o, name) == 0)
            return true;
    return false;
}

static const OptionSpec *find_short(const CommandSpec *cmd, char c)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (option_table[i].short_name == c && command_takes(cmd, option_table[i].name))
            return &option_table[i];
    return NULL;
}

/* A whole number from min to max (OPT_INT, OPT_COUNT). */
static bool set_whole(const OptionSpec *spec, const char *value, long long min, long long max,
                      int *field, char *err, size_t errlen)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v < min || v > max) {
        snprintf(err, errlen, "--%s expects a whole number from %lld to %lld, not \"%s\"",
                 spec->name, min, max, value);
        return false;
    }
    *field = (int)v;
    return true;
}

static bool set_value(const OptionSpec *spec, const char *value, Options *opts, char *err,
                      size_t errlen)
{
    char *field = (char *)opts + spec->offset;

    switch (spec->kind) {
    case OPT_BOOL:
        *(bool *)field = true;
        return true;
    case OPT_STRING:
        *(const char **)field = value;
        return true;
    case OPT_LIST: {
        OptList *list = (OptList *)field;

        if (list->n == CLI_MAX_LIST) {
            snprintf(err, errlen, "--%s is given more than %d times: join the values with commas",
                     spec->name, CLI_MAX_LIST);
            return false;
        }
        list->items[list->n++] = value;
        return true;
    }
    case OPT_INT:
        return set_whole(spec, value, 1, 1024, (int *)field, err, errlen);
    case OPT_COUNT:
        return set_whole(spec, value, 0, 1000000000, (int *)field, err, errlen);
    case OPT_SIZE:
        if (!size_parse_bytes(value, (int64_t *)field) || *(int64_t *)field <= 0) {
            snprintf(err, errlen, "--%s expects a size such as 512MB or 2GB, not \"%s\"",
                     spec->name, value);
            return false;
        }
        return true;
    case OPT_DURATION:
        if (!size_parse_duration_ms(value, (int64_t *)field)) {
            snprintf(err, errlen, "--%s expects a duration such as 500ms, 30s or 5min, not \"%s\"",
                     spec->name, value);
            return false;
        }
        return true;
    }
    return false;
}

/* Resolve one argv word (and maybe the next) to a spec and its value. */
static bool parse_one(const CommandSpec *cmd, int argc, char **argv, int *i, Options *opts,
                      bool *seen, char *err, size_t errlen)
{
    const char *arg = argv[*i];
    const OptionSpec *spec = NULL;
    const char *value = NULL;
    char name[64];

    if (arg[0] == '-' && arg[1] == '-') {
        const char *eq = strchr(arg + 2, '=');
        size_t n = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);

        if (n < sizeof(name)) {
            memcpy(name, arg + 2, n);
            name[n] = '\0';
            spec = cli_find_option(name);
        }
        if (eq)
            value = eq + 1;
    } else if (arg[0] == '-' && arg[1] && !arg[2]) {
        spec = find_short(cmd, arg[1]);
    }
    if (!spec || !command_takes(cmd, spec->name)) {
        snprintf(err, errlen, "%s: unknown option \"%s\" for \"%s\"",
                 arg[0] == '-' ? "invalid option" : "unexpected argument", arg, cmd->name);
        return false;
    }
    if (spec->kind == OPT_BOOL && value) {
        snprintf(err, errlen, "--%s takes no value", spec->name);
        return false;
    }
    if (spec->kind != OPT_BOOL && !value) {
        if (*i + 1 >= argc) {
            snprintf(err, errlen, "--%s needs a value (%s)", spec->name, spec->metavar);
            return false;
        }
        value = argv[++*i];
    }
    seen[spec - option_table] = true;
    return set_value(spec, value, opts, err, errlen);
}

bool cli_parse(const CommandSpec *cmd, int argc, char **argv, Options *opts,
               char *(*getenv_fn)(const char *), char *err, size_t errlen)
{
    bool seen[N_OPTIONS] = {false};

    for (int i = 0; i < argc; i++)
        if (!parse_one(cmd, argc, argv, &i, opts, seen, err, errlen))
            return false;
    for (size_t k = 0; k < N_OPTIONS && getenv_fn; k++) {
        const OptionSpec *spec = &option_table[k];
        const char *v;

        if (seen[k] || !spec->env || !command_takes(cmd, spec->name))
            continue;
        v = getenv_fn(spec->env);
        if (v && *v && !set_value(spec, v, opts, err, errlen)) {
            size_t used = strlen(err);

            snprintf(err + used, errlen - used, " (from %s)", spec->env);
            return false;
        }
    }
    return true;
}

bool cli_check_required(const CommandSpec *cmd, const Options *opts, char *err, size_t errlen)
{
    size_t used = 0;

    err[0] = '\0';
    if (opts->help)
        return true;
    for (const char *const *r = cmd->required; r && *r; r++) {
        const OptionSpec *spec = cli_find_option(*r);
        const char *v = *(const char *const *)((const char *)opts + spec->offset);

        if (v && *v)
            continue;
        used += (size_t)snprintf(err + used, used < errlen ? errlen - used : 0, "%s--%s",
                                 used ? ", " : "", spec->name);
        if (used >= errlen)
            break;
    }
    return err[0] == '\0';
}

static void print_option(const OptionSpec *spec, FILE *out)
{
    char left[64];

    if (spec->short_name)
        snprintf(left, sizeof(left), "-%c, --%s%s%s", spec->short_name, spec->name,
                 spec->metavar ? " " : "", spec->metavar ? spec->metavar : "");
    else
        snprintf(left, sizeof(left), "    --%s%s%s", spec->name, spec->metavar ? " " : "",
                 spec->metavar ? spec->metavar : "");
    fprintf(out, "  %-32s %s", left, spec->help);
    if (spec->env)
        fprintf(out, " [env %s]", spec->env);
    fputc('\n', out);
}

void cli_print_command_help(const CommandSpec *cmd, FILE *out)
{
    fprintf(out, "%s\n\nUsage:\n  %s\n\n%s\n\nOptions:\n", cmd->summary, cmd->usage, cmd->details);
    for (const char *const *o = cmd->options; o && *o; o++)
        print_option(cli_find_option(*o), out);
    print_option(cli_find_option("verbose"), out);
    print_option(cli_find_option("quiet"), out);
    print_option(cli_find_option("help"), out);
}

void cli_print_main_help(const CommandSpec *cmds, size_t ncmds, FILE *out)
{
    fputs("pgrelocate moves a PostgreSQL database to another PostgreSQL server: schema, data,\n"
          "indexes, constraints, sequences and large objects, exactly, in parallel.\n\n"
          "Usage:\n  pgrelocate COMMAND [options]\n  pgrelocate COMMAND --help\n\n"
          "Commands:\n",
          out);
    for (size_t i = 0; i < ncmds; i++)
        fprintf(out, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
    fputs("\nConnection strings are libpq URIs or conninfo strings. Passwords come from\n"
          "~/.pgpass, PGPASSFILE or PGPASSWORD; pgrelocate never prints them.\n\n"
          "Other options:\n  --version                        print the version and exit\n"
          "  --help                           show this help\n",
          out);
}
