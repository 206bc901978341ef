/*
 * verify.c: `pgrelocate verify`: take consistent points (verifypoint.c:
 * one snapshot per side, exported to the workers; one point per group of
 * tables), compare the schema (schemadiff.c) and the rows (verifyscan.c),
 * print the differences, a summary table or JSON.  Exit 0 only when everything matches,
 * EXIT_DIFFERENT when something differs, EXIT_FAILED when the comparison could not be done. Changes
 * nothing on either server.
 */
#include "commands.h"

#include "clock.h"
#include "conn.h"
#include "digest.h"
#include "interrupt.h"
#include "log.h"
#include "names.h"
#include "schemadiff.h"
#include "strbuf.h"
#include "state.h"
#include "stateschema.h"
#include "tablefilter.h"
#include "verifypoint.h"
#include "verifyscan.h"
#include "largeobject.h"

#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct VerifyRun {
    const Options *o;
    ConnInfo *ci[2];
    PGconn *conn[2]; /* hold the exported snapshots until the end */
    VerifyPoint point;
    char **points; /* each consistent point's description */
    int npoints;
    int *table_point;    /* per table: the index of the point it was compared at */
    TableFilter *filter; /* --tables, NULL: every table */
    SchemaDiff *schema;
    int nschema;
    VerifyScan scan;
    double seconds;
} VerifyRun;

static bool keep_table(const char *schema, const char *name, void *arg)
{
    VerifyRun *r = arg;

    return !r->filter || tablefilter_match(r->filter, schema, name);
}

static bool parse_spec(VerifyRun *r, const char *spec)
{
    char err[256];

    if (!(r->filter = tablefilter_parse(spec, err, sizeof(err))))
        log_msg(LOG_ERROR, NULL, "See \"pgrelocate verify --help\" for the pattern syntax.",
                "invalid --tables: %s", err);
    return r->filter != NULL;
}

/* --tables: the same pattern language as copy and start. */
static bool parse_filter(VerifyRun *r)
{
    char *spec = cli_join_list(&r->o->tables);
    bool ok = !spec || parse_spec(r, spec);

    free(spec);
    return ok;
}

/* Without --tables, a migration of some tables only (copy or start with
 * --tables) is verified on those: the others are not on the target. */
static bool default_filter(VerifyRun *r)
{
    MigrationState st;
    bool exists = false, ok = true;

    if (r->filter)
        return true;
    if (!state_open(r->conn[1], STATE_WRITE, &exists))
        return false;
    if (!exists)
        return true;
    memset(&st, 0, sizeof(st));
    if (!state_load(r->conn[1], &st))
        return false;
    if (st.tables_filter) {
        log_info("[verify] comparing the tables this migration moves: --tables '%s'",
                 st.tables_filter);
        ok = parse_spec(r, st.tables_filter);
    }
    state_free(&st);
    return ok;
}

/* Every --tables pattern must have matched a table or sequence. */
static bool check_filter_used(VerifyRun *r)
{
    char *unmatched = r->filter ? tablefilter_unmatched(r->filter) : NULL;

    if (unmatched)
        log_msg(LOG_ERROR, NULL,
                "Check the names; a pattern without a dot matches the table name "
                "in every schema.",
                "--tables pattern %s matches no table", unmatched);
    free(unmatched);
    return !unmatched;
}

static bool open_side(VerifyRun *r, int side)
{
    const char *text = side ? r->o->target : r->o->source;
    const char *what = side ? "--target" : "--source";
    ConnOpts co = {.side = side ? CONN_TARGET : CONN_SOURCE,
                   .app_name = "pgrelocate verify",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
    char err[256];

    if (!(r->ci[side] = conninfo_parse(text, err, sizeof(err)))) {
        log_msg(LOG_ERROR, NULL, "Give a libpq URI (postgresql://user@host/db) or conninfo.",
                "invalid %s connection string: %s", what, err);
        return false;
    }
    r->conn[side] = conn_open(r->ci[side], &co);
    return r->conn[side] &&
           conn_script(r->conn[side], side ? "target" : "source", verifyscan_session_sql);
}

/* Row hashes must be computed the same way by both servers (hashtext is
 * the server's own hash function: same across versions from 11 on, and
 * across little-endian machines). */
static bool same_hash_function(VerifyRun *r)
{
    static const char *const sql = "SELECT hashtextextended('pgrelocate verify', 0)::text";
    PGresult *s = conn_query(r->conn[0], "source", sql, 0, NULL, 1), *t = NULL;
    bool same = false;

    if (s && (t = conn_query(r->conn[1], "target", sql, 0, NULL, 1))) {
        same = strcmp(PQgetvalue(s, 0, 0), PQgetvalue(t, 0, 0)) == 0;
        if (!same)
            log_msg(LOG_ERROR,
                    "Rows are compared by hashes the servers compute; these two servers compute "
                    "different hashes for the same text (different byte order?).",
                    NULL, "the source and the target hash text differently");
    }
    PQclear(s);
    PQclear(t);
    return same;
}

/* ---- report ---- */

static const char *kind_text(DigestDiffKind k)
{
    return k == DIGEST_MISSING ? "missing on target"
           : k == DIGEST_EXTRA ? "extra on target"
                               : "different values";
}

static char *diff_shown(const VerifyDiff *d)
{
    const VerifyTable *t = d->table;
    char *row, *out;

    if (t->nkey > 0)
        return digest_format_key((const char *const *)t->key_names, t->nkey, d->row.key,
                                 d->row.keylen);
    row = digest_format_row(d->row.key, strnlen(d->row.key, d->row.keylen), 200);
    out = d->copies > 1 ? xasprintf("%lld copies of row %s", (long long)d->copies, row)
                        : xasprintf("row %s", row);
    free(row);
    return out;
}

static int64_t schema_failures(const VerifyRun *r)
{
    int64_t n = 0;

    for (int i = 0; i < r->nschema; i++)
        n += r->schema[i].counts;
    return n;
}

static void print_schema(const VerifyRun *r, FILE *out)
{
    int64_t counted = schema_failures(r);

    if (r->nschema == 0)
        return;
    /* the count the result line gives, and the sequences apart */
    if (counted == r->nschema)
        fprintf(out, "schema differences (%lld):\n", (long long)counted);
    else
        fprintf(out, "schema differences (%lld, and %lld not counted):\n", (long long)counted,
                (long long)(r->nschema - counted));
    for (int i = 0; i < r->nschema; i++) {
        const SchemaDiff *d = &r->schema[i];

        fprintf(out, "  %s %s: %s%s\n", d->kind, d->object, d->problem,
                d->counts ? "" : " (sequences are set at cutover)");
        if (d->source)
            fprintf(out, "      source: %s\n", d->source);
        if (d->target)
            fprintf(out, "      target: %s\n", d->target);
    }
}

/* Rows that differ in materialized views (not counted in the result). */
static int64_t matview_diffs(const VerifyRun *r, int *nviews, int *ndiffer)
{
    int64_t n = 0;

    *nviews = *ndiffer = 0;
    for (int i = 0; i < r->scan.ntables; i++) {
        const VerifyTable *t = &r->scan.tables[i];

        if (!t->matview)
            continue;
        (*nviews)++;
        *ndiffer += t->missing + t->extra + t->changed > 0;
        n += t->missing + t->extra + t->changed;
    }
    return n;
}

/* Row differences of tables: the count the result gives. */
static int64_t row_failures(const VerifyRun *r)
{
    int nviews, ndiffer;

    return r->scan.total_diffs - matview_diffs(r, &nviews, &ndiffer);
}

/* The rows of tables (matviews: false) or of materialized views. */
static void print_diff_lines(const VerifyRun *r, FILE *out, bool matviews)
{
    const VerifyScan *s = &r->scan;

    for (int i = 0; i < s->ndiffs; i++) {
        char *shown;

        if (s->diffs[i].table->matview != matviews)
            continue;
        shown = diff_shown(&s->diffs[i]);
        fprintf(out, "  %s: %s %s\n", s->diffs[i].table->display, kind_text(s->diffs[i].kind),
                shown);
        free(shown);
    }
}

static void print_matviews(const VerifyRun *r, FILE *out)
{
    int nviews, ndiffer;
    int64_t n = matview_diffs(r, &nviews, &ndiffer);

    if (nviews == 0)
        return;
    fprintf(out,
            "materialized views (%d compared, %d differ%s; not counted: the target refreshed "
            "them from the copied rows, a source view not refreshed since its tables changed "
            "differs):\n",
            nviews, ndiffer, ndiffer == 1 ? "s" : "");
    if (n > 0)
        print_diff_lines(r, out, true);
}

static void print_rows(const VerifyRun *r, FILE *out)
{
    const VerifyScan *s = &r->scan;
    int64_t counted = row_failures(r);

    if (counted == 0)
        return;
    fprintf(out, "row differences (%lld%s):\n", (long long)counted,
            s->ndiffs < s->total_diffs ? "" : ", all shown");
    print_diff_lines(r, out, false);
    if (s->ndiffs < s->total_diffs)
        fprintf(out, "  ... and %lld more (--max-differences %d)\n",
                (long long)(s->total_diffs - s->ndiffs), r->o->max_differences);
}

static void print_table_summary(const VerifyRun *r, FILE *out)
{
    int w = 5;
    int64_t rows = 0, bytes = 0;

    for (int i = 0; i < r->scan.ntables; i++)
        if ((int)strlen(r->scan.tables[i].display) > w)
            w = (int)strlen(r->scan.tables[i].display);
    fprintf(out, "\n%-*s %12s %12s %9s %9s %9s  %s\n", w, "table", "source rows", "target rows",
            "missing", "extra", "changed", "result");
    for (int i = 0; i < r->scan.ntables; i++) {
        const VerifyTable *t = &r->scan.tables[i];
        bool same = t->missing + t->extra + t->changed == 0;

        fprintf(out, "%-*s %12lld %12lld %9lld %9lld %9lld  %s\n", w, t->display,
                (long long)t->rows[0], (long long)t->rows[1], (long long)t->missing,
                (long long)t->extra, (long long)t->changed, same ? "ok" : "DIFFERENT");
        rows += t->rows[0];
        bytes += t->bytes;
    }
    for (int i = 0; i < r->scan.ntables; i++) {
        const VerifyTable *t = &r->scan.tables[i];

        if (t->missing + t->extra + t->changed > 0 && !t->matview)
            fprintf(out, "to fix %s: pgrelocate resync --tables %s\n", t->display, t->display);
    }
    fprintf(out,
            "\n%d table%s, %lld source rows (%.1f MB) compared in %.2f s (%.0f rows/s, %.1f "
            "MB/s)\n",
            r->scan.ntables, r->scan.ntables == 1 ? "" : "s", (long long)rows, (double)bytes / 1e6,
            r->seconds, r->seconds > 0 ? (double)rows / r->seconds : 0.0,
            r->seconds > 0 ? (double)bytes / 1e6 / r->seconds : 0.0);
}

static void print_text(const VerifyRun *r, FILE *out)
{
    int64_t sf = schema_failures(r), rf = row_failures(r);

    if (r->npoints <= 1)
        fprintf(out, "consistent point: %s\n", r->npoints ? r->points[0] : "none");
    else {
        fprintf(out, "consistent points (one per group of tables, --group-size):\n");
        for (int i = 0; i < r->npoints; i++) {
            int n = 0;

            for (int t = 0; t < r->scan.ntables; t++)
                n += r->table_point[t] == i;
            fprintf(out, "  %d. %s (%d table%s)\n", i + 1, r->points[i], n, n == 1 ? "" : "s");
        }
    }
    print_rows(r, out);
    print_matviews(r, out);
    print_schema(r, out);
    print_table_summary(r, out);
    if (rf == 0 && sf == 0)
        fprintf(out, "result: MATCH\n");
    else
        fprintf(out, "result: DIFFERENT (%lld row difference%s, %lld schema difference%s)\n",
                (long long)rf, rf == 1 ? "" : "s", (long long)sf, sf == 1 ? "" : "s");
}

static json_t *diff_json(const VerifyDiff *d)
{
    static const char *const kinds[] = {"missing", "extra", "changed"};
    const VerifyTable *t = d->table;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "schema", t->schema_name, "table", t->table_name,
                          "kind", kinds[d->kind], "copies", (json_int_t)d->copies);

    if (t->nkey > 0) {
        json_t *key = json_object();
        const char *p = d->row.key;

        for (int i = 0; i < t->nkey; i++) {
            json_object_set_new(key, t->key_names[i], json_string(p));
            p += strlen(p) + 1;
        }
        json_object_set_new(o, "key", key);
    } else {
        json_object_set_new(o, "key", json_null());
        json_object_set_new(o, "row", json_stringn(d->row.key, strnlen(d->row.key, d->row.keylen)));
    }
    return o;
}

static void print_json(const VerifyRun *r, FILE *out)
{
    json_t *tables = json_array(), *diffs = json_array(), *schema = json_array(), *root;
    json_t *points = json_array();
    int64_t sf = schema_failures(r), rf = row_failures(r);
    int nviews, ndiffer;
    int64_t mf = matview_diffs(r, &nviews, &ndiffer);

    for (int i = 0; i < r->npoints; i++)
        json_array_append_new(points, json_string(r->points[i]));
    for (int i = 0; i < r->scan.ntables; i++) {
        const VerifyTable *t = &r->scan.tables[i];

        json_array_append_new(
            tables,
            json_pack("{s:s, s:s, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:b, s:i}", "schema",
                      t->schema_name, "table", t->table_name, "materialized_view", t->matview,
                      "has_key", t->nkey > 0, "source_rows", (json_int_t)t->rows[0], "target_rows",
                      (json_int_t)t->rows[1], "missing", (json_int_t)t->missing, "extra",
                      (json_int_t)t->extra, "changed", (json_int_t)t->changed, "match",
                      t->missing + t->extra + t->changed == 0, "consistent_point",
                      r->table_point ? r->table_point[i] : 0));
    }
    for (int i = 0; i < r->scan.ndiffs; i++)
        json_array_append_new(diffs, diff_json(&r->scan.diffs[i]));
    for (int i = 0; i < r->nschema; i++) {
        const SchemaDiff *d = &r->schema[i];

        json_array_append_new(schema,
                              json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:b}", "kind", d->kind,
                                        "object", d->object, "problem", d->problem, "source",
                                        d->source, "target", d->target, "counts", d->counts));
    }
    root = json_pack("{s:b, s:o, s:o, s:I, s:I, s:o, s:I, s:o, s:f}", "match", rf == 0 && sf == 0,
                     "consistent_points", points, "tables", tables, "row_differences_total",
                     (json_int_t)rf, "materialized_view_differences_total", (json_int_t)mf,
                     "row_differences", diffs, "schema_differences_total", (json_int_t)sf,
                     "schema_differences", schema, "seconds", r->seconds);
    json_dumpf(root, out, JSON_INDENT(2));
    fputc('\n', out);
    json_decref(root);
}

/* ---- command ---- */

static void add_point(VerifyRun *r)
{
    r->points = xrealloc(r->points, (size_t)(r->npoints + 1) * sizeof(char *));
    r->points[r->npoints++] = xstrdup(r->point.description);
}

/* Tables [first, end) form the group compared at one point: about
 * --group-size of source table data, at least one table. */
static int group_end(const VerifyRun *r, int first)
{
    int64_t bytes = r->scan.tables[first].bytes;
    int end = first + 1;

    while (end < r->scan.ntables && bytes + r->scan.tables[end].bytes <= r->o->group_size)
        bytes += r->scan.tables[end++].bytes;
    return end;
}

/* Compare tables [first, end) under the current point; their differences
 * join the run's. */
static bool compare_group(VerifyRun *r, int first, int end)
{
    VerifyScan sub = {.tables = r->scan.tables + first, .ntables = end - first};
    VerifyScanSetup setup = {.conninfo = {r->ci[0], r->ci[1]},
                             .snapshot = {r->point.snapshot[0], r->point.snapshot[1]},
                             .jobs = r->o->jobs,
                             .max_differences = r->o->max_differences - r->scan.ndiffs,
                             .stop = &interrupt_requested};
    bool ok;

    verifyscan_utf8_sides(&setup, r->conn[0], r->conn[1]);
    ok = verifyscan_run(&sub, &setup);

    for (int t = first; t < end; t++)
        r->table_point[t] = r->npoints - 1;
    r->scan.diffs =
        xrealloc(r->scan.diffs, (size_t)(r->scan.ndiffs + sub.ndiffs + 1) * sizeof(VerifyDiff));
    if (sub.ndiffs > 0)
        memcpy(r->scan.diffs + r->scan.ndiffs, sub.diffs, (size_t)sub.ndiffs * sizeof(VerifyDiff));
    r->scan.ndiffs += sub.ndiffs;
    r->scan.total_diffs += sub.total_diffs;
    r->scan.scanned_bytes += sub.scanned_bytes;
    free(sub.diffs); /* the keys moved to r->scan.diffs */
    return ok;
}

/* One consistent point per group of tables: the source's snapshot is
 * held only while its group is compared. */
static bool compare_groups(VerifyRun *r)
{
    const ConnInfo *const *ci = (const ConnInfo *const *)r->ci;

    r->table_point = xcalloc((size_t)r->scan.ntables + 1, sizeof(int));
    for (int first = 0, end; first < r->scan.ntables; first = end) {
        end = group_end(r, first);
        if (first > 0) {
            if (interrupt_requested || !verifypoint_release(&r->point, r->conn) ||
                !verifypoint_take(&r->point, ci, r->conn))
                return false;
            add_point(r);
        }
        if (!compare_group(r, first, end))
            return false;
    }
    return true;
}

/* Large objects at the first point, reported with the schema: logical
 * decoding does not carry them, so until a cutover brings them over the
 * target may lack what the source changed since the copy. */
static bool compare_large_objects(VerifyRun *r)
{
    LoDiff *d = NULL;
    int n = 0;

    if (!largeobject_compare(r->conn[0], r->conn[1], &d, &n))
        return false;
    r->schema = xrealloc(r->schema, (size_t)(r->nschema + n + 1) * sizeof(SchemaDiff));
    for (int i = 0; i < n; i++)
        r->schema[r->nschema++] =
            (SchemaDiff){"large object", xstrdup(d[i].oid), d[i].problem, NULL, NULL, true};
    free(d);
    return true;
}

static int run(VerifyRun *r)
{
    double t0 = clock_now_s();

    if (!parse_filter(r))
        return EXIT_USAGE;
    r->point.stop = &interrupt_requested;
    if (!open_side(r, 0) || !open_side(r, 1) || !default_filter(r) || !same_hash_function(r) ||
        !verifypoint_open(&r->point, (const ConnInfo *const *)r->ci, r->conn) ||
        !verifypoint_take(&r->point, (const ConnInfo *const *)r->ci, r->conn))
        return interrupt_requested ? EXIT_INTERRUPTED : EXIT_FAILED;
    add_point(r);
    if (!schemadiff_run(r->conn[0], r->conn[1], keep_table, r, r->point.live, &r->schema,
                        &r->nschema) ||
        !compare_large_objects(r) ||
        !verifyscan_list_tables(r->conn[0], r->conn[1], keep_table, r, &r->scan))
        return EXIT_FAILED;
    if (!check_filter_used(r))
        return EXIT_USAGE;
    log_info("[verify] comparing %d table%s with %d worker%s per side", r->scan.ntables,
             r->scan.ntables == 1 ? "" : "s", r->o->jobs, r->o->jobs == 1 ? "" : "s");
    if (!compare_groups(r)) {
        if (!interrupt_requested)
            return EXIT_FAILED;
        log_msg(LOG_ERROR, NULL, "Run it again to compare.",
                "verify interrupted: no result (nothing was changed)");
        return EXIT_INTERRUPTED;
    }
    r->seconds = clock_now_s() - t0;
    if (r->o->json)
        print_json(r, stdout);
    else
        print_text(r, stdout);
    return row_failures(r) == 0 && schema_failures(r) == 0 ? EXIT_OK : EXIT_DIFFERENT;
}

int cmd_verify(const Options *o)
{
    VerifyRun r = {.o = o};
    int rc;

    /* Ctrl-C or SIGTERM: cancel the queries in flight and stop (nothing to
     * save: verify changes nothing). */
    interrupt_catch();
    signal(SIGPIPE, SIG_IGN);
    rc = run(&r);
    for (int side = 0; side < 2; side++) {
        conn_close(r.conn[side]); /* ends the read-only transactions */
    }
    verifypoint_end(&r.point); /* after the connections: a follower we run may finish */
    for (int side = 0; side < 2; side++)
        conninfo_destroy(r.ci[side]);
    tablefilter_destroy(r.filter);
    for (int i = 0; i < r.npoints; i++)
        free(r.points[i]);
    free(r.points);
    free(r.table_point);
    schemadiff_free(r.schema, r.nschema);
    verifyscan_free(&r.scan);
    return rc;
}
