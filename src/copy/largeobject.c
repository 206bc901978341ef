/*
 * largeobject.c: large object data, piece by piece.
 */
#include "largeobject.h"

#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIECE_BYTES (1024 * 1024)

/* Copy one object's bytes; adds to *bytes. */
static bool copy_object(PGconn *src, PGconn *tgt, const char *oid, int64_t *bytes)
{
    char ctx[64], off[24], len[24];
    bool ok;

    snprintf(ctx, sizeof(ctx), "large objects %s", oid);
    snprintf(len, sizeof(len), "%d", PIECE_BYTES);
    ok =
        conn_script(tgt, ctx, "BEGIN") &&
        conn_call(tgt, ctx,
                  "SELECT pg_catalog.lo_create($1::oid) WHERE NOT EXISTS (SELECT 1 FROM "
                  "pg_catalog.pg_largeobject_metadata WHERE oid = $1::oid)",
                  1, (const char *[]){oid}, NULL, NULL, -1) &&
        conn_call(tgt, ctx, "SELECT pg_catalog.lo_truncate(pg_catalog.lo_open($1::oid, 131072), 0)",
                  1, (const char *[]){oid}, NULL, NULL, 1);
    for (int64_t pos = 0; ok;) {
        const char *sp[3] = {oid, off, len};
        PGresult *res;
        int got;

        snprintf(off, sizeof(off), "%lld", (long long)pos);
        res = conn_exec_params(src, "large objects",
                               "SELECT pg_catalog.lo_get($1::oid, $2::bigint, $3::int)", 3, NULL,
                               sp, NULL, NULL, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            conn_log_result_error(res, src, ctx);
            PQclear(res);
            ok = false;
            break;
        }
        got = PQgetlength(res, 0, 0);
        if (got > 0) {
            const char *tv[3] = {oid, off, PQgetvalue(res, 0, 0)};
            int tl[3] = {0, 0, got}, tf[3] = {0, 0, 1};

            ok = conn_call(tgt, ctx, "SELECT pg_catalog.lo_put($1::oid, $2::bigint, $3::bytea)", 3,
                           tv, tl, tf, 1);
        }
        PQclear(res);
        pos += got;
        *bytes += got;
        if (got < PIECE_BYTES)
            break;
    }
    if (ok)
        return conn_script(tgt, ctx, "COMMIT");
    conn_script(tgt, ctx, "ROLLBACK");
    return false;
}

/* One side's large objects by oid: owner, privileges (the default made
 * explicit, entries in text order), md5 of the contents. */
static const char *const list_sql =
    "SELECT m.oid::text, pg_catalog.pg_get_userbyid(m.lomowner),"
    " (SELECT pg_catalog.string_agg(a::text, ',' ORDER BY a::text)"
    "    FROM pg_catalog.unnest(coalesce(m.lomacl, pg_catalog.acldefault('L', m.lomowner))) a),"
    " pg_catalog.md5(pg_catalog.lo_get(m.oid))"
    " FROM pg_catalog.pg_largeobject_metadata m ORDER BY m.oid";

enum { LO_OID, LO_OWNER, LO_ACL, LO_DIGEST };

typedef bool (*LoVisit)(void *arg, const char *oid, const PGresult *a, int ia, const PGresult *b,
                        int ib);

/* Walk both sides' lists merged by oid: ia or ib is -1 where that side
 * lacks the object.  Stops at the first visit that returns false. */
static bool lo_walk(PGconn *a, PGconn *b, const char *ctx, LoVisit visit, void *arg)
{
    PGresult *ra = conn_query(a, ctx, list_sql, 0, NULL, 4);
    PGresult *rb = ra ? conn_query(b, ctx, list_sql, 0, NULL, 4) : NULL;
    int i = 0, j = 0, na, nb;
    bool ok = ra && rb;

    na = ok ? PQntuples(ra) : 0;
    nb = ok ? PQntuples(rb) : 0;
    while (ok && (i < na || j < nb)) {
        unsigned long oa = i < na ? strtoul(PQgetvalue(ra, i, LO_OID), NULL, 10) : 0;
        unsigned long ob = j < nb ? strtoul(PQgetvalue(rb, j, LO_OID), NULL, 10) : 0;

        bool in_a = i < na && (j >= nb || oa <= ob), in_b = j < nb && (i >= na || ob <= oa);

        ok = visit(arg, PQgetvalue(in_a ? ra : rb, in_a ? i : j, LO_OID), ra, in_a ? i : -1, rb,
                   in_b ? j : -1);
        i += in_a;
        j += in_b;
    }
    PQclear(ra);
    PQclear(rb);
    return ok;
}

static bool field_differs(const PGresult *a, int ia, const PGresult *b, int ib, int f)
{
    return strcmp(PQgetvalue(a, ia, f), PQgetvalue(b, ib, f)) != 0;
}

typedef struct SyncWalk {
    PGconn *from, *to;
    const char *ctx;
    LoSyncResult *out;
} SyncWalk;

/* Owner and privileges of oid on to as on from: every grant on to revoked,
 * from's granted (aclexplode lists the owner's own entries too). */
static bool fix_meta(SyncWalk *w, const char *oid, const char *owner)
{
    const char *p[1] = {oid};
    char *qowner = conn_quote_ident(w->to, owner);
    char *sql = xasprintf("ALTER LARGE OBJECT %s OWNER TO %s", oid, qowner);
    PGresult *old = NULL, *want = NULL;
    static const char *const grants_sql =
        "SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE"
        " pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, a.is_grantable"
        " FROM pg_catalog.pg_largeobject_metadata m,"
        " pg_catalog.aclexplode(coalesce(m.lomacl, pg_catalog.acldefault('L', m.lomowner))) a"
        " WHERE m.oid = $1::oid";
    bool ok = conn_script(w->to, w->ctx, sql) &&
              (old = conn_query(w->to, w->ctx, grants_sql, 1, p, 3)) &&
              (want = conn_query(w->from, w->ctx, grants_sql, 1, p, 3));

    free(sql);
    free(qowner);
    for (int i = 0; ok && i < PQntuples(old); i++) {
        sql = xasprintf("REVOKE ALL ON LARGE OBJECT %s FROM %s", oid, PQgetvalue(old, i, 1));
        ok = conn_script(w->to, w->ctx, sql);
        free(sql);
    }
    for (int i = 0; ok && i < PQntuples(want); i++) {
        sql = xasprintf("GRANT %s ON LARGE OBJECT %s TO %s%s", PQgetvalue(want, i, 0), oid,
                        PQgetvalue(want, i, 1),
                        strcmp(PQgetvalue(want, i, 2), "t") == 0 ? " WITH GRANT OPTION" : "");
        ok = conn_script(w->to, w->ctx, sql);
        free(sql);
    }
    PQclear(old);
    PQclear(want);
    return ok;
}

static bool sync_visit(void *arg, const char *oid, const PGresult *a, int ia, const PGresult *b,
                       int ib)
{
    SyncWalk *w = arg;

    if (ia < 0) {
        w->out->removed++;
        return conn_call(w->to, w->ctx, "SELECT pg_catalog.lo_unlink($1::oid)", 1,
                         (const char *[]){oid}, NULL, NULL, 1);
    }
    if (ib < 0 || field_differs(a, ia, b, ib, LO_DIGEST)) {
        if (ib < 0)
            w->out->created++;
        else
            w->out->changed++;
        if (!copy_object(w->from, w->to, oid, &w->out->bytes))
            return false;
    }
    if (ib < 0 || field_differs(a, ia, b, ib, LO_OWNER) || field_differs(a, ia, b, ib, LO_ACL)) {
        if (ib >= 0)
            w->out->fixed++;
        return fix_meta(w, oid, PQgetvalue(a, ia, LO_OWNER));
    }
    return true;
}

bool largeobject_sync(PGconn *from, PGconn *to, const char *ctx, LoSyncResult *out)
{
    SyncWalk w = {from, to, ctx, out};

    memset(out, 0, sizeof(*out));
    return lo_walk(from, to, ctx, sync_visit, &w);
}

typedef struct CompareWalk {
    LoDiff **diffs;
    int *n;
} CompareWalk;

static bool compare_visit(void *arg, const char *oid, const PGresult *a, int ia, const PGresult *b,
                          int ib)
{
    CompareWalk *w = arg;
    const char *what = ia < 0                                   ? "extra on target"
                       : ib < 0                                 ? "missing on target"
                       : field_differs(a, ia, b, ib, LO_DIGEST) ? "contents differ"
                       : field_differs(a, ia, b, ib, LO_OWNER)  ? "owner differs"
                       : field_differs(a, ia, b, ib, LO_ACL)    ? "privileges differ"
                                                                : NULL;

    if (what) {
        LoDiff *d;

        *w->diffs = xrealloc(*w->diffs, (size_t)(*w->n + 1) * sizeof(LoDiff));
        d = &(*w->diffs)[(*w->n)++];
        snprintf(d->oid, sizeof(d->oid), "%s", oid);
        d->problem = what;
    }
    return true;
}

bool largeobject_compare(PGconn *src, PGconn *tgt, LoDiff **diffs, int *n)
{
    CompareWalk w = {diffs, n};

    *diffs = NULL;
    *n = 0;
    return lo_walk(src, tgt, "large objects", compare_visit, &w);
}

bool largeobject_copy(PGconn *src, PGconn *tgt, Progress *progress, int64_t *count, int64_t *bytes)
{
    PGresult *res =
        conn_query(src, "large objects",
                   "SELECT oid FROM pg_catalog.pg_largeobject_metadata ORDER BY oid", 0, NULL, 1);
    bool ok = true;

    *count = *bytes = 0;
    if (!res)
        return false;
    if (PQntuples(res) > 0)
        progress_worker_begin(progress, 0, "large objects", 0);
    for (int i = 0; i < PQntuples(res) && ok; i++) {
        int64_t before = *bytes;

        ok = copy_object(src, tgt, PQgetvalue(res, i, 0), bytes);
        progress_worker_add(progress, 0, *bytes - before);
        (*count)++;
    }
    if (PQntuples(res) > 0)
        progress_worker_end(progress, 0, *count);
    if (PQntuples(res) > 0)
        progress_worker_end(progress, 0, *count);
    PQclear(res);
    return ok;
}
