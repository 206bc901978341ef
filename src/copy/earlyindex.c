/*
 * earlyindex.c: index builds overlapping the data phase.
 */
#include "earlyindex.h"

#include "conn.h"
#include "log.h"
#include "strbuf.h"

#include <stdlib.h>
#include <string.h>

#define PG_CLASS_OID      1259u
#define PG_CONSTRAINT_OID 2606u

/* $1: index oids, $2: constraint oids.  Only constraints that own an
 * index (primary key, unique, exclusion) on an ordinary table qualify. */
static const char *const owners_sql =
    "SELECT 'i', x.oid, n.nspname, c.relname FROM unnest($1::oid[]) AS x(oid)"
    " JOIN pg_index i ON i.indexrelid = x.oid JOIN pg_class c ON c.oid = i.indrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
    " UNION ALL"
    " SELECT 'c', x.oid, n.nspname, c.relname FROM unnest($2::oid[]) AS x(oid)"
    " JOIN pg_constraint k ON k.oid = x.oid JOIN pg_class c ON c.oid = k.conrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND k.contype IN ('p', 'u', 'x')";

/* Lookups by name and by oid in sorted arrays: thousands of tables and
 * indexes must not cost a quadratic scan. */
static int table_cmp(const void *a, const void *b)
{
    const StateTable *x = *(const StateTable *const *)a, *y = *(const StateTable *const *)b;
    int c = strcmp(x->schema_name, y->schema_name);

    return c ? c : strcmp(x->table_name, y->table_name);
}

static const StateTable *find_table(const StateTable **sorted, int ntables, const char *schema,
                                    const char *name)
{
    StateTable key = {.schema_name = (char *)schema, .table_name = (char *)name};
    const StateTable *kp = &key, **hit;

    hit = bsearch(&kp, sorted, (size_t)ntables, sizeof(*sorted), table_cmp);
    return hit ? *hit : NULL;
}

typedef struct OidSlot {
    unsigned int catalog_oid, object_oid;
    int entry;
} OidSlot;

static int slot_cmp(const void *a, const void *b)
{
    const OidSlot *x = a, *y = b;

    if (x->catalog_oid != y->catalog_oid)
        return x->catalog_oid < y->catalog_oid ? -1 : 1;
    if (x->object_oid != y->object_oid)
        return x->object_oid < y->object_oid ? -1 : 1;
    return 0;
}

/* Mark done the entries the state lists (built by an earlier run). */
static bool skip_done(EarlyIndexes *ei, PGconn *tgt)
{
    int *done = NULL, ndone = 0;

    if (!state_load_post_done(tgt, &done, &ndone))
        return false;
    for (int i = 0; i < ei->nentries; i++)
        for (int k = 0; k < ndone; k++)
            if (ei->entries[i].dump_id == done[k])
                ei->entries[i].done = true;
    free(done);
    return true;
}

/* The oid[] literals of the pending INDEX and CONSTRAINT entries. */
static void candidate_oids(const EarlyIndexes *ei, StrBuf *idx, StrBuf *con)
{
    strbuf_append(idx, "{");
    strbuf_append(con, "{");
    for (int i = 0; i < ei->nentries; i++) {
        const PostEntry *e = &ei->entries[i];
        StrBuf *sb = e->catalog_oid == PG_CLASS_OID        ? idx
                     : e->catalog_oid == PG_CONSTRAINT_OID ? con
                                                           : NULL;

        if (e->done || !sb || !schema_entry_is_table_build(e))
            continue;
        strbuf_appendf(sb, "%s%u", sb->len > 1 ? "," : "", e->object_oid);
    }
    strbuf_append(idx, "}");
    strbuf_append(con, "}");
}

static void map_owners(EarlyIndexes *ei, PGresult *res, const StateTable *tables, int ntables)
{
    const StateTable **sorted = xcalloc((size_t)ntables + 1, sizeof(*sorted));
    OidSlot *slots = xcalloc((size_t)ei->nentries + 1, sizeof(OidSlot));
    int nslots = 0;

    for (int i = 0; i < ntables; i++)
        sorted[i] = &tables[i];
    qsort(sorted, (size_t)ntables, sizeof(*sorted), table_cmp);
    for (int i = 0; i < ei->nentries; i++)
        if (!ei->entries[i].done && schema_entry_is_table_build(&ei->entries[i]))
            slots[nslots++] = (OidSlot){ei->entries[i].catalog_oid, ei->entries[i].object_oid, i};
    qsort(slots, (size_t)nslots, sizeof(OidSlot), slot_cmp);
    for (int r = 0; r < PQntuples(res); r++) {
        OidSlot key = {PQgetvalue(res, r, 0)[0] == 'i' ? PG_CLASS_OID : PG_CONSTRAINT_OID,
                       (unsigned int)strtoul(PQgetvalue(res, r, 1), NULL, 10), 0};
        const StateTable *t =
            find_table(sorted, ntables, PQgetvalue(res, r, 2), PQgetvalue(res, r, 3));
        const OidSlot *hit = bsearch(&key, slots, (size_t)nslots, sizeof(OidSlot), slot_cmp);

        if (t && hit)
            ei->table_of[hit->entry] = t->table_no;
    }
    free(sorted);
    free(slots);
}

bool earlyindex_prepare(EarlyIndexes *ei, PGconn *src, PGconn *tgt, const StateTable *tables,
                        int ntables)
{
    StrBuf idx, con;
    const char *params[2];
    PGresult *res = NULL;
    bool ok;

    atomic_store(&ei->built, 0);
    ei->entries = NULL;
    ei->nentries = 0;
    ei->table_of = NULL;
    if (!schema_list_post(ei->tools, ei->archive, &ei->entries, &ei->nentries))
        return false;
    ei->table_of = xcalloc((size_t)ei->nentries + 1, sizeof(int));
    if (!skip_done(ei, tgt))
        return false;
    strbuf_init(&idx);
    strbuf_init(&con);
    candidate_oids(ei, &idx, &con);
    params[0] = idx.data;
    params[1] = con.data;
    ok = (res = conn_query(src, "indexes", owners_sql, 2, params, 4)) != NULL;
    if (ok)
        map_owners(ei, res, tables, ntables);
    PQclear(res);
    strbuf_free(&idx);
    strbuf_free(&con);
    return ok;
}

bool earlyindex_build_table(void *arg, int table_no, int worker, PGconn *tgt)
{
    EarlyIndexes *ei = arg;

    for (int i = 0; i < ei->nentries; i++) {
        PostEntry *e = &ei->entries[i];
        char *label;

        if (ei->table_of[i] != table_no || e->done)
            continue;
        label = xasprintf("index %s", e->desc);
        progress_worker_status(ei->progress, worker, label);
        free(label);
        log_debug("[indexes] %s (while data copies)", e->desc);
        /* slots 0..jobs-1 are the post-data phase's: keep clear of them */
        if (!schema_restore_entry(ei->tools, ei->target, ei->archive, &ei->so, e, ei->tmpdir,
                                  1000 + worker, ei->resuming) ||
            !state_mark_post_done(tgt, e->dump_id, e->desc))
            return false;
        e->done = true; /* only this worker touches this table's entries */
        atomic_fetch_add(&ei->built, 1);
    }
    return true;
}

void earlyindex_free(EarlyIndexes *ei)
{
    schema_free_post(ei->entries, ei->nentries);
    free(ei->table_of);
    ei->entries = NULL;
    ei->table_of = NULL;
    ei->nentries = 0;
}
