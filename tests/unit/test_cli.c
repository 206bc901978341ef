/*
 * test_cli.c: option parsing against a test command table: long, "=" and
 * short forms, typed values and their range errors, options the command does
 * not take, environment fallback through a fake getenv (the command line
 * wins; a bad value names its variable), required options and help text.
 * Each parse case lists the fields that differ from the defaults, or the
 * exact error line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"

#define NELEM(a)  (sizeof(a) / sizeof((a)[0]))
#define MAX_ARGS  8
#define LONG_NAME "--aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static int run_nothing(const Options *opts)
{
    (void)opts;
    return 0;
}

static const char *const copy_options[] = {
    "source",         "target",   "jobs",   "split-larger-than", "resume", "pg-bin",
    "snapshot-grace", "progress", "tables", "max-differences",   NULL};
static const char *const copy_required[] = {"source", "target", NULL};
static const char *const status_options[] = {"target", NULL};
static const char *const status_required[] = {"target", NULL};

static const CommandSpec commands[] = {
    {"copy", run_nothing, "copy a database", "pgrelocate copy --source URI --target URI",
     "Copies everything.", copy_options, copy_required},
    {"status", run_nothing, "show progress", "pgrelocate status --target URI", "Reads the state.",
     status_options, status_required},
};
static const CommandSpec *const copy_cmd = &commands[0];
static const CommandSpec *const status_cmd = &commands[1];

/* The fake environment: name, value, ..., NULL. */
static const char *const *fake_env;

static char *fake_getenv(const char *name)
{
    for (const char *const *e = fake_env; e && *e; e += 2)
        if (strcmp(e[0], name) == 0)
            return (char *)e[1];
    return NULL;
}

static void add_str(char *out, size_t outlen, const char *key, const char *v, const char *def)
{
    size_t used = strlen(out);

    if (v == def || (v && def && strcmp(v, def) == 0))
        return;
    if (v)
        snprintf(out + used, outlen - used, "%s%s=\"%s\"", used ? " " : "", key, v);
    else
        snprintf(out + used, outlen - used, "%s%s=NULL", used ? " " : "", key);
}

static void add_int(char *out, size_t outlen, const char *key, long long v, long long def)
{
    size_t used = strlen(out);

    if (v != def)
        snprintf(out + used, outlen - used, "%s%s=%lld", used ? " " : "", key, v);
}

/* The fields of o that differ from the defaults, as "key=value ..." */
static void render_changes(const Options *o, char *out, size_t outlen)
{
    Options d;

    cli_defaults(&d);
    out[0] = '\0';
    add_str(out, outlen, "source", o->source, d.source);
    add_str(out, outlen, "target", o->target, d.target);
    add_int(out, outlen, "jobs", o->jobs, d.jobs);
    add_int(out, outlen, "split", (long long)o->split_larger_than, (long long)d.split_larger_than);
    add_int(out, outlen, "resume", o->resume, d.resume);
    add_int(out, outlen, "new_snapshot", o->new_snapshot, d.new_snapshot);
    add_int(out, outlen, "no_owner", o->no_owner, d.no_owner);
    add_int(out, outlen, "no_acl", o->no_acl, d.no_acl);
    add_str(out, outlen, "pg_bin", o->pg_bin, d.pg_bin);
    add_int(out, outlen, "grace_ms", (long long)o->snapshot_grace_ms,
            (long long)d.snapshot_grace_ms);
    add_str(out, outlen, "progress", o->progress, d.progress);
    add_int(out, outlen, "max_diff", o->max_differences, d.max_differences);
    add_int(out, outlen, "verbose", o->verbose, d.verbose);
    add_int(out, outlen, "quiet", o->quiet, d.quiet);
    add_int(out, outlen, "help", o->help, d.help);
}

typedef struct ParseCase {
    const char *name;
    bool status; /* parse for the status command instead of copy */
    const char *argv[MAX_ARGS];
    const char *env[7];
    bool ok;
    const char *want; /* changed fields when ok, else the exact error */
} ParseCase;

static const ParseCase parse_cases[] = {
    {"nothing given", false, {NULL}, {NULL}, true, ""},
    {"long options with separate values",
     false,
     {"--source", "srcuri", "--target", "tgturi", NULL},
     {NULL},
     true,
     "source=\"srcuri\" target=\"tgturi\""},
    {"long options with =, value holding = and spaces",
     false,
     {"--source=host=a dbname=b", "--target=postgresql://x/y", NULL},
     {NULL},
     true,
     "source=\"host=a dbname=b\" target=\"postgresql://x/y\""},
    {"empty value after =", false, {"--source=", NULL}, {NULL}, true, "source=\"\""},
    {"short options",
     false,
     {"-s", "a", "-t", "b", "-j", "8", "-v", "-q"},
     {NULL},
     true,
     "source=\"a\" target=\"b\" jobs=8 verbose=1 quiet=1"},
    {"last one wins", false, {"--jobs=2", "-j", "3", NULL}, {NULL}, true, "jobs=3"},
    {"value that looks like an option",
     false,
     {"--source", "--target", NULL},
     {NULL},
     true,
     "source=\"--target\""},
    {"boolean", false, {"--resume", NULL}, {NULL}, true, "resume=1"},
    {"help", false, {"--help", NULL}, {NULL}, true, "help=1"},
    {"short help", false, {"-h", NULL}, {NULL}, true, "help=1"},
    {"string options",
     false,
     {"--pg-bin", "/usr/lib/postgresql/16/bin", "--progress=plain", NULL},
     {NULL},
     true,
     "pg_bin=\"/usr/lib/postgresql/16/bin\" progress=\"plain\""},

    {"boolean given a value",
     false,
     {"--resume=yes", NULL},
     {NULL},
     false,
     "--resume takes no value"},
    {"boolean given an empty value",
     false,
     {"--help=", NULL},
     {NULL},
     false,
     "--help takes no value"},
    {"unknown long option",
     false,
     {"--bogus", NULL},
     {NULL},
     false,
     "invalid option: unknown option \"--bogus\" for \"copy\""},
    {"unknown short option",
     false,
     {"-x", NULL},
     {NULL},
     false,
     "invalid option: unknown option \"-x\" for \"copy\""},
    {"short option glued to its value",
     false,
     {"-j8", NULL},
     {NULL},
     false,
     "invalid option: unknown option \"-j8\" for \"copy\""},
    {"bare --",
     false,
     {"--", NULL},
     {NULL},
     false,
     "invalid option: unknown option \"--\" for \"copy\""},
    {"bare -",
     false,
     {"-", NULL},
     {NULL},
     false,
     "invalid option: unknown option \"-\" for \"copy\""},
    {"overlong option name",
     false,
     {LONG_NAME, NULL},
     {NULL},
     false,
     "invalid option: unknown option \"" LONG_NAME "\" for \"copy\""},
    {"stray word",
     false,
     {"--resume", "stray", NULL},
     {NULL},
     false,
     "unexpected argument: unknown option \"stray\" for \"copy\""},
    {"option of another command",
     false,
     {"--no-acl", NULL},
     {NULL},
     false,
     "invalid option: unknown option \"--no-acl\" for \"copy\""},
    {"long option the command does not take",
     true,
     {"--jobs=4", NULL},
     {NULL},
     false,
     "invalid option: unknown option \"--jobs=4\" for \"status\""},
    {"short option the command does not take",
     true,
     {"-j", "4", NULL},
     {NULL},
     false,
     "invalid option: unknown option \"-j\" for \"status\""},
    {"status takes its own options",
     true,
     {"-t", "x", "-v", NULL},
     {NULL},
     true,
     "target=\"x\" verbose=1"},
    {"missing string value",
     false,
     {"--source", NULL},
     {NULL},
     false,
     "--source needs a value (URI)"},
    {"missing short value", false, {"-j", NULL}, {NULL}, false, "--jobs needs a value (N)"},
    {"missing size value",
     false,
     {"--split-larger-than", NULL},
     {NULL},
     false,
     "--split-larger-than needs a value (SIZE)"},

    {"jobs lowest", false, {"--jobs=1", NULL}, {NULL}, true, "jobs=1"},
    {"jobs highest", false, {"--jobs=1024", NULL}, {NULL}, true, "jobs=1024"},
    {"jobs zero",
     false,
     {"--jobs=0", NULL},
     {NULL},
     false,
     "--jobs expects a whole number from 1 to 1024, not \"0\""},
    {"jobs too many",
     false,
     {"--jobs", "1025", NULL},
     {NULL},
     false,
     "--jobs expects a whole number from 1 to 1024, not \"1025\""},
    {"jobs negative",
     false,
     {"-j", "-3", NULL},
     {NULL},
     false,
     "--jobs expects a whole number from 1 to 1024, not \"-3\""},
    {"jobs not a number",
     false,
     {"--jobs=abc", NULL},
     {NULL},
     false,
     "--jobs expects a whole number from 1 to 1024, not \"abc\""},
    {"jobs empty",
     false,
     {"--jobs=", NULL},
     {NULL},
     false,
     "--jobs expects a whole number from 1 to 1024, not \"\""},
    {"jobs trailing garbage",
     false,
     {"--jobs=8x", NULL},
     {NULL},
     false,
     "--jobs expects a whole number from 1 to 1024, not \"8x\""},
    {"jobs overflowing long",
     false,
     {"--jobs=99999999999999999999", NULL},
     {NULL},
     false,
     "--jobs expects a whole number from 1 to 1024, not \"99999999999999999999\""},

    {"size with unit", false, {"--split-larger-than=512MB", NULL}, {NULL}, true, "split=536870912"},
    {"size with fraction",
     false,
     {"--split-larger-than", "1.5GB", NULL},
     {NULL},
     true,
     "split=1610612736"},
    {"size zero",
     false,
     {"--split-larger-than=0", NULL},
     {NULL},
     false,
     "--split-larger-than expects a size such as 512MB or 2GB, not \"0\""},
    {"size bad unit",
     false,
     {"--split-larger-than=1XB", NULL},
     {NULL},
     false,
     "--split-larger-than expects a size such as 512MB or 2GB, not \"1XB\""},
    {"size negative",
     false,
     {"--split-larger-than=-1GB", NULL},
     {NULL},
     false,
     "--split-larger-than expects a size such as 512MB or 2GB, not \"-1GB\""},
    {"count zero", false, {"--max-differences=0", NULL}, {NULL}, true, "max_diff=0"},
    {"count large",
     false,
     {"--max-differences", "1000000", NULL},
     {NULL},
     true,
     "max_diff=1000000"},
    {"count negative",
     false,
     {"--max-differences=-1", NULL},
     {NULL},
     false,
     "--max-differences expects a whole number from 0 to 1000000000, not \"-1\""},
    {"count too large",
     false,
     {"--max-differences=1000000001", NULL},
     {NULL},
     false,
     "--max-differences expects a whole number from 0 to 1000000000, not \"1000000001\""},
    {"count not a number",
     false,
     {"--max-differences=lots", NULL},
     {NULL},
     false,
     "--max-differences expects a whole number from 0 to 1000000000, not \"lots\""},
    {"duration seconds", false, {"--snapshot-grace=30s", NULL}, {NULL}, true, "grace_ms=30000"},
    {"duration bare number", false, {"--snapshot-grace", "2", NULL}, {NULL}, true, "grace_ms=2000"},
    {"duration zero", false, {"--snapshot-grace=0", NULL}, {NULL}, true, "grace_ms=0"},
    {"duration bad",
     false,
     {"--snapshot-grace=5 parsecs", NULL},
     {NULL},
     false,
     "--snapshot-grace expects a duration such as 500ms, 30s or 5min, not \"5 parsecs\""},

    {"environment fills what is absent",
     false,
     {NULL},
     {"PGRELOCATE_SOURCE", "envsrc", "PGRELOCATE_TARGET", "envtgt", "PGRELOCATE_JOBS", "16", NULL},
     true,
     "source=\"envsrc\" target=\"envtgt\" jobs=16"},
    {"command line wins over environment",
     false,
     {"--source=cli", "-j", "2", NULL},
     {"PGRELOCATE_SOURCE", "envsrc", "PGRELOCATE_JOBS", "16", NULL},
     true,
     "source=\"cli\" jobs=2"},
    {"bad environment value names its variable",
     false,
     {"--source=cli", NULL},
     {"PGRELOCATE_JOBS", "abc", NULL},
     false,
     "--jobs expects a whole number from 1 to 1024, not \"abc\" (from PGRELOCATE_JOBS)"},
    {"bad environment value overridden on the command line",
     false,
     {"-j", "2", NULL},
     {"PGRELOCATE_JOBS", "abc", NULL},
     true,
     "jobs=2"},
    {"empty environment value is ignored",
     false,
     {NULL},
     {"PGRELOCATE_PROGRESS", "", "PGRELOCATE_JOBS", "", NULL},
     true,
     ""},
    {"environment string options",
     false,
     {NULL},
     {"PGRELOCATE_PROGRESS", "none", "PGRELOCATE_PG_BIN", "/opt/pg/bin", NULL},
     true,
     "pg_bin=\"/opt/pg/bin\" progress=\"none\""},
    {"environment of options the command does not take",
     true,
     {NULL},
     {"PGRELOCATE_JOBS", "abc", "PGRELOCATE_SOURCE", "envsrc", "PGRELOCATE_TARGET", "envtgt", NULL},
     true,
     "target=\"envtgt\""},
    {"option error reported before environment",
     false,
     {"--bogus", NULL},
     {"PGRELOCATE_JOBS", "abc", NULL},
     false,
     "invalid option: unknown option \"--bogus\" for \"copy\""},
};

static int to_argv(const char *const *words, char **argv)
{
    int argc = 0;

    while (argc < MAX_ARGS && words[argc]) {
        argv[argc] = (char *)words[argc];
        argc++;
    }
    argv[argc] = NULL;
    return argc;
}

static void test_parse_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(parse_cases); i++) {
        const ParseCase *c = &parse_cases[i];
        char *argv[MAX_ARGS + 1];
        int argc = to_argv(c->argv, argv);
        Options o;
        char err[512] = "", got[512];
        bool ok;

        fake_env = c->env;
        cli_defaults(&o);
        ok = cli_parse(c->status ? status_cmd : copy_cmd, argc, argv, &o, fake_getenv, err,
                       sizeof(err));
        render_changes(&o, got, sizeof(got));
        if (ok != c->ok)
            fail_msg("%s: returned %d, expected %d (error \"%s\", options %s)", c->name, ok, c->ok,
                     err, got);
        if (ok && strcmp(got, c->want) != 0)
            fail_msg("%s: options %s, expected %s", c->name, got, c->want);
        if (!ok && strcmp(err, c->want) != 0)
            fail_msg("%s: error \"%s\", expected \"%s\"", c->name, err, c->want);
    }
    fake_env = NULL;
}

static void test_no_getenv_reads_no_environment(void **state)
{
    static const char *const env[] = {"PGRELOCATE_SOURCE", "envsrc", NULL};
    char *argv[] = {"--target=t", NULL};
    Options o;
    char err[128] = "", got[256];

    (void)state;
    fake_env = env;
    cli_defaults(&o);
    assert_true(cli_parse(copy_cmd, 1, argv, &o, NULL, err, sizeof(err)));
    render_changes(&o, got, sizeof(got));
    assert_string_equal(got, "target=\"t\"");
    fake_env = NULL;
}

static void test_defaults(void **state)
{
    Options o;

    (void)state;
    memset(&o, 0xAB, sizeof(o));
    cli_defaults(&o);
    assert_null(o.source);
    assert_null(o.target);
    assert_int_equal(o.jobs, 4);
    assert_int_equal(o.split_larger_than, 256 * 1024 * 1024);
    assert_int_equal(o.snapshot_grace_ms, 5 * 60 * 1000);
    assert_string_equal(o.progress, "auto");
    assert_false(o.resume || o.new_snapshot || o.no_owner || o.no_acl || o.verbose || o.quiet ||
                 o.help);
    assert_null(o.pg_bin);
}

static void test_list_option_repeats_and_joins(void **state)
{
    char *argv[] = {"--tables", "shop.*", "--tables=a,\"B c\"", NULL};
    char *one[] = {"--tables", "x", NULL};
    Options o;
    char err[128] = "", *joined;

    (void)state;
    cli_defaults(&o);
    assert_null(cli_join_list(&o.tables));
    assert_true(cli_parse(copy_cmd, 3, argv, &o, NULL, err, sizeof(err)));
    assert_int_equal(o.tables.n, 2);
    joined = cli_join_list(&o.tables);
    assert_string_equal(joined, "shop.*,a,\"B c\"");
    free(joined);
    cli_defaults(&o);
    for (int i = 0; i < CLI_MAX_LIST; i++)
        assert_true(cli_parse(copy_cmd, 2, one, &o, NULL, err, sizeof(err)));
    assert_false(cli_parse(copy_cmd, 2, one, &o, NULL, err, sizeof(err)));
    assert_string_equal(err, "--tables is given more than 64 times: join the values with commas");
    assert_false(cli_parse(status_cmd, 2, one, &o, NULL, err, sizeof(err)));
}

/* An error line from the environment cut to every buffer size. */
static void test_error_text_is_cut_to_the_buffer(void **state)
{
    static const char *const env[] = {"PGRELOCATE_JOBS", "abc", NULL};
    static const char full[] =
        "--jobs expects a whole number from 1 to 1024, not \"abc\" (from PGRELOCATE_JOBS)";
    char *argv[] = {NULL};

    (void)state;
    fake_env = env;
    for (size_t len = 1; len <= sizeof(full) + 1; len++) {
        char *err = malloc(len);
        Options o;

        assert_non_null(err);
        cli_defaults(&o);
        assert_false(cli_parse(copy_cmd, 0, argv, &o, fake_getenv, err, len));
        assert_true(strlen(err) < len);
        assert_memory_equal(err, full, strlen(err));
        free(err);
    }
    fake_env = NULL;
}

typedef struct RequiredCase {
    const char *name;
    bool status;
    const char *argv[MAX_ARGS];
    bool ok;
    const char *want;
} RequiredCase;

static const RequiredCase required_cases[] = {
    {"all missing are listed", false, {NULL}, false, "--source, --target"},
    {"source missing", false, {"--target=t", NULL}, false, "--source"},
    {"target missing", false, {"-s", "s", NULL}, false, "--target"},
    {"empty counts as missing", false, {"--source=", "--target=t", NULL}, false, "--source"},
    {"all present", false, {"-s", "s", "-t", "t", NULL}, true, ""},
    {"help skips required", false, {"--help", NULL}, true, ""},
    {"short help skips required", true, {"-h", NULL}, true, ""},
    {"other command's list", true, {"-v", NULL}, false, "--target"},
};

static void test_required_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(required_cases); i++) {
        const RequiredCase *c = &required_cases[i];
        const CommandSpec *cmd = c->status ? status_cmd : copy_cmd;
        char *argv[MAX_ARGS + 1];
        int argc = to_argv(c->argv, argv);
        Options o;
        char err[128];
        bool ok;

        cli_defaults(&o);
        assert_true(cli_parse(cmd, argc, argv, &o, NULL, err, sizeof(err)));
        memset(err, 'Z', sizeof(err));
        ok = cli_check_required(cmd, &o, err, sizeof(err));
        if (ok != c->ok || strcmp(err, c->want) != 0)
            fail_msg("%s: returned %d \"%s\", expected %d \"%s\"", c->name, ok, err, c->ok,
                     c->want);
    }
}

static void test_required_list_is_cut_to_the_buffer(void **state)
{
    static const char full[] = "--source, --target";
    Options o;

    (void)state;
    cli_defaults(&o);
    for (size_t len = 2; len <= sizeof(full) + 1; len++) {
        char *err = malloc(len);

        assert_non_null(err);
        assert_false(cli_check_required(copy_cmd, &o, err, len));
        assert_true(strlen(err) < len);
        assert_memory_equal(err, full, strlen(err));
        free(err);
    }
}

static void test_find_option(void **state)
{
    const OptionSpec *jobs = cli_find_option("jobs");
    const OptionSpec *grace = cli_find_option("snapshot-grace");

    (void)state;
    assert_non_null(jobs);
    assert_string_equal(jobs->name, "jobs");
    assert_int_equal(jobs->short_name, 'j');
    assert_int_equal(jobs->kind, OPT_INT);
    assert_int_equal(jobs->offset, offsetof(Options, jobs));
    assert_string_equal(jobs->env, "PGRELOCATE_JOBS");
    assert_non_null(grace);
    assert_int_equal(grace->kind, OPT_DURATION);
    assert_null(grace->env);
    assert_null(cli_find_option("nope"));
    assert_null(cli_find_option(""));
    assert_null(cli_find_option("job"));
}

static char *capture(void (*print)(FILE *, const void *), const void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    print(f, arg);
    fclose(f);
    return buf;
}

static void print_copy_help(FILE *f, const void *arg)
{
    cli_print_command_help(arg, f);
}

static void print_main_help(FILE *f, const void *arg)
{
    (void)arg;
    cli_print_main_help(commands, NELEM(commands), f);
}

static void test_command_help_lists_its_options_only(void **state)
{
    static const char *const present[] = {
        "copy a database\n\nUsage:\n  pgrelocate copy --source URI --target URI\n\n"
        "Copies everything.\n\nOptions:\n",
        "-s, --source URI",
        "[env PGRELOCATE_SOURCE]",
        "-j, --jobs N",
        "    --split-larger-than SIZE",
        "    --resume ",
        "    --snapshot-grace DURATION",
        "-v, --verbose",
        "-q, --quiet",
        "-h, --help",
    };
    char *out = capture(print_copy_help, copy_cmd);

    (void)state;
    for (size_t i = 0; i < NELEM(present); i++)
        if (!strstr(out, present[i]))
            fail_msg("help lacks \"%s\":\n%s", present[i], out);
    assert_ptr_equal(strstr(out, present[0]), out);
    assert_null(strstr(out, "--no-acl"));
    assert_null(strstr(out, "--new-snapshot"));
    free(out);
}

static void test_main_help_lists_commands(void **state)
{
    char *out = capture(print_main_help, NULL);

    (void)state;
    assert_non_null(strstr(out, "\n  copy       copy a database\n"));
    assert_non_null(strstr(out, "\n  status     show progress\n"));
    assert_non_null(strstr(out, "--version"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_cases),
        cmocka_unit_test(test_no_getenv_reads_no_environment),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_list_option_repeats_and_joins),
        cmocka_unit_test(test_error_text_is_cut_to_the_buffer),
        cmocka_unit_test(test_required_cases),
        cmocka_unit_test(test_required_list_is_cut_to_the_buffer),
        cmocka_unit_test(test_find_option),
        cmocka_unit_test(test_command_help_lists_its_options_only),
        cmocka_unit_test(test_main_help_lists_commands),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
