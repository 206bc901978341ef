/*
 * sequences.c: source sequence values onto the target.
 */
#include "sequences.h"

#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

        ok = conn_call(tgt, ctx, "SELECT pg_catalog.setval($1::regclass, $2::bigint, $3::bool)", 3,
                       params, NULL, NULL, 1);
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

/* Read on the side clients used: one JSON array of {s, v, c}; a sequence
 * never used keeps is_called false.  Unreadable ones are counted apart. */
static const char *const read_all_sql =
    "SELECT coalesce(json_agg(json_build_object("
    "  's', pg_catalog.format('%I.%I', schemaname, sequencename),"
    "  'v', CASE WHEN last_value IS NULL THEN start_value"
    "            WHEN $1::numeric = 0 THEN last_value"
    "            ELSE LEAST(max_value::numeric, GREATEST(min_value::numeric,"
    "                 last_value::numeric + $1::numeric * increment_by))::bigint END,"
    "  'c', last_value IS NOT NULL)) FILTER (WHERE readable), '[]')::text,"
    "  count(*) FILTER (WHERE NOT readable),"
    "  pg_catalog.string_agg(pg_catalog.format('%I.%I', schemaname, sequencename), ', ')"
    "    FILTER (WHERE NOT readable)"
    " FROM (SELECT *, pg_catalog.has_sequence_privilege("
    "         pg_catalog.format('%I.%I', schemaname, sequencename), 'SELECT') AS readable"
    "       FROM pg_catalog.pg_sequences"
    "       WHERE schemaname <> 'pgrelocate' AND schemaname <> 'information_schema'"
    "         AND schemaname !~ '^pg_') s";

/* On the side clients go to: a sequence there that has handed out values
 * (last_value not null) at or beyond what would be set is "ahead" and
 * kept.  With c false, v itself would come next, so equal is ahead too.
 * The CASE keeps setval from running for those.  Returns the count set,
 * the count kept and the names kept. */
static const char *const set_all_sql =
    "WITH x AS ("
    "  SELECT x.s, x.v, x.c, coalesce(t.last_value IS NOT NULL AND CASE"
    "           WHEN t.increment_by > 0 THEN t.last_value > x.v OR (t.last_value = x.v AND NOT x.c)"
    "           ELSE t.last_value < x.v OR (t.last_value = x.v AND NOT x.c) END, false) AS ahead"
    "  FROM pg_catalog.json_to_recordset($1::json) AS x(s text, v bigint, c bool)"
    "  LEFT JOIN pg_catalog.pg_sequences t"
    "    ON pg_catalog.format('%I.%I', t.schemaname, t.sequencename) = x.s)"
    " SELECT count(CASE WHEN NOT ahead THEN pg_catalog.setval(x.s::regclass, x.v, x.c) END),"
    "  count(*) FILTER (WHERE ahead),"
    "  coalesce(pg_catalog.string_agg(x.s, ', ' ORDER BY x.s) FILTER (WHERE ahead), '')"
    " FROM x";

static void set_result(PGresult *set, SeqSyncResult *out)
{
    const char *names = PQgetvalue(set, 0, 2);
    size_t cap = sizeof(out->kept_names);

    out->set = atoi(PQgetvalue(set, 0, 0));
    out->kept = atoi(PQgetvalue(set, 0, 1));
    if (strlen(names) < cap)
        memcpy(out->kept_names, names, strlen(names) + 1);
    else
        snprintf(out->kept_names, cap, "%.*s...", (int)cap - 4, names);
}

bool sequences_sync_all(PGconn *from, PGconn *to, int64_t headroom, SeqSyncResult *out)
{
    char h[32];
    const char *p1[1] = {h};
    PGresult *res, *set;
    bool ok = false;

    memset(out, 0, sizeof(*out));
    snprintf(h, sizeof(h), "%lld", (long long)headroom);
    if (!(res = conn_query(from, "sequences", read_all_sql, 1, p1, 3)))
        return false;
    if (PQntuples(res) != 1) {
        log_error("[sequences] reading the sequences returned %d rows, expected 1", PQntuples(res));
    } else if (atoi(PQgetvalue(res, 0, 1)) > 0) {
        log_msg(LOG_ERROR, PQgetvalue(res, 0, 2),
                "Grant SELECT on these sequences to the role pgrelocate connects as.",
                "[sequences] cannot read %s sequence(s): the switch would leave them behind",
                PQgetvalue(res, 0, 1));
    } else {
        const char *p2[1] = {PQgetvalue(res, 0, 0)};

        if ((set = conn_query(to, "sequences", set_all_sql, 1, p2, 3)) != NULL) {
            if (PQntuples(set) == 1) {
                set_result(set, out);
                ok = true;
            } else {
                log_error("[sequences] setting the sequences returned %d rows, expected 1",
                          PQntuples(set));
            }
            PQclear(set);
        }
    }
    PQclear(res);
    return ok;
}
