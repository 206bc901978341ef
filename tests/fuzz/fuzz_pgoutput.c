/*
 * fuzz_pgoutput.c: libFuzzer target for the pure protocol decoders. Each input
 * is fed (1) as one pgoutput message to decoders of every protocol version,
 * outside and inside a stream, (2) as a CopyBoth frame to walmsg_parse, whose
 * XLogData payload goes on to a decoder, and (3) as a sequence of messages,
 * each prefixed by a 2-byte big-endian length, to one decoder per version so
 * the S...E state machine is exercised. A crash, sanitizer report, a view
 * outside its input, or an error without a message is a finding.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgoutput.h"
#include "walmsg.h"

/* UBSan findings stop the run like ASan ones do. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static bool inside(const void *p, size_t n, const uint8_t *buf, size_t len)
{
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)buf;

    return a >= b && n <= len && a - b <= len - n;
}

static void check_cstr(const char *s, const uint8_t *buf, size_t len)
{
    CHECK(s != NULL && inside(s, 1, buf, len));
    CHECK(memchr(s, '\0', len - (size_t)((const uint8_t *)s - buf)) != NULL);
}

static void check_tuple(const PgoTuple *t, const uint8_t *buf, size_t len)
{
    CHECK(t->ncols <= PGO_MAX_COLUMNS);
    for (unsigned i = 0; i < t->ncols; i++) {
        const PgoValue *v = &t->values[i];

        if (v->kind == PGO_COL_TEXT || v->kind == PGO_COL_BINARY)
            CHECK(v->len == 0 || inside(v->data, v->len, buf, len));
        else
            CHECK((v->kind == PGO_COL_NULL || v->kind == PGO_COL_UNCHANGED) && v->data == NULL);
    }
}

static void check_views(const PgoMessage *m, const uint8_t *buf, size_t len)
{
    CHECK(len > 0 && m->type == buf[0]);
    switch (m->type) {
    case PGO_MSG_ORIGIN:
        check_cstr(m->u.origin.name, buf, len);
        break;
    case PGO_MSG_RELATION:
        check_cstr(m->u.relation.nspname, buf, len);
        check_cstr(m->u.relation.relname, buf, len);
        for (unsigned i = 0; i < m->u.relation.ncols; i++)
            check_cstr(m->u.relation.cols[i].name, buf, len);
        break;
    case PGO_MSG_TYPE:
        check_cstr(m->u.type_info.nspname, buf, len);
        check_cstr(m->u.type_info.typname, buf, len);
        break;
    case PGO_MSG_INSERT:
        check_tuple(&m->u.insert.new_tuple, buf, len);
        break;
    case PGO_MSG_UPDATE:
        check_tuple(&m->u.update.old_tuple, buf, len);
        check_tuple(&m->u.update.new_tuple, buf, len);
        break;
    case PGO_MSG_DELETE:
        CHECK(m->u.del.old_kind == PGO_OLD_KEY || m->u.del.old_kind == PGO_OLD_FULL);
        check_tuple(&m->u.del.old_tuple, buf, len);
        break;
    case PGO_MSG_TRUNCATE:
        CHECK(m->u.truncate.nrelids <= len / 4);
        break;
    case PGO_MSG_MESSAGE:
        check_cstr(m->u.message.prefix, buf, len);
        CHECK(m->u.message.len == 0 || inside(m->u.message.content, m->u.message.len, buf, len));
        break;
    case PGO_MSG_BEGIN_PREPARE:
    case PGO_MSG_PREPARE:
    case PGO_MSG_STREAM_PREPARE:
        check_cstr(m->u.prepare.gid, buf, len);
        break;
    case PGO_MSG_COMMIT_PREPARED:
        check_cstr(m->u.commit_prep.gid, buf, len);
        break;
    case PGO_MSG_ROLLBACK_PREPARED:
        check_cstr(m->u.rollback_prep.gid, buf, len);
        break;
    default:
        break;
    }
}

/* Decode one message; check the result and that a failure leaves the
 * stream state alone and explains itself. */
static void decode_checked(PgoDecoder *d, const uint8_t *buf, size_t len)
{
    uint32_t xid_before = 0, xid_after = 0;
    bool in_before = pgo_decoder_in_stream(d, &xid_before);
    PgoMessage m;

    if (pgo_decode(d, buf, len, &m) == PGO_OK) {
        check_views(&m, buf, len);
        CHECK(pgo_decoder_error(d)[0] == '\0');
        return;
    }
    CHECK(strstr(pgo_decoder_error(d), "offset") != NULL);
    CHECK(pgo_decoder_in_stream(d, &xid_after) == in_before && xid_after == xid_before);
}

static void fuzz_single(const uint8_t *data, size_t size)
{
    static const uint8_t start[] = {'S', 0, 0, 0, 3, 1};

    for (int v = PGO_PROTO_MIN; v <= PGO_PROTO_MAX; v++) {
        PgoDecoder *d = pgo_decoder_create(v);
        PgoMessage m;

        CHECK(d != NULL);
        decode_checked(d, data, size);
        pgo_decoder_destroy(d);
        if (v < 2)
            continue;
        d = pgo_decoder_create(v);
        CHECK(d != NULL);
        CHECK(pgo_decode(d, start, sizeof start, &m) == PGO_OK);
        decode_checked(d, data, size);
        pgo_decoder_destroy(d);
    }
}

static void fuzz_frame(const uint8_t *data, size_t size)
{
    char err[WALMSG_ERR_SIZE];
    WalMsg w;
    PgoDecoder *d;

    if (!walmsg_parse(data, size, &w, err, sizeof err)) {
        CHECK(strstr(err, "offset") != NULL);
        return;
    }
    CHECK(err[0] == '\0');
    if (w.type != WALMSG_XLOGDATA) {
        CHECK(w.type == WALMSG_KEEPALIVE && size == 18);
        return;
    }
    CHECK(size >= 25 && w.u.xlogdata.data == data + 25 && w.u.xlogdata.len == size - 25);
    d = pgo_decoder_create(PGO_PROTO_MAX);
    CHECK(d != NULL);
    decode_checked(d, w.u.xlogdata.data, w.u.xlogdata.len);
    pgo_decoder_destroy(d);
}

/* Messages with 2-byte lengths, each copied to its own exact-size buffer so
 * AddressSanitizer sees a read past any one message. */
static void fuzz_sequence(const uint8_t *data, size_t size, int proto)
{
    PgoDecoder *d = pgo_decoder_create(proto);
    size_t pos = 0;

    CHECK(d != NULL);
    while (size - pos >= 2) {
        size_t len = ((size_t)data[pos] << 8) | data[pos + 1];
        uint8_t *msg;

        pos += 2;
        if (len > size - pos)
            len = size - pos;
        msg = malloc(len > 0 ? len : 1);
        CHECK(msg != NULL);
        if (len > 0)
            memcpy(msg, data + pos, len);
        decode_checked(d, msg, len);
        free(msg);
        pos += len;
    }
    pgo_decoder_destroy(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_single(data, size);
    fuzz_frame(data, size);
    for (int v = 2; v <= PGO_PROTO_MAX; v++)
        fuzz_sequence(data, size, v);
    return 0;
}
