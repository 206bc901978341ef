/*
 * pgoutput.c: decode pgoutput logical replication messages, protocol 1 to 4.
 * Owns framing, bounds checks, which tags each protocol version allows and the
 * S...E stream state that decides whether data messages carry an xid prefix.
 * Does not own relation caching, spooling of streamed transactions or apply.
 *
 * Integers are big-endian; String is bytes up to a NUL; [xid] is an Int32
 * present only inside a stream (between S and E).
 *   B  Int64 final_lsn, Int64 commit_time, Int32 xid
 *   C  Int8 flags(0), Int64 commit_lsn, Int64 end_lsn, Int64 commit_time
 *   O  Int64 origin_lsn, String name
 *   R  [xid] Int32 relid, String nspname, String relname, Int8 replident,
 *      Int16 ncols, ncols x (Int8 flags(1=key), String name, Int32 type_oid, Int32 typmod)
 *   Y  [xid] Int32 type_oid, String nspname, String typname
 *   I  [xid] Int32 relid, 'N', TupleData
 *   U  [xid] Int32 relid, optional ('K' | 'O', TupleData), 'N', TupleData
 *   D  [xid] Int32 relid, 'K' | 'O', TupleData
 *   T  [xid] Int32 nrelids, Int8 options(1=cascade, 2=restart identity), nrelids x Int32
 *   M  [xid] Int8 flags(1=transactional), Int64 lsn, String prefix, Int32 len, Byte[len]
 *   S  Int32 xid, Int8 first_segment(0|1)                                          v2+
 *   E  (no body)                                                                   v2+
 *   c  Int32 xid, Int8 flags(0), Int64 commit_lsn, Int64 end_lsn, Int64 commit_time v2+
 *   A  Int32 xid, Int32 subxid [, Int64 abort_lsn, Int64 abort_time]  (v4 parallel) v2+
 *   b  Int64 prepare_lsn, Int64 end_lsn, Int64 prepare_time, Int32 xid, String gid v3+
 *   P  Int8 flags(0), Int64 prepare_lsn, Int64 end_lsn, Int64 prepare_time,
 *      Int32 xid, String gid                                                      v3+
 *   K  Int8 flags(0), Int64 commit_lsn, Int64 end_lsn, Int64 commit_time,
 *      Int32 xid, String gid                                                      v3+
 *   r  Int8 flags(0), Int64 prepare_end_lsn, Int64 rollback_end_lsn,
 *      Int64 prepare_time, Int64 rollback_time, Int32 xid, String gid             v3+
 *   p  as P                                                                        v3+
 *   TupleData: Int16 ncols, ncols x ('n' | 'u' | 't' Int32 len Byte[len] | 'b' Int32 len Byte[len])
 * Only a message's first byte is a message tag: 'K', 'O', 'N', 'b', 'r', 't' inside a
 * message are markers of that message's own grammar.
 * Also refused, as no PostgreSQL sends them: OID 0, xid below 3, a prefix xid or
 * subxid older than its transaction, undefined flag bits, empty relation, column
 * or type names, more than 1664 columns, bytes after the last field.
 */
#include "pgoutput.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_SIZE 256

/* Values arrays: one for the old (key or full) tuple, one for the new. */
#define SLOT_OLD 0
#define SLOT_NEW 1

/* Reader.col while a tuple's column count, not a column, is being read. */
#define NO_COLUMN UINT32_MAX

/* PostgreSQL's FirstNormalTransactionId: decoded transactions never have less. */
#define FIRST_NORMAL_XID 3

/* Smallest wire size of one relation column: flags, "" name, type, typmod. */
#define MIN_COLUMN_BYTES 10

/*
 * Invariant: in_stream is true exactly between a successfully decoded Stream
 * Start and the next Stream Stop; a failed pgo_decode() never changes it.
 * The arrays only grow; their contents are views for the last message.
 */
struct PgoDecoder {
    int proto_version;
    bool in_stream;
    uint32_t stream_xid;
    PgoValue *values[2];
    size_t values_cap[2];
    PgoColumn *cols;
    size_t cols_cap;
    uint32_t *relids;
    size_t relids_cap;
    char err[ERR_SIZE];
};

/*
 * Cursor over one message. The first failure sticks: later reads return zero
 * or NULL without touching the buffer, so a decoder checks status only before
 * it allocates, loops or branches on what it read.
 */
typedef struct Reader {
    PgoDecoder *d;
    const uint8_t *buf;
    size_t len;
    size_t pos;
    const char *msg;  /* message name for errors */
    const char *part; /* "new tuple" etc. while reading a tuple, else NULL */
    unsigned col;     /* column being read when part is set, or NO_COLUMN */
    PgoStatus status;
} Reader;

/* Where a message may appear, relative to Stream Start ... Stream Stop. */
#define OUTSIDE_STREAM 1
#define INSIDE_STREAM  2
#define ANYWHERE       (OUTSIDE_STREAM | INSIDE_STREAM)

typedef void (*DecodeFn)(Reader *r, PgoMessage *m);

typedef struct MsgSpec {
    const char *name; /* NULL: not a message tag */
    uint8_t min_proto;
    uint8_t where;
    bool xid_prefix; /* carries [xid] inside a stream */
    DecodeFn decode;
} MsgSpec;

static void rd_fail(Reader *r, PgoStatus status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rd_fail(Reader *r, PgoStatus status, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (r->status != PGO_OK)
        return;
    r->status = status;
    n = snprintf(r->d->err, ERR_SIZE, "%s message: ", r->msg);
    if (n < 0 || n >= ERR_SIZE)
        return;
    va_start(ap, fmt);
    vsnprintf(r->d->err + n, ERR_SIZE - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Name of the field being read, with tuple and column context. */
static const char *rd_field(const Reader *r, const char *what, char *buf, size_t size)
{
    if (r->part == NULL)
        return what;
    if (r->col == NO_COLUMN)
        snprintf(buf, size, "%s %s", r->part, what);
    else
        snprintf(buf, size, "%s column %u %s", r->part, r->col + 1, what);
    return buf;
}

static bool rd_need(Reader *r, size_t n, const char *what)
{
    char field[96];

    if (r->status != PGO_OK)
        return false;
    if (r->len - r->pos >= n)
        return true;
    rd_fail(r, PGO_ERR_TRUNCATED, "truncated %s at offset %zu (need %zu bytes, %zu left)",
            rd_field(r, what, field, sizeof field), r->pos, n, r->len - r->pos);
    return false;
}

/* Report a value the protocol forbids, found at offset. */
static void rd_invalid(Reader *r, size_t offset, const char *what, uint64_t value)
{
    char field[96];

    rd_fail(r, PGO_ERR_MALFORMED, "invalid %s %llu at offset %zu",
            rd_field(r, what, field, sizeof field), (unsigned long long)value, offset);
}

static uint64_t rd_be(Reader *r, size_t n, const char *what)
{
    uint64_t v = 0;

    if (!rd_need(r, n, what))
        return 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | r->buf[r->pos + i];
    r->pos += n;
    return v;
}

static uint8_t rd_u8(Reader *r, const char *what)
{
    return (uint8_t)rd_be(r, 1, what);
}

static uint16_t rd_u16(Reader *r, const char *what)
{
    return (uint16_t)rd_be(r, 2, what);
}

static uint32_t rd_u32(Reader *r, const char *what)
{
    return (uint32_t)rd_be(r, 4, what);
}

static uint64_t rd_u64(Reader *r, const char *what)
{
    return rd_be(r, 8, what);
}

static int64_t rd_i64(Reader *r, const char *what)
{
    uint64_t u = rd_u64(r, what);
    int64_t v;

    memcpy(&v, &u, sizeof v); /* two's complement reinterpretation, no UB */
    return v;
}

static int32_t rd_i32(Reader *r, const char *what)
{
    uint32_t u = rd_u32(r, what);
    int32_t v;

    memcpy(&v, &u, sizeof v);
    return v;
}

/* An Int32 that must not be 0 (InvalidOid, InvalidTransactionId). */
static uint32_t rd_nonzero32(Reader *r, const char *what)
{
    size_t at = r->pos;
    uint32_t v = rd_u32(r, what);

    if (r->status == PGO_OK && v == 0)
        rd_invalid(r, at, what, 0);
    return v;
}

/* A transaction id: must be a normal xid (>= 3). */
static uint32_t rd_xid(Reader *r, const char *what)
{
    size_t at = r->pos;
    uint32_t v = rd_u32(r, what);

    if (r->status == PGO_OK && v < FIRST_NORMAL_XID)
        rd_invalid(r, at, what, v);
    return v;
}

/* True if xid is top or later than top in PostgreSQL's circular xid order:
 * a subtransaction always gets its xid after its parent. */
static bool xid_same_or_later(uint32_t xid, uint32_t top)
{
    return (uint32_t)(xid - top) < UINT32_C(0x80000000);
}

/* A subtransaction id at offset at must be top or later. */
static void check_subxid(Reader *r, size_t at, const char *what, uint32_t xid, uint32_t top)
{
    if (r->status == PGO_OK && !xid_same_or_later(xid, top))
        rd_fail(r, PGO_ERR_MALFORMED, "invalid %s %u at offset %zu (precedes transaction %u)", what,
                xid, at, top);
}

/* A flags byte whose bits outside allowed must be clear. */
static uint8_t rd_flags(Reader *r, uint8_t allowed, const char *what)
{
    size_t at = r->pos;
    uint8_t v = rd_u8(r, what);

    if (r->status == PGO_OK && (v & ~allowed) != 0)
        rd_invalid(r, at, what, v);
    return v;
}

/* A NUL-terminated string; the NUL must lie inside the message. Returns a
 * pointer into the buffer, NULL on failure. */
static const char *rd_cstring(Reader *r, const char *what, bool allow_empty)
{
    const uint8_t *start = r->buf + r->pos;
    const uint8_t *nul;
    char field[96];

    if (r->status != PGO_OK)
        return NULL;
    nul = memchr(start, '\0', r->len - r->pos);
    if (nul == NULL) {
        rd_fail(r, PGO_ERR_TRUNCATED, "unterminated %s at offset %zu (%zu bytes left)",
                rd_field(r, what, field, sizeof field), r->pos, r->len - r->pos);
        return NULL;
    }
    if (nul == start && !allow_empty) {
        rd_fail(r, PGO_ERR_MALFORMED, "empty %s at offset %zu",
                rd_field(r, what, field, sizeof field), r->pos);
        return NULL;
    }
    r->pos += (size_t)(nul - start) + 1;
    return (const char *)start;
}

/* Int32 length (0..INT32_MAX) then that many bytes; *len receives it. */
static const uint8_t *rd_counted(Reader *r, const char *what, uint32_t *len)
{
    size_t at = r->pos;
    const uint8_t *data;
    uint32_t n = rd_u32(r, what);

    *len = 0;
    if (r->status != PGO_OK)
        return NULL;
    if (n > INT32_MAX) {
        rd_invalid(r, at, what, n);
        return NULL;
    }
    if (!rd_need(r, n, "value bytes"))
        return NULL;
    data = r->buf + r->pos;
    r->pos += n;
    *len = n;
    return data;
}

static void rd_expect_end(Reader *r)
{
    if (r->status == PGO_OK && r->pos != r->len)
        rd_fail(r, PGO_ERR_MALFORMED, "%zu trailing bytes at offset %zu", r->len - r->pos, r->pos);
}

/* Return arr grown to hold at least n elements of size elem (n is bounded by
 * the input length); *cap is updated. On out of memory, sets status NOMEM
 * and returns arr unchanged: callers check status, not the pointer. */
static void *rd_grow(Reader *r, void *arr, size_t *cap, size_t n, size_t elem)
{
    size_t want;
    void *p;

    if (n <= *cap)
        return arr;
    want = *cap * 2 > n ? *cap * 2 : n;
    if (want < 16)
        want = 16;
    p = realloc(arr, want * elem);
    if (p == NULL) {
        rd_fail(r, PGO_ERR_NOMEM, "out of memory for %zu entries", n);
        return arr;
    }
    *cap = want;
    return p;
}

/* An element count at offset that must be <= max and fit in the bytes left,
 * each element taking at least min_bytes. */
static bool rd_count_fits(Reader *r, size_t at, uint64_t n, uint64_t max, size_t min_bytes,
                          const char *what)
{
    char field[96];

    if (r->status != PGO_OK)
        return false;
    if (n > max) {
        rd_invalid(r, at, what, n);
        return false;
    }
    if (n > (r->len - r->pos) / min_bytes) {
        rd_fail(r, PGO_ERR_TRUNCATED, "%s %llu at offset %zu does not fit in the %zu bytes left",
                rd_field(r, what, field, sizeof field), (unsigned long long)n, at, r->len - r->pos);
        return false;
    }
    return true;
}

static void rd_value(Reader *r, PgoValue *v)
{
    size_t at = r->pos;
    uint8_t kind = rd_u8(r, "kind");

    v->len = 0;
    v->data = NULL;
    if (r->status != PGO_OK)
        return;
    switch (kind) {
    case PGO_COL_NULL:
    case PGO_COL_UNCHANGED:
        v->kind = (PgoColKind)kind;
        break;
    case PGO_COL_TEXT:
    case PGO_COL_BINARY:
        v->kind = (PgoColKind)kind;
        v->data = rd_counted(r, "length", &v->len);
        break;
    default:
        rd_invalid(r, at, "kind byte", kind);
    }
}

/* TupleData into the decoder's values array for slot. */
static void rd_tuple(Reader *r, int slot, const char *part, PgoTuple *t)
{
    size_t at = r->pos;
    PgoValue *vals;
    uint16_t n;

    t->ncols = 0;
    t->values = NULL;
    r->part = part;
    r->col = NO_COLUMN;
    n = rd_u16(r, "column count");
    /* Every column takes at least its kind byte. */
    if (!rd_count_fits(r, at, n, PGO_MAX_COLUMNS, 1, "column count"))
        goto done;
    vals = rd_grow(r, r->d->values[slot], &r->d->values_cap[slot], n, sizeof *vals);
    r->d->values[slot] = vals;
    if (r->status != PGO_OK)
        goto done;
    for (unsigned i = 0; i < n && r->status == PGO_OK; i++) {
        r->col = i;
        rd_value(r, &vals[i]);
    }
    t->ncols = n;
    t->values = vals;
done:
    r->part = NULL;
}

/* The one-byte tuple marker; accepts only the tags in allowed. */
static uint8_t rd_marker(Reader *r, const char *allowed, const char *what)
{
    size_t at = r->pos;
    uint8_t b = rd_u8(r, what);

    if (r->status == PGO_OK && (b == 0 || strchr(allowed, b) == NULL))
        rd_fail(r, PGO_ERR_MALFORMED, "invalid %s 0x%02x at offset %zu (expected one of \"%s\")",
                what, b, at, allowed);
    return b;
}

static void dec_begin(Reader *r, PgoMessage *m)
{
    m->u.begin.final_lsn = rd_u64(r, "final lsn");
    m->u.begin.commit_time_us = rd_i64(r, "commit time");
    m->u.begin.xid = rd_xid(r, "transaction id");
}

static void dec_commit(Reader *r, PgoMessage *m)
{
    rd_flags(r, 0, "flags");
    m->u.commit.commit_lsn = rd_u64(r, "commit lsn");
    m->u.commit.end_lsn = rd_u64(r, "end lsn");
    m->u.commit.commit_time_us = rd_i64(r, "commit time");
}

static void dec_origin(Reader *r, PgoMessage *m)
{
    m->u.origin.origin_lsn = rd_u64(r, "origin lsn");
    m->u.origin.name = rd_cstring(r, "origin name", true);
}

static void rd_column(Reader *r, PgoColumn *c)
{
    uint8_t flags = rd_flags(r, 1, "column flags");

    c->key = (flags & 1) != 0;
    c->name = rd_cstring(r, "column name", false);
    c->type_oid = rd_nonzero32(r, "column type oid");
    c->typmod = rd_i32(r, "column type modifier");
}

static void dec_relation(Reader *r, PgoMessage *m)
{
    PgoRelation *rel = &m->u.relation;
    size_t at;
    uint16_t n;
    PgoColumn *cols;

    rel->relid = rd_nonzero32(r, "relation oid");
    rel->nspname = rd_cstring(r, "namespace name", true);
    rel->relname = rd_cstring(r, "relation name", false);
    at = r->pos;
    rel->replident = (char)rd_u8(r, "replica identity");
    if (r->status == PGO_OK && (rel->replident == '\0' || strchr("dnfi", rel->replident) == NULL))
        rd_invalid(r, at, "replica identity", (uint8_t)rel->replident);
    at = r->pos;
    n = rd_u16(r, "column count");
    if (!rd_count_fits(r, at, n, PGO_MAX_COLUMNS, MIN_COLUMN_BYTES, "column count"))
        return;
    cols = rd_grow(r, r->d->cols, &r->d->cols_cap, n, sizeof *cols);
    r->d->cols = cols;
    if (r->status != PGO_OK)
        return;
    for (unsigned i = 0; i < n && r->status == PGO_OK; i++)
        rd_column(r, &cols[i]);
    rel->ncols = n;
    rel->cols = cols;
}

static void dec_type(Reader *r, PgoMessage *m)
{
    m->u.type_info.type_oid = rd_nonzero32(r, "type oid");
    m->u.type_info.nspname = rd_cstring(r, "namespace name", true);
    m->u.type_info.typname = rd_cstring(r, "type name", false);
}

static void dec_insert(Reader *r, PgoMessage *m)
{
    m->u.insert.relid = rd_nonzero32(r, "relation oid");
    rd_marker(r, "N", "new tuple marker");
    rd_tuple(r, SLOT_NEW, "new tuple", &m->u.insert.new_tuple);
}

static const char *old_part(uint8_t marker)
{
    return marker == PGO_OLD_KEY ? "key tuple" : "old tuple";
}

static void dec_update(Reader *r, PgoMessage *m)
{
    PgoUpdate *u = &m->u.update;
    uint8_t marker;

    u->relid = rd_nonzero32(r, "relation oid");
    marker = rd_marker(r, "KON", "tuple marker");
    if (r->status != PGO_OK)
        return;
    if (marker != 'N') {
        u->old_kind = (PgoOldKind)marker;
        rd_tuple(r, SLOT_OLD, old_part(marker), &u->old_tuple);
        rd_marker(r, "N", "new tuple marker");
    }
    rd_tuple(r, SLOT_NEW, "new tuple", &u->new_tuple);
}

static void dec_delete(Reader *r, PgoMessage *m)
{
    PgoDelete *del = &m->u.del;
    uint8_t marker;

    del->relid = rd_nonzero32(r, "relation oid");
    marker = rd_marker(r, "KO", "old tuple marker");
    if (r->status != PGO_OK)
        return;
    del->old_kind = (PgoOldKind)marker;
    rd_tuple(r, SLOT_OLD, old_part(marker), &del->old_tuple);
}

static void dec_truncate(Reader *r, PgoMessage *m)
{
    PgoTruncate *t = &m->u.truncate;
    size_t at = r->pos;
    uint32_t n = rd_u32(r, "relation count");
    uint8_t options;
    uint32_t *relids;

    if (r->status == PGO_OK && n == 0)
        rd_invalid(r, at, "relation count", 0);
    options = rd_flags(r, 3, "options");
    if (!rd_count_fits(r, at, n, UINT32_MAX, 4, "relation count"))
        return;
    relids = rd_grow(r, r->d->relids, &r->d->relids_cap, n, sizeof *relids);
    r->d->relids = relids;
    if (r->status != PGO_OK)
        return;
    for (uint32_t i = 0; i < n && r->status == PGO_OK; i++)
        relids[i] = rd_nonzero32(r, "relation oid");
    t->cascade = (options & 1) != 0;
    t->restart_identity = (options & 2) != 0;
    t->nrelids = n;
    t->relids = relids;
}

static void dec_message(Reader *r, PgoMessage *m)
{
    PgoLogicalMessage *lm = &m->u.message;

    lm->transactional = (rd_flags(r, 1, "flags") & 1) != 0;
    lm->lsn = rd_u64(r, "message lsn");
    lm->prefix = rd_cstring(r, "prefix", true);
    lm->content = rd_counted(r, "content length", &lm->len);
}

static void dec_stream_start(Reader *r, PgoMessage *m)
{
    size_t at;
    uint8_t first;

    m->u.stream_start.xid = rd_xid(r, "transaction id");
    at = r->pos;
    first = rd_u8(r, "first segment flag");
    if (r->status == PGO_OK && first > 1)
        rd_invalid(r, at, "first segment flag", first);
    m->u.stream_start.first_segment = first == 1;
}

static void dec_stream_stop(Reader *r, PgoMessage *m)
{
    (void)r;
    (void)m;
}

static void dec_stream_commit(Reader *r, PgoMessage *m)
{
    m->u.commit.xid = rd_xid(r, "transaction id");
    dec_commit(r, m);
}

static void dec_stream_abort(Reader *r, PgoMessage *m)
{
    PgoStreamAbort *a = &m->u.stream_abort;

    size_t at;

    a->xid = rd_xid(r, "transaction id");
    at = r->pos;
    a->subxid = rd_xid(r, "subtransaction id");
    check_subxid(r, at, "subtransaction id", a->subxid, a->xid);
    /* Protocol 4 adds the abort LSN and time when streaming is parallel. */
    if (r->status == PGO_OK && r->d->proto_version >= 4 && r->pos < r->len) {
        a->has_abort_info = true;
        a->abort_lsn = rd_u64(r, "abort lsn");
        a->abort_time_us = rd_i64(r, "abort time");
    }
}

static void dec_begin_prepare(Reader *r, PgoMessage *m)
{
    PgoPrepare *p = &m->u.prepare;

    p->prepare_lsn = rd_u64(r, "prepare lsn");
    p->end_lsn = rd_u64(r, "end lsn");
    p->prepare_time_us = rd_i64(r, "prepare time");
    p->xid = rd_xid(r, "transaction id");
    p->gid = rd_cstring(r, "gid", true);
}

/* Prepare 'P' and Stream Prepare 'p': a flags byte, then as Begin Prepare. */
static void dec_prepare(Reader *r, PgoMessage *m)
{
    rd_flags(r, 0, "flags");
    dec_begin_prepare(r, m);
}

static void dec_commit_prepared(Reader *r, PgoMessage *m)
{
    PgoCommitPrepared *k = &m->u.commit_prep;

    rd_flags(r, 0, "flags");
    k->commit_lsn = rd_u64(r, "commit lsn");
    k->end_lsn = rd_u64(r, "end lsn");
    k->commit_time_us = rd_i64(r, "commit time");
    k->xid = rd_xid(r, "transaction id");
    k->gid = rd_cstring(r, "gid", true);
}

static void dec_rollback_prepared(Reader *r, PgoMessage *m)
{
    PgoRollbackPrepared *rp = &m->u.rollback_prep;

    rd_flags(r, 0, "flags");
    rp->prepare_end_lsn = rd_u64(r, "prepare end lsn");
    rp->rollback_end_lsn = rd_u64(r, "rollback end lsn");
    rp->prepare_time_us = rd_i64(r, "prepare time");
    rp->rollback_time_us = rd_i64(r, "rollback time");
    rp->xid = rd_xid(r, "transaction id");
    rp->gid = rd_cstring(r, "gid", true);
}

/* Indexed by tag byte. Transaction control messages never appear inside a
 * stream: the server closes the stream (E) before c, A and p. */
static const MsgSpec specs[128] = {
    ['B'] = {"begin", 1, OUTSIDE_STREAM, false, dec_begin},
    ['C'] = {"commit", 1, OUTSIDE_STREAM, false, dec_commit},
    ['O'] = {"origin", 1, ANYWHERE, false, dec_origin},
    ['R'] = {"relation", 1, ANYWHERE, true, dec_relation},
    ['Y'] = {"type", 1, ANYWHERE, true, dec_type},
    ['I'] = {"insert", 1, ANYWHERE, true, dec_insert},
    ['U'] = {"update", 1, ANYWHERE, true, dec_update},
    ['D'] = {"delete", 1, ANYWHERE, true, dec_delete},
    ['T'] = {"truncate", 1, ANYWHERE, true, dec_truncate},
    ['M'] = {"logical decoding", 1, ANYWHERE, true, dec_message},
    ['S'] = {"stream start", 2, OUTSIDE_STREAM, false, dec_stream_start},
    ['E'] = {"stream stop", 2, INSIDE_STREAM, false, dec_stream_stop},
    ['c'] = {"stream commit", 2, OUTSIDE_STREAM, false, dec_stream_commit},
    ['A'] = {"stream abort", 2, OUTSIDE_STREAM, false, dec_stream_abort},
    ['b'] = {"begin prepare", 3, OUTSIDE_STREAM, false, dec_begin_prepare},
    ['P'] = {"prepare", 3, OUTSIDE_STREAM, false, dec_prepare},
    ['K'] = {"commit prepared", 3, OUTSIDE_STREAM, false, dec_commit_prepared},
    ['r'] = {"rollback prepared", 3, OUTSIDE_STREAM, false, dec_rollback_prepared},
    ['p'] = {"stream prepare", 3, OUTSIDE_STREAM, false, dec_prepare},
};

static const MsgSpec *find_spec(uint8_t tag)
{
    if (tag >= sizeof specs / sizeof specs[0] || specs[tag].name == NULL)
        return NULL;
    return &specs[tag];
}

PgoDecoder *pgo_decoder_create(int proto_version)
{
    PgoDecoder *d;

    if (proto_version < PGO_PROTO_MIN || proto_version > PGO_PROTO_MAX)
        return NULL;
    d = calloc(1, sizeof *d);
    if (d != NULL)
        d->proto_version = proto_version;
    return d;
}

void pgo_decoder_destroy(PgoDecoder *d)
{
    if (d == NULL)
        return;
    free(d->values[SLOT_OLD]);
    free(d->values[SLOT_NEW]);
    free(d->cols);
    free(d->relids);
    free(d);
}

/* Check the tag against the protocol version and the stream state. */
static const MsgSpec *check_tag(Reader *r, uint8_t tag)
{
    const MsgSpec *spec = find_spec(tag);
    PgoDecoder *d = r->d;

    if (spec == NULL) {
        rd_fail(r, PGO_ERR_UNKNOWN_TAG, "unknown tag 0x%02x at offset 0", tag);
        return NULL;
    }
    r->msg = spec->name;
    if (spec->min_proto > d->proto_version) {
        rd_fail(r, PGO_ERR_UNKNOWN_TAG,
                "tag '%c' at offset 0 needs protocol version %d, the stream uses %d", tag,
                spec->min_proto, d->proto_version);
        return NULL;
    }
    if (d->in_stream && !(spec->where & INSIDE_STREAM)) {
        rd_fail(r, PGO_ERR_STATE, "not allowed at offset 0 inside the stream of transaction %u",
                d->stream_xid);
        return NULL;
    }
    if (!d->in_stream && !(spec->where & OUTSIDE_STREAM)) {
        rd_fail(r, PGO_ERR_STATE, "not allowed at offset 0 outside a stream");
        return NULL;
    }
    return spec;
}

PgoStatus pgo_decode(PgoDecoder *d, const uint8_t *buf, size_t len, PgoMessage *out)
{
    Reader r = {.d = d, .buf = buf, .len = len, .msg = "pgoutput"};
    const MsgSpec *spec;

    d->err[0] = '\0';
    memset(out, 0, sizeof *out);
    if (len == 0) {
        rd_fail(&r, PGO_ERR_TRUNCATED, "empty at offset 0 (no tag byte)");
        return r.status;
    }
    spec = check_tag(&r, buf[0]);
    if (spec == NULL)
        return r.status;
    out->type = (PgoMsgType)buf[0];
    r.pos = 1;
    if (d->in_stream && spec->xid_prefix) {
        out->streamed = true;
        out->stream_xid = rd_xid(&r, "transaction id prefix");
        check_subxid(&r, 1, "transaction id prefix", out->stream_xid, d->stream_xid);
    }
    spec->decode(&r, out);
    rd_expect_end(&r);
    if (r.status != PGO_OK)
        return r.status;
    if (out->type == PGO_MSG_STREAM_START) {
        d->in_stream = true;
        d->stream_xid = out->u.stream_start.xid;
    } else if (out->type == PGO_MSG_STREAM_STOP) {
        d->in_stream = false;
        d->stream_xid = 0;
    }
    return PGO_OK;
}

const char *pgo_decoder_error(const PgoDecoder *d)
{
    return d->err;
}

bool pgo_decoder_in_stream(const PgoDecoder *d, uint32_t *xid)
{
    if (xid != NULL)
        *xid = d->stream_xid;
    return d->in_stream;
}

int pgo_decoder_proto_version(const PgoDecoder *d)
{
    return d->proto_version;
}

const char *pgo_msg_type_name(PgoMsgType type)
{
    const MsgSpec *spec = ((unsigned)type < 256) ? find_spec((uint8_t)type) : NULL;

    return spec != NULL ? spec->name : "unknown";
}

const char *pgo_status_name(PgoStatus status)
{
    switch (status) {
    case PGO_OK:
        return "ok";
    case PGO_ERR_TRUNCATED:
        return "truncated";
    case PGO_ERR_MALFORMED:
        return "malformed";
    case PGO_ERR_UNKNOWN_TAG:
        return "unknown tag";
    case PGO_ERR_STATE:
        return "unexpected in this state";
    case PGO_ERR_NOMEM:
        return "out of memory";
    }
    return "invalid status";
}
