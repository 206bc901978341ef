/*
 * tablesync.c: per-table sync states shared by the copy workers (copy.c)
 * and the apply thread (apply.c), and the temporary slots whose exported
 * snapshots the groups are copied under.  Owns no target state: the ready
 * mark is written by copy.c in the chunk's transaction (state.h).
 */
#include "tablesync.h"

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_TICK_MS   100
#define WAIT_NOTICE_MS 10000 /* a wait of apply this long is said once */

typedef enum { TS_PENDING, TS_SNAPSHOTTING, TS_SYNCING, TS_READY } TsState;

/* Invariant: repl != NULL exactly while state == SYNCING and chunks_left >
 * 0 (the snapshot is held for the group's chunks still to copy). */
typedef struct TsGroup {
    TsState state;
    Lsn lsn;
    char snapshot[64];
    PGconn *repl;    /* walsender session holding the temporary slot */
    int chunks_left; /* chunks not yet committed in this run */
    int tables_left; /* tables not yet ready */
    int ntables;
    double opened_s; /* when its snapshot was taken */
} TsGroup;

/* A name apply may see: a table (table_no > 0) or a partitioned root. */
typedef struct TsEntry {
    char *schema;
    char *name;
    int group;
    int table_no;
    bool ready;
} TsEntry;

struct TableSync {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    const ConnInfo *source;
    char *slot_prefix;
    int64_t slot_wait_ms;
    int slot_seq;
    bool aborted;
    int resyncing; /* groups a resync holds out of READY (tablesync_refresh) */
    TsGroup *groups;
    int ngroups, groups_cap;
    TsEntry *entries;
    int nentries, entries_cap;
    int *entry_of_table; /* by table_no - 1: entry index, -1 none */
    int ntables;
};

TableSync *tablesync_create(const ConnInfo *source, const char *slot_prefix, int ntables,
                            int64_t slot_wait_ms)
{
    TableSync *ts = xcalloc(1, sizeof(*ts));

    pthread_mutex_init(&ts->lock, NULL);
    pthread_cond_init(&ts->changed, NULL);
    ts->source = source;
    ts->slot_prefix = slot_prefix ? xstrdup(slot_prefix) : NULL;
    ts->slot_wait_ms = slot_wait_ms;
    ts->ntables = ntables;
    ts->entry_of_table = xcalloc((size_t)ntables + 1, sizeof(int));
    for (int i = 0; i < ntables; i++)
        ts->entry_of_table[i] = -1;
    return ts;
}

void tablesync_destroy(TableSync *ts)
{
    if (!ts)
        return;
    for (int g = 0; g < ts->ngroups; g++)
        conn_close(ts->groups[g].repl);
    for (int i = 0; i < ts->nentries; i++) {
        free(ts->entries[i].schema);
        free(ts->entries[i].name);
    }
    free(ts->entries);
    free(ts->groups);
    free(ts->entry_of_table);
    free(ts->slot_prefix);
    pthread_mutex_destroy(&ts->lock);
    pthread_cond_destroy(&ts->changed);
    free(ts);
}

int tablesync_add_group(TableSync *ts, bool ready, Lsn lsn)
{
    if (ts->ngroups == ts->groups_cap) {
        ts->groups_cap = ts->groups_cap ? ts->groups_cap * 2 : 16;
        ts->groups = xrealloc(ts->groups, (size_t)ts->groups_cap * sizeof(TsGroup));
    }
    ts->groups[ts->ngroups] = (TsGroup){.state = ready ? TS_READY : TS_PENDING, .lsn = lsn};
    return ts->ngroups++;
}

static int add_entry(TableSync *ts, int group, int table_no, const char *schema, const char *name)
{
    if (ts->nentries == ts->entries_cap) {
        ts->entries_cap = ts->entries_cap ? ts->entries_cap * 2 : 16;
        ts->entries = xrealloc(ts->entries, (size_t)ts->entries_cap * sizeof(TsEntry));
    }
    ts->entries[ts->nentries] = (TsEntry){xstrdup(schema), xstrdup(name), group, table_no,
                                          ts->groups[group].state == TS_READY};
    return ts->nentries++;
}

void tablesync_add_table(TableSync *ts, int group, int table_no, const char *schema,
                         const char *name, int chunks)
{
    TsGroup *g = &ts->groups[group];

    if (table_no < 1 || table_no > ts->ntables)
        return;
    ts->entry_of_table[table_no - 1] = add_entry(ts, group, table_no, schema, name);
    g->ntables++;
    g->chunks_left += chunks;
    if (g->state != TS_READY)
        g->tables_left++;
}

void tablesync_add_root(TableSync *ts, int group, const char *schema, const char *name)
{
    if (tablesync_find(ts, schema, name) < 0)
        add_entry(ts, group, 0, schema, name);
}

int tablesync_find(TableSync *ts, const char *schema, const char *name)
{
    for (int i = 0; ts && i < ts->nentries; i++)
        if (strcmp(ts->entries[i].name, name) == 0 && strcmp(ts->entries[i].schema, schema) == 0)
            return i;
    return -1;
}

static void refresh_one(TableSync *ts, TsEntry *e, const char *state, Lsn lsn, bool *ack);

/* An entry's state and L (caller holds the lock). */
static TsState entry_state(const TableSync *ts, const TsEntry *e, Lsn *lsn)
{
    const TsGroup *g = &ts->groups[e->group];

    *lsn = g->lsn;
    return e->ready ? TS_READY : g->state;
}

static void timed_wait(TableSync *ts, int ms)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)ms * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&ts->changed, &ts->lock, &until);
}

TableSyncVerdict tablesync_decide(TableSync *ts, int entry, Lsn commit_lsn,
                                  volatile sig_atomic_t *stop)
{
    const TsEntry *e = &ts->entries[entry];
    int64_t since = clock_now_ms();
    bool told = false;
    TableSyncVerdict v;

    pthread_mutex_lock(&ts->lock);
    for (;;) {
        Lsn lsn;
        TsState s = entry_state(ts, e, &lsn);

        if (s == TS_PENDING || ((s == TS_SYNCING || s == TS_READY) && commit_lsn < lsn)) {
            v = TABLESYNC_SKIP;
            break;
        }
        if (s == TS_READY) {
            v = TABLESYNC_APPLY;
            break;
        }
        if (ts->aborted || (stop && *stop)) {
            v = TABLESYNC_STOPPED;
            break;
        }
        if (!told && clock_now_ms() - since >= WAIT_NOTICE_MS) {
            char c[LSN_TEXT_SIZE];

            told = true;
            log_info("[apply] waiting for the copy of %s.%s: its changes from %s on apply once "
                     "its rows are in",
                     e->schema, e->name, lsn_format(commit_lsn, c));
        }
        timed_wait(ts, WAIT_TICK_MS);
    }
    pthread_mutex_unlock(&ts->lock);
    return v;
}

/* Send CREATE_REPLICATION_SLOT and wait for its answer until the deadline
 * or the copy stops.  The result, or NULL (logged). */
static PGresult *create_slot(TableSync *ts, PGconn *repl, const char *sql, const char *ctx)
{
    int64_t deadline = clock_now_ms() + ts->slot_wait_ms;
    PGresult *res;

    if (!PQsendQuery(repl, sql)) {
        log_error("[%s] could not create a temporary replication slot: %s", ctx,
                  PQerrorMessage(repl));
        return NULL;
    }
    while (PQisBusy(repl)) {
        bool stop;

        pthread_mutex_lock(&ts->lock);
        stop = ts->aborted;
        pthread_mutex_unlock(&ts->lock);
        if (stop || clock_now_ms() >= deadline) {
            if (!stop)
                log_msg(LOG_ERROR,
                        "Creating a slot waits for the transactions running on the source to end.",
                        "End the long transactions on the source (pg_stat_activity), or run "
                        "again with a longer --slot-wait.",
                        "[%s] timed out after %lld s creating a temporary replication slot", ctx,
                        (long long)(ts->slot_wait_ms / 1000));
            return NULL;
        }
        conn_wait_socket(repl, false, clock_now_ms() + WAIT_TICK_MS);
        if (!PQconsumeInput(repl))
            break;
    }
    res = PQgetResult(repl);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 3) {
        log_error("[%s] could not create a temporary replication slot: %s", ctx,
                  PQresultStatus(res) == PGRES_TUPLES_OK ? "unexpected result shape"
                                                         : PQerrorMessage(repl));
        PQclear(res);
        return NULL;
    }
    return res;
}

/* A temporary slot for group g, on a walsender session of its own; its
 * exported snapshot lives until that session's next command or its end. */
static bool open_group(TableSync *ts, int g, PGconn **repl_out, Lsn *lsn, char *snapshot,
                       size_t len)
{
    ConnOpts co = {.side = CONN_SOURCE, .replication = true, .app_name = "pgrelocate sync"};
    char ctx[32], name[64];
    PGconn *repl;
    PGresult *res = NULL;
    char *q, *sql;
    int seq;

    pthread_mutex_lock(&ts->lock);
    seq = ++ts->slot_seq;
    pthread_mutex_unlock(&ts->lock);
    snprintf(ctx, sizeof(ctx), "sync group %d", g + 1);
    snprintf(name, sizeof(name), "%.30s_%d_%d", ts->slot_prefix ? ts->slot_prefix : "pgrelocate",
             (int)getpid(), seq);
    if (!(repl = conn_open(ts->source, &co)))
        return false;
    q = conn_quote_ident(repl, name);
    sql =
        PQserverVersion(repl) >= 150000
            ? xasprintf("CREATE_REPLICATION_SLOT %s TEMPORARY LOGICAL pgoutput (SNAPSHOT "
                        "'export')",
                        q)
            : xasprintf("CREATE_REPLICATION_SLOT %s TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT", q);
    res = create_slot(ts, repl, sql, ctx);
    free(q);
    free(sql);
    if (!res || !lsn_parse(PQgetvalue(res, 0, 1), lsn)) {
        PQclear(res);
        conn_close(repl);
        return false;
    }
    snprintf(snapshot, len, "%s", PQgetvalue(res, 0, 2));
    PQclear(res);
    *repl_out = repl;
    return true;
}

static TsGroup *group_of_table(TableSync *ts, int table_no)
{
    int e = table_no >= 1 && table_no <= ts->ntables ? ts->entry_of_table[table_no - 1] : -1;

    return e < 0 ? NULL : &ts->groups[ts->entries[e].group];
}

bool tablesync_acquire(TableSync *ts, int table_no, char *snapshot, size_t len, Lsn *lsn)
{
    TsGroup *g;
    PGconn *repl = NULL;
    char lsn_text[LSN_TEXT_SIZE];
    bool ok;

    pthread_mutex_lock(&ts->lock);
    g = group_of_table(ts, table_no);
    while (g && g->state == TS_SNAPSHOTTING && !ts->aborted)
        timed_wait(ts, WAIT_TICK_MS);
    if (!g || ts->aborted || g->state == TS_READY) {
        pthread_mutex_unlock(&ts->lock);
        if (g && !ts->aborted)
            log_error("[sync] table %d is already copied: no snapshot to copy it under", table_no);
        return false;
    }
    if (g->state == TS_SYNCING) {
        snprintf(snapshot, len, "%s", g->snapshot);
        *lsn = g->lsn;
        pthread_mutex_unlock(&ts->lock);
        return true;
    }
    /* PENDING: this worker takes the snapshot.  SNAPSHOTTING first, so a
     * change apply meets from now on waits for L instead of being skipped
     * as before a snapshot that might already include it. */
    g->state = TS_SNAPSHOTTING;
    pthread_cond_broadcast(&ts->changed);
    pthread_mutex_unlock(&ts->lock);
    ok = open_group(ts, (int)(g - ts->groups), &repl, lsn, snapshot, len);
    pthread_mutex_lock(&ts->lock);
    if (ok) {
        g->repl = repl;
        g->lsn = *lsn;
        snprintf(g->snapshot, sizeof(g->snapshot), "%s", snapshot);
        g->opened_s = clock_now_s();
        g->state = TS_SYNCING;
    } else
        g->state = TS_PENDING;
    pthread_cond_broadcast(&ts->changed);
    pthread_mutex_unlock(&ts->lock);
    if (ok)
        log_info("[sync group %d] %d table%s copied as of %s (snapshot %s)",
                 (int)(g - ts->groups) + 1, g->ntables, g->ntables == 1 ? "" : "s",
                 lsn_format(*lsn, lsn_text), snapshot);
    return ok;
}

void tablesync_release(TableSync *ts, int table_no, bool committed)
{
    TsGroup *g;
    PGconn *repl = NULL;
    double held = 0;
    int no = 0;

    pthread_mutex_lock(&ts->lock);
    g = group_of_table(ts, table_no);
    if (g && committed && --g->chunks_left == 0) {
        repl = g->repl;
        g->repl = NULL;
        held = clock_now_s() - g->opened_s;
        no = (int)(g - ts->groups) + 1;
    }
    pthread_mutex_unlock(&ts->lock);
    if (repl) {
        conn_close(repl); /* the temporary slot and its snapshot go with the session */
        log_debug("[sync group %d] snapshot released after %.1f s", no, held);
    }
}

void tablesync_table_ready(TableSync *ts, int table_no)
{
    int e = table_no >= 1 && table_no <= ts->ntables ? ts->entry_of_table[table_no - 1] : -1;

    if (e < 0)
        return;
    pthread_mutex_lock(&ts->lock);
    if (!ts->entries[e].ready) {
        TsGroup *g = &ts->groups[ts->entries[e].group];

        ts->entries[e].ready = true;
        if (--g->tables_left <= 0)
            g->state = TS_READY;
        pthread_cond_broadcast(&ts->changed);
    }
    pthread_mutex_unlock(&ts->lock);
}

void tablesync_abort(TableSync *ts)
{
    if (!ts)
        return;
    pthread_mutex_lock(&ts->lock);
    ts->aborted = true;
    pthread_cond_broadcast(&ts->changed);
    pthread_mutex_unlock(&ts->lock);
}

void tablesync_hold(TableSync *ts, TableSyncHold *out)
{
    double now = clock_now_s();

    *out = (TableSyncHold){0};
    if (!ts)
        return;
    pthread_mutex_lock(&ts->lock);
    for (int g = 0; g < ts->ngroups; g++)
        if (ts->groups[g].repl) {
            out->groups_open++;
            if (now - ts->groups[g].opened_s > out->oldest_age_s)
                out->oldest_age_s = now - ts->groups[g].opened_s;
        }
    for (int i = 0; i < ts->nentries; i++) {
        Lsn lsn;
        TsState s;

        if (ts->entries[i].table_no == 0)
            continue;
        s = entry_state(ts, &ts->entries[i], &lsn);
        out->ready += s == TS_READY;
        out->pending += s == TS_PENDING;
        out->syncing += s == TS_SNAPSHOTTING || s == TS_SYNCING;
    }
    pthread_mutex_unlock(&ts->lock);
}

/* One group per table (or per partitioned root: its partitions share
 * it), ready at the table's L or pending. */
bool tablesync_load(PGconn *tgt, TableSync **out)
{
    PGresult *res = conn_query(tgt, "state",
                               "SELECT count(*) FROM pg_catalog.pg_attribute WHERE attrelid = "
                               "pg_catalog.to_regclass('pgrelocate.tables') AND attname = "
                               "'sync_state'",
                               0, NULL, 1);
    bool tracked = res && atoi(PQgetvalue(res, 0, 0)) > 0;
    TableSync *ts;
    int n, maxno = 0;

    *out = NULL;
    PQclear(res);
    if (!res || !tracked)
        return res != NULL; /* state older than per-table sync: nothing to filter */
    res = conn_query(tgt, "state",
                     "SELECT table_no, schema_name, table_name, sync_state, "
                     "coalesce(sync_lsn, '0/0'), root_schema, root_name FROM pgrelocate.tables "
                     "WHERE sync_state IS NOT NULL ORDER BY root_schema, root_name, table_no",
                     0, NULL, 7);
    if (!res)
        return false;
    n = PQntuples(res);
    for (int i = 0; i < n; i++)
        if (atoi(PQgetvalue(res, i, 0)) > maxno)
            maxno = atoi(PQgetvalue(res, i, 0));
    ts = n > 0 ? tablesync_create(NULL, NULL, maxno, 0) : NULL;
    for (int i = 0; i < n; i++) {
        int no = atoi(PQgetvalue(res, i, 0));
        bool root = !PQgetisnull(res, i, 5), ack;
        int g = root ? tablesync_find(ts, PQgetvalue(res, i, 5), PQgetvalue(res, i, 6)) : -1;
        Lsn lsn = 0;

        lsn_parse(PQgetvalue(res, i, 4), &lsn);
        if (g >= 0)
            g = ts->entries[g].group; /* a partition: its root's group */
        else {
            g = tablesync_add_group(ts, false, 0);
            if (root)
                tablesync_add_root(ts, g, PQgetvalue(res, i, 5), PQgetvalue(res, i, 6));
        }
        tablesync_add_table(ts, g, no, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), 0);
        /* pending stays PENDING; a root is ready when its partitions are
         * (resync and the copy move a whole root's partitions together) */
        refresh_one(ts, &ts->entries[ts->entry_of_table[no - 1]], PQgetvalue(res, i, 3), lsn, &ack);
    }
    PQclear(res);
    *out = ts;
    return true;
}

/* One table's state as the target holds it (caller holds the lock);
 * *ack: a resync request, now waited on, to answer. */
static void refresh_one(TableSync *ts, TsEntry *e, const char *state, Lsn lsn, bool *ack)
{
    TsGroup *g = &ts->groups[e->group];

    *ack = strcmp(state, "resync") == 0;
    if (*ack || strcmp(state, "resync_ack") == 0) {
        e->ready = false;
        g->state = TS_SNAPSHOTTING;
    } else if (strcmp(state, "syncing") == 0) {
        e->ready = false;
        g->state = TS_SYNCING;
        g->lsn = lsn;
    } else if (strcmp(state, "ready") == 0 && (!e->ready || g->lsn != lsn)) {
        e->ready = true;
        g->state = TS_READY;
        g->lsn = lsn;
    }
}

bool tablesync_refresh(TableSync *ts, PGconn *tgt)
{
    PGresult *res = conn_query(tgt, "state",
                               "SELECT table_no, sync_state, coalesce(sync_lsn, '0/0') FROM "
                               "pgrelocate.tables WHERE sync_state IS NOT NULL",
                               0, NULL, 3);
    StrBuf acks;
    bool ok = true;

    if (!res)
        return false;
    strbuf_init(&acks);
    pthread_mutex_lock(&ts->lock);
    ts->resyncing = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        int no = atoi(PQgetvalue(res, i, 0)),
            e = no >= 1 && no <= ts->ntables ? ts->entry_of_table[no - 1] : -1;
        Lsn lsn = 0;
        bool ack;

        if (e < 0)
            continue;
        lsn_parse(PQgetvalue(res, i, 2), &lsn);
        refresh_one(ts, &ts->entries[e], PQgetvalue(res, i, 1), lsn, &ack);
        if (ack)
            strbuf_appendf(&acks, "%s%d", acks.len ? "," : "", no);
    }
    for (int g = 0; g < ts->ngroups; g++)
        ts->resyncing +=
            ts->groups[g].state == TS_SNAPSHOTTING || ts->groups[g].state == TS_SYNCING;
    pthread_cond_broadcast(&ts->changed);
    pthread_mutex_unlock(&ts->lock);
    PQclear(res);
    if (acks.len) {
        char *arr = xasprintf("{%s}", acks.data);
        const char *p[1] = {arr};

        ok = conn_command(tgt, "state",
                          "UPDATE pgrelocate.tables SET sync_state = 'resync_ack' "
                          "WHERE table_no = ANY ($1::int[]) AND sync_state = 'resync'",
                          1, p);
        if (ok)
            log_info("[sync] resync of %s asked: their changes wait for the new copy", arr);
        free(arr);
    }
    strbuf_free(&acks);
    return ok;
}

bool tablesync_resyncing(TableSync *ts)
{
    bool r;

    pthread_mutex_lock(&ts->lock);
    r = ts->resyncing > 0;
    pthread_mutex_unlock(&ts->lock);
    return r;
}
