/*
 * apply.c: pgoutput messages to SQL on the target.
 */
#include "apply.h"

#include "applysql.h"
#include "clock.h"
#include "conn.h"
#include "ddl.h"
#include "log.h"
#include "stall.h"
#include "strbuf.h"
#include "valueformat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REL_BUCKETS     512
#define SYNC_STATEMENTS 512 /* statements per pipeline sync */
#define SYNC_BYTES      (8 << 20)
#define MAX_UNREAD      (4 * SYNC_STATEMENTS) /* statements in flight before waiting */
#define BATCH_TXNS      5000                  /* source transactions per target commit */
#define BATCH_BYTES     ((int64_t)64 << 20)
#define BATCH_SECONDS   1.0
#define HOLD_ROWS       256 /* inserts held per table before they go out */
#define HOLD_BYTES      (1 << 20)

/* A source transaction, as error messages and --skip-transaction name it. */
typedef struct SourceTxn {
    uint32_t xid;
    Lsn commit_lsn; /* Begin's final LSN: where its commit record is */
} SourceTxn;

typedef struct Stmt {
    struct Stmt *next;
    char *shape; /* operation and column masks: the cache key */
    char name[32];
    int nparams;
} Stmt;

typedef struct Rel {
    struct Rel *next;
    uint32_t relid;
    char *nspname;
    char *relname;
    char *qualified; /* quoted, for the target */
    char replident;
    bool partitioned; /* on the target: no ONLY, rows route to partitions */
    int ncols;
    char **quoted;      /* quoted column names */
    bool *key;          /* part of the replica identity */
    bool *skip;         /* generated on the target: never written */
    bool *text_cmp;     /* no default btree equality: compare as text */
    bool *always;       /* identity GENERATED ALWAYS on the target */
    char **type_name;   /* target column types without length, for casts in batched updates */
    uint32_t *src_type; /* the source's type OID of each column (for messages) */
    bool *retyped;      /* a built-in type on the source, another on the target: binary
                         * values of the source's type cannot be bound */
    bool *in_unique;    /* in a unique or exclusion index (or one with expressions or a
                         * predicate) on the target: updates to it keep their order */
    bool has_always;
    int sync_entry; /* tablesync entry (tablesync_find), -1: not tracked */
    Stmt *stmts;
    /* Inserts held back to go out as multi-row INSERTs.  In replica mode
     * (no triggers, no foreign key checks) inserts into one table commute
     * with changes to other tables; they are sent before any other change
     * to the same table, a new definition of it, and the commit. */
    ApplySqlOp held_op; /* held inserts (INSERT) or updates by unchanged key
                         * (UPDATE_BATCH) */
    char *held_mask;    /* columns of the held rows; NULL when none held */
    char *held_where;   /* held updates: their key columns */
    int held_rows;
    StrBuf held_vals; /* values, each followed by a NUL */
    long *held_offs;  /* per value: offset in held_vals, -1 for NULL */
    int *held_lens;   /* per value: its length (binary values may hold NULs) */
    char *held_bin;   /* per value: 1 when in binary ('b'), bound as such */
    int held_noffs;
    int held_cap;
    bool dirty;       /* in the apply's list of tables holding rows */
    bool held_merged; /* a held update took a later one of its row (held_row_of) */

    /* per held row: its source transaction (named when a statement fails) */
    SourceTxn *held_txn;
    int held_txn_cap;
} Rel;

typedef struct Pending {
    int expect_rows; /* rows an UPDATE/DELETE must change (0: any) */
    char *what;      /* for error messages: "update public.t (id)=(5)"; NULL: a sync */
    bool sync;       /* a pipeline sync, not a statement */
    bool failed;     /* one of its results failed */
    SourceTxn from;  /* the source transactions its changes came from */
    SourceTxn to;
} Pending;

struct Apply {
    PGconn *tgt;
    char *origin;
    char *skip_origin;                /* transactions from this origin are not applied */
    TableSync *sync;                  /* per-table sync filter, or NULL: every change applies */
    volatile sig_atomic_t *sync_stop; /* ends its waits */
    bool skipping;                    /* the current source transaction came from skip_origin */
    bool ddl_in_txn;                  /* the current source transaction changed the schema: commit
                                       * the batch at its end (ALTER TYPE ... ADD VALUE's value is
                                       * usable only after that; locks are held no longer) */
    Rel *rels[REL_BUCKETS];
    int stmt_seq;
    bool in_txn;
    bool batch_open;
    bool conn_lost; /* a failure came from the connection, not the data */
    Lsn txn_final_lsn;
    SourceTxn txn;       /* the current (or last) source transaction */
    SourceTxn held_from; /* rows being flushed came from these; 0: txn */
    SourceTxn held_to;
    Lsn skip_lsn;  /* --skip-transaction: the commit LSN to leave out */
    bool skip_hit; /* the current source transaction is that one */
    int64_t skipped_changes;
    bool exact;     /* held rows never span source transactions */
    bool ambiguous; /* the failed statement carried several source transactions */
    Lsn last_end_lsn;
    int64_t last_commit_time_us;
    Lsn committed_lsn;
    int64_t committed_time_us;
    Pending *pend; /* sent, results not yet read: [pdone, npend) */
    int pdone;
    int npend;
    int pend_cap;
    int unsynced;       /* statements sent since the last sync */
    int64_t pend_bytes; /* values sent since the last sync */
    bool failed;        /* a statement failed: the batch is lost, the caller gives up */
    bool reported;      /* that failure is logged */
    double batch_start;
    int batch_txns;
    int64_t batch_bytes;
    ApplyStats stats;
    Rel **dirty; /* tables holding inserts */
    int ndirty;
    int dirty_cap;
    StrBuf scratch;
    const char **values;
    int *lengths; /* of values, for binary ones */
    int *formats; /* per value: 1 binary, 0 text (paramFormats) */
    int values_cap;
};

/* ---- pipeline bookkeeping ----
 *
 * Statements go out without waiting for their results; results are read as
 * they arrive (drain_ready, never blocking), so pgrelocate builds the next
 * statements while the target executes the previous ones.  A pipeline sync
 * goes out every SYNC_STATEMENTS statements or SYNC_BYTES of values: it
 * makes the server send its results and bounds what one error aborts.  The
 * apply blocks only when more than MAX_UNREAD statements are unread, and
 * before COMMIT, when every row count must have been checked: a conflict
 * found after it would be committed, origin progress included, and the
 * source transaction never applied again (028 tests this). */

static void pend_push(Apply *a, int expect_rows, char *what)
{
    if (a->pdone > 0 && a->pdone == a->npend)
        a->pdone = a->npend = 0;
    if (a->npend == a->pend_cap) {
        if (a->pdone > 0) { /* reuse the read prefix */
            memmove(a->pend, a->pend + a->pdone, (size_t)(a->npend - a->pdone) * sizeof(Pending));
            a->npend -= a->pdone;
            a->pdone = 0;
        } else {
            a->pend_cap = a->pend_cap ? a->pend_cap * 2 : 1024;
            a->pend = xrealloc(a->pend, (size_t)a->pend_cap * sizeof(Pending));
        }
    }
    a->pend[a->npend].expect_rows = expect_rows;
    a->pend[a->npend].what = what;
    a->pend[a->npend].sync = what == NULL;
    a->pend[a->npend].failed = false;
    a->pend[a->npend].to = a->held_from.commit_lsn ? a->held_to : a->txn;
    a->pend[a->npend].from = a->held_from.commit_lsn ? a->held_from : a->txn;
    a->npend++;
    if (what)
        a->unsynced++;
}

/* Forget every unread result (the connection is given up). */
static void pend_clear(Apply *a)
{
    for (int i = a->pdone; i < a->npend; i++)
        free(a->pend[i].what);
    a->npend = a->pdone = 0;
    a->unsynced = 0;
    a->pend_bytes = 0;
}

/* Did this failed result (or none) come from losing the connection: libpq's
 * own error (no SQLSTATE), a connection exception, or the server shutting
 * down or terminating the session?  Then reconnecting can go on. */
static bool connection_error(const PGconn *conn, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    /* 53100 disk_full: the same batch goes through on a new session once
     * space is freed (the transaction rolled back, nothing was confirmed) */
    return !res || PQstatus(conn) == CONNECTION_BAD || !state || strncmp(state, "08", 2) == 0 ||
           strncmp(state, "57P0", 4) == 0 || strcmp(state, "53100") == 0;
}

/* The target refused a change (not a lost connection): name the source
 * transaction and the ways on.  A statement that carried rows of several
 * source transactions cannot name one: *ambiguous, and the follower
 * applies them again one transaction at a time (apply_set_exact). */
/* The table a statement's description names ("update public.t (id)=(5)",
 * "update of 3 rows in public.t, keys ..."): its first word holding a dot,
 * or "TABLE". */
static const char *what_table(const char *what, char *buf, size_t len)
{
    const char *w = what;

    snprintf(buf, len, "TABLE");
    while (w && *w) {
        size_t n = strcspn(w, " ,");

        if (memchr(w, '.', n) && w[0] != '(') {
            snprintf(buf, len, "%.*s", (int)n, w);
            break;
        }
        w += n;
        w += strspn(w, " ,");
    }
    return buf;
}

static void report_data_error(Apply *a, const Pending *p, const char *detail, const char *hint,
                              const char *primary)
{
    char from[LSN_TEXT_SIZE], to[LSN_TEXT_SIZE], table[256];
    char *d, *h = NULL;

    lsn_format(p->from.commit_lsn, from);
    lsn_format(p->to.commit_lsn, to);
    a->ambiguous = p->from.commit_lsn != p->to.commit_lsn;
    if (a->ambiguous) {
        d = xasprintf("%s%sThe statement carried changes of the source transactions committed "
                      "from %s to %s; they are applied again one transaction at a time to find "
                      "the one that fails.",
                      detail ? detail : "", detail ? " " : "", from, to);
        log_msg(LOG_NOTICE, d, NULL, "[apply] %s: %s", p->what, primary);
        free(d);
        return;
    }
    d = xasprintf("%s%sThe change comes from source transaction %u, committed at %s.",
                  detail ? detail : "", detail ? " " : "", p->to.xid, from);
    if (!hint)
        hint = h = xasprintf(
            "Make the target accept the change and run pgrelocate start again; or copy the "
            "table again with pgrelocate resync --tables %s (its rows on the target are "
            "replaced by the source's); or skip that source transaction with pgrelocate start "
            "--skip-transaction %s and repair its rows on the target by hand (pgrelocate "
            "verify names them).",
            what_table(p->what, table, sizeof(table)), from);
    log_msg(LOG_ERROR, d, hint, "[apply] %s: %s", p->what, primary);
    free(d);
    free(h);
}

/* Judge one result of the oldest unread statement p; false when it failed
 * (reported once per apply: later statements fail because of the first). */
static bool judge_result(Apply *a, const Pending *p, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);

    if (st == PGRES_PIPELINE_ABORTED)
        return false;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

        if (connection_error(a->tgt, res))
            a->conn_lost = true;
        else if (!a->reported)
            report_data_error(a, p, PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
                              PQresultErrorField(res, PG_DIAG_MESSAGE_HINT),
                              primary ? primary : PQresultErrorMessage(res));
        if (!a->reported && a->conn_lost)
            log_msg(LOG_ERROR, PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
                    PQresultErrorField(res, PG_DIAG_MESSAGE_HINT), "[apply] %s: %s", p->what,
                    primary ? primary : PQresultErrorMessage(res));
        a->reported = true;
        return false;
    }
    if (p->expect_rows > 0 && atoi(PQcmdTuples(res)) != p->expect_rows) {
        if (!a->reported)
            report_data_error(a, p,
                              "The target does not hold the row the source changed: something "
                              "other than pgrelocate wrote to the target table.",
                              NULL, "no such row on the target (conflict)");
        a->reported = true;
        return false;
    }
    return true;
}

/* Read the next result of the oldest unread statement or sync, waiting for
 * it if it has not arrived.  Marks the apply failed on any failure. */
static void read_next(Apply *a)
{
    Pending *p = &a->pend[a->pdone];
    /* a wait for the target: a stopped one is reported (stall.h) */
    StallWatch *sw = PQisBusy(a->tgt) ? stall_watch(a->tgt, CONN_TARGET, "apply") : NULL;
    PGresult *res = PQgetResult(a->tgt);

    stall_unwatch(sw);

    if (p->sync) {
        if (PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
            /* a session the server ended (a target restart) shows up here
             * when its error arrives where a sync was due: reconnect */
            bool lost = connection_error(a->tgt, res);

            if (!a->reported && lost)
                log_error("[apply] connection to the target lost: %s", PQerrorMessage(a->tgt));
            else if (!a->reported)
                log_error("[apply] lost track of the pipeline (%s): %s",
                          PQresStatus(PQresultStatus(res)), PQerrorMessage(a->tgt));
            a->reported = a->failed = true;
            a->conn_lost = a->conn_lost || lost;
        }
        a->pdone++;
    } else if (!res) { /* this statement's results are all read */
        a->failed = a->failed || p->failed;
        free(p->what);
        p->what = NULL;
        a->pdone++;
    } else if (!judge_result(a, p, res)) {
        p->failed = true;
    }
    PQclear(res);
}

/* Log libpq's error once per apply (later failures follow from the first;
 * an empty message would print a bare "[apply]"). */
static void report_conn_error(Apply *a)
{
    const char *msg = PQerrorMessage(a->tgt);

    if (!a->reported)
        log_error("[apply] %s", msg && *msg ? msg : "the connection to the target was lost");
    a->reported = true;
}

/* Read every result that has arrived, without waiting.  false when the
 * apply failed (now or before). */
static bool drain_ready(Apply *a)
{
    if (a->failed)
        return false;
    if (PQconsumeInput(a->tgt) != 1) {
        a->conn_lost = a->failed = true;
        report_conn_error(a);
        return false;
    }
    while (a->pdone < a->npend && !a->failed && !PQisBusy(a->tgt))
        read_next(a);
    return !a->failed;
}

static bool send_sync(Apply *a)
{
    if (PQpipelineSync(a->tgt) != 1) {
        a->conn_lost = a->failed = true;
        report_conn_error(a);
        return false;
    }
    pend_push(a, 0, NULL);
    a->unsynced = 0;
    a->pend_bytes = 0;
    return true;
}

/* Sync the pipeline and read every result: true when every statement sent
 * so far succeeded with its row count. */
static bool sync_check(Apply *a)
{
    if (a->failed)
        return false;
    if (a->unsynced > 0 && !send_sync(a))
        return false;
    while (a->pdone < a->npend && !a->failed)
        read_next(a);
    return !a->failed;
}

static bool send_query(Apply *a, const char *sql, int n, const char *const *params, char *what)
{
    if (PQsendQueryParams(a->tgt, sql, n, NULL, params, NULL, NULL, 0) != 1) {
        log_error("[apply] %s: %s", what, PQerrorMessage(a->tgt));
        free(what);
        return false;
    }
    pend_push(a, 0, what);
    return true;
}

/* After a statement went out: sync now and then, read what has arrived,
 * and wait only when too much is unread. */
static bool maybe_sync(Apply *a)
{
    if ((a->unsynced >= SYNC_STATEMENTS || a->pend_bytes >= SYNC_BYTES) && !send_sync(a))
        return false;
    if (!drain_ready(a))
        return false;
    while (a->npend - a->pdone > MAX_UNREAD && !a->failed)
        read_next(a);
    return !a->failed;
}

/* ---- set-up ---- */

bool apply_origin_progress(PGconn *tgt, const char *origin, Lsn *lsn)
{
    const char *p[1] = {origin};
    PGresult *res = conn_query(tgt, "apply",
                               "SELECT coalesce(pg_catalog.pg_replication_origin_progress($1, "
                               "true), '0/0')::text",
                               1, p, 1);
    bool ok = res && lsn_parse(PQgetvalue(res, 0, 0), lsn);

    PQclear(res);
    return ok;
}

Apply *apply_create(PGconn *tgt, const char *origin)
{
    const char *p[1] = {origin};
    Apply *a;
    PGresult *res;

    if (!conn_script(tgt, "apply",
                     "SET session_replication_role = replica; SET synchronous_commit = on"))
        return NULL;
    res = conn_query(tgt, "apply",
                     "SELECT pg_catalog.pg_replication_origin_create($1) WHERE "
                     "pg_catalog.pg_replication_origin_oid($1) IS NULL",
                     1, p, -1);
    if (!res)
        return NULL;
    PQclear(res);
    res = conn_query(tgt, "apply", "SELECT pg_catalog.pg_replication_origin_session_setup($1)", 1,
                     p, -1);
    if (!res)
        return NULL;
    PQclear(res);
    a = xcalloc(1, sizeof(*a));
    a->tgt = tgt;
    a->origin = xstrdup(origin);
    strbuf_init(&a->scratch);
    if (!apply_origin_progress(tgt, origin, &a->committed_lsn) || PQenterPipelineMode(tgt) != 1) {
        log_error("[apply] could not prepare the target connection: %s", PQerrorMessage(tgt));
        apply_destroy(a);
        return NULL;
    }
    return a;
}

static void free_rel(Rel *r)
{
    free(r->held_mask);
    free(r->held_where);
    free(r->held_vals.data);
    free(r->held_offs);
    free(r->held_txn);
    free(r->held_lens);
    free(r->held_bin);
    for (Stmt *s = r->stmts, *n; s; s = n) {
        n = s->next;
        free(s->shape);
        free(s);
    }
    for (int i = 0; i < r->ncols; i++) {
        free(r->quoted[i]);
        free(r->type_name ? r->type_name[i] : NULL);
    }
    free(r->quoted);
    free(r->type_name);
    free(r->in_unique);
    free(r->retyped);
    free(r->src_type);
    free(r->key);
    free(r->skip);
    free(r->text_cmp);
    free(r->always);
    free(r->nspname);
    free(r->relname);
    free(r->qualified);
    free(r);
}

void apply_destroy(Apply *a)
{
    if (!a)
        return;
    pend_clear(a);
    free(a->pend);
    for (int b = 0; b < REL_BUCKETS; b++)
        for (Rel *r = a->rels[b], *n; r; r = n) {
            n = r->next;
            free_rel(r);
        }
    strbuf_free(&a->scratch);
    free(a->dirty);
    free(a->values);
    free(a->lengths);
    free(a->formats);
    free(a->origin);
    free(a->skip_origin);
    free(a);
}

static Rel *find_rel(Apply *a, uint32_t relid)
{
    for (Rel *r = a->rels[relid % REL_BUCKETS]; r; r = r->next)
        if (r->relid == relid)
            return r;
    return NULL;
}

static void drop_rel(Apply *a, uint32_t relid)
{
    Rel **pp = &a->rels[relid % REL_BUCKETS];

    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->relid == relid) {
            Rel *r = *pp;

            *pp = r->next;
            free_rel(r);
            return;
        }
}

/* Run a catalog query outside the pipeline (the open transaction stays). */
static PGresult *query_outside_pipeline(Apply *a, const char *sql, int n, const char *const *p,
                                        int nfields)
{
    PGresult *res;

    if (!sync_check(a) || PQexitPipelineMode(a->tgt) != 1) {
        report_conn_error(a);
        return NULL;
    }
    res = conn_query(a->tgt, "apply", sql, n, p, nfields);
    if (PQenterPipelineMode(a->tgt) != 1) {
        PQclear(res);
        return NULL;
    }
    return res;
}

static const char *const target_columns_sql =
    "SELECT a.attname, a.attgenerated <> '',"
    "  NOT EXISTS (SELECT 1 FROM pg_opclass o JOIN pg_am m ON m.oid = o.opcmethod"
    "              WHERE m.amname = 'btree' AND o.opcdefault"
    "                AND o.opcintype = CASE WHEN t.typtype = 'd' THEN t.typbasetype"
    "                                       ELSE a.atttypid END)"
    "  , (SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = a.attrelid), a.attidentity = 'a',"
    "  pg_catalog.format_type(a.atttypid, -1)," /* bpchar, "bit": NULL gives character, bit (1) */
    "  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid"
    "          AND (i.indisunique OR i.indisexclusion) AND (a.attnum = ANY (i.indkey)"
    "          OR i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)),"
    "  a.atttypid"
    " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
    " WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped";

/* Map the source relation's columns to the target table's, by name. */
static bool map_columns(Apply *a, Rel *r, const PgoRelation *m)
{
    const char *p[1] = {r->qualified};
    PGresult *res = query_outside_pipeline(a, target_columns_sql, 1, p, 8);
    bool ok = res != NULL;

    if (ok && PQntuples(res) == 0 && m->ncols > 0) { /* a table may have no column */
        log_msg(LOG_ERROR, NULL,
                "Create the table on the target (pgrelocate copies the schema when it starts), "
                "then run pgrelocate start again.",
                "[apply] table %s.%s does not exist on the target", m->nspname, m->relname);
        ok = false;
    }
    for (int i = 0; ok && i < m->ncols; i++) {
        int row = -1;

        for (int k = 0; k < PQntuples(res) && row < 0; k++)
            if (strcmp(PQgetvalue(res, k, 0), m->cols[i].name) == 0)
                row = k;
        if (row < 0) {
            log_msg(LOG_ERROR,
                    "The source table has a column the target table lacks: the source's schema "
                    "changed after the copy (schema drift). Nothing was skipped.",
                    "Apply the same DDL on the target (e.g. ALTER TABLE ... ADD COLUMN), then "
                    "run pgrelocate start again: it continues where it stopped.",
                    "[apply] column \"%s\" of %s.%s does not exist on the target", m->cols[i].name,
                    m->nspname, m->relname);
            ok = false;
            break;
        }
        r->partitioned = PQgetvalue(res, row, 3)[0] == 't';
        r->skip[i] = PQgetvalue(res, row, 1)[0] == 't';
        r->text_cmp[i] = PQgetvalue(res, row, 2)[0] == 't';
        r->always[i] = PQgetvalue(res, row, 4)[0] == 't';
        r->type_name[i] = xstrdup(PQgetvalue(res, row, 5));
        r->in_unique[i] = PQgetvalue(res, row, 6)[0] == 't';
        r->retyped[i] = m->cols[i].type_oid < VALUEFORMAT_FIRST_NORMAL_OID &&
                        m->cols[i].type_oid != (uint32_t)strtoul(PQgetvalue(res, row, 7), NULL, 10);
        r->has_always = r->has_always || r->always[i];
    }
    PQclear(res);
    return ok;
}

static bool flush_all(Apply *a);

static bool on_relation(Apply *a, const PgoRelation *m)
{
    Rel *r = xcalloc(1, sizeof(*r));

    if (!flush_all(a)) { /* rows held under the old definition go first */
        free(r);
        return false;
    }
    drop_rel(a, m->relid); /* a new definition replaces the old one */
    r->relid = m->relid;
    r->nspname = xstrdup(m->nspname[0] ? m->nspname : "pg_catalog");
    r->relname = xstrdup(m->relname);
    r->sync_entry = a->sync ? tablesync_find(a->sync, r->nspname, r->relname) : -1;
    r->qualified = conn_qualify(a->tgt, r->nspname, r->relname);
    r->replident = m->replident;
    r->ncols = m->ncols;
    r->quoted = xcalloc((size_t)m->ncols + 1, sizeof(char *));
    r->key = xcalloc((size_t)m->ncols + 1, sizeof(bool));
    r->skip = xcalloc((size_t)m->ncols + 1, sizeof(bool));
    r->text_cmp = xcalloc((size_t)m->ncols + 1, sizeof(bool));
    r->always = xcalloc((size_t)m->ncols + 1, sizeof(bool));
    r->type_name = xcalloc((size_t)m->ncols + 1, sizeof(char *));
    r->in_unique = xcalloc((size_t)m->ncols + 1, sizeof(bool));
    r->retyped = xcalloc((size_t)m->ncols + 1, sizeof(bool));
    r->src_type = xcalloc((size_t)m->ncols + 1, sizeof(uint32_t));
    for (int i = 0; i < m->ncols; i++) {
        r->src_type[i] = m->cols[i].type_oid;
        r->quoted[i] = conn_quote_ident(a->tgt, m->cols[i].name);
        r->key[i] = m->cols[i].key;
    }
    if (!map_columns(a, r, m)) {
        free_rel(r);
        return false;
    }
    r->next = a->rels[m->relid % REL_BUCKETS];
    a->rels[m->relid % REL_BUCKETS] = r;
    return true;
}

/* ---- changes ---- */
/* The target table as applysql names it: views of r's arrays. */
static ApplySqlTable sql_table(const Rel *r)
{
    return (ApplySqlTable){.qualified = r->qualified,
                           .ncols = r->ncols,
                           .quoted = r->quoted,
                           .text_cmp = r->text_cmp,
                           .type_name = r->type_name,
                           .partitioned = r->partitioned,
                           .has_always = r->has_always};
}

/* The prepared statement for this shape, preparing it (pipelined) when new. */
static Stmt *get_stmt(Apply *a, Rel *r, const ApplySqlShape *sh)
{
    char *key = applysql_shape_key(sh, r->ncols);
    ApplySqlTable t = sql_table(r);
    Stmt *st;
    char *sql;

    for (st = r->stmts; st; st = st->next)
        if (strcmp(st->shape, key) == 0) {
            free(key);
            return st;
        }
    st = xcalloc(1, sizeof(*st));
    st->shape = key;
    snprintf(st->name, sizeof(st->name), "pgr_%d", ++a->stmt_seq);
    sql = applysql_build_statement(&t, sh, &st->nparams);
    if (PQsendPrepare(a->tgt, st->name, sql, st->nparams, NULL) != 1) {
        log_error("[apply] could not prepare a statement for %s: %s", r->qualified,
                  PQerrorMessage(a->tgt));
        free(sql);
        free(st->shape);
        free(st);
        return NULL;
    }
    pend_push(a, 0, xasprintf("prepare %s", sql));
    free(sql);
    st->next = r->stmts;
    r->stmts = st;
    return st;
}

/* Room for n parameters in values, lengths and formats. */
static void reserve_params(Apply *a, int n)
{
    if (a->values_cap >= n + 1)
        return;
    a->values_cap = n + 1;
    a->values = xrealloc(a->values, (size_t)a->values_cap * sizeof(char *));
    a->lengths = xrealloc(a->lengths, (size_t)a->values_cap * sizeof(int));
    a->formats = xrealloc(a->formats, (size_t)a->values_cap * sizeof(int));
}

/* A big-endian integer of len bytes (2, 4 or 8), as int2/4/8send write it. */
static int64_t be_int(const unsigned char *p, size_t len)
{
    uint64_t u = 0;

    for (size_t i = 0; i < len; i++)
        u = u << 8 | p[i];
    if (len < 8 && (u >> (len * 8 - 1)) != 0)
        u |= ~(uint64_t)0 << (len * 8); /* sign-extend */
    return (int64_t)u;
}

/* A value for messages, at most 100 bytes of it ("..." when cut): text as
 * it is; binary as its text for the usual key types (integers, text-like,
 * uuid), else as \x and hex.  type: the source's type OID. */
static void append_value(StrBuf *d, const char *data, size_t len, bool binary, uint32_t type)
{
    const unsigned char *u = (const unsigned char *)data;
    size_t show = len > 100 ? 100 : len;
    bool integer = (type == 21 && len == 2) || (type == 23 && len == 4) || (type == 20 && len == 8);
    bool textual = type == 25 || type == 1043 || type == 1042 || type == 19;

    if (binary && integer) {
        strbuf_appendf(d, "%lld", (long long)be_int(u, len));
        return;
    }
    if (binary && type == 26 && len == 4) { /* oid: unsigned */
        strbuf_appendf(d, "%u", (unsigned)(be_int(u, len) & 0xffffffff));
        return;
    }
    if (binary && type == 2950 && len == 16) {
        for (size_t i = 0; i < 16; i++)
            strbuf_appendf(d, "%s%02x", i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "", u[i]);
        return;
    }
    if (!binary || textual)
        strbuf_appendf(d, "%.*s", (int)show, data);
    else {
        strbuf_append(d, "\\x");
        for (size_t i = 0; i < show; i++)
            strbuf_appendf(d, "%02x", u[i]);
    }
    if (len > show)
        strbuf_append(d, "...");
}

/* Copy a value into scratch (NUL-terminated); returns its offset or -1 for
 * NULL. */
static long stash_value(Apply *a, const PgoValue *v)
{
    long off = (long)a->scratch.len;

    if (v->kind == PGO_COL_NULL)
        return -1;
    strbuf_append_len(&a->scratch, (const char *)v->data, v->len);
    strbuf_append_len(&a->scratch, "", 1);
    return off;
}

/* "(id, region)=(5, eu)" for messages, values cut at 100 bytes. */
static void describe_key(StrBuf *d, const Rel *r, const char *where, const PgoTuple *t)
{
    bool first = true;

    strbuf_append(d, " (");
    for (int i = 0; i < r->ncols; i++)
        if (where[i] == '1') {
            strbuf_appendf(d, "%s%s", first ? "" : ", ", r->quoted[i]);
            first = false;
        }
    strbuf_append(d, ")=(");
    first = true;
    for (int i = 0; i < r->ncols && i < t->ncols; i++) {
        const PgoValue *v = &t->values[i];

        if (where[i] != '1')
            continue;
        strbuf_append(d, first ? "" : ", ");
        first = false;
        if (v->kind == PGO_COL_NULL)
            strbuf_append(d, "NULL");
        else
            append_value(d, (const char *)v->data, v->len, v->kind == PGO_COL_BINARY,
                         r->src_type[i]);
    }
    strbuf_append(d, ")");
}

/* Send an execution of shape sh with values from set_t (set columns) then
 * where_t (where columns). */
static bool exec_shape(Apply *a, Rel *r, const ApplySqlShape *sh, const PgoTuple *set_t,
                       const PgoTuple *where_t)
{
    Stmt *st = get_stmt(a, r, sh);
    long *offs;
    int n = 0;
    StrBuf what;
    bool ok;

    if (!st)
        return false;
    reserve_params(a, st->nparams);
    offs = xcalloc((size_t)st->nparams + 1, sizeof(long));
    strbuf_reset(&a->scratch);
    for (int pass = 0; pass < 2; pass++) {
        const PgoTuple *t = pass == 0 ? set_t : where_t;
        const char *mask = pass == 0 ? sh->set : sh->where;

        for (int i = 0; t && i < r->ncols; i++) {
            if (mask[i] != '1')
                continue;
            a->lengths[n] = (int)t->values[i].len;
            a->formats[n] = t->values[i].kind == PGO_COL_BINARY;
            offs[n++] = stash_value(a, &t->values[i]);
        }
    }
    for (int i = 0; i < n; i++)
        a->values[i] = offs[i] < 0 ? NULL : a->scratch.data + offs[i];
    free(offs);
    strbuf_init(&what);
    strbuf_appendf(&what, "%s %s.%s",
                   sh->op == APPLYSQL_INSERT   ? "insert into"
                   : sh->op == APPLYSQL_UPDATE ? "update"
                                               : "delete from",
                   r->nspname, r->relname);
    if (sh->op != APPLYSQL_INSERT)
        describe_key(&what, r, sh->where, where_t);
    ok = PQsendQueryPrepared(a->tgt, st->name, n, a->values, a->lengths, a->formats, 0) == 1;
    if (!ok) {
        log_error("[apply] %s: %s", what.data, PQerrorMessage(a->tgt));
        strbuf_free(&what);
        return false;
    }
    pend_push(a, sh->op != APPLYSQL_INSERT ? 1 : 0, strbuf_detach(&what));
    strbuf_free(&what);
    a->pend_bytes += (int64_t)a->scratch.len;
    a->batch_bytes += (int64_t)a->scratch.len;
    a->stats.changes++;
    return maybe_sync(a);
}

/* Mark in mask the columns of t usable as values: present, not unchanged
 * TOAST, not generated on the target.  only_key: key columns only. */
static int fill_mask(const Rel *r, const PgoTuple *t, bool only_key, char *mask)
{
    int n = 0;

    for (int i = 0; i < r->ncols; i++) {
        bool use = i < t->ncols && t->values[i].kind != PGO_COL_UNCHANGED && !r->skip[i] &&
                   (!only_key || r->key[i]);

        mask[i] = use ? '1' : '0';
        n += use;
    }
    return n;
}

static Rel *rel_for(Apply *a, uint32_t relid, const char *what)
{
    Rel *r = find_rel(a, relid);

    if (!r)
        log_error("[apply] %s for relation %u that was never described (protocol error)", what,
                  relid);
    return r;
}

/* The row to change: from the old tuple (key or full), else the new
 * tuple's key columns. */
static bool choose_where(const Rel *r, PgoOldKind old_kind, const PgoTuple *old_t,
                         const PgoTuple *new_t, ApplySqlShape *sh, const PgoTuple **where_t)
{
    int nkey = 0;

    for (int i = 0; i < r->ncols; i++)
        nkey += r->key[i];
    if (old_kind == PGO_OLD_FULL) {
        sh->mode = APPLYSQL_WHERE_FULL;
        *where_t = old_t;
        /* a table without columns: any row is the row */
        if (fill_mask(r, old_t, false, sh->where) > 0 || r->ncols == 0)
            return true;
        log_msg(LOG_ERROR, "The source sent no value of the old row that the target can compare.",
                "Give the table a primary key on the source.",
                "[apply] cannot identify the changed row of %s.%s (replica identity %c)",
                r->nspname, r->relname, r->replident);
        return false;
    }
    sh->mode = APPLYSQL_WHERE_KEY;
    *where_t = old_kind == PGO_OLD_KEY ? old_t : new_t;
    if (!*where_t || nkey == 0 || fill_mask(r, *where_t, true, sh->where) != nkey) {
        log_msg(LOG_ERROR, NULL, "Give the table a primary key or REPLICA IDENTITY on the source.",
                "[apply] cannot identify the changed row of %s.%s (replica identity %c)",
                r->nspname, r->relname, r->replident);
        return false;
    }
    return true;
}

/* "update of 3 rows in public.t, keys (id)=(1), (2), (7)" (at most 5 keys
 * named) or "insert of 3 rows into public.t", for messages. */
static char *describe_held(const Rel *r, int first, int k, int per_row, int nkey)
{
    StrBuf d;

    strbuf_init(&d);
    strbuf_appendf(&d, "%s of %d row%s %s %s.%s", nkey ? "update" : "insert", k, k == 1 ? "" : "s",
                   nkey ? "in" : "into", r->nspname, r->relname);
    for (int row = first; nkey && row < first + k && row < first + 5; row++) {
        bool f = true;

        if (row == first) {
            strbuf_append(&d, ", keys (");
            for (int i = 0; i < r->ncols; i++)
                if (r->held_where[i] == '1') {
                    strbuf_appendf(&d, "%s%s", f ? "" : ", ", r->quoted[i]);
                    f = false;
                }
            strbuf_append(&d, ")=");
            f = true;
        }
        strbuf_append(&d, row == first ? "(" : ", (");
        for (int v = 0, col = 0; v < nkey; v++, col++) {
            int at = row * per_row + v;

            while (r->held_where[col] != '1')
                col++;
            strbuf_append(&d, v ? ", " : "");
            append_value(&d, r->held_vals.data + r->held_offs[at], (size_t)r->held_lens[at],
                         r->held_bin[at], r->src_type[col]);
        }
        strbuf_append(&d, ")");
    }
    if (nkey && k > 5)
        strbuf_append(&d, ", ...");
    return strbuf_detach(&d);
}

/* Send the rows r holds (inserts or updates), as few multi-row statements
 * as possible. */
static bool flush_rel(Apply *a, Rel *r)
{
    int per_row = 0, nkey = 0, done = 0;
    bool upd = r->held_op == APPLYSQL_UPDATE_BATCH;

    for (int i = 0; i < r->ncols; i++) {
        nkey += upd && r->held_where && r->held_where[i] == '1';
        per_row += r->held_mask && r->held_mask[i] == '1';
    }
    per_row += nkey;
    while (done < r->held_rows) {
        static const int sizes[] = {HOLD_ROWS, 64, 16, 4, 1};
        ApplySqlShape sh = {.op = r->held_op,
                            .set = r->held_mask,
                            .where = upd ? r->held_where : NULL,
                            .mode = upd ? APPLYSQL_WHERE_KEY : APPLYSQL_WHERE_NONE};
        Stmt *st;
        int k = 1;

        for (size_t i = 0; per_row > 0 && i < sizeof(sizes) / sizeof(sizes[0]); i++)
            if (sizes[i] <= r->held_rows - done && sizes[i] * per_row <= 65535) {
                k = sizes[i];
                break;
            }
        sh.rows = k;
        if (upd && k == 1) { /* one row: the plain prepared UPDATE */
            sh.op = APPLYSQL_UPDATE;
            sh.rows = 0;
        }
        if (!(st = get_stmt(a, r, &sh)))
            return false;
        reserve_params(a, st->nparams);
        for (int v = 0; v < st->nparams; v++) {
            /* held: key values, then set values, row after row */
            int at = done * per_row + applysql_param_of(&sh, v, st->nparams, nkey);
            long off = r->held_offs[at];

            a->values[v] = off < 0 ? NULL : r->held_vals.data + off;
            a->lengths[v] = r->held_lens[at];
            a->formats[v] = r->held_bin[at];
        }
        if (PQsendQueryPrepared(a->tgt, st->name, st->nparams, a->values, a->lengths, a->formats,
                                0) != 1) {
            log_error("[apply] %s %s.%s: %s", upd ? "update of" : "insert into", r->nspname,
                      r->relname, PQerrorMessage(a->tgt));
            return false;
        }
        a->held_from = r->held_txn[done];
        a->held_to = r->held_txn[done + k - 1];
        if (r->held_merged) { /* a row may carry any of them: all, then */
            a->held_from = r->held_txn[0];
            a->held_to = a->txn;
        }
        pend_push(a, upd ? k : 0, describe_held(r, done, k, per_row, nkey));
        a->held_from.commit_lsn = 0;
        done += k;
        if (!maybe_sync(a))
            return false;
    }
    a->held_from.commit_lsn = 0;
    free(r->held_mask);
    free(r->held_where);
    r->held_mask = r->held_where = NULL;
    r->held_rows = r->held_noffs = 0;
    r->held_merged = false;
    if (r->held_vals.data)
        strbuf_reset(&r->held_vals);
    return true;
}

static bool flush_all(Apply *a)
{
    bool ok = true;

    for (int i = 0; i < a->ndirty; i++) {
        ok = ok && flush_rel(a, a->dirty[i]);
        a->dirty[i]->dirty = false;
    }
    a->ndirty = 0;
    return ok;
}

/* Hold v as value number at (r->held_noffs: a new one; below: in place of
 * an earlier one, whose bytes stay unused in held_vals until the flush). */
static void hold_value_at(Rel *r, int at, const PgoValue *v)
{
    size_t before = r->held_vals.len;

    if (at == r->held_noffs && r->held_noffs == r->held_cap) {
        r->held_cap = r->held_cap ? r->held_cap * 2 : 256;
        r->held_offs = xrealloc(r->held_offs, (size_t)r->held_cap * sizeof(long));
        r->held_lens = xrealloc(r->held_lens, (size_t)r->held_cap * sizeof(int));
        r->held_bin = xrealloc(r->held_bin, (size_t)r->held_cap);
    }
    if (at == r->held_noffs)
        r->held_noffs++;
    r->held_lens[at] = (int)v->len;
    r->held_bin[at] = v->kind == PGO_COL_BINARY;
    if (v->kind == PGO_COL_NULL) {
        r->held_offs[at] = -1;
        return;
    }
    strbuf_append_len(&r->held_vals, (const char *)v->data, v->len);
    strbuf_append_len(&r->held_vals, "", 1);
    r->held_offs[at] = (long)before;
}

static void hold_value(Rel *r, const PgoValue *v)
{
    hold_value_at(r, r->held_noffs, v);
}

/* The held update of the row whose key t carries, or -1.  (One statement
 * must not name a key twice: UPDATE ... FROM would apply only one of
 * them; hold_row puts the later update in the earlier one's place.) */
static int held_row_of(const Rel *r, const PgoTuple *t)
{
    int per_row = r->held_rows ? r->held_noffs / r->held_rows : 0;

    for (int row = 0; row < r->held_rows; row++) {
        int v = 0;
        bool same = true;

        for (int i = 0; i < r->ncols && same; i++) {
            long off;

            if (r->held_where[i] != '1')
                continue;
            off = r->held_offs[row * per_row + v];
            same = off >= 0 && t->values[i].kind != PGO_COL_NULL &&
                   (size_t)r->held_lens[row * per_row + v++] == t->values[i].len &&
                   memcmp(r->held_vals.data + off, t->values[i].data, t->values[i].len) == 0;
        }
        if (same)
            return row;
    }
    return -1;
}

/* Send what r holds once it reaches HOLD_ROWS or HOLD_BYTES. */
static bool held_within_limits(Apply *a, Rel *r)
{
    if (r->held_rows >= HOLD_ROWS || r->held_vals.len >= HOLD_BYTES) {
        a->pend_bytes += (int64_t)r->held_vals.len;
        a->batch_bytes += (int64_t)r->held_vals.len;
        return flush_rel(a, r);
    }
    return true;
}

/* Hold one insert (op INSERT: mask = its columns) or one update found by an
 * unchanged key (op UPDATE_BATCH: where = key columns, mask = columns set;
 * all values from t); flush_rel sends them. */
static bool hold_row(Apply *a, Rel *r, ApplySqlOp op, const PgoTuple *t, const char *mask,
                     const char *where)
{
    bool same = r->held_rows > 0 && r->held_op == op && strcmp(r->held_mask, mask) == 0 &&
                (op != APPLYSQL_UPDATE_BATCH || strcmp(r->held_where, where) == 0);
    int row = same && op == APPLYSQL_UPDATE_BATCH ? held_row_of(r, t) : -1;

    if (row >= 0) {
        /* the row's held update, same key and same columns set: the later
         * one's values replace it (TPC-B updates a few branches and
         * tellers again and again; each repeat cost a statement) */
        int per_row = r->held_noffs / r->held_rows, v = per_row;

        for (int i = r->ncols - 1; i >= 0; i--)
            if (mask[i] == '1')
                hold_value_at(r, row * per_row + --v, &t->values[i]);
        r->held_merged = true;
        a->stats.changes++;
        return held_within_limits(a, r);
    }
    if (r->held_rows > 0 && !same && !flush_rel(a, r))
        return false;
    if (!r->held_mask) {
        r->held_op = op;
        r->held_mask = xstrdup(mask);
        r->held_where = op == APPLYSQL_UPDATE_BATCH ? xstrdup(where) : NULL;
    }
    if (!r->held_vals.data)
        strbuf_init(&r->held_vals);
    for (int i = 0; op == APPLYSQL_UPDATE_BATCH && i < r->ncols; i++)
        if (where[i] == '1')
            hold_value(r, &t->values[i]);
    for (int i = 0; i < r->ncols; i++)
        if (mask[i] == '1')
            hold_value(r, &t->values[i]);
    if (r->held_rows == r->held_txn_cap) {
        r->held_txn_cap = r->held_txn_cap ? r->held_txn_cap * 2 : 64;
        r->held_txn = xrealloc(r->held_txn, (size_t)r->held_txn_cap * sizeof(SourceTxn));
    }
    r->held_txn[r->held_rows++] = a->txn;
    a->stats.changes++;
    if (!r->dirty) {
        if (a->ndirty == a->dirty_cap) {
            a->dirty_cap = a->dirty_cap ? a->dirty_cap * 2 : 16;
            a->dirty = xrealloc(a->dirty, (size_t)a->dirty_cap * sizeof(Rel *));
        }
        a->dirty[a->ndirty++] = r;
        r->dirty = true;
    }
    return held_within_limits(a, r);
}

/* Is column i of the new tuple known to equal its old value? */
static bool known_unchanged(const ApplySqlShape *sh, const PgoTuple *new_t, const PgoTuple *where_t,
                            int i)
{
    const PgoValue *n = &new_t->values[i], *o;

    if (sh->where[i] != '1')
        return false;
    if (where_t == new_t)
        return true; /* the key did not change: it is its own old value */
    o = &where_t->values[i];
    return n->kind == o->kind && n->len == o->len &&
           (n->len == 0 || memcmp(n->data, o->data, n->len) == 0);
}

/* An UPDATE may not assign an identity GENERATED ALWAYS column: leave such
 * columns out when they did not change; when they did (rare), let the
 * column accept values for this one statement (transactional DDL on the
 * target, which no application uses yet). */
static bool update_row(Apply *a, Rel *r, ApplySqlShape *sh, const PgoTuple *new_t,
                       const PgoTuple *where_t)
{
    ApplySqlTable t = sql_table(r);
    StrBuf before, after;
    bool ok;

    if (!r->has_always)
        return exec_shape(a, r, sh, new_t, where_t);
    strbuf_init(&before);
    strbuf_init(&after);
    for (int i = 0; i < r->ncols; i++) {
        if (sh->set[i] != '1' || !r->always[i])
            continue;
        if (known_unchanged(sh, new_t, where_t, i)) {
            sh->set[i] = '0';
            continue;
        }
        applysql_append_set_generated(&before, &t, i, false);
        applysql_append_set_generated(&after, &t, i, true);
    }
    ok = (before.len == 0 || send_query(a, before.data, 0, NULL, xstrdup(before.data))) &&
         (strchr(sh->set, '1') == NULL || exec_shape(a, r, sh, new_t, where_t)) &&
         (after.len == 0 || send_query(a, after.data, 0, NULL, xstrdup(after.data)));
    strbuf_free(&before);
    strbuf_free(&after);
    return ok;
}

/* Can this UPDATE wait in a batch (hold_row)?  Only the plain case: the
 * row found by its key, the key unchanged (no old tuple), key columns
 * compared with their type's equality, no GENERATED ALWAYS column on the
 * target (update_row's special case), not a partitioned table, and no
 * column it sets under a unique or exclusion index: one statement updates
 * its rows in no particular order, and a non-deferrable unique index
 * checks each row as it goes, so the source's order must be kept there. */
static bool updatable_by_key(const Rel *r, const PgoUpdate *u)
{
    int nkey = 0;

    if (u->old_kind != PGO_OLD_NONE || r->has_always || r->partitioned)
        return false;
    for (int i = 0; i < r->ncols; i++) {
        if (!r->key[i]) {
            if (i < u->new_tuple.ncols && r->in_unique[i] &&
                u->new_tuple.values[i].kind != PGO_COL_UNCHANGED && !r->skip[i])
                return false;
            continue;
        }
        nkey++;
        if (r->text_cmp[i] || i >= u->new_tuple.ncols ||
            (u->new_tuple.values[i].kind != PGO_COL_TEXT &&
             u->new_tuple.values[i].kind != PGO_COL_BINARY))
            return false;
    }
    return nkey > 0;
}

/* Binary values are bound as the target column's type: one of another
 * built-in type (altered on one side only) would be misread.  false after
 * logging. */
static bool binary_fits(const Rel *r, const PgoTuple *t)
{
    for (int i = 0; i < r->ncols && i < t->ncols; i++) {
        if (t->values[i].kind != PGO_COL_BINARY || !r->retyped[i] || r->skip[i])
            continue;
        log_msg(LOG_ERROR,
                "The source sends this column's values in binary, which are read as the "
                "target column's type; the column's type differs between the two servers.",
                "Give the column the same type on both sides, or run pgrelocate start again "
                "with --protocol text.",
                "[apply] column %s of %s.%s has another type on the target (%s)", r->quoted[i],
                r->nspname, r->relname, r->type_name[i]);
        return false;
    }
    return true;
}

static bool on_change(Apply *a, const PgoMessage *m)
{
    char *set = NULL, *where = NULL;
    ApplySqlShape sh = {0};
    const PgoTuple *where_t = NULL;
    Rel *r;
    bool ok = false;

    r = rel_for(a,
                m->type == PGO_MSG_INSERT   ? m->u.insert.relid
                : m->type == PGO_MSG_UPDATE ? m->u.update.relid
                                            : m->u.del.relid,
                "change");
    if (!r || !binary_fits(r, m->type == PGO_MSG_INSERT   ? &m->u.insert.new_tuple
                              : m->type == PGO_MSG_UPDATE ? &m->u.update.new_tuple
                                                          : &m->u.del.old_tuple))
        return false;
    if (m->type == PGO_MSG_UPDATE && m->u.update.old_kind != PGO_OLD_NONE &&
        !binary_fits(r, &m->u.update.old_tuple))
        return false;
    set = xcalloc((size_t)r->ncols + 1, 1);
    where = xcalloc((size_t)r->ncols + 1, 1);
    memset(where, '0', (size_t)r->ncols);
    sh.set = set;
    sh.where = where;
    sh.op = m->type == PGO_MSG_INSERT   ? APPLYSQL_INSERT
            : m->type == PGO_MSG_UPDATE ? APPLYSQL_UPDATE
                                        : APPLYSQL_DELETE;
    if (m->type == PGO_MSG_INSERT) {
        fill_mask(r, &m->u.insert.new_tuple, false, set);
        ok = hold_row(a, r, APPLYSQL_INSERT, &m->u.insert.new_tuple, set, NULL);
    } else if (m->type == PGO_MSG_UPDATE && updatable_by_key(r, &m->u.update)) {
        /* the common UPDATE: key unchanged, found by it: batched */
        const PgoUpdate *u = &m->u.update;

        ok = choose_where(r, u->old_kind, &u->old_tuple, &u->new_tuple, &sh, &where_t);
        if (ok && fill_mask(r, &u->new_tuple, false, set) > 0)
            ok = hold_row(a, r, APPLYSQL_UPDATE_BATCH, &u->new_tuple, set, where);
    } else if (r->held_rows > 0 && !flush_rel(a, r)) {
        ok = false;
    } else if (m->type == PGO_MSG_UPDATE) {
        const PgoUpdate *u = &m->u.update;

        ok = choose_where(r, u->old_kind, &u->old_tuple, &u->new_tuple, &sh, &where_t);
        if (ok && fill_mask(r, &u->new_tuple, false, set) > 0)
            ok = update_row(a, r, &sh, &u->new_tuple, where_t);
    } else {
        const PgoDelete *d = &m->u.del;

        memset(set, '0', (size_t)r->ncols);
        ok = choose_where(r, d->old_kind, &d->old_tuple, NULL, &sh, &where_t) &&
             exec_shape(a, r, &sh, NULL, where_t);
    }
    free(set);
    free(where);
    return ok;
}

/* Per-table sync (tablesync.h): whether this transaction's change of relid
 * applies.  A wait that ended because the follower stops counts as a lost
 * connection: the batch rolls back and streaming restarts from the origin. */
static TableSyncVerdict sync_verdict(Apply *a, uint32_t relid)
{
    Rel *r = a->sync ? find_rel(a, relid) : NULL;
    TableSyncVerdict v;

    if (!r || r->sync_entry < 0)
        return TABLESYNC_APPLY;
    v = tablesync_decide(a->sync, r->sync_entry, a->txn_final_lsn, a->sync_stop);
    if (v == TABLESYNC_STOPPED)
        a->conn_lost = true;
    return v;
}

static bool on_truncate(Apply *a, const PgoTruncate *t)
{
    const char **names = xcalloc((size_t)t->nrelids + 1, sizeof(char *));
    char *sql = NULL;
    bool ok = flush_all(a);

    int n = 0;

    for (uint32_t i = 0; i < t->nrelids && ok; i++) {
        Rel *r = rel_for(a, t->relids[i], "truncate");
        TableSyncVerdict v = r ? sync_verdict(a, t->relids[i]) : TABLESYNC_APPLY;

        if (r && v == TABLESYNC_APPLY)
            names[n++] = r->qualified;
        ok = r != NULL && v != TABLESYNC_STOPPED;
    }
    if (ok && n > 0) {
        sql = applysql_build_truncate(names, n, t->restart_identity, t->cascade);
        ok = send_query(a, sql, 0, NULL, xstrdup(sql));
    }
    free(sql);
    free(names);
    return ok;
}

/* ---- schema changes ---- */

/* Run cmd's statement on the target as the source ran it: its search_path
 * and, when the target has that role and we may take it, its role; then
 * back to apply's own (conn.c pins search_path = pg_catalog). */
static bool replay_ddl(Apply *a, const DdlCommand *cmd, const DdlVerdict *v, Lsn lsn)
{
    const char *p[1] = {cmd->role ? cmd->role : ""};
    char at[LSN_TEXT_SIZE], *event;
    PGresult *res;
    bool as_role, has_events, ok;

    if (!flush_all(a))
        return false;
    /* (in the reverse direction the old source has no event log) */
    res = query_outside_pipeline(a,
                                 "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname "
                                 "= $1 AND pg_catalog.pg_has_role(current_user, oid, 'MEMBER')), "
                                 "pg_catalog.to_regclass('pgrelocate.events') IS NOT NULL",
                                 1, p, 2);
    if (!res)
        return false;
    as_role = PQgetvalue(res, 0, 0)[0] == 't';
    has_events = PQgetvalue(res, 0, 1)[0] == 't';
    PQclear(res);
    lsn_format(lsn, at);
    log_info("[apply] replaying %s at %s%s%s: %.200s", cmd->tag, at, v->note ? " " : "",
             v->note ? v->note : "", v->sql);
    /* the event commits with the command: the log shows each replay once */
    event = xasprintf("replayed %s at %s%s%s: %.1000s", cmd->tag, at, v->note ? " " : "",
                      v->note ? v->note : "", v->sql);
    p[0] = event;
    ok = !has_events ||
         send_query(a,
                    "INSERT INTO pgrelocate.events (level, context, message) VALUES ('info', "
                    "'apply', $1)",
                    1, p, xstrdup("recording a schema change in pgrelocate.events"));
    free(event);
    if (!ok)
        return false;
    p[0] = cmd->search_path;
    if (!send_query(a, "SELECT pg_catalog.set_config('search_path', $1, true)", 1, p,
                    xstrdup("setting the search_path of a schema change")))
        return false;
    if (as_role) {
        char *q = conn_quote_ident(a->tgt, cmd->role), *sql = xasprintf("SET LOCAL ROLE %s", q);

        ok = send_query(a, sql, 0, NULL, xasprintf("taking role %s for a schema change", q));
        free(q);
        free(sql);
        if (!ok)
            return false;
    }
    if (!send_query(a, v->sql, 0, NULL,
                    xasprintf("replaying %s at %s (%.200s)", cmd->tag, at, v->sql)) ||
        (as_role && !send_query(a, "RESET ROLE", 0, NULL, xstrdup("RESET ROLE"))) ||
        !send_query(a, "SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)", 0, NULL,
                    xstrdup("restoring the search_path")))
        return false;
    a->ddl_in_txn = true;
    a->stats.ddl++;
    return sync_check(a);
}

/* A logical message: a captured schema change (ddl.h) is replayed or
 * refused; any other message (a sync point's) is not apply's. */
static bool on_message(Apply *a, const PgoLogicalMessage *m)
{
    DdlCommand cmd;
    DdlVerdict v;
    char *err = NULL, at[LSN_TEXT_SIZE];
    bool ok = true;

    if (!m->transactional || strcmp(m->prefix, DDL_MESSAGE_PREFIX) != 0)
        return true;
    lsn_format(m->lsn, at);
    if (!a->in_txn || !ddl_parse((const char *)m->content, m->len, &cmd, &err)) {
        log_error("[apply] schema change at %s: %s (protocol error)", at,
                  err ? err : "outside a transaction");
        free(err);
        return false;
    }
    ddl_judge(&cmd, &v);
    if (v.action == DDL_REPLAY) {
        ok = replay_ddl(a, &cmd, &v, m->lsn);
    } else if (v.action == DDL_IGNORE && v.note) {
        log_info("[apply] schema change at %s left on the source: %s: %.200s", at, v.note,
                 cmd.query);
    } else if (v.action == DDL_REFUSE) {
        char *detail = xasprintf("The command was: %.500s", cmd.query);

        log_msg(LOG_ERROR, detail, v.hint, "[apply] schema change at %s refused: %s", at, v.reason);
        log_note_lasting_error(); /* running start again stops at the same command */
        free(detail);
        ok = false;
    }
    ddl_verdict_free(&v);
    ddl_command_free(&cmd);
    return ok;
}

/* ---- transactions ---- */

bool apply_commit(Apply *a)
{
    char lsn[LSN_TEXT_SIZE], ts[48];
    const char *p[2] = {lsn, ts};
    bool ok;

    if (!a->batch_open || a->in_txn)
        return true;
    /* Every row count checked before COMMIT goes out: a conflict found
     * after it would be committed, origin progress included, and the source
     * transaction would never be applied again (028 tests this). */
    if (!flush_all(a) || !sync_check(a))
        return false; /* the caller closes the connection: the server rolls back */
    lsn_format(a->last_end_lsn, lsn);
    snprintf(ts, sizeof(ts), "%.6f", (double)a->last_commit_time_us / 1e6 + 946684800.0);
    ok = (a->batch_txns == 0 ||
          send_query(a,
                     "SELECT pg_catalog.pg_replication_origin_xact_setup($1::pg_lsn, "
                     "pg_catalog.to_timestamp($2::float8))",
                     2, p, xstrdup("recording replication progress"))) &&
         send_query(a, "COMMIT", 0, NULL, xstrdup("commit")) && sync_check(a);
    a->batch_open = false;
    if (ok) {
        if (a->batch_txns > 0) {
            a->committed_lsn = a->last_end_lsn;
            a->committed_time_us = a->last_commit_time_us;
        }
        a->stats.transactions += a->batch_txns;
        a->stats.batches++;
    }
    a->batch_txns = 0;
    a->batch_bytes = 0;
    return ok;
}

static bool on_begin(Apply *a, const PgoBegin *b)
{
    a->in_txn = true;
    a->ddl_in_txn = false;
    a->txn_final_lsn = b->final_lsn;
    a->txn = (SourceTxn){b->xid, b->final_lsn};
    a->skip_hit = a->skip_lsn != 0 && b->final_lsn == a->skip_lsn;
    a->skipping = a->skip_hit;
    a->skipped_changes = 0;
    if (a->batch_open)
        return true;
    a->batch_open = true;
    a->batch_start = clock_now_s();
    return send_query(a, "BEGIN", 0, NULL, xstrdup("begin"));
}

/* The skipped transaction's record, in the target transaction that moves
 * the origin past it: kept exactly once, for status and verify. */
static bool record_skip(Apply *a)
{
    char lsn[LSN_TEXT_SIZE];
    char *msg =
        xasprintf("skipped source transaction %u committed at %s (%lld changes not "
                  "applied, by --skip-transaction)",
                  a->txn.xid, lsn_format(a->txn.commit_lsn, lsn), (long long)a->skipped_changes);
    const char *p[1] = {msg};
    bool ok;

    log_warning("[apply] %s", msg);
    ok = send_query(a,
                    "INSERT INTO pgrelocate.events (level, context, message) "
                    "VALUES ('warning', 'apply', $1)",
                    1, p, xstrdup("recording the skipped transaction"));
    free(msg);
    a->skip_hit = false;
    return ok;
}

static bool on_commit(Apply *a, const PgoCommit *c)
{
    bool ddl = a->ddl_in_txn;

    if (a->skip_hit && !record_skip(a))
        return false;
    if (a->exact && !flush_all(a))
        return false;
    a->in_txn = false;
    a->skipping = false;
    a->ddl_in_txn = false;
    a->last_end_lsn = c->end_lsn;
    a->last_commit_time_us = c->commit_time_us;
    a->batch_txns++;
    if (ddl || a->batch_txns >= BATCH_TXNS || a->batch_bytes >= BATCH_BYTES ||
        clock_now_s() - a->batch_start >= BATCH_SECONDS ||
        (a->sync && tablesync_resyncing(a->sync)))
        return apply_commit(a);
    return true;
}

bool apply_message(Apply *a, const PgoMessage *m)
{
    switch (m->type) {
    case PGO_MSG_BEGIN:
        return on_begin(a, &m->u.begin);
    case PGO_MSG_COMMIT:
        return on_commit(a, &m->u.commit);
    case PGO_MSG_RELATION:
        return on_relation(a, &m->u.relation);
    case PGO_MSG_INSERT:
    case PGO_MSG_UPDATE:
    case PGO_MSG_DELETE:
        if (a->skipping) {
            a->skipped_changes += a->skip_hit;
            return true;
        }
        if (!a->in_txn) {
            log_error("[apply] change outside a transaction (protocol error)");
            return false;
        }
        if (a->sync) {
            TableSyncVerdict v = sync_verdict(a, m->type == PGO_MSG_INSERT   ? m->u.insert.relid
                                                 : m->type == PGO_MSG_UPDATE ? m->u.update.relid
                                                                             : m->u.del.relid);

            if (v != TABLESYNC_APPLY)
                return v == TABLESYNC_SKIP;
        }
        return on_change(a, m);
    case PGO_MSG_TRUNCATE:
        return a->skipping || on_truncate(a, &m->u.truncate);
    case PGO_MSG_ORIGIN:
        /* our own changes coming back from the other side: never loop */
        if (a->skip_origin && a->in_txn && strcmp(m->u.origin.name, a->skip_origin) == 0)
            a->skipping = true;
        return true;
    case PGO_MSG_MESSAGE:
        return a->skipping || on_message(a, &m->u.message);
    case PGO_MSG_TYPE:
        return true;
    default:
        log_error("[apply] unexpected message '%c': streaming and two-phase were not requested",
                  (char)m->type);
        return false;
    }
}

void apply_set_skip_lsn(Apply *a, Lsn commit_lsn)
{
    a->skip_lsn = commit_lsn;
}

void apply_set_sync(Apply *a, TableSync *sync, volatile sig_atomic_t *stop)
{
    a->sync = sync;
    a->sync_stop = stop;
}

void apply_set_exact(Apply *a, bool exact)
{
    a->exact = exact;
}

bool apply_failure_ambiguous(const Apply *a)
{
    return a->ambiguous;
}

void apply_set_skip_origin(Apply *a, const char *origin)
{
    free(a->skip_origin);
    a->skip_origin = origin ? xstrdup(origin) : NULL;
}

bool apply_in_transaction(const Apply *a)
{
    return a->in_txn;
}

bool apply_connection_lost(const Apply *a)
{
    return a->conn_lost;
}

bool apply_batch_open(const Apply *a)
{
    return a->batch_open;
}

Lsn apply_committed_lsn(const Apply *a)
{
    return a->committed_lsn;
}

int64_t apply_committed_time_us(const Apply *a)
{
    return a->committed_time_us;
}

void apply_get_stats(const Apply *a, ApplyStats *out)
{
    *out = a->stats;
}
