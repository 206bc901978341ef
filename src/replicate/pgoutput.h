/*
 * pgoutput.h: pure decoder of pgoutput logical replication messages, protocol
 * versions 1 to 4. Bytes in, one PgoMessage out. Owns the framing rules and
 * the S...E stream state; does not own relation caching, spooling or apply.
 * No I/O, no libpq. Layouts are listed in pgoutput.c.
 */
#ifndef PGRELOCATE_PGOUTPUT_H
#define PGRELOCATE_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsn.h"

#define PGO_PROTO_MIN 1
#define PGO_PROTO_MAX 4
/* PostgreSQL's MaxTupleAttributeNumber: no tuple or relation has more. */
#define PGO_MAX_COLUMNS 1664

typedef enum PgoStatus {
    PGO_OK = 0,
    PGO_ERR_TRUNCATED,   /* the message ends before a field it must hold */
    PGO_ERR_MALFORMED,   /* a field holds a value the protocol forbids, or bytes trail */
    PGO_ERR_UNKNOWN_TAG, /* first byte unknown to the negotiated protocol version */
    PGO_ERR_STATE,       /* message not allowed here (stream nesting, S...E rules) */
    PGO_ERR_NOMEM,
} PgoStatus;

/* Message types; each value is the message's tag byte. */
typedef enum PgoMsgType {
    PGO_MSG_BEGIN = 'B',
    PGO_MSG_COMMIT = 'C',
    PGO_MSG_ORIGIN = 'O',
    PGO_MSG_RELATION = 'R',
    PGO_MSG_TYPE = 'Y',
    PGO_MSG_INSERT = 'I',
    PGO_MSG_UPDATE = 'U',
    PGO_MSG_DELETE = 'D',
    PGO_MSG_TRUNCATE = 'T',
    PGO_MSG_MESSAGE = 'M',
    PGO_MSG_STREAM_START = 'S',
    PGO_MSG_STREAM_STOP = 'E',
    PGO_MSG_STREAM_COMMIT = 'c',
    PGO_MSG_STREAM_ABORT = 'A',
    PGO_MSG_BEGIN_PREPARE = 'b',
    PGO_MSG_PREPARE = 'P',
    PGO_MSG_COMMIT_PREPARED = 'K',
    PGO_MSG_ROLLBACK_PREPARED = 'r',
    PGO_MSG_STREAM_PREPARE = 'p',
} PgoMsgType;

/* TupleData column kinds; each value is the kind byte on the wire. */
typedef enum PgoColKind {
    PGO_COL_NULL = 'n',
    PGO_COL_UNCHANGED = 'u', /* unchanged TOAST: value absent, NOT a null */
    PGO_COL_TEXT = 't',
    PGO_COL_BINARY = 'b',
} PgoColKind;

/* One column value. For TEXT and BINARY, data points into the input buffer
 * (not NUL-terminated) and len may be 0; for NULL and UNCHANGED, data is NULL
 * and len is 0. */
typedef struct PgoValue {
    PgoColKind kind;
    uint32_t len;
    const uint8_t *data;
} PgoValue;

typedef struct PgoTuple {
    uint16_t ncols;
    const PgoValue *values; /* decoder-owned, ncols entries */
} PgoTuple;

/* Which old tuple an Update or Delete carries. */
typedef enum PgoOldKind {
    PGO_OLD_NONE = 0,
    PGO_OLD_KEY = 'K',  /* replica identity key columns; others are 'n' */
    PGO_OLD_FULL = 'O', /* whole old row (REPLICA IDENTITY FULL) */
} PgoOldKind;

typedef struct PgoBegin {
    Lsn final_lsn;
    int64_t commit_time_us;
    uint32_t xid;
} PgoBegin;

/* Commit 'C' and Stream Commit 'c' (xid is 0 for 'C'). */
typedef struct PgoCommit {
    uint32_t xid;
    Lsn commit_lsn;
    Lsn end_lsn;
    int64_t commit_time_us;
} PgoCommit;

typedef struct PgoOrigin {
    Lsn origin_lsn;
    const char *name; /* NUL-terminated, inside the input buffer */
} PgoOrigin;

typedef struct PgoColumn {
    bool key; /* part of the replica identity */
    const char *name;
    uint32_t type_oid;
    int32_t typmod;
} PgoColumn;

typedef struct PgoRelation {
    uint32_t relid;
    const char *nspname; /* "" means pg_catalog */
    const char *relname;
    char replident; /* 'd' default, 'n' nothing, 'f' full, 'i' index */
    uint16_t ncols;
    const PgoColumn *cols; /* decoder-owned, ncols entries */
} PgoRelation;

typedef struct PgoType {
    uint32_t type_oid;
    const char *nspname;
    const char *typname;
} PgoType;

typedef struct PgoInsert {
    uint32_t relid;
    PgoTuple new_tuple;
} PgoInsert;

/* Update: old_kind NONE, KEY or FULL, never both; new_tuple always set. */
typedef struct PgoUpdate {
    uint32_t relid;
    PgoOldKind old_kind;
    PgoTuple old_tuple; /* empty when old_kind is PGO_OLD_NONE */
    PgoTuple new_tuple;
} PgoUpdate;

/* Delete: old_kind is always KEY or FULL. */
typedef struct PgoDelete {
    uint32_t relid;
    PgoOldKind old_kind;
    PgoTuple old_tuple;
} PgoDelete;

typedef struct PgoTruncate {
    bool cascade;
    bool restart_identity;
    uint32_t nrelids;
    const uint32_t *relids; /* decoder-owned, nrelids entries */
} PgoTruncate;

typedef struct PgoLogicalMessage {
    bool transactional;
    Lsn lsn;
    const char *prefix;
    uint32_t len;
    const uint8_t *content; /* len bytes inside the input buffer */
} PgoLogicalMessage;

typedef struct PgoStreamStart {
    uint32_t xid;
    bool first_segment;
} PgoStreamStart;

/* Stream Abort: has_abort_info only on protocol 4 with parallel streaming. */
typedef struct PgoStreamAbort {
    uint32_t xid;
    uint32_t subxid; /* equals xid when the whole transaction aborted */
    bool has_abort_info;
    Lsn abort_lsn;
    int64_t abort_time_us;
} PgoStreamAbort;

/* Begin Prepare 'b', Prepare 'P' and Stream Prepare 'p'. */
typedef struct PgoPrepare {
    Lsn prepare_lsn;
    Lsn end_lsn;
    int64_t prepare_time_us;
    uint32_t xid;
    const char *gid;
} PgoPrepare;

typedef struct PgoCommitPrepared {
    Lsn commit_lsn;
    Lsn end_lsn;
    int64_t commit_time_us;
    uint32_t xid;
    const char *gid;
} PgoCommitPrepared;

typedef struct PgoRollbackPrepared {
    Lsn prepare_end_lsn;
    Lsn rollback_end_lsn;
    int64_t prepare_time_us;
    int64_t rollback_time_us;
    uint32_t xid;
    const char *gid;
} PgoRollbackPrepared;

/*
 * One decoded message. Every pointer is a view into the buffer passed to
 * pgo_decode() or into decoder-owned arrays: valid until the next
 * pgo_decode() or pgo_decoder_destroy() on the same decoder. Callers copy
 * what they keep.
 */
typedef struct PgoMessage {
    PgoMsgType type;
    bool streamed;       /* decoded inside S...E with an xid prefix */
    uint32_t stream_xid; /* that prefix ((sub)transaction xid), else 0 */
    union {
        PgoBegin begin;                    /* B */
        PgoCommit commit;                  /* C, c */
        PgoOrigin origin;                  /* O */
        PgoRelation relation;              /* R */
        PgoType type_info;                 /* Y */
        PgoInsert insert;                  /* I */
        PgoUpdate update;                  /* U */
        PgoDelete del;                     /* D */
        PgoTruncate truncate;              /* T */
        PgoLogicalMessage message;         /* M */
        PgoStreamStart stream_start;       /* S (E has no body) */
        PgoStreamAbort stream_abort;       /* A */
        PgoPrepare prepare;                /* b, P, p */
        PgoCommitPrepared commit_prep;     /* K */
        PgoRollbackPrepared rollback_prep; /* r */
    } u;
} PgoMessage;

typedef struct PgoDecoder PgoDecoder;

/* Create a decoder for the negotiated proto_version (PGO_PROTO_MIN..MAX),
 * outside any stream. Returns NULL for an unsupported version or out of
 * memory. Free with pgo_decoder_destroy(). */
PgoDecoder *pgo_decoder_create(int proto_version);

/* Free the decoder and every view it handed out; NULL is a no-op. */
void pgo_decoder_destroy(PgoDecoder *d);

/*
 * Decode one complete message (the payload of one XLogData frame) into *out.
 * Returns PGO_OK, or an error status with pgo_decoder_error() describing it;
 * on error *out is unspecified and the decoder's stream state is unchanged,
 * so the caller may log and stop (it should: the stream is no longer
 * trustworthy). Stream Start and Stream Stop change that state on success.
 * Inside a stream the xid prefix must be the stream's xid or a later one (a
 * subtransaction). The decoder tracks S...E itself, so a prefix missing or
 * extra only comes from a broken sender; such a message usually fails because
 * its fields shift, but not always: a Relation or Type whose namespace name
 * has 4 or more bytes decodes with the namespace shortened, and a logical
 * decoding message can decode in the wrong state with its fields shifted
 * into the prefix string. The bytes alone cannot tell those apart.
 */
PgoStatus pgo_decode(PgoDecoder *d, const uint8_t *buf, size_t len, PgoMessage *out);

/* One-line lowercase description of the last error (naming the message,
 * the field and the byte offset), or "" if the last call succeeded. */
const char *pgo_decoder_error(const PgoDecoder *d);

/* True between a decoded Stream Start and its Stream Stop; *xid (if not
 * NULL) receives the streamed transaction's xid. */
bool pgo_decoder_in_stream(const PgoDecoder *d, uint32_t *xid);

int pgo_decoder_proto_version(const PgoDecoder *d);

/* Static lowercase names for logs: "update", "stream commit", ... */
const char *pgo_msg_type_name(PgoMsgType type);
const char *pgo_status_name(PgoStatus status);

#endif
