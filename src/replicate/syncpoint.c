/*
 * syncpoint.c: both sides of the protocol on the table
 * pgrelocate.sync_points (its DDL is stateschema.c's: the callers and the
 * follower work on state that state_open has checked).  A row's state moves:
 *
 *   caller:   requested -> advancing (target_lsn set) -> released | finish
 *   follower: holding (after requested), reached (after advancing),
 *             done (after released), finished (after finish),
 *             expired (the caller went away), failed (detail says why)
 *
 * The caller NOTIFYs pgrelocate_sync after each change so the follower
 * reacts within milliseconds; the follower polls every second anyway.
 * A partial unique index allows one live sync point at a time.
 */
#include "syncpoint.h"

#include "clock.h"
#include "conn.h"
#include "interrupt.h"
#include "log.h"
#include "strbuf.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Advisory lock key held by a running follower: ('pgrl', 'sync'). */
#define LOCK_K1               "1886810732"
#define LOCK_K2               "1937337955"
#define FOLLOWER_LOCK_WAIT_MS 10000 /* another follower letting go */

static const char *const live_states = "('requested', 'holding', 'advancing', 'reached', 'finish')";

struct SyncPoint {
    PGconn *tgt;
    char id[24];
    Lsn applied_lsn;
    const SyncWatch *watch; /* NULL: only the deadline ends a wait */
};

struct SyncFollower {
    PGconn *conn;
    int64_t id;          /* the request being served, 0 none */
    char state[16];      /* its state as we last wrote or read it */
    int64_t next_check;  /* ms: next unconditional poll */
    SyncStatus reported; /* last status written back */
};

bool syncpoint_follower_running(PGconn *tgt, bool *running)
{
    PGresult *res = conn_query(tgt, "sync",
                               "SELECT count(*) > 0 FROM pg_catalog.pg_locks WHERE locktype = "
                               "'advisory' AND granted AND classid = " LOCK_K1
                               "::oid AND objid = " LOCK_K2 "::oid AND objsubid = 2 "
                               "AND database = (SELECT oid FROM pg_catalog.pg_database "
                               "WHERE datname = pg_catalog.current_database())",
                               0, NULL, 1);

    if (!res)
        return false;
    *running = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return true;
}

/* The caller's session holds the advisory lock (LOCK_K1, id) while its
 * row is live (the follower's own lock is (LOCK_K1, LOCK_K2)). */
static void unlock_row(PGconn *tgt, const char *id)
{
    const char *p[1] = {id};
    PGresult *res = conn_exec_params(tgt, "sync point",
                                     "SELECT pg_catalog.pg_advisory_unlock(" LOCK_K1 ", $1::int)",
                                     1, NULL, p, NULL, NULL, 0);

    PQclear(res); /* best effort: the lock ends with the session anyway */
}

static bool notify(PGconn *conn)
{
    return conn_script(conn, "sync", "NOTIFY pgrelocate_sync");
}

/* The row's state (and applied_lsn, detail) as the follower left it. */
static bool read_state(SyncPoint *sp, char *state, size_t len, char **detail)
{
    const char *p[1] = {sp->id};
    PGresult *res = conn_query(sp->tgt, "sync",
                               "SELECT state, applied_lsn, detail, expires_at < clock_timestamp() "
                               "FROM pgrelocate.sync_points WHERE id = $1",
                               1, p, 4);

    if (!res)
        return false;
    if (PQntuples(res) != 1) {
        PQclear(res);
        snprintf(state, len, "gone");
        return true;
    }
    snprintf(state, len, "%s", PQgetvalue(res, 0, 0));
    if (!PQgetisnull(res, 0, 1))
        lsn_parse(PQgetvalue(res, 0, 1), &sp->applied_lsn);
    if (detail)
        *detail = conn_value_or_null(res, 0, 2);
    PQclear(res);
    return true;
}

static bool set_state(PGconn *conn, const char *id, const char *state)
{
    const char *p[2] = {id, state};

    return conn_command(conn, "sync", "UPDATE pgrelocate.sync_points SET state = $2 WHERE id = $1",
                        2, p) &&
           notify(conn);
}

/* Whether the caller's watch ends the wait (logged). */
static bool watch_ends(const SyncPoint *sp, const char *what)
{
    const SyncWatch *w = sp->watch;

    if (w && w->stop && *w->stop) {
        log_msg(LOG_ERROR, NULL, NULL, "interrupted while waiting for the follower to %s", what);
        return true;
    }
    if (w && w->alive && !w->alive(w->arg)) {
        log_msg(LOG_ERROR, "It stopped on the error logged above, and nothing is applied past it.",
                "Fix the cause the error names, then run pgrelocate start (it resumes from its "
                "saved position).",
                "the follower run in this process stopped before it could %s", what);
        return true;
    }
    return false;
}

/* Wait until the row reaches want; false (logged) on failed/expired/timeout
 * or when the watch ends it. */
static bool wait_for(SyncPoint *sp, const char *want, int wait_ms, const char *what)
{
    int64_t deadline = clock_now_ms() + wait_ms;
    char state[16];

    for (;;) {
        char *detail = NULL;

        if (watch_ends(sp, what))
            return false;

        if (!read_state(sp, state, sizeof(state), &detail))
            return false;
        if (strcmp(state, want) == 0) {
            free(detail);
            return true;
        }
        if (strcmp(state, "failed") == 0 || strcmp(state, "expired") == 0 ||
            strcmp(state, "gone") == 0) {
            log_msg(LOG_ERROR, NULL, NULL, "the follower could not %s: %s%s%s", what, state,
                    detail ? ": " : "", detail ? detail : "");
            free(detail);
            return false;
        }
        free(detail);
        if (clock_now_ms() >= deadline) {
            log_msg(LOG_ERROR,
                    "The follower (pgrelocate start) did not answer in time: it may be far "
                    "behind, blocked on the target, or reconnecting.",
                    "Check pgrelocate status and the start process's log, then try again.",
                    "timed out after %d ms waiting for the follower to %s (state %s)", wait_ms,
                    what, state);
            return false;
        }
        usleep(2000);
    }
}

SyncPoint *syncpoint_hold(PGconn *tgt, int wait_ms, int expire_ms)
{
    return syncpoint_hold_watched(tgt, wait_ms, expire_ms, NULL);
}

SyncPoint *syncpoint_hold_watched(PGconn *tgt, int wait_ms, int expire_ms, const SyncWatch *w)
{
    char expire[32];
    const char *p[1] = {expire};
    bool running;
    PGresult *res;
    SyncPoint *sp;

    if (!syncpoint_follower_running(tgt, &running))
        return NULL;
    if (!running) {
        log_msg(LOG_ERROR, NULL, "Run pgrelocate start (it resumes where it stopped).",
                "no pgrelocate start is following changes into this target");
        return NULL;
    }
    /* a caller that died leaves its row live until it expires, or until
     * the next caller sees that the lock of its session is gone */
    if (!conn_script(tgt, "sync",
                     "UPDATE pgrelocate.sync_points s SET state = 'expired' WHERE state IN "
                     "('requested', 'holding', 'advancing', 'reached') "
                     "AND (expires_at < clock_timestamp() OR NOT EXISTS (SELECT FROM "
                     "pg_catalog.pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
                     "AND l.classid = " LOCK_K1 "::oid AND l.objid::bigint = s.id "
                     "AND l.objsubid = 2 AND l.database = (SELECT oid FROM "
                     "pg_catalog.pg_database WHERE datname = pg_catalog.current_database())))"))
        return NULL;
    snprintf(expire, sizeof(expire), "%d", expire_ms);
    /* locked in the statement that inserts: no one sees the row unlocked */
    res =
        conn_exec_params(tgt, "sync point",
                         "WITH r AS (INSERT INTO pgrelocate.sync_points (expires_at) VALUES "
                         "(clock_timestamp() + $1::int * interval '1 ms') RETURNING id) "
                         "SELECT id, pg_catalog.pg_try_advisory_lock(" LOCK_K1 ", id::int) FROM r",
                         1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (strcmp(conn_sqlstate(res), "23505") == 0)
            log_msg(LOG_ERROR, NULL,
                    "Wait for the other verify or cutover to finish, then try again.",
                    "another verify or cutover is holding the follower right now");
        else
            conn_log_result_error(res, tgt, "sync");
        PQclear(res);
        return NULL;
    }
    sp = xcalloc(1, sizeof(*sp));
    sp->tgt = tgt;
    sp->watch = w;
    snprintf(sp->id, sizeof(sp->id), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!notify(tgt) || !wait_for(sp, "holding", wait_ms, "pause at a transaction boundary")) {
        set_state(tgt, sp->id, "released");
        unlock_row(tgt, sp->id);
        free(sp);
        return NULL;
    }
    return sp;
}

bool syncpoint_advance(SyncPoint *sp, PGconn *src, Lsn lsn, int wait_ms)
{
    char text[LSN_TEXT_SIZE];
    const char *p[2] = {sp->id, lsn_format(lsn, text)};
    PGresult *res;

    if (!conn_command(sp->tgt, "sync",
                      "UPDATE pgrelocate.sync_points SET state = 'advancing', target_lsn = $2 "
                      "WHERE id = $1 AND state = 'holding'",
                      2, p) ||
        !notify(sp->tgt))
        return false;
    /* WAL after lsn: the stream passes lsn even if the source is idle.
     * Best effort: without the privilege, keepalives do it more slowly. */
    if (src) {
        res = conn_exec(src, "sync point",
                        "SELECT pg_catalog.pg_logical_emit_message(false, 'pgrelocate', "
                        "'sync point')");
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            log_debug("[sync] could not write a logical message on the source: %s",
                      PQresultErrorMessage(res));
        PQclear(res);
    }
    return wait_for(sp, "reached", wait_ms, "apply up to the sync point");
}

Lsn syncpoint_applied_lsn(const SyncPoint *sp)
{
    return sp->applied_lsn;
}

void syncpoint_release(SyncPoint *sp)
{
    if (!sp)
        return;
    set_state(sp->tgt, sp->id, "released");
    unlock_row(sp->tgt, sp->id);
    free(sp);
}

bool syncpoint_finish(SyncPoint *sp, int wait_ms)
{
    bool ok =
        set_state(sp->tgt, sp->id, "finish") && wait_for(sp, "finished", wait_ms, "stop following");

    free(sp);
    return ok;
}

/* ---- follower side ---- */

void syncpoint_hold_init(SyncHold *h)
{
    pthread_mutex_init(&h->lock, NULL);
    h->gen = 0;
    h->want = SYNC_WANT_NONE;
    h->until_lsn = 0;
    h->status = SYNC_RUNNING;
    h->applied_lsn = 0;
}

SyncWant syncpoint_hold_want(SyncHold *h, Lsn *until_lsn, uint64_t *gen)
{
    SyncWant w;

    pthread_mutex_lock(&h->lock);
    w = h->want;
    *until_lsn = h->until_lsn;
    *gen = h->gen;
    pthread_mutex_unlock(&h->lock);
    return w;
}

void syncpoint_hold_report(SyncHold *h, uint64_t gen, SyncStatus status, Lsn applied_lsn)
{
    pthread_mutex_lock(&h->lock);
    if (gen != h->gen) {
        pthread_mutex_unlock(&h->lock);
        return;
    }
    h->status = status;
    h->applied_lsn = applied_lsn;
    pthread_mutex_unlock(&h->lock);
}

static void set_want(SyncHold *h, SyncWant w, Lsn until)
{
    pthread_mutex_lock(&h->lock);
    h->gen++;
    h->want = w;
    h->until_lsn = until;
    /* what the apply thread said answered the previous want */
    if (h->status != SYNC_FINISHED)
        h->status = w == SYNC_WANT_ADVANCE ? SYNC_HOLDING : SYNC_RUNNING;
    pthread_mutex_unlock(&h->lock);
}

SyncFollower *syncpoint_follower_open(const ConnInfo *control)
{
    ConnOpts co = {.side = CONN_TARGET, .app_name = "pgrelocate sync"};
    PGconn *conn = conn_open(control, &co);
    SyncFollower *f;
    PGresult *res;

    if (!conn)
        return NULL;
    if (!conn_script(conn, "sync", "LISTEN pgrelocate_sync")) {
        conn_close(conn);
        return NULL;
    }
    /* a follower that just let go (a killed run's sessions, verify's own
     * follower ending, start moving to its follow phase) frees the lock a
     * moment later: wait a little before calling it another follower */
    for (int64_t until = clock_now_ms() + FOLLOWER_LOCK_WAIT_MS;;) {
        res = conn_exec(conn, "sync point",
                        "SELECT pg_catalog.pg_try_advisory_lock(" LOCK_K1 ", " LOCK_K2 ")");
        if (PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "t") == 0 ||
            clock_now_ms() >= until || interrupt_requested)
            break;
        PQclear(res);
        usleep(200 * 1000);
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        log_msg(LOG_ERROR, NULL,
                "Stop the other pgrelocate start first: two followers would apply the same "
                "changes.",
                "another pgrelocate process is already following changes into this target");
        PQclear(res);
        conn_close(conn);
        return NULL;
    }
    PQclear(res);
    f = xcalloc(1, sizeof(*f));
    f->conn = conn;
    return f;
}

void syncpoint_follower_close(SyncFollower *f)
{
    if (!f)
        return;
    /* let go of the follower's lock before returning: closing the session
     * alone frees it only when its backend has exited, after a moment, and
     * start opens the next follower at once (per-table copy, then follow) */
    PQclear(conn_exec(f->conn, "sync point",
                      "SELECT pg_catalog.pg_advisory_unlock(" LOCK_K1 ", " LOCK_K2 ")"));
    conn_close(f->conn);
    free(f);
}

bool syncpoint_follower_busy(const SyncFollower *f)
{
    return f && f->id != 0;
}

static bool write_back(SyncFollower *f, const char *state, Lsn applied, const char *detail)
{
    char id[24], lsn[LSN_TEXT_SIZE];
    const char *p[4] = {id, state, applied ? lsn_format(applied, lsn) : NULL, detail};

    snprintf(id, sizeof(id), "%lld", (long long)f->id);
    if (!conn_command(f->conn, "sync",
                      "UPDATE pgrelocate.sync_points SET state = $2, "
                      "applied_lsn = coalesce($3::pg_lsn, applied_lsn), detail = $4, "
                      "reached_at = CASE WHEN $2 IN ('holding', 'reached') "
                      "THEN clock_timestamp() ELSE reached_at END WHERE id = $1",
                      4, p))
        return false;
    snprintf(f->state, sizeof(f->state), "%s", state);
    return true;
}

void syncpoint_follower_finished(SyncFollower *f)
{
    if (f && f->id && strcmp(f->state, "finish") == 0) {
        write_back(f, "finished", 0, NULL);
        f->id = 0;
    }
}

/* The live row, if any: its id, state, target and whether it expired. */
static bool read_request(SyncFollower *f, int64_t *id, char *state, size_t len, Lsn *target,
                         bool *expired)
{
    char sql[256];
    PGresult *res;

    snprintf(sql, sizeof(sql),
             "SELECT id, state, target_lsn, expires_at < clock_timestamp() FROM "
             "pgrelocate.sync_points WHERE state IN %s ORDER BY id DESC LIMIT 1",
             live_states);
    res = conn_query(f->conn, "sync", sql, 0, NULL, 4);
    if (!res)
        return false;
    *id = 0;
    if (PQntuples(res) == 1) {
        *id = atoll(PQgetvalue(res, 0, 0));
        snprintf(state, len, "%s", PQgetvalue(res, 0, 1));
        *target = 0;
        if (!PQgetisnull(res, 0, 2))
            lsn_parse(PQgetvalue(res, 0, 2), target);
        *expired = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
    }
    PQclear(res);
    return true;
}

bool syncpoint_follower_poll(SyncFollower *f, SyncHold *h)
{
    bool notified = false;
    PGnotify *n;
    int64_t id;
    char state[16] = "";
    Lsn target = 0, applied;
    bool expired = false;
    SyncStatus status;

    if (PQstatus(f->conn) != CONNECTION_OK || !PQconsumeInput(f->conn))
        return false;
    while ((n = PQnotifies(f->conn))) {
        notified = true;
        PQfreemem(n);
    }
    /* while serving a request, report the apply thread's progress */
    pthread_mutex_lock(&h->lock);
    status = h->status;
    applied = h->applied_lsn;
    pthread_mutex_unlock(&h->lock);
    if (f->id && status != f->reported) {
        f->reported = status;
        if (status == SYNC_HOLDING && strcmp(f->state, "requested") == 0 &&
            !write_back(f, "holding", applied, NULL))
            return false;
        if (status == SYNC_REACHED && strcmp(f->state, "advancing") == 0 &&
            !write_back(f, "reached", applied, NULL))
            return false;
    }
    if (!notified && !f->id && clock_now_ms() < f->next_check)
        return true;
    f->next_check = clock_now_ms() + 1000;
    if (!read_request(f, &id, state, sizeof(state), &target, &expired))
        return false;
    if (f->id && id != f->id) {
        /* our request is no longer live: the caller released it */
        set_want(h, SYNC_WANT_NONE, 0);
        f->id = 0;
        f->state[0] = '\0';
        f->reported = SYNC_RUNNING;
    }
    if (!id)
        return true;
    if (expired && strcmp(state, "finish") != 0) {
        log_notice("[sync] sync point %lld expired: its caller went away; applying again",
                   (long long)id);
        f->id = id;
        set_want(h, SYNC_WANT_NONE, 0);
        write_back(f, "expired", 0, NULL);
        f->id = 0;
        f->state[0] = '\0';
        return true;
    }
    f->id = id;
    if (strcmp(state, "requested") == 0 && strcmp(f->state, "requested") != 0) {
        snprintf(f->state, sizeof(f->state), "requested");
        f->reported = SYNC_RUNNING;
        set_want(h, SYNC_WANT_HOLD, 0);
    } else if (strcmp(state, "advancing") == 0 && strcmp(f->state, "advancing") != 0) {
        char text[LSN_TEXT_SIZE];

        if (target < applied) {
            log_debug("[sync] asked to stop at %s, already past it", lsn_format(target, text));
            return write_back(f, "failed", applied, "the follower had already applied past it");
        }
        snprintf(f->state, sizeof(f->state), "advancing");
        f->reported = SYNC_HOLDING;
        set_want(h, SYNC_WANT_ADVANCE, target);
    } else if (strcmp(state, "finish") == 0 && strcmp(f->state, "finish") != 0) {
        snprintf(f->state, sizeof(f->state), "finish");
        set_want(h, SYNC_WANT_FINISH, 0);
    }
    return true;
}
