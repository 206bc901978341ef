/*
 * follow.c: stream thread, apply thread, queue, feedback, reconnects.
 */
#include "follow.h"

#include "apply.h"
#include "clock.h"
#include "conn.h"
#include "log.h"
#include "pgoutput.h"
#include "size.h"
#include "slot.h"
#include "state.h"
#include "stream.h"
#include "strbuf.h"
#include "syncpoint.h"
#include "walmsg.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_MAX_BYTES  ((size_t)64 << 20)
#define FEEDBACK_MS      5000
#define FEEDBACK_SOON_MS 100 /* after a commit, tell the server within this */
#define BACKOFF_MAX_S    30
#define MONITOR_WAIT_MS  2000 /* the status line's query on the source */
/* Backlog reading: over BATCH_RATE_BYTES per BATCH_WINDOW_MS, the stream
 * thread asks to be woken once per BATCH_WAKE_BYTES (not once per send of
 * the walsender, whose wake-ups of a sleeping reader cost it about a third
 * of its time), and waits at most BATCH_WAIT_MS for a batch to fill. */
#define BATCH_WINDOW_MS  100
#define BATCH_RATE_BYTES ((size_t)256 << 10)
#define BATCH_WAKE_BYTES (32 << 10)
#define BATCH_WAIT_MS    10

typedef struct Item {
    struct Item *next;
    size_t len;
    uint8_t data[]; /* one pgoutput message */
} Item;

typedef struct Session {
    const FollowOpts *o;
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    Item *head, *tail;   /* handed over by the stream thread, not yet taken */
    atomic_size_t bytes; /* queued: handed over and taken, not yet applied */
    Item *mine;          /* taken by the apply thread (its own): applied next */
    bool stream_done;    /* stream thread ended (no more items will come) */
    bool apply_done;     /* apply thread ended */
    bool failed;         /* fatal apply error: do not reconnect */
    bool ambiguous;      /* ... in a statement of several source transactions */
    bool finished;       /* a sync point said: stop following for good */
    SyncHold *hold;      /* owned by follow_run: outlives reconnects */
    atomic_uint_fast64_t committed_lsn;
    atomic_uint_fast64_t server_end_lsn;
    atomic_uint_fast64_t keepalive_lsn; /* the server's last keepalive position */
    atomic_uint_fast64_t pushed, processed;
    atomic_int_fast64_t applied_txns, applied_rows; /* published by the apply thread */
    atomic_bool apply_idle; /* no batch open on the target, and none failed: what was
                             * received is durable, so the keepalive may be confirmed */
    Stream *stream;
    PGconn *tgt;
    Apply *apply;
} Session;

static const char *label(const FollowOpts *o)
{
    return o->label ? o->label : "follow";
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* What the server may forget: everything committed on the target, or, when
 * all received data is applied and nothing is open, up to its keepalive. */
static Lsn flush_position(Session *s, Lsn keepalive_end)
{
    Lsn committed = atomic_load(&s->committed_lsn);
    /* every item handed over was applied (pushed moves only in this
     * thread), and only then: no batch open since.  In the other order a
     * stale "idle" read before apply took and applied the last items, batch
     * still open, would confirm past what the target holds. */
    bool drained = atomic_load(&s->pushed) == atomic_load(&s->processed);

    if (drained && atomic_load(&s->apply_idle) && keepalive_end > committed)
        return keepalive_end;
    return committed;
}

/* Messages the stream thread has read but not handed over: they go over
 * in groups, so the two threads meet once per group, not per message. */
typedef struct Staged {
    Item *head, *tail;
    size_t bytes;
    int count;
} Staged;

#define STAGE_ITEMS 256
#define STAGE_BYTES ((size_t)1 << 20)

static void stage(Staged *st, const uint8_t *data, size_t len)
{
    Item *it = xmalloc(sizeof(Item) + len);

    it->next = NULL;
    it->len = len;
    memcpy(it->data, data, len);
    if (st->tail)
        st->tail->next = it;
    else
        st->head = it;
    st->tail = it;
    st->bytes += len;
    st->count++;
}

static void free_items(Item *it)
{
    for (Item *n; it; it = n) {
        n = it->next;
        free(it);
    }
}

/* Hand the staged messages to the apply thread; waits while the queue is
 * full, answering the server meanwhile.  false when the session ends. */
static bool publish(Session *s, Staged *st, Lsn *keepalive_end)
{
    if (!st->head)
        return true;
    pthread_mutex_lock(&s->lock);
    while (atomic_load(&s->bytes) > QUEUE_MAX_BYTES && !s->apply_done) {
        struct timespec ts;

        deadline_in(&ts, 1000);
        if (pthread_cond_timedwait(&s->not_full, &s->lock, &ts) == ETIMEDOUT) {
            Lsn flush = flush_position(s, *keepalive_end);

            pthread_mutex_unlock(&s->lock);
            stream_send_status(s->stream, atomic_load(&s->server_end_lsn), flush, flush, false);
            pthread_mutex_lock(&s->lock);
        }
    }
    if (s->apply_done) {
        pthread_mutex_unlock(&s->lock);
        free_items(st->head);
        *st = (Staged){0};
        return false;
    }
    if (s->tail)
        s->tail->next = st->head;
    else
        s->head = st->head;
    s->tail = st->tail;
    atomic_fetch_add(&s->bytes, st->bytes);
    atomic_fetch_add(&s->pushed, (uint_fast64_t)st->count);
    pthread_cond_signal(&s->not_empty);
    pthread_mutex_unlock(&s->lock);
    *st = (Staged){0};
    return true;
}

static bool apply_ended(Session *s)
{
    bool done;

    pthread_mutex_lock(&s->lock);
    done = s->apply_done;
    pthread_mutex_unlock(&s->lock);
    return done;
}

/* The stream thread's own state between reads. */
typedef struct StreamLoop {
    Staged staged;            /* read, not yet handed over */
    Lsn keepalive_end;        /* the server's last keepalive position */
    Lsn sent_flush;           /* the flush position last reported */
    int64_t next_feedback_ms; /* ms: when a status update is due */
    int64_t window_end_ms;    /* ms: end of the current rate window */
    size_t window_bytes;      /* received in it */
    bool batching;            /* woken once per BATCH_WAKE_BYTES (backlog) */
} StreamLoop;

/* At the end of each rate window, read in batches while a backlog arrives
 * (over BATCH_RATE_BYTES in it), as changes arrive otherwise. */
static void update_read_mode(Session *s, StreamLoop *lp, int64_t now)
{
    bool want;

    if (now < lp->window_end_ms)
        return;
    want = lp->window_bytes >= BATCH_RATE_BYTES;
    if (want != lp->batching) {
        stream_set_wake_bytes(s->stream, want ? BATCH_WAKE_BYTES : 1);
        log_debug("[stream] %s (%zu bytes in %d ms)",
                  want ? "backlog: reading in batches" : "reading as changes arrive",
                  lp->window_bytes, BATCH_WINDOW_MS);
    }
    lp->batching = want;
    lp->window_bytes = 0;
    lp->window_end_ms = now + BATCH_WINDOW_MS;
}

/* Hand over a full group (STAGE_ITEMS or STAGE_BYTES).  false when the
 * apply thread has ended (seen now with nothing staged, or by the hand-over). */
static bool hand_over_full_group(Session *s, StreamLoop *lp)
{
    if (lp->staged.count >= STAGE_ITEMS || lp->staged.bytes >= STAGE_BYTES)
        return publish(s, &lp->staged, &lp->keepalive_end);
    return lp->staged.head || !apply_ended(s);
}

/* How long the next read may wait: not at all while messages are staged
 * (a timeout hands them over), a batch's wait while reading a backlog. */
static int read_timeout_ms(const StreamLoop *lp)
{
    return lp->staged.head ? 0 : lp->batching ? BATCH_WAIT_MS : 100;
}

/* One frame read: stage a change, or note a keepalive's position (and
 * whether it asks for a reply).  false when the session ends. */
static bool dispatch_frame(Session *s, StreamLoop *lp, const WalMsg *msg, bool *reply)
{
    if (msg->type == WALMSG_XLOGDATA) {
        if (msg->u.xlogdata.end_lsn > atomic_load(&s->server_end_lsn))
            atomic_store(&s->server_end_lsn, msg->u.xlogdata.end_lsn);
        stage(&lp->staged, msg->u.xlogdata.data, msg->u.xlogdata.len);
        lp->window_bytes += msg->u.xlogdata.len;
    } else if (msg->type == WALMSG_KEEPALIVE) {
        /* everything received before a keepalive is queued before its
         * position is known (held() relies on it) */
        if (!publish(s, &lp->staged, &lp->keepalive_end))
            return false;
        lp->keepalive_end = msg->u.keepalive.end_lsn;
        atomic_store(&s->keepalive_lsn, lp->keepalive_end);
        if (lp->keepalive_end > atomic_load(&s->server_end_lsn))
            atomic_store(&s->server_end_lsn, lp->keepalive_end);
        *reply = msg->u.keepalive.reply_requested;
    }
    return true;
}

/* Is a status update due: asked for, FEEDBACK_MS since the last, or a
 * commit on the target to confirm FEEDBACK_SOON_MS after the last? */
static bool feedback_due(Session *s, const StreamLoop *lp, bool reply, int64_t now)
{
    return reply || now >= lp->next_feedback_ms ||
           (atomic_load(&s->committed_lsn) > lp->sent_flush &&
            now >= lp->next_feedback_ms - FEEDBACK_MS + FEEDBACK_SOON_MS);
}

/* Report what is durable.  false when the connection is gone. */
static bool send_feedback(Session *s, StreamLoop *lp)
{
    Lsn flush = flush_position(s, lp->keepalive_end);

    lp->sent_flush = flush;
    if (!stream_send_status(s->stream, atomic_load(&s->server_end_lsn), flush, flush, false))
        return false;
    lp->next_feedback_ms = clock_now_ms() + FEEDBACK_MS;
    return true;
}

/* The stream thread: what is due, read, dispatch, feedback; until the
 * server ends the stream, the connection breaks or the apply thread ends. */
static void *stream_main(void *arg)
{
    Session *s = arg;
    StreamLoop lp = {.next_feedback_ms = clock_now_ms() + FEEDBACK_MS,
                     .window_end_ms = clock_now_ms() + BATCH_WINDOW_MS};
    bool alive = true; /* the server has not ended the stream */

    for (;;) {
        WalMsg msg;
        StreamStatus st;
        bool reply = false;

        update_read_mode(s, &lp, clock_now_ms());
        if (!hand_over_full_group(s, &lp))
            break;
        st = stream_read(s->stream, read_timeout_ms(&lp), &msg);
        if (st == STREAM_TIMEOUT && lp.staged.head) { /* quiet: hand over what is staged */
            if (!publish(s, &lp.staged, &lp.keepalive_end))
                break;
            continue;
        }
        if (st == STREAM_END || st == STREAM_ERROR ||
            (st == STREAM_TIMEOUT && !stream_check_silence(s->stream))) {
            alive = false;
            break;
        }
        if (st == STREAM_FRAME && !dispatch_frame(s, &lp, &msg, &reply))
            break;
        if (feedback_due(s, &lp, reply, clock_now_ms()) && !send_feedback(s, &lp))
            break;
    }
    /* what arrived is still good to apply; then, last word: what is durable */
    publish(s, &lp.staged, &lp.keepalive_end);
    free_items(lp.staged.head);
    if (alive)
        stream_send_status(s->stream, atomic_load(&s->server_end_lsn),
                           atomic_load(&s->committed_lsn), atomic_load(&s->committed_lsn), false);
    pthread_mutex_lock(&s->lock);
    s->stream_done = true;
    pthread_cond_broadcast(&s->not_empty);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Next queued payload, waiting up to timeout_ms; NULL when none.  Apply
 * thread only: it takes everything queued at once and works through it
 * without the lock. */
static Item *pop(Session *s, int timeout_ms)
{
    Item *it;

    if (!s->mine) {
        pthread_mutex_lock(&s->lock);
        if (!s->head && !s->stream_done && timeout_ms > 0) {
            struct timespec ts;

            deadline_in(&ts, timeout_ms);
            pthread_cond_timedwait(&s->not_empty, &s->lock, &ts);
        }
        s->mine = s->head;
        s->head = s->tail = NULL;
        pthread_mutex_unlock(&s->lock);
    }
    it = s->mine;
    if (it) {
        s->mine = it->next;
        size_t before = atomic_fetch_sub(&s->bytes, it->len);

        /* the stream thread waits while the queue is full: wake it once
         * half of it is applied */
        if (before > QUEUE_MAX_BYTES / 2 && before - it->len <= QUEUE_MAX_BYTES / 2) {
            pthread_mutex_lock(&s->lock);
            pthread_cond_signal(&s->not_full);
            pthread_mutex_unlock(&s->lock);
        }
    }
    return it;
}

/* The first queued message, left in the queue.  It stays valid: only the
 * apply thread, the caller, takes items out. */
static const Item *peek(Session *s)
{
    const Item *it;

    if (s->mine)
        return s->mine;
    pthread_mutex_lock(&s->lock);
    it = s->head;
    pthread_mutex_unlock(&s->lock);
    return it;
}

static bool queue_drained(Session *s)
{
    bool done;

    pthread_mutex_lock(&s->lock);
    done = s->stream_done && !s->head && !s->mine;
    pthread_mutex_unlock(&s->lock);
    return done;
}

/* Lag gauge: from the shared atomics, any thread. */
static void publish_lag(Session *s)
{
    Lsn end = atomic_load(&s->server_end_lsn);
    Lsn done = flush_position(s, atomic_load(&s->keepalive_lsn));

    if (s->o->metrics)
        atomic_store(&s->o->metrics->lag_bytes, end > done ? (int64_t)(end - done) : 0);
}

/* Apply counters: only from the apply thread, which owns the stats. */
static void publish_metrics(Session *s)
{
    ApplyStats st;

    apply_get_stats(s->apply, &st);
    atomic_store(&s->applied_txns, st.transactions);
    atomic_store(&s->applied_rows, st.changes);
    if (!s->o->metrics)
        return;
    atomic_store(&s->o->metrics->apply_transactions, st.transactions);
    atomic_store(&s->o->metrics->apply_changes, st.changes);
    atomic_store(&s->o->metrics->apply_schema_changes, st.ddl);
    publish_lag(s);
}

static bool commit_now(Session *s)
{
    bool ok = apply_commit(s->apply);

    atomic_store(&s->committed_lsn, apply_committed_lsn(s->apply));
    /* a failed commit closes the batch without making it durable: never
     * idle then, or the stream thread would confirm its keepalive position
     * to the source, past transactions the target does not hold, and the
     * slot would not send them again (lost for good; 022 E caught it) */
    atomic_store(&s->apply_idle, ok && !apply_batch_open(s->apply));
    publish_metrics(s);
    return ok;
}

/* Decode and apply one payload. */
static bool apply_item(Session *s, PgoDecoder *d, const Item *it)
{
    PgoMessage m;

    if (pgo_decode(d, it->data, it->len, &m) != PGO_OK) {
        log_error("[apply] malformed message from the source: %s", pgo_decoder_error(d));
        return false;
    }
    atomic_store(&s->apply_idle, false);
    if (!apply_message(s->apply, &m))
        return false;
    atomic_store(&s->committed_lsn, apply_committed_lsn(s->apply));
    atomic_store(&s->apply_idle, !apply_batch_open(s->apply));
    if (m.type == PGO_MSG_COMMIT)
        publish_metrics(s);
    return true;
}

/*
 * Sync points (syncpoint.h), between source transactions only.  Returns
 * true when the apply thread must not take the next message now; *ok false
 * on a failed commit, *finish when it must stop following.
 */
static bool held(Session *s, PgoDecoder *d, bool *ok, bool *finish)
{
    Lsn until;
    uint64_t gen;
    SyncWant w = syncpoint_hold_want(s->hold, &until, &gen);
    SyncStatus report = SYNC_HOLDING;

    if (w == SYNC_WANT_NONE || apply_in_transaction(s->apply))
        return false;
    if (w == SYNC_WANT_ADVANCE) {
        /* read the keepalive first: everything the stream received before
         * it is queued, so an empty queue then means all of it is applied */
        Lsn keepalive = atomic_load(&s->keepalive_lsn);
        const Item *next = peek(s);
        PgoMessage m;

        if (next) {
            /* a Begin names its commit LSN, a logical message its own; at a
             * boundary nothing decoded earlier is still in use */
            if (pgo_decode(d, next->data, next->len, &m) != PGO_OK ||
                !((m.type == PGO_MSG_BEGIN && m.u.begin.final_lsn >= until) ||
                  (m.type == PGO_MSG_MESSAGE && m.u.message.lsn >= until)))
                return false; /* before the sync point (or malformed): apply_item takes it */
        } else if (keepalive < until || atomic_load(&s->pushed) != atomic_load(&s->processed)) {
            usleep(1000); /* not there yet; nothing to apply */
            return true;
        }
        report = SYNC_REACHED;
    }
    if (apply_batch_open(s->apply) && !commit_now(s)) {
        *ok = false;
        return true;
    }
    if (w == SYNC_WANT_FINISH) {
        *finish = true;
        return true;
    }
    syncpoint_hold_report(s->hold, gen, report, apply_committed_lsn(s->apply));
    usleep(1000);
    return true;
}

static void *apply_main(void *arg)
{
    Session *s = arg;
    PgoDecoder *d = pgo_decoder_create(s->o->proto_version);
    bool ok = d != NULL;

    while (ok) {
        Item *it;
        bool finish = false;

        if (*s->o->stop && !apply_in_transaction(s->apply)) {
            ok = commit_now(s);
            break;
        }
        if (held(s, d, &ok, &finish)) {
            if (finish) {
                s->finished = true;
                break;
            }
            continue;
        }
        it = pop(s, 0);
        if (!it) {
            /* idle: make what we have durable, then wait */
            if (!apply_in_transaction(s->apply) && !commit_now(s))
                ok = false;
            if (ok && !(it = pop(s, 100))) {
                if (queue_drained(s))
                    break;
                continue;
            }
        }
        if (it) {
            ok = apply_item(s, d, it);
            atomic_fetch_add(&s->processed, 1);
            free(it);
        }
    }
    if (!ok && PQstatus(s->tgt) == CONNECTION_OK && !apply_connection_lost(s->apply)) {
        s->failed = true; /* not a lost connection: retrying would fail the same way */
        s->ambiguous = apply_failure_ambiguous(s->apply);
    }
    pgo_decoder_destroy(d);
    pthread_mutex_lock(&s->lock);
    s->apply_done = true;
    pthread_cond_broadcast(&s->not_full);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void free_queue(Session *s)
{
    free_items(s->head);
    free_items(s->mine);
    s->head = s->tail = s->mine = NULL;
    atomic_store(&s->bytes, 0);
}

/* The slot's retained WAL, waiting at most MONITOR_WAIT_MS for the answer;
 * NULL when none came (the connection is then unusable). */
static PGresult *monitor_query(PGconn *conn, const char *const *p)
{
    int64_t deadline = clock_now_ms() + MONITOR_WAIT_MS;
    PGresult *res = NULL, *r;

    if (!PQsendQueryParams(conn,
                           "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), "
                           "restart_lsn)::bigint FROM pg_catalog.pg_replication_slots "
                           "WHERE slot_name = $1",
                           1, NULL, p, NULL, NULL, 0))
        return PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
    while (PQisBusy(conn)) {
        struct pollfd pf = {PQsocket(conn), POLLIN, 0};
        int64_t left = deadline - clock_now_ms();

        if (left <= 0 || (poll(&pf, 1, (int)left) < 0 && errno != EINTR))
            return NULL;
        if (!PQconsumeInput(conn))
            break;
    }
    while ((r = PQgetResult(conn)) != NULL) {
        if (res)
            PQclear(res);
        res = r;
    }
    return res ? res : PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
}

/* Retained WAL of our slot on the source, or -1 when it cannot be read. */
static int64_t retained_wal(const FollowOpts *o, PGconn **monitor)
{
    ConnOpts co = {.side = CONN_SOURCE,
                   .app_name = "pgrelocate monitor",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
    const char *p[1] = {o->slot};
    PGresult *res;
    int64_t bytes = -1;

    if (*monitor && PQstatus(*monitor) != CONNECTION_OK) {
        conn_close(*monitor);
        *monitor = NULL;
    }
    if (!*monitor && !(*monitor = conn_open(o->source, &co)))
        return -1;
    res = monitor_query(*monitor, p);
    if (!res) {
        /* a stopped source: the status line must not hold the session
         * (it would not notice its stream ended, nor reconnect) */
        log_debug("[follow] no answer from the source to the status query within %d ms",
                  MONITOR_WAIT_MS);
        conn_close(*monitor);
        *monitor = NULL;
        return -1;
    }
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        bytes = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return bytes;
}

static void log_status(Session *s, PGconn **monitor, int64_t *last_ms, int64_t *last_txns)
{
    int64_t txns = atomic_load(&s->applied_txns), rows = atomic_load(&s->applied_rows);
    Lsn end = atomic_load(&s->server_end_lsn);
    Lsn done = flush_position(s, atomic_load(&s->keepalive_lsn));
    int64_t t = clock_now_ms(), kept = retained_wal(s->o, monitor);
    char lag[32], wal[32];

    if (s->o->metrics)
        atomic_store(&s->o->metrics->retained_wal_bytes, kept);

    log_info("[%s] applied %lld transactions (%.0f/s), %lld rows; behind the source by %s; "
             "WAL kept on the source for us: %s",
             label(s->o), (long long)txns,
             t > *last_ms ? (double)(txns - *last_txns) * 1000.0 / (double)(t - *last_ms) : 0.0,
             (long long)rows,
             size_format_bytes(end > done ? (int64_t)(end - done) : 0, lag, sizeof(lag)),
             kept < 0 ? "unknown" : size_format_bytes(kept, wal, sizeof(wal)));
    if (kept > s->o->max_retained_wal && s->o->max_retained_wal > 0) {
        char limit[32];

        log_msg(LOG_WARNING,
                "The source cannot remove this WAL until pgrelocate has applied it; if it "
                "fills the source's disk, the source stops.",
                "Let pgrelocate catch up (is the target slow or blocked?), or give up the "
                "migration with pgrelocate cleanup, which drops the slot.",
                "[%s] the replication slot keeps %s of WAL on the source (more than "
                "--max-retained-wal %s)",
                label(s->o), size_format_bytes(kept, wal, sizeof(wal)),
                size_format_bytes(s->o->max_retained_wal, limit, sizeof(limit)));
    }
    *last_ms = t;
    *last_txns = txns;
}

/* The sync point control session (syncpoint.h); reopened when lost. */
typedef struct Control {
    const ConnInfo *ci;
    SyncFollower *sync;
    SyncHold hold;
    int64_t retry_ms;  /* when to reopen a lost control session */
    bool exact;        /* apply one source transaction per statement (apply_set_exact) */
    bool told_format;  /* the value format's choice was logged at info */
    TableSync *filter; /* per-table sync: o->sync, or read from the state */
    bool refresh;      /* the filter came from the state: follow resync's changes to it */
    PGconn *state;     /* ... read on this session */
    int64_t refresh_ms;
} Control;

#define REFRESH_MS 1000 /* how often a resync request is looked for */

/* A follower whose filter came from the state reads it again every
 * REFRESH_MS (tablesync_refresh): resync asks through it. */
static void refresh_filter(const FollowOpts *o, Control *c)
{
    ConnOpts co = {.side = CONN_TARGET,
                   .app_name = "pgrelocate apply",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};

    if (!c->refresh || clock_now_ms() < c->refresh_ms)
        return;
    c->refresh_ms = clock_now_ms() + REFRESH_MS;
    if (!c->state)
        c->state = conn_open(o->target, &co);
    if (c->state && !tablesync_refresh(c->filter, c->state)) {
        conn_close(c->state);
        c->state = NULL;
    }
}

static void control_poll(Control *c)
{
    if (!c->sync && clock_now_ms() >= c->retry_ms) {
        c->sync = syncpoint_follower_open(c->ci);
        c->retry_ms = clock_now_ms() + 1000;
    }
    if (c->sync && !syncpoint_follower_poll(c->sync, &c->hold)) {
        log_notice("[sync] lost the control session to the target; reopening");
        syncpoint_follower_close(c->sync);
        c->sync = NULL;
    }
}

/* START_REPLICATION failed.  A slot the source invalidated (wal_status
 * lost: it removed WAL the slot needed, max_slot_wal_keep_size) never works
 * again, and going on past the gap would lose changes: say so, and stop
 * instead of reconnecting for ever.  Anything else (the source down, a
 * refused connection) is retried. */
static bool slot_lost(const FollowOpts *o)
{
    ConnOpts co = {.side = CONN_SOURCE, .app_name = "pgrelocate"};
    PGconn *conn = conn_open(o->source, &co);
    SlotInfo si;
    bool lost;

    if (!conn)
        return false;
    lost = slot_info(conn, o->slot, &si) && si.exists && strcmp(si.wal_status, "lost") == 0;
    conn_close(conn);
    if (lost)
        log_msg(LOG_ERROR,
                "Without the slot the changes since cannot be read: a full copy is required.",
                "Run pgrelocate cleanup, recreate the target database, and run pgrelocate "
                "start again.",
                "[%s] replication slot %s lost WAL it needed (wal_status = lost)", label(o),
                o->slot);
    return lost;
}

/* One connection pair, until stop, failure or a lost connection; *progressed
 * when both connections came up and streaming began (the reconnect backoff
 * grows only while reconnecting fails). */
static FollowResult run_session(const FollowOpts *o, Control *c, bool *lost, bool *progressed)
{
    ConnOpts to = {
        .side = CONN_TARGET, .app_name = "pgrelocate apply", .client_encoding = o->client_encoding};
    Session s = {.o = o, .hold = &c->hold};
    pthread_t st, at;
    int64_t next_status, last_ms = clock_now_ms(), last_txns = 0;
    char lsn[LSN_TEXT_SIZE];
    PGconn *monitor = NULL;
    bool refused;

    *lost = true;
    *progressed = false;
    if (!(s.tgt = conn_open(o->target, &to)))
        return FOLLOW_STOPPED;
    if (!(s.apply = apply_create(s.tgt, o->origin))) {
        /* with the connection up, retrying would fail the same way */
        bool up = PQstatus(s.tgt) == CONNECTION_OK;

        conn_close(s.tgt);
        return up ? FOLLOW_FAILED : FOLLOW_STOPPED;
    }
    apply_set_skip_origin(s.apply, o->skip_origin);
    apply_set_skip_lsn(s.apply, o->skip_lsn);
    apply_set_exact(s.apply, c->exact);
    apply_set_sync(s.apply, c->filter, o->stop);
    atomic_store(&s.committed_lsn, apply_committed_lsn(s.apply));
    atomic_store(&s.apply_idle, true);
    s.stream = stream_start(o->source, o->slot, apply_committed_lsn(s.apply), o->proto_version,
                            o->publication, o->protocol, !c->told_format, &refused);
    if (!s.stream) {
        bool gone = refused || slot_lost(o);

        apply_destroy(s.apply);
        conn_close(s.tgt);
        return gone ? FOLLOW_FAILED : FOLLOW_STOPPED;
    }
    *progressed = true;
    c->told_format = true;
    /* nothing applied yet: the server starts at the slot's consistent point */
    if (apply_committed_lsn(s.apply) == 0)
        log_info("[%s] streaming changes from the slot's starting point", label(o));
    else
        log_info("[%s] streaming changes from %s", label(o),
                 lsn_format(apply_committed_lsn(s.apply), lsn));
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.not_empty, NULL);
    pthread_cond_init(&s.not_full, NULL);
    pthread_create(&st, NULL, stream_main, &s);
    pthread_create(&at, NULL, apply_main, &s);
    next_status = clock_now_ms() + o->status_interval_ms;
    for (;;) {
        bool done, busy;

        pthread_mutex_lock(&s.lock);
        done = s.apply_done && s.stream_done;
        pthread_mutex_unlock(&s.lock);
        if (done)
            break;
        control_poll(c);
        refresh_filter(o, c);
        busy = syncpoint_follower_busy(c->sync);
        if (busy) {
            /* wake an idle apply thread: a sync point wants it */
            pthread_mutex_lock(&s.lock);
            pthread_cond_broadcast(&s.not_empty);
            pthread_mutex_unlock(&s.lock);
        }
        usleep(busy ? 1000 : 20000);
        publish_lag(&s);
        if (o->status_interval_ms > 0 && clock_now_ms() >= next_status) {
            log_status(&s, &monitor, &last_ms, &last_txns);
            next_status = clock_now_ms() + o->status_interval_ms;
        }
    }
    pthread_join(st, NULL);
    pthread_join(at, NULL);
    conn_close(monitor);
    *lost = !s.failed && !s.finished && !*o->stop;
    if (s.failed && s.ambiguous && !c->exact) {
        /* once more at once, one source transaction at a time: the failure
         * then names its transaction (and --skip-transaction can leave it
         * out) */
        log_notice("[%s] applying again one source transaction at a time", label(o));
        c->exact = true;
        s.failed = false;
    }
    free_queue(&s);
    stream_close(s.stream);
    apply_destroy(s.apply);
    conn_close(s.tgt);
    pthread_mutex_destroy(&s.lock);
    pthread_cond_destroy(&s.not_empty);
    pthread_cond_destroy(&s.not_full);
    return s.failed ? FOLLOW_FAILED : s.finished ? FOLLOW_FINISHED : FOLLOW_STOPPED;
}

ValueProtocol follow_recorded_protocol(PGconn *tgt)
{
    /* text unless asked: binary has shown no measured gain yet, and a
     * table with a type unsafe in binary that a captured CREATE TABLE adds
     * while following would stop apply (the format is chosen per stream) */
    ValueProtocol p = VALUE_PROTOCOL_TEXT;
    char *recorded;

    if (state_read_protocol(tgt, &recorded) && recorded &&
        !valueformat_parse_protocol(recorded, &p))
        log_warning("[state] unknown recorded protocol \"%s\"; using text", recorded);
    if (recorded)
        free(recorded);
    return p;
}

/* The per-table sync filter as the state on the target holds it (tables
 * copied at their own points skip their changes before them). */
static bool load_filter(const FollowOpts *o, TableSync **ts)
{
    ConnOpts co = {.side = CONN_TARGET,
                   .app_name = "pgrelocate apply",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
    PGconn *conn = conn_open(o->target, &co);
    bool ok = conn && tablesync_load(conn, ts);

    conn_close(conn);
    return ok;
}

FollowResult follow_run(const FollowOpts *o)
{
    int backoff = 1;
    Control c = {.ci = o->control ? o->control : o->target};
    FollowResult r;

    TableSync *loaded = NULL;

    syncpoint_hold_init(&c.hold);
    if (!o->sync && (!o->control || o->control == o->target) && !load_filter(o, &loaded))
        return FOLLOW_FAILED;
    c.filter = o->sync ? o->sync : loaded;
    c.refresh = loaded != NULL;
    /* The control session's advisory lock says "a follower runs"; a second
     * follower on the same target is refused here. */
    if (!(c.sync = syncpoint_follower_open(c.ci))) {
        tablesync_destroy(loaded);
        return FOLLOW_FAILED;
    }
    for (;;) {
        bool lost, progressed;

        r = run_session(o, &c, &lost, &progressed);
        if (r == FOLLOW_FAILED || r == FOLLOW_FINISHED)
            break;
        if (*o->stop) {
            r = FOLLOW_STOPPED;
            break;
        }
        if (progressed)
            backoff = 1; /* it was connected and streaming: a new problem */
        if (lost) {
            log_notice("[%s] connection lost; reconnecting in %d s", label(o), backoff);
            for (int i = 0; i < backoff * 10 && !*o->stop; i++) {
                control_poll(&c);
                usleep(100000);
            }
            backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
        }
    }
    if (r == FOLLOW_FINISHED) {
        pthread_mutex_lock(&c.hold.lock);
        c.hold.status = SYNC_FINISHED;
        pthread_mutex_unlock(&c.hold.lock);
        syncpoint_follower_finished(c.sync);
        log_info("[%s] stopped for good (a cutover or rollback changed direction)", label(o));
    }
    syncpoint_follower_close(c.sync);
    pthread_mutex_destroy(&c.hold.lock);
    conn_close(c.state);
    tablesync_destroy(loaded);
    return r;
}

struct FollowThread {
    pthread_t thread;
    FollowOpts opts;
    volatile sig_atomic_t stop;
    FollowResult result;
    int done; /* set (atomically) when follow_run returned */
};

static void *follow_thread_main(void *arg)
{
    FollowThread *t = arg;

    t->result = follow_run(&t->opts);
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

bool follow_thread_alive(const FollowThread *t)
{
    return __atomic_load_n(&t->done, __ATOMIC_ACQUIRE) == 0;
}

FollowThread *follow_spawn(const FollowOpts *o)
{
    FollowThread *t = xcalloc(1, sizeof(*t));

    t->opts = *o;
    t->opts.stop = &t->stop;
    if (pthread_create(&t->thread, NULL, follow_thread_main, t) != 0) {
        log_error("[follow] could not start a thread");
        free(t);
        return NULL;
    }
    return t;
}

FollowResult follow_join(FollowThread *t)
{
    FollowResult r;

    t->stop = 1;
    pthread_join(t->thread, NULL);
    r = t->result;
    free(t);
    return r;
}
