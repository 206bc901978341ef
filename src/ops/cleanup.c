/*
 * cleanup.c: `pgrelocate cleanup`: remove everything a migration left:
 * on the source the replication slot, the publication, replica identity
 * changes and a snapshot keeper still waiting; on the target the
 * replication origin and the pgrelocate schema.  Source objects go first
 * and the target's state last, so an interrupted cleanup can run again;
 * running it twice is harmless.
 */
#include "commands.h"

#include "conn.h"
#include "log.h"
#include "slot.h"
#include "snapshot.h"
#include "state.h"
#include "stateschema.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>

static bool restore_identities(PGconn *src, PGconn *tgt)
{
    char **names = NULL, *orig = NULL;
    int n = 0;
    bool ok = state_load_identity(tgt, &names, &orig, &n);

    /* The target copied the setting with the schema: restore it there too
     * (when the table still exists). */
    for (int i = 0; i < n; i++) {
        const char *p[1] = {names[i]};
        PGresult *res =
            conn_exec_params(tgt, "cleanup", "SELECT pg_catalog.to_regclass($1) IS NOT NULL", 1,
                             NULL, p, NULL, NULL, 0);
        bool on_target = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                         PQgetvalue(res, 0, 0)[0] == 't';

        PQclear(res);
        if (ok && slot_restore_identity(src, names[i], orig[i]) &&
            (!on_target || slot_restore_identity(tgt, names[i], orig[i])))
            log_info("[cleanup] restored the replica identity of %s", names[i]);
        else
            ok = false;
        free(names[i]);
    }
    free(names);
    free(orig);
    return ok;
}

static bool clean(PGconn *src, PGconn *tgt)
{
    MigrationState st;
    bool exists, ok = true;

    if (!state_open(tgt, STATE_READ, &exists))
        return false;
    if (!exists) {
        log_info("[cleanup] no pgrelocate state on the target: nothing to clean up");
        return true;
    }
    if (!state_load(tgt, &st))
        return false;
    snapshot_end_keeper_backend(src, st.snapshot_backend_pid);
    if (st.replication_name) {
        char *rev = state_reverse_name(st.replication_name);

        /* the reverse direction (after a cutover): slot and publication on
         * the target, origin on the source */
        ok = slot_drop(tgt, rev) && slot_drop_ddl_capture(tgt, rev) &&
             slot_drop_publication(tgt, rev) && slot_drop_origin(src, rev);
        free(rev);
    }
    if (ok && st.replication_name) {
        ok = slot_drop(src, st.replication_name) && /* refused while start runs */
             slot_drop_ddl_capture(src, st.replication_name) &&
             slot_drop_publication(src, st.replication_name) && restore_identities(src, tgt) &&
             slot_drop_origin(tgt, st.replication_name);
        if (ok)
            log_info("[cleanup] dropped publication %s and replication origin %s",
                     st.replication_name, st.replication_name);
    }
    if (ok && conn_script(tgt, "cleanup", "DROP SCHEMA pgrelocate CASCADE"))
        log_info("[cleanup] dropped the pgrelocate schema on the target");
    else
        ok = false;
    state_free(&st);
    return ok;
}

int cmd_cleanup(const Options *o)
{
    ConnOpts so = {.side = CONN_SOURCE,
                   .app_name = "pgrelocate cleanup",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
    ConnOpts to = {.side = CONN_TARGET,
                   .app_name = "pgrelocate cleanup",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
    char err[256];
    ConnInfo *sci = NULL, *tci = NULL;
    PGconn *src = NULL, *tgt = NULL;
    bool ok = false;

    if (!(sci = conninfo_parse(o->source, err, sizeof(err))))
        log_error("invalid --source connection string: %s", err);
    else if (!(tci = conninfo_parse(o->target, err, sizeof(err))))
        log_error("invalid --target connection string: %s", err);
    else if ((src = conn_open(sci, &so)) && (tgt = conn_open(tci, &to)))
        ok = clean(src, tgt);
    if (!ok && src && tgt)
        log_msg(LOG_ERROR, NULL, "Fix the cause and run cleanup again: it is safe to repeat.",
                "cleanup did not finish");
    conn_close(src);
    conn_close(tgt);
    conninfo_destroy(sci);
    conninfo_destroy(tci);
    return ok ? EXIT_OK : EXIT_FAILED;
}
