/*
 * cutover.c: `pgrelocate cutover` (source -> target) and `rollback`
 * (target -> source), one code path with the two sides swapped:
 *
 *   prepare    connections, state, the watchdog, pgbouncer's entry and the
 *              rewritten config computed, lag below --max-lag
 *   pause      PAUSE (waits for in-flight transactions), watchdog armed
 *   fence      a logical message on the old side, flushed: its LSN
 *   drain      the follower (a running `pgrelocate start`) held, then moved
 *              to exactly the fence (syncpoint.h)
 *   sequences  every sequence set on the new side
 *   switch     migration phase set (reverse, done, rolled-back), config
 *              entry rewritten, RELOAD (not in --dry-run)
 *   resume     RESUME: clients go on, on the new side; the follower is
 *              told to finish, and `start` goes on in the reverse direction
 *
 * The reverse direction's slot and publication on the target are created
 * before the pause (the slot's start precedes every client write there).
 * Anything failing before the switch, or the pause reaching --max-pause,
 * resumes on the old side unchanged and lets the follower go on.  Each run is a row of
 * pgrelocate.cutovers on the target; its step tells a later run what an
 * interrupted one left (see recover()).
 */
#include "cutover.h"

#include "bouncerconf.h"
#include "commands.h"
#include "conn.h"
#include "catalog.h"
#include "clock.h"
#include "conninfo.h"
#include "follow.h"
#include "log.h"
#include "largeobject.h"
#include "lsn.h"
#include "pauseguard.h"
#include "pgbouncer.h"
#include "proc.h"
#include "sequences.h"
#include "size.h"
#include "slot.h"
#include "stream.h"
#include "state.h"
#include "stateschema.h"
#include "strbuf.h"
#include "syncpoint.h"
#include "watchdog.h"

#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The watchdog resumes this long after --max-pause: pgrelocate's own
 * deadline comes first, the watchdog only when pgrelocate is stuck or gone. */
#define WATCHDOG_MARGIN_MS 500
#define ADMIN_TIMEOUT_MS   5000
#define MAX_STEPS          12
#define HOLD_WAIT_MS       10000
#define SWITCH_BUDGET_MS   5000  /* the switch itself (rewrite, RELOAD), once begun */
#define SPAWN_WAIT_MS      30000 /* our own follower: up, and below --max-lag */
#define RUNNING_WAIT_MS    10000 /* a running start's stream: active, and below --max-lag */
/* pg_try_advisory_lock keys of a running cutover or rollback ("pgrc", 2) */
#define CUTOVER_LOCK_KEYS "1885827683, 2"

typedef struct Step {
    const char *name;
    int64_t ms;
} Step;

typedef StateEndpoint Endpoint;

typedef struct Cutover {
    const Options *o;
    bool rollback;
    const char *ctx; /* "[cutover]" or "[rollback]" */
    int64_t headroom;
    ConnInfo *src_ci, *tgt_ci;
    PGconn *src, *tgt;
    PGconn *from, *to;               /* clients are on from and go to to */
    const char *from_side, *to_side; /* "source" / "target" */
    Endpoint old_ep, new_ep;         /* the pgbouncer entry before and after */
    MigrationState st;
    char *slot;                /* on from: carries its changes to `to` */
    SyncPoint *sp;             /* the follower held during the pause */
    FollowThread *follower;    /* ours, when no pgrelocate start runs */
    PGconn *seq_from, *seq_to; /* sequences only (sequences_main's) */
    pthread_t seq_thread;
    bool seq_running, seq_ok;
    SeqSyncResult seq; /* the last pass's */
    FollowOpts fo;     /* its options (outlive the thread) */
    char *encoding;    /* the new side's encoding, for fo */
    char *skip_origin; /* for fo */
    Phase phase_was;   /* the migration's phase before the switch */
    bool phase_set;    /* this run changed it */
    Bouncer *admin, *spare;
    Watchdog *wd;
    PauseGuard *guard; /* during the pause: ends a call a stalled server holds */
    StrBuf conf, new_conf;
    int id; /* row in pgrelocate.cutovers; 0 before it exists */
    Lsn fence;
    int64_t mark_ms, pause_start_ms, pause_ms;
    bool paused;
    Step steps[MAX_STEPS];
    int nsteps;
    char reason[512];
} Cutover;

/* Tests kill pgrelocate at each point of the run (kill -9 of the whole
 * process, as a crash would): PGRELOCATE_TEST_KILL_AT names the point. */
static void kill_point(const char *name)
{
    const char *at = getenv("PGRELOCATE_TEST_KILL_AT");
    const char *stall = getenv("PGRELOCATE_TEST_STALL_AT"); /* "point:ms": hang there */

    if (at && strcmp(at, name) == 0)
        raise(SIGKILL);
    if (stall && strncmp(stall, name, strlen(name)) == 0 && stall[strlen(name)] == ':')
        usleep((useconds_t)atoi(stall + strlen(name) + 1) * 1000);
}

static void step_done(Cutover *c, const char *name)
{
    int64_t now = clock_now_ms();

    kill_point(name);

    if (c->nsteps < MAX_STEPS)
        c->steps[c->nsteps++] = (Step){name, now - c->mark_ms};
    log_info("%s %s done (%lld ms)", c->ctx, name, (long long)(now - c->mark_ms));
    c->mark_ms = now;
}

/* Remember why the run gives up (for the record and the final message). */
static void set_reason(Cutover *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_reason(Cutover *c, const char *fmt, ...)
{
    va_list ap;

    if (c->reason[0])
        return;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
    va_end(ap);
}

/* ---- options ---------------------------------------------------------- */

static bool check_options(Cutover *c)
{
    const Options *o = c->o;
    bool hooks = o->pause_command || o->resume_command || o->switch_command;
    char *end;

    if (o->sequence_headroom) {
        errno = 0;
        c->headroom = strtoll(o->sequence_headroom, &end, 10);
        if (errno || end == o->sequence_headroom || *end || c->headroom < 0) {
            log_error("--sequence-headroom expects a whole number of 0 or more, not \"%s\"",
                      o->sequence_headroom);
            return false;
        }
    }
    if (o->pgbouncer && hooks) {
        log_msg(LOG_ERROR, NULL, "Use either pgbouncer or the hook commands.",
                "--pgbouncer cannot be combined with --pause-command, --resume-command or "
                "--switch-command");
        return false;
    }
    if (o->pgbouncer && (!o->pgbouncer_config || !o->database)) {
        log_msg(LOG_ERROR, NULL,
                "Give the pgbouncer.ini pgbouncer runs with and the database's name in it.",
                "--pgbouncer needs --pgbouncer-config and --database");
        return false;
    }
    if (!o->pgbouncer &&
        (!o->pause_command || !o->resume_command || (!o->switch_command && !o->dry_run))) {
        log_msg(LOG_ERROR, NULL,
                "Give --pgbouncer, --pgbouncer-config and --database, or --pause-command, "
                "--resume-command and --switch-command.",
                "nothing to pause and switch clients with");
        return false;
    }
    if (o->max_pause_ms < 1) {
        log_error("--max-pause must be above 0");
        return false;
    }
    return true;
}

/* ---- hooks ------------------------------------------------------------ */

/* What the hooks find in their environment, set in this process while it
 * has one thread (a child forked later by a threaded process must not call
 * setenv); the watchdog inherits it for its --resume-command too. */
static void hook_environment(const Cutover *c)
{
    setenv("PGRELOCATE_NEW_HOST", c->new_ep.host, 1);
    setenv("PGRELOCATE_NEW_PORT", c->new_ep.port, 1);
    setenv("PGRELOCATE_NEW_DBNAME", c->new_ep.dbname, 1);
    setenv("PGRELOCATE_DIRECTION", c->rollback ? "rollback" : "cutover", 1);
    if (c->o->database)
        setenv("PGRELOCATE_DATABASE", c->o->database, 1);
}

/* Run a hook through /bin/sh with the new side in its environment; kill it
 * at the deadline.  true when it exited 0 in time. */
static bool run_hook(Cutover *c, const char *what, const char *cmd, int timeout_ms)
{
    bool killed;
    /* the environment was set up by hook_environment() */
    int rc = proc_run_shell(cmd, timeout_ms, &killed);

    if (rc < 0) {
        log_error("%s could not start the %s command: %s", c->ctx, what, strerror(errno));
        return false;
    }
    if (killed) {
        log_error("%s the %s command did not finish within %d ms", c->ctx, what, timeout_ms);
        return false;
    }
    if (rc == 0)
        return true;
    log_msg(LOG_ERROR, cmd, NULL, "%s the %s command failed (exit status %d)", c->ctx, what, rc);
    return false;
}

/* ---- the record in pgrelocate.cutovers -------------------------------- */

static bool record_begin(Cutover *c)
{
    return state_cutover_begin(c->tgt, c->rollback, c->o->dry_run, c->o->database, &c->old_ep,
                               &c->new_ep, &c->id);
}

static bool record_step(Cutover *c, const char *step)
{
    return state_cutover_step(c->tgt, c->id, step);
}

static void record_end(Cutover *c, const char *outcome)
{
    if (!c->id)
        return;
    state_cutover_end(c->tgt, c->id, outcome, c->reason[0] ? c->reason : NULL, c->pause_ms,
                      c->fence);
    state_event(c->tgt, strcmp(outcome, "done") == 0 ? "info" : "warning", c->ctx + 1,
                c->reason[0] ? c->reason : outcome);
}

/* ---- pgbouncer's entry ------------------------------------------------ */

static void endpoint_of(const ConnInfo *ci, Endpoint *ep)
{
    const char *host = conninfo_get(ci, "host");
    const char *port = conninfo_get(ci, "port");
    const char *db = conninfo_get(ci, "dbname");

    snprintf(ep->host, sizeof(ep->host), "%s", host ? host : "");
    snprintf(ep->port, sizeof(ep->port), "%s", port ? port : "5432");
    snprintf(ep->dbname, sizeof(ep->dbname), "%s", db ? db : "");
}

static bool same_endpoint(const BouncerDatabase *d, const Endpoint *ep)
{
    return strcmp(d->host, ep->host) == 0 && d->port == atoi(ep->port);
}

/* The switch writes a temporary file beside the config and renames it
 * over: find out now, not in the middle of the pause, if it cannot. */
static bool config_writable(const Cutover *c)
{
    char *copy = xstrdup(c->o->pgbouncer_config);
    const char *dir = dirname(copy);
    bool ok = access(c->o->pgbouncer_config, W_OK) == 0 && access(dir, W_OK) == 0;

    if (!ok)
        log_msg(LOG_ERROR, strerror(errno),
                "pgrelocate writes a new file in that directory and renames it over the old one: "
                "run it as a user who may, or use --switch-command.",
                "%s cannot write %s or its directory %s", c->ctx, c->o->pgbouncer_config, dir);
    free(copy);
    return ok;
}

/* Read the config, compute the switched one, and see where pgbouncer
 * points now.  *already: it points at the new side. */
static bool prepare_bouncer(Cutover *c, bool *already)
{
    const char *const set[] = {"host",   c->new_ep.host,   "port", c->new_ep.port,
                               "dbname", c->new_ep.dbname, NULL};
    char err[512];
    BouncerDatabase d;
    bool found;

    *already = false;
    if (!(c->admin = bouncer_connect(c->o->pgbouncer, ADMIN_TIMEOUT_MS)) ||
        !(c->spare = bouncer_connect(c->o->pgbouncer, ADMIN_TIMEOUT_MS)))
        return false;
    if (!bouncer_show_database(c->admin, c->o->database, &d, &found))
        return false;
    if (!found) {
        log_msg(LOG_ERROR, NULL, "Give --database as named in pgbouncer's [databases] section.",
                "pgbouncer has no database \"%s\"", c->o->database);
        return false;
    }
    if (same_endpoint(&d, &c->new_ep)) {
        *already = true;
        return true;
    }
    if (!same_endpoint(&d, &c->old_ep))
        log_warning("%s pgbouncer's database %s points at host=%s port=%d, not at the %s "
                    "(host=%s port=%s)",
                    c->ctx, c->o->database, d.host, d.port, c->from_side, c->old_ep.host,
                    c->old_ep.port);
    if (d.paused) {
        log_msg(LOG_ERROR, NULL,
                "Resume it (RESUME on the admin console) once whoever paused it is done.",
                "pgbouncer's database %s is paused already", c->o->database);
        return false;
    }
    if (!bouncerconf_read_file(c->o->pgbouncer_config, &c->conf, err, sizeof(err)) ||
        !bouncerconf_rewrite(c->conf.data, c->conf.len, c->o->database, set, &c->new_conf, NULL,
                             err, sizeof(err))) {
        log_msg(LOG_ERROR, err, "Give --pgbouncer-config as the file pgbouncer runs with.",
                "cannot switch pgbouncer's database %s in %s", c->o->database,
                c->o->pgbouncer_config);
        return false;
    }
    return c->o->dry_run || config_writable(c);
}

/* ---- recovery of an interrupted run ----------------------------------- */

/* Put pgbouncer's entry back at the old side of an interrupted run. */
static bool restore_entry(Cutover *c, const Endpoint *old)
{
    const char *const set[] = {"host", old->host, "port", old->port, "dbname", old->dbname, NULL};
    char err[512];
    StrBuf now, fixed;
    bool ok;

    strbuf_init(&now);
    strbuf_init(&fixed);
    ok = bouncerconf_read_file(c->o->pgbouncer_config, &now, err, sizeof(err)) &&
         bouncerconf_rewrite(now.data, now.len, c->o->database, set, &fixed, NULL, err,
                             sizeof(err)) &&
         bouncerconf_write_file(c->o->pgbouncer_config, fixed.data, fixed.len, err, sizeof(err));
    if (!ok)
        log_msg(LOG_ERROR, err, NULL, "%s could not restore pgbouncer's entry", c->ctx);
    strbuf_free(&now);
    strbuf_free(&fixed);
    return ok && bouncer_run(c->admin, "RELOAD", NULL, ADMIN_TIMEOUT_MS) == BOUNCER_OK;
}

static Phase phase_after(bool rollback, bool no_reverse)
{
    return rollback ? PHASE_ROLLED_BACK : no_reverse ? PHASE_DONE : PHASE_REVERSE;
}

/* After an interrupted run: a switch that did not happen leaves the phase
 * as before it; one that did must stop the follower of the old direction
 * (it would otherwise go on after its hold expired). */
static bool settle_phase(Cutover *c, bool rollback, bool switched)
{
    Phase now;
    bool running;

    if (!state_read_phase(c->tgt, &now))
        return false;
    if (!switched) {
        if (now == phase_after(rollback, false) || now == phase_after(rollback, true))
            return state_set_phase(c->tgt, rollback ? PHASE_REVERSE : PHASE_FOLLOW);
        return true;
    }
    if (syncpoint_follower_running(c->tgt, &running) && running) {
        SyncPoint *sp = syncpoint_hold(c->tgt, 10000, 30000);

        if (sp && !syncpoint_finish(sp, 10000))
            log_warning("%s the follower of the old direction did not stop; restart "
                        "pgrelocate start",
                        c->ctx);
    }
    return true;
}

/* Settle one unfinished row: if pgbouncer runs with its new entry the
 * switch happened (recovered, done); otherwise the old side is restored
 * and writes resume there (aborted). */
static bool settle_row(Cutover *c, const StateCutoverRun *run)
{
    BouncerDatabase d;
    bool found, switched = false, ok = true;

    if (c->o->pgbouncer) {
        if (!bouncer_show_database(c->admin, c->o->database, &d, &found))
            return false;
        switched =
            found && strcmp(d.host, run->new_ep.host) == 0 && d.port == atoi(run->new_ep.port);
        if (!switched && strcmp(run->step, "switching") == 0)
            ok = restore_entry(c, &run->old_ep);
        ok = ok && bouncer_run(c->admin, "RESUME", c->o->database, ADMIN_TIMEOUT_MS) == BOUNCER_OK;
    } else {
        ok = run_hook(c, "resume", c->o->resume_command, ADMIN_TIMEOUT_MS);
        switched = strcmp(run->step, "switching") == 0;
    }
    if (!ok || !settle_phase(c, run->rollback, switched))
        return false;
    log_warning("%s an earlier run (cutover %d) was interrupted at step %s: %s", c->ctx, run->id,
                run->step,
                switched ? "its switch had taken effect; writes resumed on the new side"
                         : "writes resumed on the old side, which stays in use");
    return state_cutover_settle(c->tgt, run->id, switched);
}

static bool recover(Cutover *c)
{
    StateCutoverRun *runs;
    int n;
    bool ok;

    if (!state_cutover_unfinished(c->tgt, &runs, &n))
        return false;
    ok = true;
    for (int i = 0; ok && i < n; i++)
        ok = settle_row(c, &runs[i]);
    free(runs);
    return ok;
}

/* ---- preflight -------------------------------------------------------- */

static bool check_lag_once(Cutover *c, bool quiet);

/* Our own follower starts behind: give it a while to catch up.  A running
 * start's stream can be between two connections (a reconnect, or start
 * moving from the copy's follower to the follow phase's): a few seconds. */
static bool check_lag(Cutover *c)
{
    int budget = c->follower ? SPAWN_WAIT_MS : RUNNING_WAIT_MS;

    for (int waited = 0; waited < budget; waited += 500) {
        if (check_lag_once(c, true))
            return true;
        usleep(500 * 1000);
    }
    return check_lag_once(c, false);
}

static bool check_lag_once(Cutover *c, bool quiet)
{
    const char *p[1] = {c->slot};
    PGresult *res = conn_query(
        c->from, "cutover",
        "SELECT active, pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), "
        "confirmed_flush_lsn)::bigint FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
        1, p, 2);
    bool ok = false;
    int64_t lag;

    if (!res)
        return false;
    if (PQntuples(res) != 1) {
        log_msg(LOG_ERROR, NULL, "Run `pgrelocate start` first: it creates the slot.",
                "%s the %s has no replication slot %s", c->ctx, c->from_side, c->slot);
    } else if (PQgetvalue(res, 0, 0)[0] != 't') {
        if (!quiet)
            log_msg(LOG_ERROR, NULL,
                    c->rollback
                        ? "Keep the `pgrelocate start` that follows the reverse stream running."
                        : "Keep `pgrelocate start` running during the cutover.",
                    "%s nothing is replicating from the %s (slot %s is inactive)", c->ctx,
                    c->from_side, c->slot);
    } else if ((lag = atoll(PQgetvalue(res, 0, 1))) > c->o->max_lag) {
        char have[32], limit[32];

        size_format_bytes(lag, have, sizeof(have));
        size_format_bytes(c->o->max_lag, limit, sizeof(limit));
        if (!quiet)
            log_msg(LOG_ERROR, NULL,
                    "Wait until `pgrelocate status` shows the lag near zero, or raise --max-lag.",
                    "%s replication is %s behind the %s, more than --max-lag %s", c->ctx, have,
                    c->from_side, limit);
    } else {
        char have[32];

        size_format_bytes(lag, have, sizeof(have));
        log_info("%s replication is %s behind the %s", c->ctx, have, c->from_side);
        ok = true;
    }
    PQclear(res);
    return ok;
}

/* ---- the pause -------------------------------------------------------- */

static int64_t pause_left_ms(const Cutover *c)
{
    return c->pause_start_ms + c->o->max_pause_ms - clock_now_ms();
}

/* At --max-pause (plus the watchdog's margin: aborts at the deadline come
 * first), the old side's connections are shut down (the fence,
 * the drain and the sequences use them), 2 s later the new side's: a
 * server stopped inside the pause ends the call at hand, not the cutover's
 * chance to resume writes. */
static void start_guard(Cutover *c)
{
    PauseGuardSide from = {c->from_side,
                           conninfo_display(c->rollback ? c->tgt_ci : c->src_ci),
                           {c->from, c->seq_from}};
    PauseGuardSide to = {
        c->to_side, conninfo_display(c->rollback ? c->src_ci : c->tgt_ci), {c->to, c->seq_to}};

    c->guard =
        pauseguard_start(c->ctx, (int)c->o->max_pause_ms + WATCHDOG_MARGIN_MS, 2000, &from, &to);
}

/* Stop the guard; false (with the reason set) when it fired. */
static bool stop_guard(Cutover *c)
{
    bool quiet = pauseguard_stop(c->guard);

    c->guard = NULL;
    if (!quiet)
        set_reason(c,
                   "a server did not answer within --max-pause %lld ms: writes resumed on the %s",
                   (long long)c->o->max_pause_ms, c->from_side);
    return quiet;
}

static bool do_pause(Cutover *c)
{
    BouncerStatus st;

    if (!record_step(c, "pausing") ||
        !watchdog_arm(c->wd, (int)c->o->max_pause_ms + WATCHDOG_MARGIN_MS)) {
        set_reason(c, "could not arm the watchdog or record the step");
        return false;
    }
    c->pause_start_ms = clock_now_ms();
    c->paused = true;
    start_guard(c);
    if (!c->o->pgbouncer) {
        if (run_hook(c, "pause", c->o->pause_command, (int)c->o->max_pause_ms))
            return true;
        set_reason(c, "the pause command failed or took longer than --max-pause");
        return false;
    }
    st = bouncer_pause(c->admin, c->spare, c->o->database, (int)c->o->max_pause_ms);
    if (st == BOUNCER_OK)
        return true;
    if (st == BOUNCER_TIMEOUT) {
        /* bouncer_pause resumed on the spare connection already */
        bouncer_close(c->admin);
        c->admin = c->spare;
        c->spare = NULL;
        c->paused = false;
        set_reason(c,
                   "transactions in flight did not finish within --max-pause %lld ms: writes "
                   "resumed on the %s",
                   (long long)c->o->max_pause_ms, c->from_side);
    } else {
        set_reason(c, "PAUSE failed");
    }
    return false;
}

/* The fence: a logical message on the old side, committed and flushed
 * (synchronous_commit on for this session).  Every transaction that
 * committed before the pause finished ends before it. */
static bool do_fence(Cutover *c)
{
    PGresult *res = conn_query(c->from, "cutover",
                               "SELECT pg_catalog.pg_logical_emit_message(true, 'pgrelocate', "
                               "'cutover fence')::text",
                               0, NULL, 1);
    bool ok = res && lsn_parse(PQgetvalue(res, 0, 0), &c->fence);

    PQclear(res);
    if (!ok)
        set_reason(c, "could not write the fence on the %s", c->from_side);
    return ok;
}

/* Hold the follower at a transaction boundary, before the pause: the
 * follower needs a moment to get there (finish the transaction at hand,
 * commit its batch) that clients should not wait for.  What the source
 * commits meanwhile is applied by do_drain.  The hold expires by itself
 * if this run dies. */
static bool do_hold(Cutover *c)
{
    c->sp = syncpoint_hold(c->tgt, HOLD_WAIT_MS,
                           HOLD_WAIT_MS + (int)c->o->max_pause_ms + WATCHDOG_MARGIN_MS + 1000);
    if (c->sp)
        return true;
    set_reason(c, "the follower did not hold within %d ms", HOLD_WAIT_MS);
    return false;
}

/* Move the held follower to exactly the fence: every transaction that
 * committed before it is applied on the new side, nothing after it (there
 * is nothing after it: writes are paused). */
static bool do_drain(Cutover *c)
{
    int64_t left = pause_left_ms(c);

    if (left > 0 && syncpoint_advance(c->sp, c->from, c->fence, (int)left))
        return true;
    set_reason(c,
               "replication did not reach the fence within --max-pause %lld ms: writes resumed on "
               "the %s",
               (long long)c->o->max_pause_ms, c->from_side);
    return false;
}

/* Sequences on their own pair of connections (seq_from, seq_to), so the
 * pass during the pause runs in a thread beside the fence and the drain:
 * once PAUSE returned, the old side's values are final. */
static void *sequences_main(void *arg)
{
    Cutover *c = arg;

    c->seq_ok = sequences_sync_all(c->seq_from, c->seq_to, c->headroom, &c->seq);
    return NULL;
}

static bool sequences_started(Cutover *c)
{
    if (pthread_create(&c->seq_thread, NULL, sequences_main, c) == 0) {
        c->seq_running = true;
        return true;
    }
    set_reason(c, "could not start a thread");
    return false;
}

/* Wait for the pass started by sequences_started.  The pass before the
 * pause only warms the caches: what it did is logged at debug level, and
 * the final pass's outcome once. */
static bool do_sequences(Cutover *c, bool final)
{
    LogLevel level = final ? LOG_INFO : LOG_DEBUG;

    if (c->seq_running) {
        pthread_join(c->seq_thread, NULL);
        c->seq_running = false;
    } else {
        sequences_main(c);
    }
    if (!c->seq_ok) {
        set_reason(c, "could not set the sequences on the %s", c->to_side);
        return false;
    }
    log_msg(level, NULL, NULL, "%s set %d sequence(s) on the %s%s", c->ctx, c->seq.set, c->to_side,
            final ? "" : " (before the pause; again in it)");
    if (c->seq.kept)
        log_msg(level, NULL, NULL,
                "%s kept %d sequence(s) on the %s further along than on the %s: %s", c->ctx,
                c->seq.kept, c->to_side, c->from_side, c->seq.kept_names);
    return true;
}

/* Logical decoding carries no large object: bring them over, once before
 * the pause (the bulk) and again inside it, when the old side's are final
 * (what changed since).  Inside the pause, it must end within --max-pause. */
static bool do_large_objects(Cutover *c, bool final)
{
    LoSyncResult lo = {0};

    if (!largeobject_sync(c->from, c->to, c->ctx, &lo)) {
        set_reason(c, "could not bring the large objects over to the %s", c->to_side);
        return false;
    }
    if (lo.created || lo.changed || lo.removed || lo.fixed)
        log_info("%s large objects on the %s%s: %d created, %d rewritten (%lld bytes), %d "
                 "removed, %d given their owner or privileges",
                 c->ctx, c->to_side, final ? "" : " (before the pause; again in it)", lo.created,
                 lo.changed, (long long)lo.bytes, lo.removed, lo.fixed);
    if (final && pause_left_ms(c) <= 0) {
        set_reason(c,
                   "bringing the large objects over reached --max-pause %lld ms: writes resumed "
                   "on the %s",
                   (long long)c->o->max_pause_ms, c->from_side);
        return false;
    }
    return true;
}

static bool do_switch(Cutover *c)
{
    char err[512];
    BouncerDatabase d;
    bool found;

    if (pause_left_ms(c) <= 0) {
        set_reason(c,
                   "the pause reached --max-pause %lld ms before the switch: writes resumed "
                   "on the %s",
                   (long long)c->o->max_pause_ms, c->from_side);
        return false;
    }
    if (!state_set_phase(c->tgt, phase_after(c->rollback, c->o->no_reverse))) {
        set_reason(c, "could not record the new phase");
        return false;
    }
    c->phase_set = true;
    if (!record_step(c, "switching")) {
        set_reason(c, "could not record the switch");
        return false;
    }
    /* From here the switch is under way: a watchdog resuming clients in the
     * middle of it would let them write to the old side after the fence
     * (and take sequence values the new side hands out again).  So it
     * waits for the switch, at most SWITCH_BUDGET_MS; if pgrelocate dies,
     * it still resumes at once. */
    if (!watchdog_arm(c->wd, SWITCH_BUDGET_MS)) {
        set_reason(c, "the watchdog is gone");
        return false;
    }
    if (!c->o->pgbouncer) {
        if (run_hook(c, "switch", c->o->switch_command, SWITCH_BUDGET_MS - 500))
            return true;
        set_reason(c, "the switch command failed");
        return false;
    }
    if (!bouncerconf_write_file(c->o->pgbouncer_config, c->new_conf.data, c->new_conf.len, err,
                                sizeof(err))) {
        log_msg(LOG_ERROR, err, NULL, "%s could not write %s", c->ctx, c->o->pgbouncer_config);
        set_reason(c, "could not write the pgbouncer config");
        return false;
    }
    kill_point("config-written");
    if (bouncer_run(c->admin, "RELOAD", NULL, SWITCH_BUDGET_MS - 500) == BOUNCER_OK &&
        bouncer_show_database(c->admin, c->o->database, &d, &found) && found &&
        same_endpoint(&d, &c->new_ep))
        return true;
    set_reason(c, "pgbouncer did not take the new entry on RELOAD");
    return false;
}

/* Resume writes; pause_ms measures PAUSE to RESUME. */
static bool do_resume(Cutover *c)
{
    bool ok = c->o->pgbouncer
                  ? bouncer_run(c->admin, "RESUME", c->o->database, ADMIN_TIMEOUT_MS) == BOUNCER_OK
                  : run_hook(c, "resume", c->o->resume_command, ADMIN_TIMEOUT_MS);

    c->pause_ms = clock_now_ms() - c->pause_start_ms;
    if (ok) {
        c->paused = false;
        watchdog_disarm(c->wd);
    }
    return ok;
}

/* Something failed before the switch: undo it, resume on the old side. */
static void abort_switch(Cutover *c, bool switching)
{
    if (c->seq_running) {
        pthread_join(c->seq_thread, NULL);
        c->seq_running = false;
    }
    /* after the join: the guard may be what ends a blocked sequence pass */
    if (c->guard)
        stop_guard(c);
    if (switching && c->o->pgbouncer) {
        char err[512];

        if (!bouncerconf_write_file(c->o->pgbouncer_config, c->conf.data, c->conf.len, err,
                                    sizeof(err)))
            log_msg(LOG_ERROR, err, NULL, "%s could not put back %s", c->ctx,
                    c->o->pgbouncer_config);
        else
            bouncer_run(c->admin, "RELOAD", NULL, ADMIN_TIMEOUT_MS);
    }
    if (c->phase_set && state_set_phase(c->tgt, c->phase_was))
        c->phase_set = false;
    if (c->paused && !do_resume(c))
        log_error("%s could not resume writes: the watchdog will within %lld ms", c->ctx,
                  (long long)c->o->max_pause_ms + WATCHDOG_MARGIN_MS);
    syncpoint_release(c->sp); /* replication goes on */
    c->sp = NULL;
    record_end(c, "aborted");
}

/* ---- the whole run ---------------------------------------------------- */

static void print_report(const Cutover *c)
{
    printf("%s %s: writes paused for %lld ms (PAUSE to RESUME)\n",
           c->rollback ? "rollback" : "cutover",
           c->o->dry_run ? "dry run done, nothing switched" : "done", (long long)c->pause_ms);
    for (int i = 0; i < c->nsteps; i++)
        printf("  %-10s %6lld ms\n", c->steps[i].name, (long long)c->steps[i].ms);
    printf("sequences: %d set to the %s's value, %d kept ahead on the %s%s%s\n", c->seq.set,
           c->from_side, c->seq.kept, c->to_side, c->seq.kept ? ": " : "", c->seq.kept_names);
    if (!c->o->dry_run)
        printf("clients now use the %s (host=%s port=%s dbname=%s)\n", c->to_side, c->new_ep.host,
               c->new_ep.port, c->new_ep.dbname);
    fflush(stdout);
}

/* Schema changes made on the target after the switch follow back to the
 * source as forward ones do (ddl.h), when the target allows capture. */
static bool setup_reverse_capture(Cutover *c, const char *name)
{
    const char *why = slot_ddl_capture_refusal(c->tgt);

    if (why) {
        log_notice("%s schema changes on the target after the switch are not captured: %s; the "
                   "reverse direction stops at the first one",
                   c->ctx, why);
        return true;
    }
    return slot_install_ddl_capture(c->tgt, name, c->st.tables_filter);
}

/* The reverse direction's publication and slot on the target, before the
 * pause: everything clients write on the target after the switch is in the
 * slot.  The forward follower's own applies in between carry its origin
 * and are skipped by the reverse follower.  Kept when they exist (a run
 * again after an abort). */
static bool setup_reverse(Cutover *c)
{
    char *name = state_reverse_name(c->st.replication_name);
    const char *p[1] = {name};
    PGresult *pub = NULL, *slot = NULL, *made = NULL;
    bool ok = false;

    if (!(pub =
              conn_query(c->tgt, "reverse",
                         "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1", 1, p, 1)) ||
        (PQntuples(pub) == 0 && !slot_create_publication(c->tgt, name, NULL)) ||
        !setup_reverse_capture(c, name))
        goto done;
    if (!(slot = conn_query(c->tgt, "reverse",
                            "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1", 1,
                            p, 1)))
        goto done;
    if (PQntuples(slot) == 0) {
        if (!(made =
                  conn_query(c->tgt, "reverse",
                             "SELECT lsn::text FROM pg_catalog.pg_create_logical_replication_slot("
                             "$1, 'pgoutput')",
                             1, p, 1))) {
            log_msg(LOG_ERROR, NULL,
                    "The target needs wal_level = logical and a free replication slot for the "
                    "reverse direction; or use --no-reverse (no rollback then).",
                    "%s could not create the reverse replication slot %s on the target", c->ctx,
                    name);
            goto done;
        }
        log_info("[reverse] created replication slot %s on the target at %s", name,
                 PQgetvalue(made, 0, 0));
    }
    ok = true;
done:
    PQclear(pub);
    PQclear(slot);
    PQclear(made);
    free(name);
    return ok;
}

/* One cutover or rollback at a time: a session lock on the target, held
 * until this run ends.  It also tells recover() that an unfinished record
 * belongs to a run that is gone. */
static bool lock_run(Cutover *c)
{
    PGresult *res =
        conn_query(c->tgt, "cutover",
                   "SELECT pg_catalog.pg_try_advisory_lock(" CUTOVER_LOCK_KEYS ")", 0, NULL, 1);
    bool got = res && PQgetvalue(res, 0, 0)[0] == 't';

    if (res && !got)
        log_msg(LOG_ERROR, NULL, "Wait for it to finish.",
                "%s another cutover or rollback of this migration is running", c->ctx);
    PQclear(res);
    return got;
}

/* No `pgrelocate start` runs: follow in a thread of ours until the switch
 * (then it is told to finish, like start's would be). */
static bool spawn_follower(Cutover *c)
{
    ServerInfo from, to;
    bool running = false;

    if (!catalog_server_info(c->from, &from))
        return false;
    if (!catalog_server_info(c->to, &to)) {
        catalog_free_server_info(&from);
        return false;
    }
    c->encoding = xstrdup(to.encoding);
    c->skip_origin = c->rollback ? xstrdup(c->st.replication_name) : NULL;
    c->fo = (FollowOpts){.source = c->rollback ? c->tgt_ci : c->src_ci,
                         .target = c->rollback ? c->src_ci : c->tgt_ci,
                         .slot = c->slot,
                         .publication = c->slot,
                         .origin = c->slot,
                         .proto_version = stream_proto_for_server(from.version_num),
                         .client_encoding = c->encoding,
                         .control = c->tgt_ci,
                         .skip_origin = c->skip_origin,
                         .label = c->rollback ? "rollback follow" : "cutover follow",
                         .protocol = follow_recorded_protocol(c->tgt)};
    catalog_free_server_info(&from);
    catalog_free_server_info(&to);
    log_info("%s no pgrelocate start runs: following changes in this process meanwhile", c->ctx);
    if (!(c->follower = follow_spawn(&c->fo)))
        return false;
    for (int waited = 0; waited < SPAWN_WAIT_MS; waited += 100) {
        if (!syncpoint_follower_running(c->tgt, &running))
            return false;
        if (running)
            return true;
        usleep(100 * 1000);
    }
    log_msg(LOG_ERROR, NULL, "Run pgrelocate start and try again.",
            "%s the follower started for the switch did not come up within %d s", c->ctx,
            SPAWN_WAIT_MS / 1000);
    return false;
}

/* The migration must be where this direction starts from. */
static bool check_phase(Cutover *c)
{
    Phase want = c->rollback ? PHASE_REVERSE : PHASE_FOLLOW;
    bool running;

    if (!state_read_phase(c->tgt, &c->phase_was))
        return false;
    if (c->phase_was != want) {
        log_msg(LOG_ERROR, NULL,
                c->rollback ? "A rollback follows a cutover that kept reverse replication (no "
                              "--no-reverse)."
                            : "Wait until `pgrelocate status` shows the phase follow.",
                "%s the migration is in phase %s, not %s", c->ctx, state_phase_name(c->phase_was),
                state_phase_name(want));
        return false;
    }
    if (!syncpoint_follower_running(c->tgt, &running))
        return false;
    return running || spawn_follower(c);
}

/* Cutover's connections run catalog, state and sequence queries only: each
 * is bounded, so a lock or a stalled server inside the pause is named. */
static PGconn *cutover_conn(const ConnInfo *ci, ConnSide side)
{
    ConnOpts co = {.side = side,
                   .app_name = "pgrelocate cutover",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};

    return conn_open(ci, &co);
}

/* Everything that can happen before the pause. */
static bool prepare(Cutover *c, bool *already)
{
    bool exists;

    if (!(c->src = cutover_conn(c->src_ci, CONN_SOURCE)) ||
        !(c->tgt = cutover_conn(c->tgt_ci, CONN_TARGET)))
        return false;
    c->from = c->rollback ? c->tgt : c->src;
    c->to = c->rollback ? c->src : c->tgt;
    if (!(c->seq_from = cutover_conn(c->rollback ? c->tgt_ci : c->src_ci,
                                     c->rollback ? CONN_TARGET : CONN_SOURCE)) ||
        !(c->seq_to = cutover_conn(c->rollback ? c->src_ci : c->tgt_ci,
                                   c->rollback ? CONN_SOURCE : CONN_TARGET)))
        return false;
    if (!state_open(c->tgt, STATE_WRITE, &exists))
        return false;
    if (!exists || !state_load(c->tgt, &c->st) || !c->st.replication_name) {
        log_msg(LOG_ERROR, NULL, "Run `pgrelocate start` first and let it reach the follow phase.",
                "%s the target holds no migration that follows the source", c->ctx);
        return false;
    }
    c->slot =
        c->rollback ? state_reverse_name(c->st.replication_name) : xstrdup(c->st.replication_name);
    if (!conn_script(c->from, "cutover", "SET synchronous_commit = on") || !lock_run(c))
        return false;
    if (c->o->pgbouncer && !prepare_bouncer(c, already))
        return false;
    if (!recover(c))
        return false;
    if (*already)
        return true;
    if (!check_phase(c) || !check_lag(c))
        return false;
    if (!c->rollback && !c->o->no_reverse && !c->o->dry_run && !setup_reverse(c))
        return false;
    /* Sequences once before the pause (again, final, during it): the
     * catalogs are cached then, and the pass in the pause is quick. */
    return do_sequences(c, false) && do_large_objects(c, false);
}

static int run(Cutover *c)
{
    bool already = false;

    c->mark_ms = clock_now_ms();
    if (!prepare(c, &already))
        return EXIT_FAILED;
    if (already) {
        log_info("%s pgbouncer's database %s points at the %s already: nothing to do", c->ctx,
                 c->o->database, c->to_side);
        return EXIT_OK;
    }
    if (!record_begin(c))
        return EXIT_FAILED;
    step_done(c, "prepare");
    if (!do_hold(c))
        goto abort;
    step_done(c, "hold");
    if (!do_pause(c) || !sequences_started(c))
        goto abort;
    step_done(c, "pause");
    if (!do_fence(c))
        goto abort;
    step_done(c, "fence");
    if (!do_drain(c))
        goto abort;
    step_done(c, "drain");
    if (!do_large_objects(c, true))
        goto abort;
    step_done(c, "large objects");
    if (!do_sequences(c, true))
        goto abort;
    step_done(c, "sequences");
    if (!stop_guard(c))
        goto abort;
    if (c->o->dry_run) {
        if (!do_resume(c))
            goto abort;
        syncpoint_release(c->sp);
        c->sp = NULL;
        step_done(c, "resume");
        record_end(c, "done");
        print_report(c);
        return EXIT_OK;
    }
    if (!do_switch(c)) {
        abort_switch(c, true);
        goto fail;
    }
    step_done(c, "switch");
    if (!do_resume(c))
        log_error("%s could not resume writes: the watchdog will within %lld ms", c->ctx,
                  (long long)c->o->max_pause_ms + WATCHDOG_MARGIN_MS);
    step_done(c, "resume");
    if (watchdog_fired(c->wd)) {
        /* pgrelocate was too slow, not dead: clients went on before the
         * switch took effect and may have written to the old side; the
         * old direction's follower must bring that over, not stop */
        log_msg(LOG_ERROR,
                "The switch took longer than --max-pause plus the watchdog's margin, so the "
                "watchdog resumed writes before pgbouncer pointed at the new side.",
                "Replication from the old side goes on: check with pgrelocate verify, then "
                "restart pgrelocate start to follow the new direction.",
                "%s writes resumed before the switch was complete", c->ctx);
        set_reason(c, "the watchdog resumed writes before the switch was complete");
        syncpoint_release(c->sp);
        c->sp = NULL;
        record_end(c, "done");
        print_report(c);
        return EXIT_FAILED;
    } else if (!syncpoint_finish(c->sp, 30000)) {
        log_warning("%s the follower of the old direction did not stop: restart pgrelocate start",
                    c->ctx);
    }
    c->sp = NULL;
    record_end(c, "done");
    print_report(c);
    if (c->follower && !c->rollback && !c->o->no_reverse)
        log_notice("%s no pgrelocate start runs: start it again (same --source and --target) so "
                   "the source follows the target's writes and a rollback loses nothing",
                   c->ctx);
    return EXIT_OK;
abort:
    abort_switch(c, false);
fail:
    log_msg(LOG_ERROR, c->reason[0] ? c->reason : NULL,
            "Nothing was switched and replication goes on; run the command again when the cause "
            "is fixed.",
            "%s aborted: clients stay on the %s", c->ctx, c->from_side);
    return EXIT_FAILED;
}

static int cutover_main(const Options *o, bool rollback)
{
    Cutover c = {.o = o, .rollback = rollback};
    char err[256];
    int rc = EXIT_FAILED;

    c.ctx = rollback ? "[rollback]" : "[cutover]";
    c.from_side = rollback ? "target" : "source";
    c.to_side = rollback ? "source" : "target";
    strbuf_init(&c.conf);
    strbuf_init(&c.new_conf);
    if (!check_options(&c)) {
        rc = EXIT_USAGE;
        goto done;
    }
    if (!(c.src_ci = conninfo_parse(o->source, err, sizeof(err))) ||
        !(c.tgt_ci = conninfo_parse(o->target, err, sizeof(err)))) {
        log_msg(LOG_ERROR, err, NULL, "invalid connection string");
        rc = EXIT_USAGE;
        goto done;
    }
    endpoint_of(rollback ? c.tgt_ci : c.src_ci, &c.old_ep);
    endpoint_of(rollback ? c.src_ci : c.tgt_ci, &c.new_ep);
    hook_environment(&c);
    /* First, before any other connection: the child must not inherit them. */
    c.wd = watchdog_start(&(WatchdogOpts){o->pgbouncer, o->database, o->resume_command});
    if (c.wd)
        rc = run(&c);
done:
    if (c.follower && follow_join(c.follower) == FOLLOW_FAILED)
        log_warning("%s the follower run in this process failed (see above)", c.ctx);
    pauseguard_stop(c.guard);
    watchdog_stop(c.wd);
    bouncer_close(c.admin);
    bouncer_close(c.spare);
    conn_close(c.src);
    conn_close(c.tgt);
    conn_close(c.seq_from);
    conn_close(c.seq_to);
    conninfo_destroy(c.src_ci);
    conninfo_destroy(c.tgt_ci);
    state_free(&c.st);
    strbuf_free(&c.conf);
    strbuf_free(&c.new_conf);
    free(c.slot);
    free(c.encoding);
    free(c.skip_origin);
    return rc;
}

int cmd_cutover(const Options *o)
{
    return cutover_main(o, false);
}

int cmd_rollback(const Options *o)
{
    return cutover_main(o, true);
}
