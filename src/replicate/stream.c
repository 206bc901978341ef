/*
 * stream.c: START_REPLICATION and the CopyBoth loop primitives.
 */
#include "stream.h"

#include "clock.h"

#include "conn.h"
#include "log.h"
#include "strbuf.h"
#include "valueformat.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

/* On top of wal_sender_timeout before a silent source counts as gone: its
 * keepalives come after half of it, so this is slack for a busy server. */
#define SILENCE_MARGIN_MIN_MS 5000

struct Stream {
    PGconn *conn;
    char *frame;           /* last frame from PQgetCopyData, freed on the next read */
    int wake_bytes;        /* SO_RCVLOWAT in force (1: the kernel's default) */
    char *where;           /* "host=... port=..." of the source, for messages */
    int sender_timeout_ms; /* the source's wal_sender_timeout (0: off) */
    int64_t silent_ms;     /* waited in poll() since the last frame */
    bool probed;           /* a reply was asked for in this silence */
    Lsn last_write, last_flush, last_apply; /* last status sent */
    bool binary;                            /* pgoutput sends values in binary */
};

/* The walsender's own wal_sender_timeout, in ms; 0 when off or unknown. */
static int sender_timeout_ms(PGconn *conn)
{
    PGresult *res = conn_exec(conn, "stream",
                              "SELECT setting FROM pg_catalog.pg_settings "
                              "WHERE name = 'wal_sender_timeout'");
    int ms = 0;

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) == 1)
        ms = atoi(PQgetvalue(res, 0, 0));
    else
        log_debug("[stream] could not read wal_sender_timeout: %s", PQerrorMessage(conn));
    PQclear(res);
    return ms > 0 ? ms : 0;
}

int stream_proto_for_server(int v)
{
    /* v4 (PG16) adds parallel streaming only; we do not ask for streaming,
     * so the highest we need is 2 on 14+, 1 before. */
    return v >= 140000 ? 2 : 1;
}

/* Every type the publication's columns use, and every type those refer to
 * (array elements, domain bases, range subtypes, a multirange's range, a
 * composite's fields), for valueformat.  Simple query protocol: a
 * replication connection has no other.  Column 9: a published column's
 * type itself.  pg_range.rngmultitypid is 14+, as is the binary option.
 * Without jit: the recursive union's estimate passes the JIT thresholds,
 * and compiling took 0.85 s of a query that runs in milliseconds (every
 * START_REPLICATION waited for it; e2e 060's cutover found the slot still
 * inactive). */
static const char *const PUBLISHED_TYPES_SQL =
    "SET jit = off; "
    "WITH RECURSIVE cols AS ("
    " SELECT DISTINCT a.atttypid AS oid"
    " FROM pg_catalog.pg_publication_tables pt"
    " JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname"
    " JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename"
    " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0"
    "  AND NOT a.attisdropped"
    " WHERE pt.pubname = %s),"
    " walk(oid) AS (SELECT oid FROM cols UNION"
    " SELECT v.x FROM walk w JOIN pg_catalog.pg_type t ON t.oid = w.oid"
    " LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid"
    " LEFT JOIN pg_catalog.pg_range mr ON mr.rngmultitypid = t.oid"
    " CROSS JOIN LATERAL (SELECT CASE WHEN t.typlen = -1 THEN NULLIF(t.typelem, 0) END"
    "  UNION ALL SELECT NULLIF(t.typbasetype, 0) UNION ALL SELECT r.rngsubtype"
    "  UNION ALL SELECT mr.rngtypid UNION ALL SELECT fa.atttypid"
    "  FROM pg_catalog.pg_attribute fa WHERE fa.attrelid = t.typrelid AND fa.attnum > 0"
    "  AND NOT fa.attisdropped) v(x)"
    " WHERE v.x IS NOT NULL)"
    " SELECT t.oid, pg_catalog.format_type(t.oid, NULL), t.typtype,"
    " t.typsend::oid <> 0, t.typreceive::oid <> 0,"
    " CASE WHEN t.typlen = -1 THEN t.typelem ELSE 0 END, t.typbasetype,"
    " COALESCE(r.rngsubtype, mr.rngtypid, 0), t.oid IN (SELECT oid FROM cols),"
    " ARRAY(SELECT fa.atttypid FROM pg_catalog.pg_attribute fa WHERE fa.attrelid = t.typrelid"
    "  AND fa.attnum > 0 AND NOT fa.attisdropped ORDER BY fa.attnum)"
    " FROM walk w JOIN pg_catalog.pg_type t ON t.oid = w.oid"
    " LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid"
    " LEFT JOIN pg_catalog.pg_range mr ON mr.rngmultitypid = t.oid"
    " ORDER BY 2";

/* Whether every published column type is safe in binary (valueformat.c),
 * from the source's catalog.  *unsafe_name / *why name the first that is
 * not (caller frees the name).  Logs each published type's decision at
 * info when loud, else at debug.  false (logged) when the query fails. */
static bool published_types_safe(PGconn *conn, const char *publication, bool loud, bool *safe,
                                 char **unsafe_name, const char **why)
{
    char *qpub = conn_quote_literal(conn, publication);
    char *sql = xasprintf(PUBLISHED_TYPES_SQL, qpub);
    PGresult *res = conn_exec(conn, "stream", sql);
    ValueType *types;
    uint32_t *fields;
    int n, nbinary = 0, nfields = 0;
    StrBuf names;

    free(qpub);
    free(sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 10) {
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
            log_error("[stream] reading the published column types: got %d fields, expected 10",
                      PQnfields(res));
        else
            conn_log_result_error(res, conn, "stream");
        PQclear(res);
        return false;
    }
    n = PQntuples(res);
    types = xcalloc((size_t)n + 1, sizeof(*types));
    /* "{23,25}": at most one field per two characters */
    for (int i = 0; i < n; i++)
        nfields += PQgetlength(res, i, 9) / 2 + 1;
    fields = xcalloc((size_t)nfields, sizeof(*fields));
    nfields = 0;
    for (int i = 0; i < n; i++) {
        const char *p = PQgetvalue(res, i, 9);
        int first = nfields;

        while (*p && *p != '}') {
            char *end;

            fields[nfields++] = (uint32_t)strtoul(p + 1, &end, 10);
            p = end;
        }
        if (nfields == first + 1 && fields[first] == 0)
            nfields = first; /* "{}" */
        types[i] = (ValueType){.oid = (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10),
                               .name = PQgetvalue(res, i, 1),
                               .typtype = PQgetvalue(res, i, 2)[0],
                               .has_send = PQgetvalue(res, i, 3)[0] == 't',
                               .has_receive = PQgetvalue(res, i, 4)[0] == 't',
                               .elem = (uint32_t)strtoul(PQgetvalue(res, i, 5), NULL, 10),
                               .base = (uint32_t)strtoul(PQgetvalue(res, i, 6), NULL, 10),
                               .sub = (uint32_t)strtoul(PQgetvalue(res, i, 7), NULL, 10),
                               .fields = fields + first,
                               .nfields = nfields - first};
    }
    *safe = true;
    strbuf_init(&names);
    for (int i = 0; i < n; i++) {
        const char *w;

        if (PQgetvalue(res, i, 8)[0] != 't')
            continue;
        if (valueformat_type_safe(types, n, types[i].oid, &w)) {
            strbuf_appendf(&names, "%s%s", nbinary++ ? ", " : "", types[i].name);
            continue;
        }
        log_msg(loud ? LOG_INFO : LOG_DEBUG, NULL, NULL, "[stream] type %s needs text: %s",
                types[i].name, w);
        if (*safe) {
            *unsafe_name = xstrdup(types[i].name);
            *why = w;
        }
        *safe = false;
    }
    log_msg(loud ? LOG_INFO : LOG_DEBUG, NULL, NULL, "[stream] safe in binary: %s",
            nbinary ? names.data : "(no published column)");
    strbuf_free(&names);
    free(fields);
    free(types);
    PQclear(res);
    return true;
}

/* Whether to ask pgoutput for binary values.  false in *fatal with a
 * logged error when --protocol binary cannot be honoured; false (logged)
 * when the catalog could not be read. */
static bool choose_binary(PGconn *conn, const char *publication, ValueProtocol protocol, bool loud,
                          bool *binary)
{
    char *unsafe = NULL;
    const char *why = NULL;
    bool safe;

    *binary = false;
    if (protocol == VALUE_PROTOCOL_TEXT) {
        log_msg(loud ? LOG_INFO : LOG_DEBUG, NULL, NULL,
                "[stream] values travel as text (--protocol text)");
        return true;
    }
    if (PQserverVersion(conn) < 140000) {
        if (protocol == VALUE_PROTOCOL_BINARY) {
            log_msg(LOG_ERROR, "pgoutput sends values in binary from PostgreSQL 14 on.",
                    "Use --protocol auto or text.",
                    "[stream] the source (PostgreSQL %d) cannot send values in binary",
                    PQserverVersion(conn) / 10000);
            return false;
        }
        log_msg(loud ? LOG_INFO : LOG_DEBUG, NULL, NULL,
                "[stream] values travel as text (the source is older than PostgreSQL 14)");
        return true;
    }
    if (!published_types_safe(conn, publication, loud, &safe, &unsafe, &why))
        return false;
    if (!safe && protocol == VALUE_PROTOCOL_BINARY) {
        char *detail = xasprintf("Type %s cannot travel in binary: %s.", unsafe, why);

        log_msg(LOG_ERROR, detail, "Use --protocol auto (text for this migration) or text.",
                "[stream] cannot send values in binary: a published column has type %s", unsafe);
        free(detail);
        free(unsafe);
        return false;
    }
    *binary = safe;
    log_msg(loud ? LOG_INFO : LOG_DEBUG, NULL, NULL, "[stream] values travel in %s%s%s%s",
            safe ? "binary" : "text", safe ? "" : " (type ", safe ? "" : unsafe,
            safe ? "" : " needs text)");
    free(unsafe);
    return true;
}

Stream *stream_start(const ConnInfo *source, const char *slot, Lsn start_lsn, int proto_version,
                     const char *publication, ValueProtocol protocol, bool loud, bool *fatal)
{
    ConnOpts co = {.side = CONN_SOURCE, .replication = true, .app_name = "pgrelocate stream"};
    Stream *s;
    PGconn *conn = conn_open(source, &co);
    char *qslot, *qpub, *sql, lsn[LSN_TEXT_SIZE];
    PGresult *res;
    bool binary;
    int wst;

    *fatal = false;
    if (!conn)
        return NULL;
    wst = sender_timeout_ms(conn);
    if (!choose_binary(conn, publication, protocol, loud, &binary)) {
        /* a refusal stays a refusal; a failed query is retried */
        *fatal = PQstatus(conn) == CONNECTION_OK;
        PQfinish(conn);
        return NULL;
    }
    qslot = conn_quote_ident(conn, slot);
    qpub = conn_quote_literal(conn, publication);
    /* messages (14+): the logical message a sync point writes on the
     * source tells apply it has seen everything before it.  binary (14+):
     * the walsender skips every value's output function. */
    sql = xasprintf("START_REPLICATION SLOT %s LOGICAL %s (proto_version '%d', "
                    "publication_names %s%s%s)",
                    qslot, lsn_format(start_lsn, lsn), proto_version, qpub,
                    proto_version >= 2 ? ", messages 'true'" : "", binary ? ", binary 'true'" : "");
    res = conn_exec(conn, "stream", sql);
    free(qslot);
    free(qpub);
    free(sql);
    if (PQresultStatus(res) != PGRES_COPY_BOTH) {
        conn_log_result_error(res, conn, "stream");
        PQclear(res);
        PQfinish(conn);
        return NULL;
    }
    PQclear(res);
    s = xcalloc(1, sizeof(*s));
    s->conn = conn;
    s->wake_bytes = 1;
    s->where = xstrdup(conninfo_display(source));
    s->sender_timeout_ms = wst;
    s->binary = binary;
    return s;
}

bool stream_binary(const Stream *s)
{
    return s->binary;
}

void stream_close(Stream *s)
{
    if (!s)
        return;
    if (s->frame)
        PQfreemem(s->frame);
    PQfinish(s->conn);
    free(s->where);
    free(s);
}

void stream_set_wake_bytes(Stream *s, int bytes)
{
    if (bytes < 1)
        bytes = 1;
    if (bytes == s->wake_bytes)
        return;
    /* best effort: where the option does nothing (a Unix socket), the
     * reader is woken for every arrival, as before */
    if (setsockopt(PQsocket(s->conn), SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes)) == 0)
        s->wake_bytes = bytes;
}

StreamStatus stream_read(Stream *s, int timeout_ms, WalMsg *msg)
{
    char err[WALMSG_ERR_SIZE];
    bool timed_out = false;

    if (s->frame) {
        PQfreemem(s->frame);
        s->frame = NULL;
    }
    for (;;) {
        int n = PQgetCopyData(s->conn, &s->frame, 1);
        struct pollfd pf = {PQsocket(s->conn), POLLIN, 0};

        if (n > 0) {
            if (!walmsg_parse((const uint8_t *)s->frame, (size_t)n, msg, err, sizeof(err))) {
                log_error("[stream] malformed frame from the source: %s", err);
                return STREAM_ERROR;
            }
            s->silent_ms = 0;
            s->probed = false;
            return STREAM_FRAME;
        }
        if (n == -1) {
            PGresult *res = PQgetResult(s->conn);

            if (PQresultStatus(res) != PGRES_COMMAND_OK)
                conn_log_result_error(res, s->conn, "stream");
            PQclear(res);
            return STREAM_END;
        }
        if (n == -2) {
            log_error("[stream] %s", PQerrorMessage(s->conn));
            return STREAM_ERROR;
        }
        if (timed_out)
            return STREAM_TIMEOUT;
        int64_t waited = clock_now_ms();

        if (poll(&pf, 1, timeout_ms) < 0 && errno != EINTR)
            return STREAM_ERROR;
        s->silent_ms += clock_now_ms() - waited;
        if (!(pf.revents & (POLLIN | POLLERR | POLLHUP))) {
            /* fewer than wake_bytes may be waiting: take them, once */
            if (s->wake_bytes <= 1)
                return STREAM_TIMEOUT;
            timed_out = true;
        }
        if (!PQconsumeInput(s->conn)) {
            log_error("[stream] connection to the source lost: %s", PQerrorMessage(s->conn));
            return STREAM_ERROR;
        }
    }
}

int stream_silence_limit_ms(const Stream *s)
{
    int margin = s->sender_timeout_ms / 2;

    if (s->sender_timeout_ms == 0)
        return 0;
    return s->sender_timeout_ms + (margin > SILENCE_MARGIN_MIN_MS ? margin : SILENCE_MARGIN_MIN_MS);
}

bool stream_check_silence(Stream *s)
{
    int limit = stream_silence_limit_ms(s);

    if (limit == 0)
        return true;
    if (s->silent_ms >= limit) {
        log_msg(LOG_WARNING, NULL,
                "Check that the source server is running and not stopped or overloaded, and "
                "the network between this host and the source.",
                "[stream] no message from the source for %d s, not even a keepalive "
                "(wal_sender_timeout %d ms plus %d ms) (%s)",
                (int)(s->silent_ms / 1000), s->sender_timeout_ms, limit - s->sender_timeout_ms,
                s->where);
        return false;
    }
    if (!s->probed && s->silent_ms >= s->sender_timeout_ms / 2) {
        s->probed = true;
        log_debug("[stream] nothing from the source for %d ms: asking for a reply",
                  (int)s->silent_ms);
        return stream_send_status(s, s->last_write, s->last_flush, s->last_apply, true);
    }
    return true;
}

bool stream_send_status(Stream *s, Lsn write_lsn, Lsn flush_lsn, Lsn apply_lsn,
                        bool reply_requested)
{
    struct timeval tv;
    uint8_t buf[WALMSG_STATUS_UPDATE_SIZE];
    WalStatusUpdate st;

    gettimeofday(&tv, NULL);
    st.write_lsn = write_lsn;
    st.flush_lsn = flush_lsn;
    st.apply_lsn = apply_lsn;
    st.client_time_us = walmsg_time_from_unix_us((int64_t)tv.tv_sec * 1000000 + tv.tv_usec);
    st.reply_requested = reply_requested;
    s->last_write = write_lsn;
    s->last_flush = flush_lsn;
    s->last_apply = apply_lsn;
    walmsg_build_status_update(&st, buf, sizeof(buf));
    if (PQputCopyData(s->conn, (const char *)buf, (int)sizeof(buf)) != 1 || PQflush(s->conn) != 0) {
        log_error("[stream] could not send feedback: %s", PQerrorMessage(s->conn));
        return false;
    }
    return true;
}
