/*
 * verifypoint.c: snapshots for verify, at one replication position when a
 * migration follows the source.
 */
#include "verifypoint.h"

#include "catalog.h"
#include "clock.h"
#include "conn.h"
#include "log.h"
#include "lsn.h"
#include "slot.h"
#include "stall.h"
#include "state.h"
#include "stateschema.h"
#include "strbuf.h"
#include "stream.h"
#include "syncpoint.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A `pgrelocate start` held by us goes on by itself HOLD_EXPIRE_MS after
 * the hold if we die in between: short, since its apply stalls meanwhile;
 * it must have caught up to within ADVANCE_WAIT_MS of the source.  A
 * follower of our own dies with us and may take long to catch up. */
#define HOLD_WAIT_MS        30000
#define HOLD_EXPIRE_MS      120000
#define ADVANCE_WAIT_MS     100000
#define OWN_HOLD_EXPIRE_MS  3600000
#define OWN_ADVANCE_WAIT_MS 3500000
#define SPAWN_WAIT_MS       60000 /* for a follower we start to be ready */

static const char *side_ctx(int side)
{
    return side ? "verify target" : "verify source";
}

/* BEGIN a read-only REPEATABLE READ transaction (importing import, if
 * given), export its snapshot into *name; when: its time, for people. */
static bool begin_export(PGconn *conn, int side, const char *import, char **name, char *when,
                         size_t whenlen)
{
    PGresult *res;

    if (!conn_script(conn, side_ctx(side), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        return false;
    if (import) {
        char *lit = conn_quote_literal(conn, import), *sql;
        bool ok;

        sql = xasprintf("SET TRANSACTION SNAPSHOT %s", lit);
        ok = conn_script(conn, side_ctx(side), sql);
        free(lit);
        free(sql);
        if (!ok)
            return false;
    }
    res = conn_query(conn, side_ctx(side),
                     "SELECT pg_export_snapshot(), to_char(now(), 'YYYY-MM-DD HH24:MI:SS.MS TZ')",
                     0, NULL, 2);
    if (!res)
        return false;
    *name = xstrdup(PQgetvalue(res, 0, 0));
    snprintf(when, whenlen, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return true;
}

static bool take_separately(VerifyPoint *vp, PGconn *conn[2], const char *why)
{
    char when[2][64];

    for (int side = 0; side < 2; side++)
        if (!begin_export(conn[side], side, NULL, &vp->snapshot[side], when[side], sizeof(when[0])))
            return false;
    snprintf(vp->description, sizeof(vp->description),
             "%s: each side compared as of its own snapshot (source %s, target %s); changes "
             "written in between would show as differences",
             why, when[0], when[1]);
    return true;
}

/* Is the target's migration following (its follow phase, or reverse after
 * a cutover)?  Notes the direction and its replication name.  false after
 * logging. */
static bool following_migration(PGconn *tgt, VerifyPoint *vp, bool *follows)
{
    MigrationState st;
    bool exists = false;

    *follows = false;
    if (!state_open(tgt, STATE_WRITE, &exists))
        return false;
    if (!exists)
        return true;
    memset(&st, 0, sizeof(st));
    if (!state_load(tgt, &st))
        return false;
    *follows = (st.phase == PHASE_FOLLOW || st.phase == PHASE_REVERSE) && st.replication_name;
    if (*follows && st.phase == PHASE_REVERSE) {
        vp->up = 1;
        vp->replication_name = state_reverse_name(st.replication_name);
        vp->skip_origin = xstrdup(st.replication_name);
    } else if (*follows)
        vp->replication_name = xstrdup(st.replication_name);
    state_free(&st);
    return true;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static bool stopped(const VerifyPoint *vp)
{
    if (vp->stop && *vp->stop) {
        log_msg(LOG_ERROR, NULL, NULL, "[verify] interrupted");
        return true;
    }
    return false;
}

static bool own_follower_alive(void *arg)
{
    return follow_thread_alive(arg);
}

/* No `pgrelocate start` runs: follow in a thread of ours for the while. */
static bool spawn_follower(VerifyPoint *vp, const ConnInfo *const ci[2], PGconn *conn[2])
{
    int up = vp->up, down = 1 - vp->up;
    ServerInfo u, d;
    SlotInfo si;
    bool running = false;

    if (!slot_info(conn[up], vp->replication_name, &si))
        return false;
    if (!si.exists) {
        log_msg(LOG_ERROR, "The migration follows changes but its slot is gone.",
                "Run pgrelocate start to see why, or verify after pgrelocate cleanup.",
                "replication slot %s does not exist on the %s", vp->replication_name,
                up ? "target" : "source");
        return false;
    }
    if (!catalog_server_info(conn[up], &u))
        return false;
    if (!catalog_server_info(conn[down], &d)) {
        catalog_free_server_info(&u);
        return false;
    }
    vp->encoding = xstrdup(d.encoding);
    vp->fo = (FollowOpts){.source = ci[up],
                          .target = ci[down],
                          .slot = vp->replication_name,
                          .publication = vp->replication_name,
                          .origin = vp->replication_name,
                          .proto_version = stream_proto_for_server(u.version_num),
                          .client_encoding = vp->encoding,
                          .control = ci[1], /* sync points live on the target */
                          .skip_origin = vp->skip_origin,
                          .label = up ? "verify reverse" : "verify follow",
                          .protocol = follow_recorded_protocol(conn[1])};
    catalog_free_server_info(&u);
    catalog_free_server_info(&d);
    log_info("[verify] no pgrelocate start runs: following changes in this process meanwhile");
    if (!(vp->follower = follow_spawn(&vp->fo)))
        return false;
    vp->watch.alive = own_follower_alive;
    vp->watch.arg = vp->follower;
    for (int waited = 0; waited < SPAWN_WAIT_MS; waited += 100) {
        if (stopped(vp) || !syncpoint_follower_running(conn[1], &running))
            return false;
        if (running)
            return true;
        if (!follow_thread_alive(vp->follower)) {
            log_msg(LOG_ERROR, NULL,
                    "Fix the cause the error above names, then run pgrelocate start or verify "
                    "again.",
                    "the follower started for verify stopped before it came up");
            return false;
        }
        sleep_ms(100);
    }
    log_msg(LOG_ERROR, NULL, "Run pgrelocate start and verify again.",
            "the follower started for verify did not come up within %d s", SPAWN_WAIT_MS / 1000);
    return false;
}

/* Whether the caller's interrupt or the end of our follower ends a wait
 * (the interrupt logged; the follower logged its own error). */
static bool wait_ends(const VerifyPoint *vp)
{
    return stopped(vp) || (vp->watch.alive && !vp->watch.alive(vp->watch.arg));
}

/* A temporary slot on a replication connection: its consistent point and
 * the snapshot of exactly that point (valid while rep stays idle).  The
 * command waits for every source transaction running when it started to
 * end, with the follower held: the interrupt or our follower's end cancels
 * it (the caller then closes rep, which drops the slot). */
static bool create_temp_slot(const VerifyPoint *vp, PGconn *rep, Lsn *lsn, char **snapshot)
{
    char name[64], *sql;
    PGresult *res = NULL, *r;
    StallWatch *watch;
    bool ok, sent;

    snprintf(name, sizeof(name), "pgrelocate_verify_%d", (int)getpid());
    sql = PQserverVersion(rep) >= 150000
              ? xasprintf("CREATE_REPLICATION_SLOT %s TEMPORARY LOGICAL pgoutput (SNAPSHOT "
                          "'export')",
                          name)
              : xasprintf("CREATE_REPLICATION_SLOT %s TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT",
                          name);
    sent = PQsendQuery(rep, sql) == 1;
    free(sql);
    /* legitimately long (it waits for running transactions): a stopped
     * source is reported (stall.h); our end or Ctrl-C cancels it */
    watch = sent ? stall_watch(rep, CONN_SOURCE, "verify source") : NULL;
    while (sent && PQisBusy(rep)) {
        if (wait_ends(vp)) {
            stall_unwatch(watch);
            conn_cancel(rep); /* bounded: a stopped postmaster never answers a cancel */
            return false;
        }
        if (conn_wait_socket(rep, false, clock_now_ms() + 100) && !PQconsumeInput(rep))
            break;
    }
    stall_unwatch(watch);
    while ((r = PQgetResult(rep)) != NULL) {
        PQclear(res);
        res = r;
    }
    ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) >= 3 &&
         lsn_parse(PQgetvalue(res, 0, 1), lsn);
    if (ok)
        *snapshot = xstrdup(PQgetvalue(res, 0, 2));
    else
        conn_log_result_error(res, rep, "verify source");
    PQclear(res);
    return ok;
}

/* Creating a slot waits for every source transaction running at that
 * moment to end, and the follower is held meanwhile.  So first wait,
 * without holding anything, for the transactions running now (a long
 * report, say) to end; the slot then waits only for younger ones.  A
 * transaction with an xid (a prepared one too) holds an exclusive lock on
 * it until it ends: wait for those locks.  (Not for the xmax of
 * txid_current_snapshot(): it is the latest completed xid + 1, so the
 * newest running transaction is at or above it and was not waited for.) */
static bool wait_older_transactions(const VerifyPoint *vp, PGconn *up, int side)
{
    static const char locks[] = "FROM pg_catalog.pg_locks WHERE locktype = 'transactionid' AND "
                                "mode = 'ExclusiveLock' AND granted";
    char *sql = xasprintf("SELECT pg_catalog.array_agg(transactionid)::text %s", locks);
    PGresult *res = conn_query(up, side_ctx(side), sql, 0, NULL, 1);
    char *xids;
    const char *p[1];
    time_t t0 = time(NULL), logged = t0;
    bool ok = false;

    free(sql);
    if (!res)
        return false;
    if (PQgetisnull(res, 0, 0)) {
        PQclear(res);
        return true; /* none running */
    }
    xids = xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    p[0] = xids;
    sql = xasprintf("SELECT count(*) = 0 %s AND transactionid OPERATOR(pg_catalog.=) ANY "
                    "($1::pg_catalog.xid[])",
                    locks);
    for (;;) {
        if (!(res = conn_query(up, side_ctx(side), sql, 1, p, 1)))
            break;
        ok = PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        if (ok || wait_ends(vp))
            break;
        if (time(NULL) - logged >= 10) {
            logged = time(NULL);
            log_info("[verify] waiting %.0f s so far for %s transactions older than verify to "
                     "end",
                     difftime(logged, t0), side ? "target" : "source");
        }
        sleep_ms(100);
    }
    free(sql);
    free(xids);
    return ok;
}

/* Hold, create the slot upstream, advance, downstream snapshot, release,
 * upstream snapshot: see the header.  (Upstream is the source, or the
 * target after a cutover; sync points always live on the target.) */
static bool take_at_lsn(VerifyPoint *vp, const ConnInfo *const ci[2], PGconn *conn[2])
{
    int up = vp->up, down = 1 - vp->up;
    ConnOpts ro = {.side = up ? CONN_TARGET : CONN_SOURCE,
                   .replication = true,
                   .app_name = "pgrelocate verify"};
    ConnOpts co = {.side = CONN_TARGET, .app_name = "pgrelocate verify"};
    PGconn *ctl = conn_open(ci[1], &co), *rep = NULL;
    SyncPoint *sp = NULL;
    char *slot_snapshot = NULL, when[2][64], lsn_text[LSN_TEXT_SIZE];
    Lsn lsn = 0;
    bool own = vp->follower != NULL;
    bool ok = ctl && wait_older_transactions(vp, conn[up], up) && (rep = conn_open(ci[up], &ro));
    double held_at = (double)clock_now_ms(),
           held_ms = 0; /* from the request: an upper bound of the pause */

    ok = ok && (sp = syncpoint_hold_watched(ctl, HOLD_WAIT_MS,
                                            own ? OWN_HOLD_EXPIRE_MS : HOLD_EXPIRE_MS, &vp->watch));
    log_debug("[verify] follower held after %.0f ms", (double)clock_now_ms() - held_at);
    ok = ok && create_temp_slot(vp, rep, &lsn, &slot_snapshot);
    log_debug("[verify] temporary slot at %.0f ms", (double)clock_now_ms() - held_at);
    ok = ok && syncpoint_advance(sp, conn[up], lsn, own ? OWN_ADVANCE_WAIT_MS : ADVANCE_WAIT_MS) &&
         begin_export(conn[down], down, NULL, &vp->snapshot[down], when[down], sizeof(when[0]));
    log_debug("[verify] follower at the slot's position at %.0f ms",
              (double)clock_now_ms() - held_at);
    if (sp) {
        syncpoint_release(sp); /* at once: apply goes on while we compare */
        held_ms = (double)clock_now_ms() - held_at;
    }
    ok = ok &&
         begin_export(conn[up], up, slot_snapshot, &vp->snapshot[up], when[up], sizeof(when[0]));
    conn_close(rep); /* drops the temporary slot; the upstream snapshot lives in conn[up] */
    conn_close(ctl);
    free(slot_snapshot);
    if (ok)
        snprintf(vp->description, sizeof(vp->description),
                 "%s LSN %s (%s snapshot of that position; %s held by the %sfollower with every "
                 "transaction committed before it applied, at %s; apply paused %.0f ms)",
                 up ? "target" : "source", lsn_format(lsn, lsn_text), up ? "target" : "source",
                 up ? "source" : "target", up ? "reverse " : "", when[down], held_ms);
    return ok;
}

bool verifypoint_open(VerifyPoint *vp, const ConnInfo *const ci[2], PGconn *conn[2])
{
    bool running = false, follows;
    volatile sig_atomic_t *stop = vp->stop;

    memset(vp, 0, sizeof(*vp));
    vp->stop = stop;
    vp->watch.stop = stop;
    if (!following_migration(conn[1], vp, &follows))
        return false;
    if (!follows)
        return true;
    if (!syncpoint_follower_running(conn[1], &running))
        return false;
    if (!running && !spawn_follower(vp, ci, conn))
        return false;
    vp->live = true;
    return true;
}

bool verifypoint_take(VerifyPoint *vp, const ConnInfo *const ci[2], PGconn *conn[2])
{
    return vp->live ? take_at_lsn(vp, ci, conn)
                    : take_separately(vp, conn, "no replication to follow");
}

bool verifypoint_release(VerifyPoint *vp, PGconn *conn[2])
{
    bool ok =
        conn_script(conn[0], side_ctx(0), "COMMIT") && conn_script(conn[1], side_ctx(1), "COMMIT");

    for (int side = 0; side < 2; side++) {
        free(vp->snapshot[side]);
        vp->snapshot[side] = NULL;
    }
    return ok;
}

void verifypoint_end(VerifyPoint *vp)
{
    if (vp->follower && follow_join(vp->follower) == FOLLOW_FAILED)
        log_warning("[verify] the follower run for verify stopped on an error (see above); "
                    "pgrelocate start will go on from its saved position");
    free(vp->snapshot[0]);
    free(vp->snapshot[1]);
    free(vp->replication_name);
    free(vp->skip_origin);
    free(vp->encoding);
    memset(vp, 0, sizeof(*vp));
}
