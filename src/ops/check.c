/*
 * check.c: `pgrelocate check`, the preflight: connects to the source and
 * the target, reads their catalogs and settings, and reports PASS / WARN /
 * FAIL lines, each with the reason and the fix (SQL or setting), as an
 * aligned table or as JSON.  Changes nothing on either server: both
 * sessions run with default_transaction_read_only, and the only data read
 * is a short COPY TO STDOUT sample of the largest table to measure a rate.
 * With --tables, the checks about tables judge only the chosen ones (as
 * copy and start would move them, tableset.c).  Does not own the queries
 * start and copy refuse on (slot.c, migrate.c) except where it needs facts
 * rather than log lines.
 */
#include "commands.h"

#include "catalog.h"
#include "childorder.h"
#include "clock.h"
#include "conn.h"
#include "conninfo.h"
#include "log.h"
#include "names.h"
#include "schema.h"
#include "size.h"
#include "slot.h"
#include "state.h"
#include "stateschema.h"
#include "strbuf.h"
#include "tableset.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A transaction holding an xid for longer than this gets named. */
#define CHECK_LONG_XACT "5 minutes"
/* The rate sample reads the largest table for at most this long / much. */
#define CHECK_SAMPLE_SECONDS   2.0
#define CHECK_SAMPLE_MAX_BYTES ((int64_t)512 << 20)
/* Lists in messages name at most this many objects. */
#define CHECK_LIST_MAX 10

typedef enum { CHECK_PASS, CHECK_WARN, CHECK_FAIL } CheckStatus;

static const char *const status_names[] = {"PASS", "WARN", "FAIL"};

typedef struct CheckResult {
    char *name;
    CheckStatus status;
    char *message;
    char *fix; /* NULL when nothing needs doing */
} CheckResult;

/* Settings and role facts of the source, read in one query. */
typedef struct SourceFacts {
    char wal_level[32];
    int max_slots, used_slots;
    int max_senders, used_senders;
    bool keep_size_known; /* max_slot_wal_keep_size exists (PostgreSQL 13+) */
    int64_t keep_size_bytes;
    bool superuser, replication, rds_replication;
    char role[256]; /* quoted */
} SourceFacts;

/* Everything one run collects.  Connections are NULL when unreachable;
 * the checks that need them are then not run (the connection check says
 * why). */
typedef struct CheckRun {
    const Options *o;
    ConnInfo *src_ci, *tgt_ci;
    PGconn *src, *tgt;
    ServerInfo src_info, tgt_info;
    SourceFacts sf;
    bool have_sf;
    TableSet ts;    /* --tables resolved on the source */
    bool have_ts;   /* --tables given and resolved */
    bool ts_failed; /* --tables given and refused: table checks not run */
    Catalog cat;
    bool have_cat;
    double rate_bytes_per_s; /* measured; 0 when not measured */
    double estimate_s;       /* -1 when unknown */
    CheckResult *results;
    int n, cap;
} CheckRun;

static void add_result(CheckRun *r, const char *name, CheckStatus st, const char *fix,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add_result(CheckRun *r, const char *name, CheckStatus st, const char *fix,
                       const char *fmt, ...)
{
    va_list ap;
    StrBuf sb;
    CheckResult *c;

    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 32;
        r->results = xrealloc(r->results, (size_t)r->cap * sizeof(CheckResult));
    }
    c = &r->results[r->n++];
    strbuf_init(&sb);
    va_start(ap, fmt);
    {
        char tmp[4096];

        vsnprintf(tmp, sizeof(tmp), fmt, ap);
        strbuf_append(&sb, tmp);
    }
    va_end(ap);
    c->name = xstrdup(name);
    c->status = st;
    c->message = strbuf_detach(&sb);
    c->fix = fix ? xstrdup(fix) : NULL;
    strbuf_free(&sb);
}

/* Run a query for check name; on failure (already logged by conn_query)
 * record a WARN saying the check could not run, and return NULL. */
static PGresult *check_query(CheckRun *r, PGconn *conn, const char *name, const char *sql,
                             int nparams, const char *const *params, int nfields)
{
    PGresult *res = conn_query(conn, "check", sql, nparams, params, nfields);

    if (!res)
        add_result(r, name, CHECK_WARN, NULL, "could not be checked: the query failed (see above)");
    return res;
}

static const char *version_text(int v, char *buf, size_t len)
{
    snprintf(buf, len, "%d.%d", v / 10000, v % 100);
    return buf;
}

/* ---- source settings and role ---------------------------------------- */

static const char *const source_facts_sql =
    "SELECT pg_catalog.current_setting('wal_level'),"
    " pg_catalog.current_setting('max_replication_slots')::int,"
    " (SELECT count(*) FROM pg_catalog.pg_replication_slots),"
    " pg_catalog.current_setting('max_wal_senders')::int,"
    " (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'walsender'),"
    " pg_catalog.pg_size_bytes(pg_catalog.current_setting('max_slot_wal_keep_size', true)),"
    " r.rolsuper, r.rolreplication,"
    " EXISTS (SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolname = 'rds_replication'"
    "         AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER')),"
    " pg_catalog.quote_ident(r.rolname)"
    " FROM pg_catalog.pg_roles r WHERE r.rolname = current_user";

static bool read_source_facts(CheckRun *r)
{
    PGresult *res = check_query(r, r->src, "source.settings", source_facts_sql, 0, NULL, 10);
    SourceFacts *f = &r->sf;

    if (!res)
        return false;
    snprintf(f->wal_level, sizeof(f->wal_level), "%s", PQgetvalue(res, 0, 0));
    f->max_slots = atoi(PQgetvalue(res, 0, 1));
    f->used_slots = atoi(PQgetvalue(res, 0, 2));
    f->max_senders = atoi(PQgetvalue(res, 0, 3));
    f->used_senders = atoi(PQgetvalue(res, 0, 4));
    f->keep_size_known = !PQgetisnull(res, 0, 5);
    f->keep_size_bytes = atoll(PQgetvalue(res, 0, 5));
    f->superuser = PQgetvalue(res, 0, 6)[0] == 't';
    f->replication = PQgetvalue(res, 0, 7)[0] == 't';
    f->rds_replication = PQgetvalue(res, 0, 8)[0] == 't';
    snprintf(f->role, sizeof(f->role), "%s", PQgetvalue(res, 0, 9));
    PQclear(res);
    return true;
}

static void check_wal_level(CheckRun *r)
{
    if (strcmp(r->sf.wal_level, "logical") == 0) {
        add_result(r, "source.wal_level", CHECK_PASS, NULL, "wal_level = logical");
        return;
    }
    add_result(r, "source.wal_level", CHECK_FAIL,
               "ALTER SYSTEM SET wal_level = logical; then restart the source server (RDS and "
               "Aurora: rds.logical_replication = 1 in the parameter group; Cloud SQL: "
               "cloudsql.logical_decoding = on)",
               "wal_level = %s: start needs logical decoding (copy still works)", r->sf.wal_level);
}

/* One free slot / WAL sender is what start needs (the snapshot keeper's
 * connection creates the slot; the stream uses it after the copy). */
static void check_capacity(CheckRun *r, const char *name, const char *setting, int max, int used,
                           const char *what)
{
    int free_n = max - used;
    char fix[512];

    if (free_n >= 1) {
        add_result(r, name, CHECK_PASS, NULL, "%d of %d %s free (%s = %d, %d in use)", free_n, max,
                   what, setting, max, used);
        return;
    }
    snprintf(fix, sizeof(fix), "ALTER SYSTEM SET %s = %d; then restart the source server", setting,
             used + 2 > 10 ? used + 2 : 10);
    add_result(r, name, CHECK_FAIL, fix,
               "no %s free (%s = %d, %d in use): start needs one (copy still works)", what, setting,
               max, used);
}

static void check_replication_role(CheckRun *r)
{
    const SourceFacts *f = &r->sf;
    char fix[600];

    if (f->superuser || f->replication || f->rds_replication) {
        add_result(r, "source.replication_role", CHECK_PASS, NULL, "role %s may replicate (%s)",
                   f->role,
                   f->superuser     ? "superuser"
                   : f->replication ? "REPLICATION"
                                    : "member of rds_replication");
        return;
    }
    snprintf(fix, sizeof(fix),
             "ALTER ROLE %s WITH REPLICATION; (RDS and Aurora: GRANT rds_replication TO %s;)",
             f->role, f->role);
    add_result(r, "source.replication_role", CHECK_FAIL, fix,
               "role %s has neither REPLICATION nor rds_replication: start cannot create the "
               "slot (copy still works)",
               f->role);
}

/* Which mode start gives schema changes: captured and replayed, or (as
 * before) apply stops at the first one.  Not a failure either way. */
static void check_ddl_capture(CheckRun *r)
{
    const char *why = slot_ddl_capture_refusal(r->src);

    if (!why)
        add_result(r, "source.ddl_capture", CHECK_PASS, NULL,
                   "schema changes on the source are captured (event trigger) and replayed on "
                   "the target in stream order");
    else
        add_result(r, "source.ddl_capture", CHECK_WARN,
                   "run schema changes on the source only after the cutover, or apply each on "
                   "the target as well when apply stops",
                   "schema changes on the source are not captured: %s; apply stops at the first "
                   "one",
                   why);
}

/* A suggested limit: twice the data, at least 10 GB. */
static void check_keep_size(CheckRun *r)
{
    int64_t data = r->have_cat ? r->cat.total_bytes : 0;
    int64_t gb = (2 * data + ((int64_t)1 << 30) - 1) >> 30;
    char fix[300], have[32], dsz[32];

    snprintf(fix, sizeof(fix),
             "ALTER SYSTEM SET max_slot_wal_keep_size = '%lldGB'; SELECT pg_reload_conf();",
             (long long)(gb < 10 ? 10 : gb));
    if (!r->sf.keep_size_known)
        add_result(r, "source.max_slot_wal_keep_size", CHECK_WARN,
                   "watch the slot's retained WAL with pgrelocate status",
                   "max_slot_wal_keep_size does not exist before PostgreSQL 13: a stuck slot "
                   "keeps WAL without bound");
    else if (r->sf.keep_size_bytes < 0)
        add_result(r, "source.max_slot_wal_keep_size", CHECK_WARN, fix,
                   "max_slot_wal_keep_size = -1 (unlimited): a stuck or forgotten slot keeps WAL "
                   "until the source's disk is full");
    else if (r->sf.keep_size_bytes < data)
        add_result(r, "source.max_slot_wal_keep_size", CHECK_WARN, fix,
                   "max_slot_wal_keep_size = %s is smaller than the data (%s): if the source "
                   "writes more WAL than that while the copy runs, the slot is invalidated and "
                   "start must begin again",
                   size_format_bytes(r->sf.keep_size_bytes, have, sizeof(have)),
                   size_format_bytes(data, dsz, sizeof(dsz)));
    else
        add_result(r, "source.max_slot_wal_keep_size", CHECK_PASS, NULL,
                   "max_slot_wal_keep_size = %s (not smaller than the data)",
                   size_format_bytes(r->sf.keep_size_bytes, have, sizeof(have)));
}

static void check_source_settings(CheckRun *r)
{
    check_wal_level(r);
    check_capacity(r, "source.replication_slots", "max_replication_slots", r->sf.max_slots,
                   r->sf.used_slots, "replication slots");
    check_capacity(r, "source.wal_senders", "max_wal_senders", r->sf.max_senders,
                   r->sf.used_senders, "WAL senders");
    check_replication_role(r);
    check_keep_size(r);
}

/* ---- checks that list objects ----------------------------------------- */

#define USER_REL_WHERE                                                                             \
    " n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate')"                         \
    " AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)' AND c.relpersistence <> 't'"                \
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d"                                        \
    "   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid"          \
    "   AND d.deptype = 'e')"
#define QNAME "pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)"
#define FROM_REL                                                                                   \
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
#define CHOSEN " AND c.oid <> ALL ($1::pg_catalog.oid[])"

/* A check that finds objects: inner_sql returns (item text, fix SQL or
 * NULL) per object; a non-empty result gives status with "N nouns: a, b:
 * why" and the fix fix_prefix + the items' fix SQL (up to
 * CHECK_LIST_MAX) + fix_suffix. */
typedef struct ListCheck {
    const char *name;
    bool on_target; /* run on the target instead of the source */
    bool per_table; /* judges tables: inner_sql takes $1, the oid[] --tables leaves out */
    CheckStatus status;
    const char *noun; /* singular; "s" is appended for more */
    const char *inner_sql;
    const char *why;
    const char *fix_prefix;
    const char *fix_suffix;
    const char *pass_msg;
} ListCheck;

static const ListCheck list_checks[] = {
    {"source.select_privilege", false, true, CHECK_FAIL, "table",
     "SELECT " QNAME ", 'GRANT SELECT ON ' || " QNAME " || ' TO ' || "
     "pg_catalog.quote_ident(current_user) || ';'" FROM_REL
     " WHERE c.relkind IN ('r', 'm') AND" USER_REL_WHERE CHOSEN
     " AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT')",
     "the source role cannot read them, so their rows cannot be copied", "as their owner: ", NULL,
     "the source role can read every table"},
    {"source.row_level_security", false, true, CHECK_FAIL, "table",
     "SELECT " QNAME
     ", 'ALTER ROLE ' || pg_catalog.quote_ident(current_user) || ' BYPASSRLS;'" FROM_REL
     " JOIN pg_catalog.pg_roles u ON u.rolname = current_user"
     " WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND" USER_REL_WHERE CHOSEN
     " AND NOT u.rolsuper AND NOT u.rolbypassrls"
     " AND (c.relforcerowsecurity OR NOT pg_catalog.pg_has_role(c.relowner, 'USAGE'))",
     "row-level security applies to the source role (no BYPASSRLS, not the owner), so "
     "policies would hide rows from the copy",
     "as a superuser: ", " (or connect as the tables' owner or a superuser)",
     "no row-level security policy applies to the source role"},
    {"source.long_transactions", false, false, CHECK_WARN, "long transaction",
     "SELECT pg_catalog.format('pid %s (database %s, user %s, open for %s)', pid, datname,"
     " usename, pg_catalog.date_trunc('second', pg_catalog.now() - xact_start)),"
     " 'SELECT pg_terminate_backend(' || pid || ');' FROM pg_catalog.pg_stat_activity"
     " WHERE backend_xid IS NOT NULL AND pid <> pg_catalog.pg_backend_pid()"
     " AND xact_start < pg_catalog.now() - interval '" CHECK_LONG_XACT "'",
     "creating the replication slot waits until every transaction holding a transaction id "
     "ends, and these have been open for over " CHECK_LONG_XACT,
     "let them end (COMMIT or ROLLBACK in their sessions), or: ", NULL,
     "no transaction has held a transaction id for over " CHECK_LONG_XACT},
    {"source.prepared_transactions", false, false, CHECK_FAIL, "prepared transaction",
     "SELECT pg_catalog.format('%L (database %s, owner %s, prepared %s ago)', gid, database,"
     " owner, pg_catalog.date_trunc('second', pg_catalog.now() - prepared)),"
     " pg_catalog.format('ROLLBACK PREPARED %L; (or COMMIT PREPARED) in database %I;', gid,"
     " database) FROM pg_catalog.pg_prepared_xacts",
     "creating the replication slot waits until they end, and a prepared transaction only ends "
     "when someone commits or rolls it back (copy is not affected)",
     "once you know what they are: ", NULL, "no prepared transactions"},
    {"tables.replica_identity", false, true, CHECK_WARN, "table", NULL,
     "once published, UPDATE and DELETE on them fail on the source, or apply cannot find the "
     "row a change names, so start refuses them",
     "add a primary key of columns that are not generated to each (ALTER TABLE ... ADD "
     "PRIMARY KEY (...); on a partitioned table it reaches every partition), or run pgrelocate "
     "start --replica-identity-full (gives them REPLICA IDENTITY FULL, partitioned roots too; "
     "cleanup undoes it)",
     NULL, "every table has a primary key or a replica identity"},
    {"source.database_settings", false, false, CHECK_PASS, "database-level setting",
     "SELECT CASE WHEN r.rolname IS NULL THEN '' ELSE 'role ' || pg_catalog.quote_ident(r.rolname)"
     " || ': ' END || c.s, NULL FROM pg_catalog.pg_db_role_setting s"
     " JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase"
     "  AND d.datname = pg_catalog.current_database()"
     " LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole"
     " CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) c(s)"
     " UNION ALL SELECT 'privileges ' || d.datacl::text, NULL FROM pg_catalog.pg_database d"
     " WHERE d.datname = pg_catalog.current_database() AND d.datacl IS NOT NULL"
     " UNION ALL SELECT 'comment', NULL FROM pg_catalog.pg_database d"
     " WHERE d.datname = pg_catalog.current_database()"
     " AND pg_catalog.shobj_description(d.oid, 'pg_database') IS NOT NULL",
     "copy and start carry them to the target database (role settings only for roles the "
     "target has), and verify compares them",
     NULL, NULL, "no database-level settings, privileges or comment"},
    {"tables.column_order", false, true, CHECK_WARN, "table",
     "SELECT " QNAME ", NULL" FROM_REL " WHERE" USER_REL_WHERE CHOSEN " AND" CHILDORDER_DIFFERS_SQL,
     "a column of their own (or of a second parent) comes before an inherited one, and "
     "pg_dump recreates them with the inherited columns first: putting them in the source's "
     "order needs a superuser on the target, which this role is not, so SELECT * and INSERT "
     "without a column list would see another order there (verify reports it)",
     "if the application names its columns nothing; otherwise connect to the target as a "
     "superuser for copy and start",
     NULL, "every inheriting table keeps its column order through pg_dump"},
    {"tables.unlogged", false, true, CHECK_WARN, "unlogged table",
     "SELECT " QNAME ", 'ALTER TABLE ' || " QNAME " || ' SET LOGGED;'" FROM_REL
     " WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'u' AND" USER_REL_WHERE CHOSEN,
     "copied once, but their later changes are not replicated (unlogged tables are not in the "
     "WAL)",
     "on the source before start (rewrites each table under an exclusive lock): ", NULL,
     "no unlogged tables"},
    {"tables.large_objects", false, false, CHECK_WARN, "large object",
     "SELECT 'oid ' || oid, NULL FROM pg_catalog.pg_largeobject_metadata",
     "copied once; logical decoding does not carry their later changes, so cutover and "
     "rollback compare both sides' large objects and copy what changed, before the pause and "
     "again inside it (many changed ones lengthen the pause)",
     "change few large objects once start runs, or store them in bytea columns", NULL,
     "no large objects"},
    {"tables.materialized_views", false, true, CHECK_WARN, "materialized view",
     "SELECT " QNAME ", 'REFRESH MATERIALIZED VIEW ' || " QNAME " || ';'" FROM_REL
     " WHERE c.relkind = 'm' AND" USER_REL_WHERE CHOSEN,
     "refreshed on the target from the copied rows (a view stale on the source differs "
     "after the cutover; verify compares them apart from the tables), but not kept current "
     "while changes are followed",
     "on the target after the cutover: ", NULL, "no materialized views"},
    {"tables.foreign_tables", false, false, CHECK_WARN, "foreign table",
     "SELECT " QNAME ", NULL" FROM_REL " WHERE c.relkind = 'f' AND" USER_REL_WHERE,
     "their definitions are copied but not their rows (those live on the foreign server)",
     "create the foreign servers' user mappings on the target (CREATE USER MAPPING FOR ... "
     "SERVER ...) and make sure the target can reach those servers",
     NULL, "no foreign tables"},
    /* what pg_dump leaves out (e2e 096 found them in PostgreSQL's own
     * regression database) */
    {"schema.not_dumped", false, false, CHECK_WARN, "uncopied object",
     "SELECT pg_catalog.pg_describe_object(x.classid, x.objid, 0), NULL FROM ("
     " SELECT 'pg_catalog.pg_amop'::pg_catalog.regclass, o.oid FROM pg_catalog.pg_amop o"
     "  JOIN pg_catalog.pg_opfamily f ON f.oid = o.amopfamily"
     "  WHERE o.oid >= 16384 AND f.opfnamespace = 'pg_catalog'::pg_catalog.regnamespace"
     " UNION ALL SELECT 'pg_catalog.pg_amproc'::pg_catalog.regclass, o.oid"
     "  FROM pg_catalog.pg_amproc o JOIN pg_catalog.pg_opfamily f ON f.oid = o.amprocfamily"
     "  WHERE o.oid >= 16384 AND f.opfnamespace = 'pg_catalog'::pg_catalog.regnamespace"
     " UNION ALL SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, o.oid"
     "  FROM pg_catalog.pg_operator o WHERE o.oid >= 16384 AND o.oprcode = 0 AND NOT EXISTS"
     "  (SELECT 1 FROM pg_catalog.pg_operator r WHERE o.oid IN (r.oprcom, r.oprnegate))"
     " ) x(classid, objid)"
     " WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = x.classid"
     "  AND d.objid = x.objid AND d.deptype = 'e')",
     "pg_dump, and so copy and start, leaves out members added to the system's own operator "
     "families (ALTER OPERATOR FAMILY pg_catalog.... ADD) and shell operators no operator "
     "names (left by the COMMUTATOR or NEGATOR of one dropped since); the target lacks them",
     "on the target after the copy, the same ALTER OPERATOR FAMILY ... ADD commands as on the "
     "source (a shell operator is needed by nothing)",
     NULL,
     "nothing that pg_dump leaves out (members of built-in operator families, shell "
     "operators)"},
};

#define N_LIST_CHECKS (sizeof(list_checks) / sizeof(list_checks[0]))

/* Wraps the inner query: count, first items, their distinct fix SQL. */
static char *list_sql(const char *inner)
{
    return xasprintf("SELECT count(*),"
                     " coalesce(pg_catalog.string_agg(x, ', ' ORDER BY x)"
                     "   FILTER (WHERE rn <= %d), ''),"
                     " coalesce(pg_catalog.string_agg(DISTINCT f, ' ')"
                     "   FILTER (WHERE rn <= %d), '')"
                     " FROM (SELECT x, f, row_number() OVER (ORDER BY x) AS rn"
                     "       FROM (%s) AS i(x, f)) AS s",
                     CHECK_LIST_MAX, CHECK_LIST_MAX, inner);
}

static void report_list(CheckRun *r, const ListCheck *lc, int count, const char *items,
                        const char *fix_sql)
{
    StrBuf fix;

    if (count == 0) {
        add_result(r, lc->name, CHECK_PASS, NULL, "%s", lc->pass_msg);
        return;
    }
    strbuf_init(&fix);
    strbuf_appendf(&fix, "%s%s%s", lc->fix_prefix ? lc->fix_prefix : "", fix_sql,
                   lc->fix_suffix ? lc->fix_suffix : "");
    add_result(r, lc->name, lc->status, fix.len ? fix.data : NULL, "%d %s%s: %s%s: %s", count,
               lc->noun, count == 1 ? "" : "s", items, count > CHECK_LIST_MAX ? " and more" : "",
               lc->why);
    strbuf_free(&fix);
}

/* Tables without a key, by start's own definition (slot.c). */
static void run_identity_check(CheckRun *r, const ListCheck *lc)
{
    char *names = NULL, **list = NULL;
    int n = 0;

    if (!slot_tables_without_identity(r->src, r->have_ts ? r->ts.excluded_oids : NULL, &names,
                                      &list, &n)) {
        add_result(r, lc->name, CHECK_WARN, NULL, "could not be checked (see above)");
        return;
    }
    if (n == 0)
        add_result(r, lc->name, CHECK_PASS, NULL, "%s", lc->pass_msg);
    else
        add_result(r, lc->name, lc->status, lc->fix_prefix,
                   "%d table%s without primary key or "
                   "replica identity: %s: %s",
                   n, n == 1 ? "" : "s", names, lc->why);
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    free(names);
}

/* Inheriting tables whose column order pg_dump changes: copy recreates
 * them in the source's order when the target role is a superuser. */
static bool column_order_kept(CheckRun *r, const ListCheck *lc, PGresult *res)
{
    PGresult *t;
    bool super;

    if (strcmp(lc->name, "tables.column_order") != 0 || atoi(PQgetvalue(res, 0, 0)) == 0 || !r->tgt)
        return false;
    t = conn_query(r->tgt, "check",
                   "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user", 0, NULL,
                   1);
    super = t && PQntuples(t) == 1 && PQgetvalue(t, 0, 0)[0] == 't';
    PQclear(t);
    if (super)
        add_result(r, lc->name, CHECK_PASS, NULL,
                   "%s %s%s: %s%s: pg_dump would put their inherited columns first; copy and "
                   "start create them in the source's column order",
                   PQgetvalue(res, 0, 0), lc->noun, atoi(PQgetvalue(res, 0, 0)) == 1 ? "" : "s",
                   PQgetvalue(res, 0, 1),
                   atoi(PQgetvalue(res, 0, 0)) > CHECK_LIST_MAX ? " and more" : "");
    return super;
}

static void run_list_check(CheckRun *r, const ListCheck *lc)
{
    PGconn *conn = lc->on_target ? r->tgt : r->src;
    const char *p[1] = {r->have_ts ? r->ts.excluded_oids : "{}"};
    char *sql;
    PGresult *res;

    if (lc->per_table && r->ts_failed)
        return;
    if (!lc->inner_sql) {
        run_identity_check(r, lc);
        return;
    }
    sql = list_sql(lc->inner_sql);
    res = check_query(r, conn, lc->name, sql, lc->per_table ? 1 : 0, lc->per_table ? p : NULL, 3);
    free(sql);
    if (!res)
        return;
    if (!column_order_kept(r, lc, res))
        report_list(r, lc, atoi(PQgetvalue(res, 0, 0)), PQgetvalue(res, 0, 1),
                    PQgetvalue(res, 0, 2));
    PQclear(res);
}

/* ---- extensions: source's installed vs the target's available ---------- */

static const char *const source_extensions_sql =
    "SELECT e.extname, e.extversion,"
    " coalesce((SELECT pg_catalog.string_agg(DISTINCT " QNAME ", ', ')"
    "   FROM pg_catalog.pg_depend d"
    "   JOIN pg_catalog.pg_type t ON t.oid = d.objid"
    "   JOIN pg_catalog.pg_attribute a ON a.atttypid IN (t.oid, t.typarray)"
    "   JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
    "   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    "   WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass"
    "     AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass"
    "     AND d.refobjid = e.oid AND d.deptype = 'e' AND a.attnum > 0"
    "     AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm', 'f')), '')"
    " FROM pg_catalog.pg_extension e ORDER BY 1";

/* Per source extension (json [{name, version}]): installed version on the
 * target, default version available, source version available, and
 * whether the target role may create it. */
static const char *const target_extensions_sql =
    "SELECT x.name, x.version, e.extversion, a.default_version,"
    " EXISTS (SELECT 1 FROM pg_catalog.pg_available_extension_versions v"
    "         WHERE v.name = x.name AND v.version = x.version),"
    " (SELECT u.rolsuper OR NOT v.superuser OR v.trusted"
    "  FROM pg_catalog.pg_available_extension_versions v, pg_catalog.pg_roles u"
    "  WHERE v.name = x.name AND v.version = a.default_version AND u.rolname = current_user)"
    " FROM pg_catalog.jsonb_to_recordset($1::pg_catalog.jsonb) AS x(name text, version text)"
    " LEFT JOIN pg_catalog.pg_extension e ON e.extname = x.name"
    " LEFT JOIN pg_catalog.pg_available_extensions a ON a.name = x.name"
    " ORDER BY 1";

typedef struct ExtReport {
    StrBuf fail, warn, fix;
    int nfail, nwarn;
} ExtReport;

static void ext_problem(ExtReport *er, bool fail, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void ext_problem(ExtReport *er, bool fail, const char *fix, const char *fmt, ...)
{
    StrBuf *sb = fail ? &er->fail : &er->warn;
    char tmp[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    strbuf_appendf(sb, "%s%s", sb->len ? "; " : "", tmp);
    strbuf_appendf(&er->fix, "%s%s", er->fix.len ? " " : "", fix);
    *(fail ? &er->nfail : &er->nwarn) += 1;
}

/* One target row: name, source version, target installed, default,
 * source version available, creatable; used_by from the source. */
static void judge_extension(ExtReport *er, PGresult *t, int i, const char *used_by)
{
    const char *name = PQgetvalue(t, i, 0), *ver = PQgetvalue(t, i, 1);
    const char *installed = PQgetisnull(t, i, 2) ? NULL : PQgetvalue(t, i, 2);
    const char *deflt = PQgetisnull(t, i, 3) ? NULL : PQgetvalue(t, i, 3);
    bool ver_avail = PQgetvalue(t, i, 4)[0] == 't', creatable = PQgetvalue(t, i, 5)[0] == 't';
    char fix[1024], uses[1200];

    snprintf(uses, sizeof(uses), "%s%s%s", *used_by ? " (used by " : "", used_by,
             *used_by ? ")" : "");
    if (!installed && !deflt) {
        snprintf(fix, sizeof(fix),
                 "install extension %s on the target server (its package for "
                 "the target's PostgreSQL version);",
                 name);
        ext_problem(er, true, fix, "%s %s%s is not available on the target", name, ver, uses);
    } else if (!installed && !creatable) {
        snprintf(fix, sizeof(fix), "CREATE EXTENSION %s; on the target as a superuser;", name);
        ext_problem(er, true, fix,
                    "%s%s is not installed on the target and only a superuser may "
                    "create it",
                    name, uses);
    } else if (strcmp(installed ? installed : deflt, ver) != 0) {
        if (ver_avail && !installed)
            snprintf(fix, sizeof(fix),
                     "on the target before the copy: CREATE EXTENSION %s "
                     "VERSION '%s';",
                     name, ver);
        else
            snprintf(fix, sizeof(fix),
                     "ALTER EXTENSION %s UPDATE; on the source, or accept "
                     "version %s of %s on the target;",
                     name, installed ? installed : deflt, name);
        ext_problem(er, false, fix, "%s: the target %s version %s, the source has %s%s", name,
                    installed ? "has" : "would create", installed ? installed : deflt, ver, uses);
    }
}

static char *extensions_json(PGresult *s)
{
    json_t *arr = json_array();
    char *text;

    for (int i = 0; i < PQntuples(s); i++)
        json_array_append_new(arr, json_pack("{s:s, s:s}", "name", PQgetvalue(s, i, 0), "version",
                                             PQgetvalue(s, i, 1)));
    text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return text;
}

static void report_extensions(CheckRun *r, PGresult *s, PGresult *t)
{
    ExtReport er;

    memset(&er, 0, sizeof(er));
    strbuf_init(&er.fail);
    strbuf_init(&er.warn);
    strbuf_init(&er.fix);
    /* both ordered by name, same rows */
    for (int i = 0; i < PQntuples(t) && i < PQntuples(s); i++)
        judge_extension(&er, t, i, PQgetvalue(s, i, 2));
    if (er.nfail)
        add_result(r, "target.extensions", CHECK_FAIL, er.fix.data,
                   "%s: the schema restore would fail%s%s", er.fail.data, er.nwarn ? "; also " : "",
                   er.warn.data);
    else if (er.nwarn)
        add_result(r, "target.extensions", CHECK_WARN, er.fix.data, "%s", er.warn.data);
    else
        add_result(r, "target.extensions", CHECK_PASS, NULL,
                   "all %d source extensions are available on the target", PQntuples(s));
    strbuf_free(&er.fail);
    strbuf_free(&er.warn);
    strbuf_free(&er.fix);
}

static void check_extensions(CheckRun *r)
{
    PGresult *s, *t = NULL;
    char *json;

    if (!(s = check_query(r, r->src, "target.extensions", source_extensions_sql, 0, NULL, 3)))
        return;
    json = extensions_json(s);
    {
        const char *params[1] = {json};

        t = check_query(r, r->tgt, "target.extensions", target_extensions_sql, 1, params, 6);
    }
    if (t)
        report_extensions(r, s, t);
    free(json);
    PQclear(s);
    PQclear(t);
}

/* ---- target ------------------------------------------------------------ */

static void check_target_state(CheckRun *r)
{
    MigrationState st;
    const char *phase;
    bool follow;

    if (!state_load(r->tgt, &st)) {
        add_result(r, "target.empty", CHECK_WARN, NULL,
                   "could not be checked: the query failed (see above)");
        state_free(&st);
        return;
    }
    phase = state_phase_name(st.phase);
    follow = st.follow;
    if (strcmp(phase, "done") == 0)
        add_result(r, "target.empty", CHECK_FAIL,
                   "use another, empty target database (DROP DATABASE and CREATE DATABASE on the "
                   "target, or createdb a new one)",
                   "the target holds a finished pgrelocate %s (phase done)",
                   follow ? "start" : "copy");
    else
        add_result(r, "target.empty", CHECK_WARN,
                   follow ? "run pgrelocate start again with the same --source and --target to "
                            "resume, or pgrelocate cleanup and a new empty database to start over"
                          : "pgrelocate copy --resume with the same --source and --target, or a "
                            "new empty database to start over",
                   "the target holds an unfinished pgrelocate %s in phase %s: it can be resumed",
                   follow ? "start" : "copy", phase);
    state_free(&st);
}

static void check_target_empty(CheckRun *r)
{
    bool empty = false;
    char *example = NULL;
    int version;

    if (!state_read_version(r->tgt, &version)) {
        add_result(r, "target.empty", CHECK_WARN, NULL, "could not be checked (see above)");
        return;
    }
    if (version > STATE_VERSION) {
        add_result(r, "target.empty", CHECK_FAIL,
                   "run the pgrelocate release that last worked on this migration, or a newer one",
                   "the pgrelocate state on the target is version %d, newer than this pgrelocate "
                   "(%s) understands (1 to %d)",
                   version, PGRELOCATE_VERSION, STATE_VERSION);
        return;
    }
    if (version > 0) {
        check_target_state(r);
        return;
    }
    if (!state_target_is_empty(r->tgt, &empty, &example))
        add_result(r, "target.empty", CHECK_WARN, NULL, "could not be checked (see above)");
    else if (empty)
        add_result(r, "target.empty", CHECK_PASS, NULL, "the target database is empty");
    else
        add_result(r, "target.empty", CHECK_FAIL,
                   "copy into an empty database: CREATE DATABASE on the target server, then name "
                   "it in --target",
                   "the target database is not empty: %s", example);
    free(example);
}

/* One side's major version against the range pgrelocate supports. */
static void check_server_version(CheckRun *r, const char *name, const char *side, int version_num)
{
    int m = version_num / 10000;
    char v[16], fix[128];

    version_text(version_num, v, sizeof(v));
    snprintf(fix, sizeof(fix), "upgrade the %s server to PostgreSQL %d or newer first", side,
             CATALOG_MIN_MAJOR);
    if (m < CATALOG_MIN_MAJOR)
        add_result(r, name, CHECK_FAIL, fix,
                   "the %s runs PostgreSQL %s: pgrelocate supports PostgreSQL %d to %d", side, v,
                   CATALOG_MIN_MAJOR, CATALOG_MAX_TESTED_MAJOR);
    else if (m > CATALOG_MAX_TESTED_MAJOR)
        add_result(r, name, CHECK_WARN, "try the whole migration on a copy first",
                   "the %s runs PostgreSQL %s: pgrelocate was tested with %d to %d", side, v,
                   CATALOG_MIN_MAJOR, CATALOG_MAX_TESTED_MAJOR);
    else
        add_result(r, name, CHECK_PASS, NULL, "the %s runs PostgreSQL %s (supported: %d to %d)",
                   side, v, CATALOG_MIN_MAJOR, CATALOG_MAX_TESTED_MAJOR);
}

static void check_target_version(CheckRun *r)
{
    int s = r->src_info.version_num / 10000, t = r->tgt_info.version_num / 10000;
    char sv[16], tv[16], fix[128];

    check_server_version(r, "source.version", "source", r->src_info.version_num);
    check_server_version(r, "target.server_version", "target", r->tgt_info.version_num);
    version_text(r->src_info.version_num, sv, sizeof(sv));
    version_text(r->tgt_info.version_num, tv, sizeof(tv));
    if (t >= s) {
        add_result(r, "target.version", CHECK_PASS, NULL, "target %s, source %s: same or newer", tv,
                   sv);
        return;
    }
    snprintf(fix, sizeof(fix), "use a target server of PostgreSQL %d or newer", s);
    add_result(r, "target.version", CHECK_FAIL, fix,
               "the target (%s) is an older major version than the source (%s): the schema of a "
               "newer server may not restore",
               tv, sv);
}

static const char *const target_role_sql =
    "SELECT pg_catalog.quote_ident(current_user), u.rolsuper OR EXISTS ("
    "   SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolname = 'rds_superuser'"
    "   AND pg_catalog.pg_has_role(u.oid, g.oid, 'MEMBER')),"
    " pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'),"
    " pg_catalog.quote_ident(pg_catalog.current_database())"
    " FROM pg_catalog.pg_roles u WHERE u.rolname = current_user";

static void check_target_role(CheckRun *r)
{
    PGresult *res = check_query(r, r->tgt, "target.superuser", target_role_sql, 0, NULL, 4);
    const char *role, *db;
    char fix[600];

    if (!res)
        return;
    role = PQgetvalue(res, 0, 0);
    db = PQgetvalue(res, 0, 3);
    snprintf(fix, sizeof(fix),
             "ALTER ROLE %s SUPERUSER; or connect as a superuser (RDS and Aurora: GRANT "
             "rds_superuser TO %s;)",
             role, role);
    if (PQgetvalue(res, 0, 1)[0] == 't')
        add_result(r, "target.superuser", CHECK_PASS, NULL, "role %s is a superuser", role);
    else
        add_result(r, "target.superuser", CHECK_WARN, fix,
                   "role %s is not a superuser: start needs one (it applies changes in replica "
                   "mode and keeps progress in a replication origin); copy works without",
                   role);
    snprintf(fix, sizeof(fix), "GRANT CREATE ON DATABASE %s TO %s;", db, role);
    if (PQgetvalue(res, 0, 2)[0] == 't')
        add_result(r, "target.create_privilege", CHECK_PASS, NULL,
                   "role %s may create schemas in database %s", role, db);
    else
        add_result(r, "target.create_privilege", CHECK_FAIL, fix,
                   "role %s lacks the CREATE privilege on database %s: the copy creates schemas "
                   "and tables there",
                   role, db);
    PQclear(res);
}

/* A database's encoding and locale, as far as the server version tells. */
typedef struct DbLocale {
    char collate[256], ctype[256];
    char provider[16]; /* libc, icu, builtin */
    char locale[256];  /* ICU or builtin locale, "" for libc */
    char version[128]; /* collation version of the provider, "" if unknown */
} DbLocale;

static bool read_db_locale(CheckRun *r, PGconn *conn, DbLocale *out)
{
    int v = PQserverVersion(conn);
    char *sql =
        xasprintf("SELECT datcollate, datctype, %s, %s, %s FROM pg_catalog.pg_database"
                  " WHERE datname = pg_catalog.current_database()",
                  v >= 150000 ? "CASE datlocprovider WHEN 'i' THEN 'icu' WHEN 'b' THEN 'builtin'"
                                " ELSE 'libc' END"
                              : "'libc'",
                  v >= 170000   ? "coalesce(datlocale, '')"
                  : v >= 150000 ? "coalesce(daticulocale, '')"
                                : "''",
                  v >= 150000 ? "coalesce(pg_catalog.pg_database_collation_actual_version(oid),"
                                " datcollversion, '')"
                              : "''");
    PGresult *res = check_query(r, conn, "target.collation", sql, 0, NULL, 5);

    free(sql);
    if (!res)
        return false;
    snprintf(out->collate, sizeof(out->collate), "%s", PQgetvalue(res, 0, 0));
    snprintf(out->ctype, sizeof(out->ctype), "%s", PQgetvalue(res, 0, 1));
    snprintf(out->provider, sizeof(out->provider), "%s", PQgetvalue(res, 0, 2));
    snprintf(out->locale, sizeof(out->locale), "%s", PQgetvalue(res, 0, 3));
    snprintf(out->version, sizeof(out->version), "%s", PQgetvalue(res, 0, 4));
    PQclear(res);
    return true;
}

/* CREATE DATABASE on the target with the source's encoding and locale. */
static char *create_db_sql(const CheckRun *r, const DbLocale *s)
{
    StrBuf sb;

    strbuf_init(&sb);
    strbuf_appendf(&sb, "on the target: CREATE DATABASE %s TEMPLATE template0 ENCODING '%s'",
                   r->tgt_info.dbname, r->src_info.encoding);
    if (r->tgt_info.version_num >= 150000)
        strbuf_appendf(&sb, " LOCALE_PROVIDER %s", s->provider);
    if (*s->locale)
        strbuf_appendf(&sb, " %s '%s'", r->tgt_info.version_num >= 170000 ? "LOCALE" : "ICU_LOCALE",
                       s->locale);
    strbuf_appendf(&sb,
                   " LC_COLLATE '%s' LC_CTYPE '%s'; (with a new name, or after dropping the "
                   "empty one) and name it in --target",
                   s->collate, s->ctype);
    return strbuf_detach(&sb);
}

static void check_encoding(CheckRun *r, const char *fix)
{
    const char *s = r->src_info.encoding, *t = r->tgt_info.encoding;

    if (strcmp(s, t) == 0)
        add_result(r, "target.encoding", CHECK_PASS, NULL, "both databases use %s", s);
    else if (strcmp(t, "UTF8") == 0)
        add_result(r, "target.encoding", CHECK_WARN, fix,
                   "the source uses %s, the target UTF8: rows are converted%s", s,
                   strcmp(s, "SQL_ASCII") == 0
                       ? " (SQL_ASCII holds any bytes: those that are not valid UTF-8 stop "
                         "the copy)"
                       : "");
    else
        add_result(r, "target.encoding", CHECK_FAIL, fix,
                   "the source uses %s, the target %s: characters the source holds may not exist "
                   "in %s, and the copy would stop at the first one",
                   s, t, t);
}

static char *describe_locale(const DbLocale *l)
{
    return xasprintf("%s%s%s, LC_COLLATE %s, LC_CTYPE %s%s%s", l->provider, *l->locale ? " " : "",
                     l->locale, l->collate, l->ctype, *l->version ? ", version " : "", l->version);
}

static void check_collation(CheckRun *r, const DbLocale *s, const DbLocale *t, const char *fix)
{
    char *sd = describe_locale(s), *td = describe_locale(t);

    if (strcmp(s->collate, t->collate) != 0 || strcmp(s->ctype, t->ctype) != 0 ||
        strcmp(s->provider, t->provider) != 0 || strcmp(s->locale, t->locale) != 0)
        add_result(r, "target.collation", CHECK_WARN, fix,
                   "the source sorts text with %s, the target with %s: text indexes, ORDER BY "
                   "and unique constraints may order or compare text differently",
                   sd, td);
    else if (*s->version && *t->version && strcmp(s->version, t->version) != 0)
        add_result(r, "target.collation", CHECK_WARN,
                   "after the copy, compare query results that depend on text order; indexes "
                   "are built on the target with its own library, so they stay consistent there",
                   "same locale but different collation versions (source %s; target %s): text "
                   "may sort differently on the two servers",
                   sd, td);
    else
        add_result(r, "target.collation", CHECK_PASS, NULL, "same locale on both: %s", sd);
    free(sd);
    free(td);
}

static void check_locale(CheckRun *r)
{
    DbLocale s, t;
    char *fix;

    if (!read_db_locale(r, r->src, &s) || !read_db_locale(r, r->tgt, &t))
        return;
    fix = create_db_sql(r, &s);
    check_encoding(r, fix);
    check_collation(r, &s, &t, fix);
    free(fix);
}

/* ---- data size and copy rate ------------------------------------------- */

/* Read the next row of a COPY OUT, waiting until deadline_ms at most:
 * its length (buffer in *buf, PQfreemem it), -1 at its end, -2 on an error,
 * 0 when the deadline passed first. */
static int copy_row_by(PGconn *conn, char **buf, int64_t deadline_ms)
{
    int n;

    while ((n = PQgetCopyData(conn, buf, 1)) == 0)
        if (!conn_wait_socket(conn, false, deadline_ms) || !PQconsumeInput(conn))
            return PQstatus(conn) == CONNECTION_BAD ? -2 : 0;
    return n;
}

/* Stop a COPY OUT still running: cancel (conn_cancel: bounded), drop what
 * is in flight.  A source that does not end the COPY within
 * CONN_QUERY_MARGIN_MS (a stopped one) is named and its socket shut down,
 * so that the caller's reads fail at once. */
static void cancel_copy(PGconn *conn)
{
    int64_t deadline = clock_now_ms() + CONN_QUERY_MARGIN_MS;
    char *buf;
    int n;

    conn_cancel(conn);
    while ((n = copy_row_by(conn, &buf, deadline)) > 0)
        PQfreemem(buf);
    if (n == 0) {
        log_error("[check] timed out after %d s waiting for the source to end the sample COPY "
                  "(host=%s port=%s)",
                  CONN_QUERY_MARGIN_MS / 1000, PQhost(conn) ? PQhost(conn) : "?",
                  PQport(conn) ? PQport(conn) : "?");
        shutdown(PQsocket(conn), SHUT_RDWR);
        /* libpq reads the end of file: the connection is bad, and
         * PQgetResult ends the COPY with an error instead of returning
         * PGRES_COPY_OUT again and again */
        (void)PQconsumeInput(conn);
    }
}

/* Read COPY text output of table t for CHECK_SAMPLE_SECONDS (or to its
 * end, or CHECK_SAMPLE_MAX_BYTES): *bytes read in *seconds.  false after
 * logging when the COPY fails. */
static bool sample_copy(PGconn *src, const StateTable *t, int64_t *bytes, double *seconds)
{
    char *q = conn_qualify(src, t->schema_name, t->table_name);
    char *sql = xasprintf("COPY (SELECT * FROM ONLY %s) TO STDOUT", q);
    PGresult *res = conn_exec(src, "check", sql); /* the session's query wait */
    bool complete = false, ok = PQresultStatus(res) == PGRES_COPY_OUT;
    double start = clock_now_s();
    int64_t end_ms = clock_now_ms() + (int64_t)(CHECK_SAMPLE_SECONDS * 1000);
    char *buf;
    int n;

    if (!ok)
        conn_log_result_error(res, src, "check");
    PQclear(res);
    *bytes = 0;
    while (ok && clock_now_s() - start < CHECK_SAMPLE_SECONDS && *bytes < CHECK_SAMPLE_MAX_BYTES) {
        if ((n = copy_row_by(src, &buf, end_ms)) == 0)
            break; /* the sample's time is up */
        if (n < 0) {
            complete = true;
            break;
        }
        *bytes += n;
        PQfreemem(buf);
    }
    *seconds = clock_now_s() - start;
    if (ok && !complete)
        cancel_copy(src);
    while ((res = PQgetResult(src)) != NULL) {
        if (complete && PQresultStatus(res) != PGRES_COMMAND_OK) {
            conn_log_result_error(res, src, "check");
            ok = false;
        }
        PQclear(res);
    }
    free(sql);
    free(q);
    return ok;
}

static void check_copy_rate(CheckRun *r)
{
    const StateTable *t = r->have_cat && r->cat.ntables ? &r->cat.tables[0] : NULL;
    char total[32], rate[32], got[32], eta[32];
    char *name;
    int64_t bytes = 0;
    double secs = 0;

    r->estimate_s = -1;
    if (r->ts_failed)
        return;
    if (!t || r->cat.total_bytes == 0) {
        add_result(r, "data.copy_estimate", CHECK_PASS, NULL, "no table data to copy");
        return;
    }
    name = names_display(t->schema_name, t->table_name);
    if (!sample_copy(r->src, t, &bytes, &secs) || bytes == 0 || secs <= 0) {
        add_result(r, "data.copy_estimate", CHECK_WARN, NULL,
                   "could not measure a read rate on %s (see above): no time estimate", name);
        free(name);
        return;
    }
    r->rate_bytes_per_s = (double)bytes / secs;
    r->estimate_s = (double)r->cat.total_bytes / r->rate_bytes_per_s;
    size_format_bytes((int64_t)r->rate_bytes_per_s, rate, sizeof(rate));
    add_result(r, "data.copy_estimate", CHECK_PASS, NULL,
               "estimate: about %s to copy %s at %s/s, measured by reading %s of COPY text output "
               "of %s (the largest table) in %.1f s over one connection; indexes, WAL on the "
               "target and --jobs change the real time",
               size_format_seconds(r->estimate_s, eta, sizeof(eta)),
               size_format_bytes(r->cat.total_bytes, total, sizeof(total)), rate,
               size_format_bytes(bytes, got, sizeof(got)), name, secs);
    free(name);
}

/* ---- pg_dump / pg_restore ---------------------------------------------- */

static void check_tools(CheckRun *r)
{
    int need = r->src_info.version_num / 10000;
    PgTools tools;
    char fix[300], why[600];

    if (schema_find_tools_why(r->o->pg_bin, need, &tools, why, sizeof(why))) {
        add_result(r, "tools.pg_dump", CHECK_PASS, NULL,
                   "pg_dump and pg_restore %d (%s), new enough for the source (%d)", tools.major,
                   tools.pg_dump, need);
        return;
    }
    snprintf(fix, sizeof(fix),
             "install the PostgreSQL %d (or newer) client programs (Debian: postgresql-client-%d) "
             "and name their directory with --pg-bin",
             need, need);
    add_result(r, "tools.pg_dump", CHECK_FAIL, fix,
               "no pg_dump and pg_restore of version %d or newer found%s%s: %s", need,
               r->o->pg_bin ? " in " : "", r->o->pg_bin ? r->o->pg_bin : "", why);
}

/* ---- running the checks ------------------------------------------------ */

/* Without --tables, a migration already begun on the target moves only
 * the tables its own --tables chose: the checks judge those.  NULL when
 * there is none (or the target cannot tell). */
static char *recorded_tables(CheckRun *r)
{
    MigrationState st;
    char *spec = NULL;
    int version;

    /* a version this binary cannot read is check_target_empty's FAIL */
    if (!r->tgt || !state_read_version(r->tgt, &version) || version < 1 || version > STATE_VERSION)
        return NULL;
    memset(&st, 0, sizeof(st));
    if (state_load(r->tgt, &st) && st.tables_filter)
        spec = xstrdup(st.tables_filter);
    state_free(&st);
    return spec;
}

/* --tables: which tables the other checks judge.  A selection copy and
 * start would refuse is a FAIL, and the checks of tables are not run. */
static void choose_tables(CheckRun *r)
{
    char *spec = cli_join_list(&r->o->tables);
    const char *from = "--tables";
    char why[512];

    if (!spec && (spec = recorded_tables(r)))
        from = "the migration on the target was begun with --tables";
    if (!spec)
        return;
    r->have_ts = tableset_resolve(r->src, spec, &r->ts);
    if (r->have_ts) {
        add_result(r, "tables.selection", CHECK_PASS, NULL,
                   "%s \"%s\": %d table%s chosen (a partitioned table with its "
                   "partitions), %d relation%s left out; the checks below judge the chosen ones",
                   from, spec, r->ts.nchosen, r->ts.nchosen == 1 ? "" : "s", r->ts.ndump_excludes,
                   r->ts.ndump_excludes == 1 ? "" : "s");
    } else {
        r->ts_failed = true;
        log_last_error(why, sizeof(why));
        add_result(r, "tables.selection", CHECK_FAIL,
                   "correct --tables as the error above says; the checks of tables run once "
                   "it is accepted",
                   "%s \"%s\" is refused: %s", from, spec, why);
    }
    free(spec);
}

static void read_catalog(CheckRun *r)
{
    if (r->ts_failed)
        return;
    r->have_cat = r->have_ts ? catalog_read_subset(r->src, r->ts.excluded_oids, &r->cat)
                             : catalog_read(r->src, &r->cat);
}

static void check_data_size(CheckRun *r)
{
    char total[32];

    if (r->ts_failed)
        return;
    if (!r->have_cat) {
        add_result(r, "data.size", CHECK_WARN, NULL, "could not be checked (see above)");
        return;
    }
    add_result(r, "data.size", CHECK_PASS, NULL,
               "%d tables, %s (sum of table sizes with TOAST, without indexes), %d sequences, "
               "%lld large objects",
               r->cat.ntables, size_format_bytes(r->cat.total_bytes, total, sizeof(total)),
               r->cat.nsequences, (long long)r->cat.large_objects);
}

static void run_list_checks(CheckRun *r)
{
    for (size_t i = 0; i < N_LIST_CHECKS; i++)
        run_list_check(r, &list_checks[i]);
}

static void run_source_settings(CheckRun *r)
{
    if (read_source_facts(r)) {
        check_source_settings(r);
        check_ddl_capture(r);
    }
}

#define NEED_SRC 1u
#define NEED_TGT 2u

typedef struct CheckStep {
    unsigned needs;
    void (*run)(CheckRun *r);
} CheckStep;

/* In report order: source, tables, target, data, tools. */
static const CheckStep steps[] = {
    {NEED_SRC, choose_tables},           {NEED_SRC, read_catalog},
    {NEED_SRC, run_source_settings},     {NEED_SRC, run_list_checks},
    {NEED_TGT, check_target_empty},      {NEED_SRC | NEED_TGT, check_target_version},
    {NEED_TGT, check_target_role},       {NEED_SRC | NEED_TGT, check_extensions},
    {NEED_SRC | NEED_TGT, check_locale}, {NEED_SRC, check_data_size},
    {NEED_SRC, check_copy_rate},         {NEED_SRC, check_tools},
};

/* Parse, connect read-only, read server facts; a FAIL line on failure. */
static PGconn *open_side(CheckRun *r, const char *text, ConnSide side, ConnInfo **ci,
                         ServerInfo *si)
{
    const char *name = side == CONN_SOURCE ? "source.connection" : "target.connection";
    ConnOpts co = {.side = side,
                   .app_name = "pgrelocate check",
                   .statement_timeout_ms = CONN_CATALOG_STATEMENT_MS,
                   .lock_timeout_ms = CONN_CATALOG_LOCK_MS};
    char err[256], ver[16];
    PGconn *conn;

    if (!(*ci = conninfo_parse(text, err, sizeof(err)))) {
        add_result(r, name, CHECK_FAIL, "give a libpq URI or a key=value connection string",
                   "invalid connection string: %s", err);
        return NULL;
    }
    if (!(conn = conn_open(*ci, &co))) {
        add_result(r, name, CHECK_FAIL,
                   "check that the server runs and accepts connections at that host and port, "
                   "and the database, user and password (~/.pgpass, PGPASSFILE or PGPASSWORD)",
                   "could not connect to %s (see the error above)", conninfo_display(*ci));
        return NULL;
    }
    if (!conn_script(conn, "check", "SET default_transaction_read_only = on") ||
        !catalog_server_info(conn, si)) {
        add_result(r, name, CHECK_FAIL, NULL, "could not read server facts (see the error above)");
        conn_close(conn);
        return NULL;
    }
    add_result(r, name, CHECK_PASS, NULL, "PostgreSQL %s (%s)",
               version_text(si->version_num, ver, sizeof(ver)), conninfo_display(*ci));
    return conn;
}

static void count_results(const CheckRun *r, int counts[3])
{
    counts[CHECK_PASS] = counts[CHECK_WARN] = counts[CHECK_FAIL] = 0;
    for (int i = 0; i < r->n; i++)
        counts[r->results[i].status]++;
}

static void print_text(const CheckRun *r, FILE *out)
{
    int width = 5, counts[3];

    for (int i = 0; i < r->n; i++)
        if ((int)strlen(r->results[i].name) > width)
            width = (int)strlen(r->results[i].name);
    fprintf(out, "%-6s%-*s  %s\n", "", width, "CHECK", "RESULT");
    for (int i = 0; i < r->n; i++) {
        const CheckResult *c = &r->results[i];

        fprintf(out, "%-6s%-*s  %s\n", status_names[c->status], width, c->name, c->message);
        if (c->fix)
            fprintf(out, "%-6s%-*s  fix: %s\n", "", width, "", c->fix);
    }
    count_results(r, counts);
    fprintf(out, "\n%d FAIL, %d WARN, %d PASS: %s\n", counts[CHECK_FAIL], counts[CHECK_WARN],
            counts[CHECK_PASS],
            counts[CHECK_FAIL] ? "fix the FAIL lines first (see each line for what it blocks)"
                               : "nothing blocks the migration");
}

static json_t *json_number_or_null(double v, bool known)
{
    return known ? json_real(v) : json_null();
}

static void print_json(const CheckRun *r, FILE *out)
{
    json_t *checks = json_array(), *root;
    int counts[3];

    for (int i = 0; i < r->n; i++) {
        const CheckResult *c = &r->results[i];

        json_array_append_new(checks, json_pack("{s:s, s:s, s:s, s:o}", "name", c->name, "status",
                                                status_names[c->status], "message", c->message,
                                                "fix", c->fix ? json_string(c->fix) : json_null()));
    }
    count_results(r, counts);
    root = json_pack(
        "{s:o, s:{s:i, s:i, s:i, s:b, s:o, s:o, s:o, s:s}}", "checks", checks, "summary", "pass",
        counts[CHECK_PASS], "warn", counts[CHECK_WARN], "fail", counts[CHECK_FAIL], "ok",
        counts[CHECK_FAIL] == 0, "data_bytes",
        r->have_cat ? json_integer(r->cat.total_bytes) : json_null(), "copy_rate_bytes_per_second",
        json_number_or_null(r->rate_bytes_per_s, r->rate_bytes_per_s > 0), "estimated_copy_seconds",
        json_number_or_null(r->estimate_s, r->estimate_s >= 0), "estimate_method",
        "one connection reading COPY text output of the largest table for up to 2 s; an "
        "estimate");
    json_dumpf(root, out, JSON_INDENT(2));
    fputc('\n', out);
    json_decref(root);
}

static void free_run(CheckRun *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->results[i].name);
        free(r->results[i].message);
        free(r->results[i].fix);
    }
    free(r->results);
    if (r->have_cat)
        catalog_free(&r->cat);
    if (r->have_ts)
        tableset_free(&r->ts);
    catalog_free_server_info(&r->src_info);
    catalog_free_server_info(&r->tgt_info);
    conn_close(r->src);
    conn_close(r->tgt);
    if (r->src_ci)
        conninfo_destroy(r->src_ci);
    if (r->tgt_ci)
        conninfo_destroy(r->tgt_ci);
}

int cmd_check(const Options *opts)
{
    CheckRun r;
    int counts[3];

    memset(&r, 0, sizeof(r));
    r.o = opts;
    r.estimate_s = -1;
    r.src = open_side(&r, opts->source, CONN_SOURCE, &r.src_ci, &r.src_info);
    r.tgt = open_side(&r, opts->target, CONN_TARGET, &r.tgt_ci, &r.tgt_info);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (((steps[i].needs & NEED_SRC) && !r.src) || ((steps[i].needs & NEED_TGT) && !r.tgt))
            continue;
        steps[i].run(&r);
    }
    if (opts->json)
        print_json(&r, stdout);
    else
        print_text(&r, stdout);
    fflush(stdout);
    count_results(&r, counts);
    free_run(&r);
    return counts[CHECK_FAIL] ? EXIT_FAILED : EXIT_OK;
}
