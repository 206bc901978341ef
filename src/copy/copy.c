/*
 * copy.c: copy workers.
 */
#include "copy.h"

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "names.h"
#include "stall.h"
#include "strbuf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ATTEMPTS 3

/* Tests: PGRELOCATE_TEST_PAUSE_AT=point:ms sleeps ms at that point (a
 * window for kill -9): "chunk-marked" is after a chunk's rows and its done
 * and ready marks, before its COMMIT. */
static void test_pause_at(const char *point)
{
    const char *at = getenv("PGRELOCATE_TEST_PAUSE_AT");
    size_t n = strlen(point);

    if (at && strncmp(at, point, n) == 0 && at[n] == ':')
        usleep((useconds_t)atoi(at + n + 1) * 1000);
}
/* a chunk that failed on a full target disk is tried again after 1 s,
 * doubling up to this, for as long as it takes (Ctrl-C stops) */
#define DISK_FULL_BACKOFF_MAX_S 30
/* rows handed to the target per CopyData message, at most (pump) */
#define PUMP_MESSAGE_BYTES (64 * 1024)

typedef struct TableTally {
    int remaining; /* chunks of this table still to copy in this run */
    int64_t rows;
    int64_t bytes;
    double first_start;
} TableTally;

typedef struct Shared {
    const CopyJob *job;
    pthread_mutex_t lock;
    int next;    /* next chunk index to look at */
    bool failed; /* a worker hit an error: others stop taking chunks */
    TableTally *tally;
    int *ready; /* table_nos whose rows are all copied, oldest first */
    int nready; /* pushed */
    int ready_taken;
} Shared;

/* What a worker does next. */
typedef enum { TASK_NONE, TASK_CHUNK, TASK_READY } TaskKind;

typedef struct Worker {
    Shared *sh;
    int no;
    PGconn *src;
    PGconn *tgt;
    bool ok;
} Worker;

static const StateTable *table_of(const CopyJob *job, int table_no)
{
    return &job->tables[table_no - 1];
}

/* "[copy public.orders 3/8]" style label. */
static char *chunk_label(const StateTable *t, const StateChunk *c)
{
    char *name = names_display(t->schema_name, t->table_name), *label;

    if (c->nchunks <= 1)
        return name;
    label = xasprintf("%s %d/%d", name, c->chunk_no, c->nchunks);
    free(name);
    return label;
}

/* Build the source and target COPY statements of a chunk.  A whole-table
 * chunk truncates the target table in the same transaction, which makes a
 * redo after a crash idempotent and lets COPY FREEZE skip later hint-bit
 * and vacuum work. */
static void chunk_sql(PGconn *conn, const StateTable *t, const StateChunk *c, char **src_sql,
                      char **tgt_sql)
{
    char *q = conn_qualify(conn, t->schema_name, t->table_name);
    const char *fmt = t->binary ? "FORMAT binary" : "FORMAT text";
    char *cols = t->columns[0] ? xasprintf(" (%s)", t->columns) : xstrdup("");
    char range[96] = "";

    if (c->blk_start < 0) {
        *src_sql = xasprintf("COPY %s%s TO STDOUT (%s)", q, cols, fmt);
        *tgt_sql =
            xasprintf("TRUNCATE ONLY %s; COPY %s%s FROM STDIN (%s, FREEZE)", q, q, cols, fmt);
    } else {
        if (c->blk_end >= 0)
            snprintf(range, sizeof(range), " AND ctid < '(%lld,0)'::tid", (long long)c->blk_end);
        *src_sql = xasprintf("COPY (SELECT %s FROM ONLY %s WHERE ctid >= '(%lld,0)'::tid%s) TO "
                             "STDOUT (%s)",
                             t->columns, q, (long long)c->blk_start, range, fmt);
        *tgt_sql = xasprintf("COPY %s%s FROM STDIN (%s)", q, cols, fmt);
    }
    free(cols);
    free(q);
}

/* CHUNK_DISK_FULL: the target ran out of disk space (53100); the chunk's
 * transaction rolled back and it goes through once space is freed. */
typedef enum { CHUNK_OK, CHUNK_RETRY, CHUNK_DISK_FULL, CHUNK_FAIL } ChunkResult;

/* Classify a failed result (already logged by the caller or here). */
static ChunkResult failure(PGconn *conn, PGresult *res, const char *ctx, bool log)
{
    bool transient = conn_error_is_transient(conn_sqlstate(res), conn);
    bool disk_full = strcmp(conn_sqlstate(res), "53100") == 0;

    if (log)
        conn_log_result_error(res, conn, ctx);
    PQclear(res);
    return disk_full ? CHUNK_DISK_FULL : transient ? CHUNK_RETRY : CHUNK_FAIL;
}

/* PQexec expecting one status. */
static ChunkResult exec_expect(PGconn *conn, const char *sql, ExecStatusType want, const char *ctx)
{
    PGresult *res = PQexec(conn, sql);

    if (PQresultStatus(res) == want) {
        PQclear(res);
        return CHUNK_OK;
    }
    return failure(conn, res, ctx, true);
}

/* After COPY OUT/IN ended: the command's final result. */
static ChunkResult finish_copy(PGconn *conn, const char *ctx, int64_t *rows)
{
    PGresult *res = PQgetResult(conn), *extra;
    ChunkResult r = CHUNK_OK;

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        r = failure(conn, res, ctx, true);
    else {
        if (rows)
            *rows = atoll(PQcmdTuples(res));
        PQclear(res);
    }
    while ((extra = PQgetResult(conn)) != NULL)
        PQclear(extra);
    return r;
}

/* Hand the rows gathered in out to the target's COPY as one CopyData
 * message. */
static ChunkResult put_rows(Worker *w, const char *ctx, const char *out, size_t *used)
{
    int put = *used > 0 ? PQputCopyData(w->tgt, out, (int)*used) : 1;

    *used = 0;
    if (put == 1)
        return CHUNK_OK;
    log_error("[%s] target: %s", ctx, PQerrorMessage(w->tgt));
    return PQstatus(w->tgt) == CONNECTION_BAD ? CHUNK_RETRY : CHUNK_FAIL;
}

/* Move CopyData from source to target until the source's COPY ends.  The
 * source sends a message per row; rows go on in messages of up to
 * PUMP_MESSAGE_BYTES (COPY data is a byte stream: a row may span messages),
 * which spares the target a message's overhead per row. */
static ChunkResult pump(Worker *w, const char *ctx, int64_t *bytes)
{
    Progress *p = w->sh->job->progress;
    char *buf, *out = xmalloc(PUMP_MESSAGE_BYTES);
    size_t used = 0;
    ChunkResult r = CHUNK_OK;
    int n;

    while (r == CHUNK_OK && (n = PQgetCopyData(w->src, &buf, 0)) > 0) {
        if (used + (size_t)n > PUMP_MESSAGE_BYTES)
            r = put_rows(w, ctx, out, &used);
        if (r == CHUNK_OK && (size_t)n >= PUMP_MESSAGE_BYTES) {
            used = (size_t)n;
            r = put_rows(w, ctx, buf, &used);
        } else if (r == CHUNK_OK) {
            memcpy(out + used, buf, (size_t)n);
            used += (size_t)n;
        }
        PQfreemem(buf);
        *bytes += n;
        progress_worker_add(p, w->no, n);
    }
    if (r == CHUNK_OK && n == -1)
        r = put_rows(w, ctx, out, &used);
    free(out);
    if (r != CHUNK_OK)
        return r;
    if (n == -1)
        return finish_copy(w->src, ctx, NULL);
    /* -2: the source failed; tell the target so its COPY aborts */
    PQputCopyEnd(w->tgt, "source failed");
    return finish_copy(w->src, ctx, NULL) == CHUNK_RETRY ? CHUNK_RETRY : CHUNK_FAIL;
}

static ChunkResult mark_done(Worker *w, const StateChunk *c, int64_t rows, int64_t bytes,
                             double seconds, Lsn sync_lsn, const char *ctx)
{
    PGresult *res = state_mark_chunk_done(w->tgt, c->table_no, c->chunk_no, rows, bytes, seconds);

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return failure(w->tgt, res, ctx, true);
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        /* the chunk's row is gone from pgrelocate.chunks (or doubled):
         * the state is not the plan this run copies by */
        log_error("[%s] marking the chunk done updated %s rows of pgrelocate.chunks, expected 1",
                  ctx, PQcmdTuples(res));
        PQclear(res);
        return CHUNK_FAIL;
    }
    PQclear(res);
    if (w->sh->job->sync) {
        res = state_mark_table_synced(w->tgt, c->table_no, sync_lsn);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            return failure(w->tgt, res, ctx, true);
        PQclear(res);
        test_pause_at("chunk-marked");
    }
    return exec_expect(w->tgt, "COMMIT", PGRES_COMMAND_OK, ctx);
}

static void drop_connections(Worker *w)
{
    conn_close(w->src);
    conn_close(w->tgt);
    w->src = w->tgt = NULL;
}

/* Settings of the workers' target sessions for bulk loading (the server's
 * own settings are never changed):
 * - synchronous_commit off: a chunk's rows and its done mark commit
 *   together, so a commit a target crash loses takes both and the chunk is
 *   pending again.  The data phase ends with migrate.c recording the next
 *   phase on its own connection, synchronous_commit as the server has it:
 *   that flush makes every earlier chunk commit durable before the
 *   snapshot is released; a target crash before it breaks that connection
 *   too, the run stops, and --resume copies the pending chunks again.
 *   Whatever acts outside the target on a chunk's commit (releasing a
 *   snapshot or slot on the source) must first commit synchronously.
 * - default_toast_compression lz4 where the server has it, for columns
 *   that name no method: the target compresses every TOAST value again,
 *   and lz4 took half the CPU of pglz (bench_docs: 2.0 s against 3.9 s).
 * - maintenance_work_mem at least 256MB (never lowered) for the index
 *   builds of tables whose rows are in (earlyindex.c): 64MB sorts spilled. */
static const char *const bulk_settings_sql =
    "SELECT pg_catalog.set_config('synchronous_commit', 'off', false),"
    " (SELECT pg_catalog.set_config('default_toast_compression', 'lz4', false)"
    "  FROM pg_catalog.pg_settings WHERE name = 'default_toast_compression'"
    "  AND 'lz4' = ANY (enumvals)),"
    " (SELECT pg_catalog.set_config('maintenance_work_mem', '256MB', false)"
    "  FROM pg_catalog.pg_settings WHERE name = 'maintenance_work_mem'"
    "  AND setting::bigint < 262144)";

/* A new target session of a worker, with the bulk-load settings; NULL
 * after logging. */
static PGconn *open_target(const CopyJob *job, const ConnOpts *to)
{
    PGconn *tgt = conn_open(job->target, to);
    PGresult *res = tgt ? conn_query(tgt, "copy", bulk_settings_sql, 0, NULL, 3) : NULL;

    if (!res) {
        conn_close(tgt);
        return NULL;
    }
    PQclear(res);
    return tgt;
}

static bool ensure_connections(Worker *w)
{
    const CopyJob *job = w->sh->job;
    ConnOpts so = {.side = CONN_SOURCE,
                   .app_name = "pgrelocate copy",
                   .client_encoding = job->client_encoding};
    ConnOpts to = {.side = CONN_TARGET,
                   .app_name = "pgrelocate copy",
                   .client_encoding = job->client_encoding};

    if (!w->src)
        w->src = conn_open(job->source, &so);
    if (w->src && !w->tgt)
        w->tgt = open_target(job, &to);
    return w->src && w->tgt;
}

/* Copy one chunk in one source and one target transaction. */
static ChunkResult copy_chunk(Worker *w, const StateChunk *c, const char *ctx, int64_t *rows,
                              int64_t *bytes)
{
    const StateTable *t = table_of(w->sh->job, c->table_no);
    char *src_sql, *tgt_sql, *lit, *begin, own[64];
    const char *snapshot = w->sh->job->snapshot;
    double t0 = clock_now_s();
    Lsn sync_lsn = 0;
    StallWatch *ws, *wt; /* a stopped server is reported (stall.h) */
    ChunkResult r;

    *rows = *bytes = 0;
    if (!ensure_connections(w))
        return CHUNK_RETRY;
    if (w->sh->job->sync) {
        if (!tablesync_acquire(w->sh->job->sync, c->table_no, own, sizeof(own), &sync_lsn))
            return CHUNK_FAIL;
        snapshot = own;
    }
    ws = stall_watch(w->src, CONN_SOURCE, ctx);
    wt = stall_watch(w->tgt, CONN_TARGET, ctx);
    lit = conn_quote_literal(w->src, snapshot);
    begin = xasprintf("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                      "SET TRANSACTION SNAPSHOT %s",
                      lit);
    chunk_sql(w->src, t, c, &src_sql, &tgt_sql);
    r = exec_expect(w->src, begin, PGRES_COMMAND_OK, ctx);
    if (r == CHUNK_OK)
        r = exec_expect(w->tgt, "BEGIN", PGRES_COMMAND_OK, ctx);
    if (r == CHUNK_OK)
        r = exec_expect(w->tgt, tgt_sql, PGRES_COPY_IN, ctx);
    if (r == CHUNK_OK && (r = exec_expect(w->src, src_sql, PGRES_COPY_OUT, ctx)) != CHUNK_OK)
        PQputCopyEnd(w->tgt, "source failed");
    if (r == CHUNK_OK)
        r = pump(w, ctx, bytes);
    if (r == CHUNK_OK)
        r = PQputCopyEnd(w->tgt, NULL) == 1 ? finish_copy(w->tgt, ctx, rows) : CHUNK_RETRY;
    if (r == CHUNK_OK)
        r = mark_done(w, c, *rows, *bytes, clock_now_s() - t0, sync_lsn, ctx);
    if (r == CHUNK_OK)
        r = exec_expect(w->src, "COMMIT", PGRES_COMMAND_OK, ctx);
    stall_unwatch(ws);
    stall_unwatch(wt);
    if (w->sh->job->sync)
        tablesync_release(w->sh->job->sync, c->table_no, r == CHUNK_OK);
    if (r != CHUNK_OK)
        drop_connections(w); /* whatever state they are in, start clean */
    free(src_sql);
    free(tgt_sql);
    free(lit);
    free(begin);
    return r;
}

/* Whether the run goes on: no other worker failed, no Ctrl-C. */
static bool run_goes_on(Shared *sh)
{
    bool on;

    pthread_mutex_lock(&sh->lock);
    on = !sh->failed && !*sh->job->interrupted;
    pthread_mutex_unlock(&sh->lock);
    return on;
}

/* The target's disk is full: wait *backoff_s (doubled for next time) and
 * say so; false when the run stops meanwhile. */
static bool wait_for_space(Worker *w, const char *ctx, int *backoff_s)
{
    log_notice("[%s] the target's disk is full; trying the chunk again in %d s, once space is "
               "freed on the target's tablespace",
               ctx, *backoff_s);
    progress_worker_status(w->sh->job->progress, w->no, "waiting for disk space on the target");
    for (int i = 0; i < *backoff_s * 10; i++) {
        struct timespec tick = {0, 100 * 1000000L};

        if (!run_goes_on(w->sh))
            return false;
        nanosleep(&tick, NULL);
    }
    *backoff_s =
        *backoff_s * 2 > DISK_FULL_BACKOFF_MAX_S ? DISK_FULL_BACKOFF_MAX_S : *backoff_s * 2;
    return run_goes_on(w->sh);
}

/* copy_chunk until it is done: a lost connection, deadlock or
 * serialization failure MAX_ATTEMPTS times in all, a full target disk for
 * as long as it lasts. */
static ChunkResult copy_with_retries(Worker *w, const StateChunk *c, const char *label,
                                     const char *ctx, int64_t *rows, int64_t *bytes)
{
    Progress *p = w->sh->job->progress;
    int attempt = 1, backoff_s = 1;
    ChunkResult r;

    progress_worker_begin(p, w->no, label, c->est_bytes);
    while ((r = copy_chunk(w, c, ctx, rows, bytes)) != CHUNK_OK) {
        if (r == CHUNK_DISK_FULL) {
            if (!wait_for_space(w, ctx, &backoff_s))
                return CHUNK_FAIL;
        } else if (r == CHUNK_RETRY && attempt < MAX_ATTEMPTS)
            log_notice("[%s] trying again (attempt %d of %d)", ctx, ++attempt, MAX_ATTEMPTS);
        else
            return r;
        progress_worker_begin(p, w->no, label, c->est_bytes);
    }
    return r;
}

/* The next task: a ready table's work first (*i = table_no), else the next
 * pending chunk (*i = chunk index); TASK_NONE when nothing is left or the
 * run stops. */
static TaskKind take_task(Shared *sh, int *i)
{
    const CopyJob *job = sh->job;
    TaskKind kind = TASK_NONE;

    pthread_mutex_lock(&sh->lock);
    if (!sh->failed && !*job->interrupted && sh->ready_taken < sh->nready) {
        *i = sh->ready[sh->ready_taken++];
        kind = TASK_READY;
    }
    while (kind == TASK_NONE && !sh->failed && !*job->interrupted && sh->next < job->nchunks) {
        int k = sh->next++;

        if (!job->chunks[k].done) {
            *i = k;
            kind = TASK_CHUNK;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return kind;
}

/* Caller holds the lock. */
static void push_ready(Shared *sh, int table_no)
{
    if (sh->job->table_ready)
        sh->ready[sh->nready++] = table_no;
}

static void account(Worker *w, const StateChunk *c, int64_t rows, int64_t bytes, double start)
{
    Shared *sh = w->sh;
    const StateTable *t = table_of(sh->job, c->table_no);
    TableTally *tt = &sh->tally[c->table_no - 1];
    bool last;

    pthread_mutex_lock(&sh->lock);
    tt->rows += rows;
    tt->bytes += bytes;
    if (tt->first_start == 0 || start < tt->first_start)
        tt->first_start = start;
    last = --tt->remaining == 0;
    if (last)
        push_ready(sh, c->table_no);
    pthread_mutex_unlock(&sh->lock);
    if (sh->job->metrics) {
        atomic_fetch_add(&sh->job->metrics->copy_rows, rows);
        atomic_fetch_add(&sh->job->metrics->copy_bytes, bytes);
        atomic_fetch_add(&sh->job->metrics->copy_chunks_done, 1);
    }
    progress_worker_end(sh->job->progress, w->no, rows);
    if (last) {
        char *name = names_display(t->schema_name, t->table_name);

        progress_table_done(sh->job->progress, name, tt->rows, tt->bytes,
                            clock_now_s() - tt->first_start);
        free(name);
    }
}

/* A ready table's work; false stops the run. */
static bool run_ready(Worker *w, int table_no)
{
    const CopyJob *job = w->sh->job;
    bool ok =
        ensure_connections(w) && job->table_ready(job->table_ready_arg, table_no, w->no, w->tgt);
    progress_worker_status(job->progress, w->no, NULL);
    if (!ok) {
        pthread_mutex_lock(&w->sh->lock);
        w->sh->failed = true;
        pthread_mutex_unlock(&w->sh->lock);
        w->ok = false;
    }
    return ok;
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    Shared *sh = w->sh;
    TaskKind kind;
    int i;

    w->ok = true;
    while ((kind = take_task(sh, &i)) != TASK_NONE) {
        if (kind == TASK_READY) {
            if (!run_ready(w, i))
                break;
            continue;
        }
        const StateChunk *c = &sh->job->chunks[i];
        char *label = chunk_label(table_of(sh->job, c->table_no), c);
        char *ctx = xasprintf("copy %s", label);
        double start = clock_now_s();
        int64_t rows = 0, bytes = 0;
        ChunkResult r = copy_with_retries(w, c, label, ctx, &rows, &bytes);

        if (r == CHUNK_OK)
            account(w, c, rows, bytes, start);
        else {
            pthread_mutex_lock(&sh->lock);
            sh->failed = true;
            pthread_mutex_unlock(&sh->lock);
            w->ok = false;
        }
        free(label);
        free(ctx);
        if (r != CHUNK_OK)
            break;
    }
    progress_worker_status(sh->job->progress, w->no, NULL);
    drop_connections(w);
    return NULL;
}

bool copy_run(const CopyJob *job)
{
    Shared sh = {.job = job};
    int nworkers = job->jobs;
    Worker *workers;
    pthread_t *threads;
    bool ok = true;

    pthread_mutex_init(&sh.lock, NULL);
    sh.tally = xcalloc((size_t)job->ntables + 1, sizeof(TableTally));
    sh.ready = xcalloc((size_t)job->ntables + 1, sizeof(int));
    for (int i = 0; i < job->nchunks; i++)
        if (!job->chunks[i].done)
            sh.tally[job->chunks[i].table_no - 1].remaining++;
    for (int t = 0; t < job->ntables; t++) /* copied before an interruption */
        if (sh.tally[t].remaining == 0)
            push_ready(&sh, t + 1);
    workers = xcalloc((size_t)nworkers, sizeof(Worker));
    threads = xcalloc((size_t)nworkers, sizeof(pthread_t));
    for (int i = 0; i < nworkers; i++) {
        workers[i] = (Worker){.sh = &sh, .no = i};
        if (pthread_create(&threads[i], NULL, worker_main, &workers[i]) != 0) {
            log_error("[copy] could not start worker %d", i + 1);
            nworkers = i;
            ok = false;
            pthread_mutex_lock(&sh.lock);
            sh.failed = true;
            pthread_mutex_unlock(&sh.lock);
            break;
        }
    }
    for (int i = 0; i < nworkers; i++) {
        pthread_join(threads[i], NULL);
        ok = ok && workers[i].ok;
    }
    ok = ok && !sh.failed && !*job->interrupted;
    pthread_mutex_destroy(&sh.lock);
    free(sh.tally);
    free(sh.ready);
    free(workers);
    free(threads);
    return ok;
}

typedef struct StmtShared {
    const ConnInfo *target;
    char **statements;
    int n;
    int next;
    bool failed;
    Progress *progress;
    volatile sig_atomic_t *interrupted;
    pthread_mutex_t lock;
} StmtShared;

typedef struct StmtWorker {
    StmtShared *sh;
    int no;
} StmtWorker;

static void *stmt_worker_main(void *arg)
{
    StmtWorker *w = arg;
    StmtShared *sh = w->sh;
    ConnOpts to = {.side = CONN_TARGET, .app_name = "pgrelocate"};
    PGconn *tgt = conn_open(sh->target, &to);

    for (;;) {
        int i = -1;

        pthread_mutex_lock(&sh->lock);
        if (!tgt)
            sh->failed = true;
        if (!sh->failed && !*sh->interrupted && sh->next < sh->n)
            i = sh->next++;
        pthread_mutex_unlock(&sh->lock);
        if (i < 0)
            break;
        progress_worker_status(sh->progress, w->no, sh->statements[i]);
        if (!conn_script(tgt, "analyze", sh->statements[i])) {
            pthread_mutex_lock(&sh->lock);
            sh->failed = true;
            pthread_mutex_unlock(&sh->lock);
        }
    }
    progress_worker_status(sh->progress, w->no, NULL);
    conn_close(tgt);
    return NULL;
}

bool copy_run_statements(const ConnInfo *target, char **statements, int n, int jobs,
                         Progress *progress, volatile sig_atomic_t *interrupted)
{
    StmtShared sh = {.target = target,
                     .statements = statements,
                     .n = n,
                     .progress = progress,
                     .interrupted = interrupted};
    StmtWorker *workers = xcalloc((size_t)jobs, sizeof(StmtWorker));
    pthread_t *threads = xcalloc((size_t)jobs, sizeof(pthread_t));
    int started = 0;

    pthread_mutex_init(&sh.lock, NULL);
    for (int i = 0; i < jobs && i < n; i++) {
        workers[i] = (StmtWorker){.sh = &sh, .no = i};
        if (pthread_create(&threads[i], NULL, stmt_worker_main, &workers[i]) != 0)
            break;
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&sh.lock);
    free(workers);
    free(threads);
    return started > 0 || n == 0 ? !sh.failed && !*interrupted : false;
}
