/*
 * sequences.c: source sequence values onto the target.
 */
#include "sequences.h"

#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <stdlib.h>

static bool copy_one(PGconn *src, PGconn *tgt, const CatSequence *s)
{
    char *q = conn_qualify(src, s->schema_name, s->name);
    char *sql = xasprintf("SELECT last_value, is_called FROM %s", q);
    char *ctx = xasprintf("sequences %s.%s", s->schema_name, s->name);
    PGresult *res = conn_query(src, ctx, sql, 0, NULL, 2);
    bool ok = false;

    if (res && PQntuples(res) == 1) {
        const char *params[3] = {q, PQgetvalue(res, 0, 0),
                                 PQgetvalue(res, 0, 1)[0] == 't' ? "true" : "false"};

        ok = conn_command(tgt, ctx, "SELECT pg_catalog.setval($1::regclass, $2::bigint, $3::bool)",
                          3, params);
    }
    PQclear(res);
    free(q);
    free(sql);
    free(ctx);
    return ok;
}

bool sequences_copy(PGconn *src, PGconn *tgt, const CatSequence *seqs, int n)
{
    for (int i = 0; i < n; i++)
        if (!copy_one(src, tgt, &seqs[i]))
            return false;
    return true;
}
