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
        res = PQexecParams(src, "SELECT pg_catalog.lo_get($1::oid, $2::bigint, $3::int)", 3, NULL,
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
