/*
 * verifyscan.c: table list, digest and drill-down SQL, worker threads.
 */
#include "verifyscan.h"

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "names.h"
#include "strbuf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Beyond conn.c's pinned settings: every output function a row's text
 * goes through prints the same on both servers whatever their defaults,
 * and every row is seen. */
const char *const verifyscan_session_sql =
    "SET bytea_output = 'hex'; SET lc_monetary = 'C'; SET xmloption = 'content';"
    " SET row_security = off;" /* an RLS policy must not hide rows: error instead */
    " SET work_mem = '64MB'; SET max_parallel_workers_per_gather = 0";

/* One row per column (a table without columns: one row, attname NULL),
 * with its position in the primary key (0: not in it), the name --tables
 * matches: a partition's root's (a partitioned table is chosen whole), and
 * the kind: tables, and materialized views that hold rows. */
static const char *const tables_sql =
    "SELECT n.nspname, c.relname, pg_table_size(c.oid),"
    "  pg_relation_size(c.oid) / current_setting('block_size')::int, c.reltuples::int8,"
    "  a.attname, coalesce((SELECT p.ord FROM unnest(i.indkey::int2[]) WITH ORDINALITY"
    "                       AS p(attnum, ord) WHERE p.attnum = a.attnum), 0),"
    "  coalesce(rn.nspname, n.nspname), coalesce(rc.relname, c.relname), c.relkind"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_class rc ON rc.oid = pg_partition_root(c.oid) AND c.relispartition"
    " LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace"
    " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
    " LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary"
    " WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated))"
    " AND c.relpersistence <> 't'"
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate')"
    " AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"
    " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
    "                 AND d.objid = c.oid AND d.deptype = 'e')"
    " ORDER BY n.nspname COLLATE \"C\", c.relname COLLATE \"C\", a.attname COLLATE \"C\"";

#define KEYLESS_SHOWN_BYTES 1000 /* of a key-less row's text, fetched for the report */

/* Rows [first, end) of the result belong to one table. */
static int table_end(const PGresult *r, int first)
{
    int i = first + 1;

    while (i < PQntuples(r) && strcmp(PQgetvalue(r, i, 0), PQgetvalue(r, first, 0)) == 0 &&
           strcmp(PQgetvalue(r, i, 1), PQgetvalue(r, first, 1)) == 0)
        i++;
    return i;
}

static int cmp_table(const PGresult *s, int i, const PGresult *t, int j)
{
    int c = strcmp(PQgetvalue(s, i, 0), PQgetvalue(t, j, 0));

    return c ? c : strcmp(PQgetvalue(s, i, 1), PQgetvalue(t, j, 1));
}

/* Common columns of rows [i, ie) and [j, je) (both sorted by name), and
 * the source's key when all its columns are common. */
static void fill_columns(VerifyTable *vt, const PGresult *s, int i, int ie, const PGresult *t,
                         int j, int je)
{
    int nkey_src = 0, nkey_common = 0;

    vt->columns = xcalloc((size_t)(ie - i) + 1, sizeof(char *));
    vt->key_names = xcalloc((size_t)(ie - i) + 1, sizeof(char *));
    for (int k = i; k < ie; k++)
        if (!PQgetisnull(s, k, 5) && atoi(PQgetvalue(s, k, 6)) > 0)
            nkey_src++;
    while (i < ie && j < je) {
        int c;

        if (PQgetisnull(s, i, 5) || PQgetisnull(t, j, 5))
            break;
        c = strcmp(PQgetvalue(s, i, 5), PQgetvalue(t, j, 5));
        if (c == 0) {
            int pos = atoi(PQgetvalue(s, i, 6));

            vt->columns[vt->ncolumns++] = xstrdup(PQgetvalue(s, i, 5));
            if (pos > 0 && pos <= nkey_src) {
                vt->key_names[pos - 1] = xstrdup(PQgetvalue(s, i, 5));
                nkey_common++;
            }
        }
        if (c <= 0)
            i++;
        if (c >= 0)
            j++;
    }
    vt->nkey = nkey_common == nkey_src ? nkey_src : 0;
    if (vt->nkey == 0)
        for (int k = 0; k < nkey_src; k++) {
            free(vt->key_names[k]); /* a key the target lacks: compare as a multiset */
            vt->key_names[k] = NULL;
        }
}

static void add_table(VerifyScan *vs, const PGresult *s, int i, int ie, const PGresult *t, int j,
                      int je)
{
    VerifyTable *vt;
    int64_t est = atoll(PQgetvalue(s, i, 4));

    vs->tables = xrealloc(vs->tables, (size_t)(vs->ntables + 1) * sizeof(VerifyTable));
    vt = &vs->tables[vs->ntables++];
    memset(vt, 0, sizeof(*vt));
    vt->schema_name = xstrdup(PQgetvalue(s, i, 0));
    vt->table_name = xstrdup(PQgetvalue(s, i, 1));
    vt->display = names_display(vt->schema_name, vt->table_name);
    vt->bytes = atoll(PQgetvalue(s, i, 2));
    vt->blocks[0] = atoll(PQgetvalue(s, i, 3));
    vt->blocks[1] = atoll(PQgetvalue(t, j, 3));
    if (est < 0) /* never analyzed */
        est = vt->blocks[0] * 50;
    vt->bucket_bits = digest_bucket_bits(est);
    vt->matview = PQgetvalue(s, i, 9)[0] == 'm';
    fill_columns(vt, s, i, ie, t, j, je);
}

bool verifyscan_list_tables(PGconn *src, PGconn *tgt, VerifyKeepFn keep, void *arg, VerifyScan *out)
{
    PGresult *s = conn_query(src, "verify source", tables_sql, 0, NULL, 10), *t = NULL;
    int i = 0, j = 0;

    memset(out, 0, sizeof(*out));
    if (!s || !(t = conn_query(tgt, "verify target", tables_sql, 0, NULL, 10))) {
        PQclear(s);
        return false;
    }
    while (i < PQntuples(s) && j < PQntuples(t)) {
        int c = cmp_table(s, i, t, j), ie = table_end(s, i), je = table_end(t, j);

        if (c == 0 && (!keep || keep(PQgetvalue(s, i, 7), PQgetvalue(s, i, 8), arg)))
            add_table(out, s, i, ie, t, j, je);
        if (c <= 0)
            i = ie;
        if (c >= 0)
            j = je;
    }
    PQclear(s);
    PQclear(t);
    return true;
}

/* ---- SQL ---- */

static char *row_expr(PGconn *conn, const VerifyTable *t)
{
    StrBuf sb;

    strbuf_init(&sb);
    strbuf_append(&sb, "ROW(");
    for (int i = 0; i < t->ncolumns; i++) {
        char *q = conn_quote_ident(conn, t->columns[i]);

        strbuf_appendf(&sb, "%s%s", i ? ", " : "", q);
        free(q);
    }
    strbuf_append(&sb, ")::text");
    return strbuf_detach(&sb);
}

/* The text a row's bucket is chosen from: its key for a keyed table (so a
 * changed row stays in its bucket on both sides and drill-down passes are
 * independent), the whole row otherwise (equal rows share a bucket). */
static char *bucket_expr(PGconn *conn, const VerifyTable *t)
{
    StrBuf sb;

    if (t->nkey == 0)
        return row_expr(conn, t);
    strbuf_init(&sb);
    strbuf_append(&sb, t->nkey > 1 ? "ROW(" : "");
    for (int i = 0; i < t->nkey; i++) {
        char *q = conn_quote_ident(conn, t->key_names[i]);

        strbuf_appendf(&sb, "%s%s", i ? ", " : "", q);
        free(q);
    }
    strbuf_append(&sb, t->nkey > 1 ? ")::text" : "::text");
    return strbuf_detach(&sb);
}

void verifyscan_utf8_sides(VerifyScanSetup *setup, PGconn *src, PGconn *tgt)
{
    const char *e[2] = {PQparameterStatus(src, "server_encoding"),
                        PQparameterStatus(tgt, "server_encoding")};
    bool differ = e[0] && e[1] && strcmp(e[0], e[1]) != 0;

    for (int side = 0; side < 2; side++)
        setup->utf8_bytes[side] = differ && strcmp(e[side], "UTF8") != 0;
}

/* hashtextextended of a text expression; with utf8, of its UTF-8 bytes:
 * convert_to gives them, and convert_from 'SQL_ASCII' makes them text again
 * without converting anything. */
static char *hash_of(bool utf8, const char *text)
{
    if (utf8)
        return xasprintf("hashtextextended(convert_from(convert_to(%s, 'UTF8'), 'SQL_ASCII'), 0)",
                         text);
    return xasprintf("hashtextextended(%s, 0)", text);
}

static char *range_from(PGconn *conn, const VerifyTable *t, DigestRange r)
{
    char *q = conn_qualify(conn, t->schema_name, t->table_name);
    char *s;

    if (r.end < 0)
        s = xasprintf("ONLY %s WHERE ctid >= '(%lld,0)'::tid", q, (long long)r.start);
    else
        s = xasprintf("ONLY %s WHERE ctid >= '(%lld,0)'::tid AND ctid < '(%lld,0)'::tid", q,
                      (long long)r.start, (long long)r.end);
    free(q);
    return s;
}

static char *digest_sql(PGconn *conn, const VerifyTable *t, DigestRange r, bool utf8)
{
    char *row = row_expr(conn, t), *from = range_from(conn, t, r), *sql;
    char *row_hash = hash_of(utf8, row);

    if (t->nkey == 0) {
        sql = xasprintf("SELECT (h & %lld)::int4, count(*), sum(h) FROM ("
                        "SELECT %s AS h FROM %s) s GROUP BY 1",
                        (long long)((1 << t->bucket_bits) - 1), row_hash, from);
    } else {
        char *key = bucket_expr(conn, t), *key_hash = hash_of(utf8, key);

        sql = xasprintf("SELECT (%s & %lld)::int4, count(*), sum(%s) FROM %s GROUP BY 1", key_hash,
                        (long long)((1 << t->bucket_bits) - 1), row_hash, from);
        free(key);
        free(key_hash);
    }
    free(row_hash);
    free(row);
    free(from);
    return sql;
}

/* Keys (or a key-less row's text) and row hashes of the rows in buckets $1. */
static char *drill_sql(PGconn *conn, const VerifyTable *t, DigestRange r, bool utf8)
{
    char *row = row_expr(conn, t), *from = range_from(conn, t, r), *sql;
    long long mask = (1 << t->bucket_bits) - 1;
    StrBuf keys, outer;

    if (t->nkey == 0) {
        char *r_hash = hash_of(utf8, "r");

        sql = xasprintf("SELECT left(r, %d), h FROM (SELECT r, %s AS h"
                        " FROM (SELECT %s AS r FROM %s) s0) s WHERE (h & %lld) = ANY ($1::int8[])",
                        KEYLESS_SHOWN_BYTES, r_hash, row, from, mask);
        free(r_hash);
        free(row);
        free(from);
        return sql;
    }
    strbuf_init(&keys);
    strbuf_init(&outer);
    for (int i = 0; i < t->nkey; i++) {
        char *q = conn_quote_ident(conn, t->key_names[i]);

        strbuf_appendf(&keys, "%s::text AS k%d, ", q, i);
        strbuf_appendf(&outer, "k%d, ", i);
        free(q);
    }
    {
        char *key = bucket_expr(conn, t), *key_hash = hash_of(utf8, key);
        char *row_hash = hash_of(utf8, row);

        sql = xasprintf("SELECT %sh FROM (SELECT %s%s AS kh, %s AS h FROM %s) s"
                        " WHERE (kh & %lld) = ANY ($1::int8[])",
                        outer.data, keys.data, key_hash, row_hash, from, mask);
        free(key);
        free(key_hash);
        free(row_hash);
    }
    strbuf_free(&keys);
    strbuf_free(&outer);
    free(row);
    free(from);
    return sql;
}

/* ---- workers ---- */

typedef struct Item {
    VerifyTable *table;
    int side;
    DigestRange range;
    const char *buckets_param; /* drill: "{3,17}"; NULL: digest */
    DigestBucket *buckets;     /* digest result, 1 << bucket_bits */
    DigestRow *rows;           /* drill result */
    size_t nrows;
    int nranges;   /* of its table on its side: the item's share of the table's bytes */
    int64_t bytes; /* bytes of results read */
} Item;

typedef struct Pool {
    const VerifyScanSetup *setup;
    int side;
    Item *items;
    int nitems;
    atomic_int next;
    atomic_bool *failed;
} Pool;

/* One thread; cancel lets the main thread cancel its query in flight. */
typedef struct Worker {
    Pool *pool;
    pthread_mutex_t lock; /* guards cancel */
    PGcancel *cancel;
    atomic_bool done;
} Worker;

static bool run_digest(PGconn *conn, Item *it, bool utf8, const char *ctx)
{
    char *sql = digest_sql(conn, it->table, it->range, utf8);
    PGresult *res = conn_query(conn, ctx, sql, 0, NULL, 3);
    int nb = 1 << it->table->bucket_bits;

    free(sql);
    if (!res)
        return false;
    it->buckets = xcalloc((size_t)nb, sizeof(DigestBucket));
    for (int i = 0; i < PQntuples(res); i++) {
        int b = atoi(PQgetvalue(res, i, 0));
        uint64_t sum;

        if (b < 0 || b >= nb || !digest_parse_sum(PQgetvalue(res, i, 2), &sum)) {
            log_error("[%s] unexpected digest row: bucket %s, sum %s", ctx, PQgetvalue(res, i, 0),
                      PQgetvalue(res, i, 2));
            PQclear(res);
            return false;
        }
        it->buckets[b].rows = atoll(PQgetvalue(res, i, 1));
        it->buckets[b].sum = sum;
        it->bytes += 24;
    }
    PQclear(res);
    return true;
}

static bool run_drill(PGconn *conn, Item *it, bool utf8, const char *ctx)
{
    char *sql = drill_sql(conn, it->table, it->range, utf8);
    int nkey = it->table->nkey ? it->table->nkey : 1;
    PGresult *res = conn_query(conn, ctx, sql, 1, &it->buckets_param, nkey + 1);

    free(sql);
    if (!res)
        return false;
    it->nrows = (size_t)PQntuples(res);
    it->rows = xcalloc(it->nrows + 1, sizeof(DigestRow));
    for (size_t i = 0; i < it->nrows; i++) {
        StrBuf key;

        strbuf_init(&key);
        for (int k = 0; k < nkey; k++) {
            strbuf_append_len(&key, PQgetvalue(res, (int)i, k),
                              (size_t)PQgetlength(res, (int)i, k));
            strbuf_append_len(&key, "", 1);
        }
        it->rows[i].keylen = key.len;
        it->rows[i].key = strbuf_detach(&key);
        it->rows[i].hash = (uint64_t)strtoll(PQgetvalue(res, (int)i, nkey), NULL, 10);
        it->bytes += (int64_t)it->rows[i].keylen + 8;
    }
    PQclear(res);
    return true;
}

static PGconn *open_worker(const Pool *p)
{
    ConnOpts co = {.side = p->side ? CONN_TARGET : CONN_SOURCE, .app_name = "pgrelocate verify"};
    PGconn *conn = conn_open(p->setup->conninfo[p->side], &co);
    const char *ctx = p->side ? "verify target" : "verify source";
    char *lit, *sql;
    bool ok;

    if (!conn)
        return NULL;
    lit = conn_quote_literal(conn, p->setup->snapshot[p->side]);
    sql = xasprintf("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT %s",
                    lit);
    /* The planner cannot know a bucket number has few values and would sort
     * a whole range to group it: hash aggregation instead, no JIT set-up. */
    ok = conn_script(conn, ctx, verifyscan_session_sql) &&
         conn_script(conn, ctx, "SET enable_sort = off; SET jit = off") &&
         conn_script(conn, ctx, sql);
    free(lit);
    free(sql);
    if (!ok) {
        conn_close(conn);
        return NULL;
    }
    return conn;
}

static void set_cancel(Worker *w, PGconn *conn)
{
    pthread_mutex_lock(&w->lock);
    if (w->cancel)
        PQfreeCancel(w->cancel);
    w->cancel = conn ? PQgetCancel(conn) : NULL;
    pthread_mutex_unlock(&w->lock);
}

static void work(Worker *w, PGconn *conn)
{
    Pool *p = w->pool;

    while (!atomic_load(p->failed) && !(p->setup->stop && *p->setup->stop)) {
        int i = atomic_fetch_add(&p->next, 1);
        Item *it;
        char ctx[300];
        double t0;
        bool utf8;

        if (i >= p->nitems)
            break;
        it = &p->items[i];
        snprintf(ctx, sizeof(ctx), "verify %s %s", p->side ? "target" : "source",
                 it->table->display);
        t0 = clock_now_s();
        utf8 = p->setup->utf8_bytes[p->side];
        if (!(it->buckets_param ? run_drill(conn, it, utf8, ctx) : run_digest(conn, it, utf8, ctx)))
            atomic_store(p->failed, true);
        log_debug("[%s] %s blocks %lld..%lld in %.2f s", ctx, it->buckets_param ? "rows" : "digest",
                  (long long)it->range.start, (long long)it->range.end, clock_now_s() - t0);
    }
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    PGconn *conn = open_worker(w->pool);

    if (!conn)
        atomic_store(w->pool->failed, true);
    else {
        set_cancel(w, conn);
        work(w, conn);
        set_cancel(w, NULL);
        conn_close(conn);
    }
    atomic_store(&w->done, true);
    return NULL;
}

/* Wait for the workers; on a signal, cancel their queries in flight. */
static void wait_workers(const VerifyScanSetup *setup, Worker *workers, int n)
{
    bool cancelled = false;
    LogLevel level = log_get_level();

    for (;;) {
        int done = 0;
        struct timespec ts = {0, 20 * 1000000L};

        for (int i = 0; i < n; i++)
            done += atomic_load(&workers[i].done);
        if (done == n)
            break;
        if (setup->stop && *setup->stop && !cancelled) {
            char err[256];

            /* the cancelled queries' errors are expected: the caller says why */
            log_set_level(LOG_ERROR + 1);
            for (int i = 0; i < n; i++) {
                pthread_mutex_lock(&workers[i].lock);
                if (workers[i].cancel)
                    PQcancel(workers[i].cancel, err, sizeof(err));
                pthread_mutex_unlock(&workers[i].lock);
            }
            cancelled = true;
        }
        nanosleep(&ts, NULL);
    }
    log_set_level(level);
}

/* Run the items of both sides, jobs workers per side. */
static bool run_pools(const VerifyScanSetup *setup, Item **items, const int *nitems)
{
    atomic_bool failed = false;
    Pool pools[2];
    int jobs = setup->jobs > 0 ? setup->jobs : 1;
    pthread_t *threads = xcalloc((size_t)jobs * 2, sizeof(pthread_t));
    Worker *workers = xcalloc((size_t)jobs * 2, sizeof(Worker));
    int started = 0;

    for (int side = 0; side < 2; side++) {
        pools[side].setup = setup;
        pools[side].side = side;
        pools[side].items = items[side];
        pools[side].nitems = nitems[side];
        atomic_init(&pools[side].next, 0);
        pools[side].failed = &failed;
    }
    for (int w = 0; w < jobs * 2; w++) {
        Pool *p = &pools[w % 2];
        Worker *wk = &workers[started];

        if (w / 2 >= p->nitems && w >= 2)
            continue; /* no more workers than items */
        wk->pool = p;
        pthread_mutex_init(&wk->lock, NULL);
        atomic_init(&wk->done, false);
        if (pthread_create(&threads[started], NULL, worker_main, wk) != 0) {
            log_error("could not start a verify worker thread");
            pthread_mutex_destroy(&wk->lock);
            atomic_store(&failed, true);
            break;
        }
        started++;
    }
    wait_workers(setup, workers, started);
    for (int w = 0; w < started; w++) {
        pthread_join(threads[w], NULL);
        pthread_mutex_destroy(&workers[w].lock);
    }
    free(threads);
    free(workers);
    return !atomic_load(&failed) && !(setup->stop && *setup->stop);
}

/* ---- the two passes ---- */

/* Rows read back per table in one drill-down pass (each pass scans the
 * table again on both sides): bounds memory when much differs. */
#define DRILL_PASS_ROWS 1000000

typedef struct TableWork {
    DigestRange *ranges[2];
    int nranges[2];
    char **passes; /* differing buckets, "{3,17}", grouped into passes */
    int npasses;
} TableWork;

/* The same number of ranges on both sides (sized from the source); each
 * side splits its own heap, whose layout differs. */
static void plan_ranges(VerifyScan *vs, TableWork *tw, int jobs)
{
    for (int t = 0; t < vs->ntables; t++) {
        const VerifyTable *vt = &vs->tables[t];
        int n = digest_range_count(vt->bytes, vt->blocks[0], jobs);

        for (int side = 0; side < 2; side++) {
            int64_t b = vt->blocks[side], per = (b + n - 1) / n;

            tw[t].nranges[side] = digest_split_blocks(b, per, &tw[t].ranges[side]);
        }
    }
}

/* Biggest first, so the last item to finish is a small one. */
static int cmp_item_cost(const void *a, const void *b)
{
    const Item *x = a, *y = b;
    int64_t cx = x->table->bytes / x->nranges;
    int64_t cy = y->table->bytes / y->nranges;

    return cx < cy ? 1 : cx > cy ? -1 : 0;
}

/* pass < 0: the digest items; else drill-down pass number pass. */
static void make_items(VerifyScan *vs, TableWork *tw, int pass, Item **items, int *nitems)
{
    bool drill = pass >= 0;

    for (int side = 0; side < 2; side++) {
        int n = 0;

        for (int t = 0; t < vs->ntables; t++)
            if (!drill || pass < tw[t].npasses)
                n += tw[t].nranges[side];
        items[side] = xcalloc((size_t)n + 1, sizeof(Item));
        nitems[side] = 0;
        for (int t = 0; t < vs->ntables; t++) {
            if (drill && pass >= tw[t].npasses)
                continue;
            for (int r = 0; r < tw[t].nranges[side]; r++) {
                Item *it = &items[side][nitems[side]++];

                it->table = &vs->tables[t];
                it->side = side;
                it->range = tw[t].ranges[side][r];
                it->buckets_param = drill ? tw[t].passes[pass] : NULL;
                it->nranges = tw[t].nranges[side];
            }
        }
        qsort(items[side], (size_t)nitems[side], sizeof(Item), cmp_item_cost);
    }
}

static void free_items(Item **items, const int *nitems, VerifyScan *vs)
{
    for (int side = 0; side < 2; side++) {
        for (int i = 0; i < nitems[side]; i++) {
            Item *it = &items[side][i];

            vs->scanned_bytes += it->bytes;
            free(it->buckets);
            for (size_t r = 0; r < it->nrows; r++)
                free(it->rows[r].key);
            free(it->rows);
        }
        free(items[side]);
    }
}

/* Sum the digests per table and side; note the buckets that differ. */
static void collect_digests(VerifyScan *vs, TableWork *tw, Item **items, const int *nitems)
{
    for (int t = 0; t < vs->ntables; t++)
        for (int side = 0; side < 2; side++)
            vs->tables[t].buckets[side] =
                xcalloc((size_t)1 << vs->tables[t].bucket_bits, sizeof(DigestBucket));
    for (int side = 0; side < 2; side++)
        for (int i = 0; i < nitems[side]; i++) {
            Item *it = &items[side][i];

            digest_add_buckets(it->table->buckets[side], it->buckets,
                               (size_t)1 << it->table->bucket_bits);
        }
    for (int t = 0; t < vs->ntables; t++) {
        VerifyTable *vt = &vs->tables[t];

        for (int b = 0; b < (1 << vt->bucket_bits); b++) {
            vt->rows[0] += vt->buckets[0][b].rows;
            vt->rows[1] += vt->buckets[1][b].rows;
        }
        tw[t].npasses = digest_plan_passes(vt->buckets[0], vt->buckets[1], 1 << vt->bucket_bits,
                                           DRILL_PASS_ROWS, &tw[t].passes);
    }
}

typedef struct MatchCtx {
    VerifyScan *vs;
    VerifyTable *table;
    int max;
} MatchCtx;

static void on_difference(DigestDiffKind kind, const DigestRow *src, const DigestRow *tgt,
                          int64_t copies, void *arg)
{
    MatchCtx *m = arg;
    const DigestRow *row = src ? src : tgt;

    if (kind == DIGEST_MISSING)
        m->table->missing += copies;
    else if (kind == DIGEST_EXTRA)
        m->table->extra += copies;
    else
        m->table->changed += copies;
    m->vs->total_diffs += copies;
    if (m->vs->ndiffs < m->max) {
        VerifyDiff *d;

        m->vs->diffs = xrealloc(m->vs->diffs, (size_t)(m->vs->ndiffs + 1) * sizeof(VerifyDiff));
        d = &m->vs->diffs[m->vs->ndiffs++];
        d->table = m->table;
        d->kind = kind;
        d->copies = copies;
        d->row.key = xmalloc(row->keylen + 1);
        memcpy(d->row.key, row->key, row->keylen);
        d->row.key[row->keylen] = '\0';
        d->row.keylen = row->keylen;
        d->row.hash = row->hash;
    }
}

/* Gather each side's fetched rows per table and match them. */
static void collect_rows(VerifyScan *vs, Item **items, const int *nitems, int max)
{
    for (int t = 0; t < vs->ntables; t++) {
        DigestRow *rows[2] = {NULL, NULL};
        size_t n[2] = {0, 0};
        MatchCtx m = {vs, &vs->tables[t], max};
        bool any = false;

        for (int side = 0; side < 2; side++)
            for (int i = 0; i < nitems[side]; i++) {
                Item *it = &items[side][i];

                if (it->table != &vs->tables[t])
                    continue;
                any = true;
                rows[side] = xrealloc(rows[side], (n[side] + it->nrows + 1) * sizeof(DigestRow));
                memcpy(rows[side] + n[side], it->rows, it->nrows * sizeof(DigestRow));
                n[side] += it->nrows;
            }
        if (any)
            digest_match_rows(rows[0], n[0], rows[1], n[1], vs->tables[t].nkey > 0, on_difference,
                              &m);
        free(rows[0]); /* the keys stay owned by the items */
        free(rows[1]);
    }
}

bool verifyscan_run(VerifyScan *vs, const VerifyScanSetup *setup)
{
    TableWork *tw = xcalloc((size_t)vs->ntables + 1, sizeof(TableWork));
    Item *items[2];
    int nitems[2];
    bool ok;

    plan_ranges(vs, tw, setup->jobs);
    make_items(vs, tw, -1, items, nitems);
    ok = run_pools(setup, items, nitems);
    if (ok)
        collect_digests(vs, tw, items, nitems);
    free_items(items, nitems, vs);
    for (int pass = 0; ok; pass++) {
        make_items(vs, tw, pass, items, nitems);
        if (nitems[0] + nitems[1] == 0) {
            free_items(items, nitems, vs);
            break;
        }
        if ((ok = run_pools(setup, items, nitems)))
            collect_rows(vs, items, nitems, setup->max_differences);
        free_items(items, nitems, vs);
    }
    for (int t = 0; t < vs->ntables; t++) {
        free(tw[t].ranges[0]);
        free(tw[t].ranges[1]);
        for (int p = 0; p < tw[t].npasses; p++)
            free(tw[t].passes[p]);
        free(tw[t].passes);
    }
    free(tw);
    return ok;
}

void verifyscan_free(VerifyScan *vs)
{
    for (int t = 0; t < vs->ntables; t++) {
        VerifyTable *vt = &vs->tables[t];

        free(vt->schema_name);
        free(vt->table_name);
        free(vt->display);
        for (int i = 0; i < vt->ncolumns; i++)
            free(vt->columns[i]);
        for (int i = 0; i < vt->nkey; i++)
            free(vt->key_names[i]);
        free(vt->columns);
        free(vt->key_names);
        free(vt->buckets[0]);
        free(vt->buckets[1]);
    }
    for (int i = 0; i < vs->ndiffs; i++)
        free(vs->diffs[i].row.key);
    free(vs->tables);
    free(vs->diffs);
    memset(vs, 0, sizeof(*vs));
}
