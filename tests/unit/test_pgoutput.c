/*
 * test_pgoutput.c: the pgoutput decoder against messages captured from a real
 * PostgreSQL 15 (pgoutput_fixtures.h), every one also cut short at every
 * length and corrupted byte by byte, plus hand-built malformed messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgoutput.h"
#include "pgoutput_fixtures.h"

#define NSEQS (sizeof pgo_fixture_seqs / sizeof pgo_fixture_seqs[0])

/* ---- helpers ------------------------------------------------------------ */

/* An exact-size heap copy, so ASan flags any read past the end. */
static uint8_t *dup_exact(const uint8_t *p, size_t len)
{
    uint8_t *q = malloc(len > 0 ? len : 1);

    assert_non_null(q);
    if (len > 0)
        memcpy(q, p, len);
    return q;
}

static const PgoFixtureSeq *find_seq(const char *name)
{
    for (size_t i = 0; i < NSEQS; i++)
        if (strcmp(pgo_fixture_seqs[i].name, name) == 0)
            return &pgo_fixture_seqs[i];
    fail_msg("no fixture sequence %s", name);
    return NULL;
}

static bool inside(const void *p, size_t n, const uint8_t *buf, size_t len)
{
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)buf;

    return a >= b && n <= len && a - b <= len - n;
}

/* A C string view: starts inside buf and its NUL is inside buf. */
static void assert_cstr_inside(const char *s, const uint8_t *buf, size_t len)
{
    assert_non_null(s);
    assert_true(inside(s, 1, buf, len));
    assert_non_null(memchr(s, '\0', len - (size_t)((const uint8_t *)s - buf)));
}

static void assert_tuple_inside(const PgoTuple *t, const uint8_t *buf, size_t len)
{
    for (unsigned i = 0; i < t->ncols; i++) {
        const PgoValue *v = &t->values[i];

        if (v->kind == PGO_COL_TEXT || v->kind == PGO_COL_BINARY)
            assert_true(v->len == 0 || inside(v->data, v->len, buf, len));
        else
            assert_true(v->data == NULL && v->len == 0);
    }
}

/* Every view a decoded message holds lies inside its input buffer. */
static void assert_views_inside(const PgoMessage *m, const uint8_t *buf, size_t len)
{
    switch (m->type) {
    case PGO_MSG_ORIGIN:
        assert_cstr_inside(m->u.origin.name, buf, len);
        break;
    case PGO_MSG_RELATION:
        assert_cstr_inside(m->u.relation.nspname, buf, len);
        assert_cstr_inside(m->u.relation.relname, buf, len);
        for (unsigned i = 0; i < m->u.relation.ncols; i++)
            assert_cstr_inside(m->u.relation.cols[i].name, buf, len);
        break;
    case PGO_MSG_TYPE:
        assert_cstr_inside(m->u.type_info.nspname, buf, len);
        assert_cstr_inside(m->u.type_info.typname, buf, len);
        break;
    case PGO_MSG_INSERT:
        assert_tuple_inside(&m->u.insert.new_tuple, buf, len);
        break;
    case PGO_MSG_UPDATE:
        assert_tuple_inside(&m->u.update.old_tuple, buf, len);
        assert_tuple_inside(&m->u.update.new_tuple, buf, len);
        break;
    case PGO_MSG_DELETE:
        assert_tuple_inside(&m->u.del.old_tuple, buf, len);
        break;
    case PGO_MSG_MESSAGE:
        assert_cstr_inside(m->u.message.prefix, buf, len);
        assert_true(m->u.message.len == 0 ||
                    inside(m->u.message.content, m->u.message.len, buf, len));
        break;
    case PGO_MSG_BEGIN_PREPARE:
    case PGO_MSG_PREPARE:
    case PGO_MSG_STREAM_PREPARE:
        assert_cstr_inside(m->u.prepare.gid, buf, len);
        break;
    case PGO_MSG_COMMIT_PREPARED:
        assert_cstr_inside(m->u.commit_prep.gid, buf, len);
        break;
    case PGO_MSG_ROLLBACK_PREPARED:
        assert_cstr_inside(m->u.rollback_prep.gid, buf, len);
        break;
    default:
        break;
    }
}

/* One-line, lowercase start, names an offset. */
static void assert_good_error(const PgoDecoder *d)
{
    const char *e = pgo_decoder_error(d);

    assert_true(e[0] != '\0');
    assert_null(strchr(e, '\n'));
    assert_true(e[0] < 'A' || e[0] > 'Z');
    assert_non_null(strstr(e, "offset"));
}

/* Decode messages 0..idx of a sequence in order; keep message idx. */
typedef struct Decoded {
    PgoDecoder *d;
    uint8_t *buf;
    size_t len;
    PgoMessage msg;
} Decoded;

static void decode_upto(Decoded *dc, const char *seq_name, size_t idx)
{
    const PgoFixtureSeq *seq = find_seq(seq_name);

    assert_true(idx < seq->nmsgs);
    dc->d = pgo_decoder_create(seq->proto_version);
    assert_non_null(dc->d);
    for (size_t i = 0; i <= idx; i++) {
        const PgoFixtureMsg *fm = &seq->msgs[i];
        PgoStatus st;

        dc->buf = dup_exact(fm->bytes, fm->len);
        dc->len = fm->len;
        st = pgo_decode(dc->d, dc->buf, dc->len, &dc->msg);
        if (st != PGO_OK)
            fail_msg("%s #%zu: %s", seq_name, i, pgo_decoder_error(dc->d));
        assert_int_equal(dc->msg.type, fm->tag);
        if (i < idx)
            free(dc->buf);
    }
}

static void decoded_free(Decoded *dc)
{
    free(dc->buf);
    pgo_decoder_destroy(dc->d);
}

/* Tuple spec: columns separated by '|': "n", "u", "t:text", "t#len", "b#len". */
static void assert_tuple(const PgoTuple *t, const char *spec)
{
    char copy[512];
    char *save = NULL;
    unsigned i = 0;

    snprintf(copy, sizeof copy, "%s", spec);
    for (char *col = strtok_r(copy, "|", &save); col; col = strtok_r(NULL, "|", &save), i++) {
        const PgoValue *v;

        assert_true(i < t->ncols);
        v = &t->values[i];
        assert_int_equal(v->kind, (unsigned char)col[0]);
        if (col[1] == ':') {
            assert_int_equal(v->len, strlen(col + 2));
            assert_memory_equal(v->data, col + 2, v->len);
        } else if (col[1] == '#') {
            assert_int_equal(v->len, strtoul(col + 2, NULL, 10));
        }
    }
    assert_int_equal(i, t->ncols);
}

/* ---- every fixture decodes, in order, with views inside the buffer ------- */

static void decode_sequence(const PgoFixtureSeq *seq, int proto)
{
    PgoDecoder *d = pgo_decoder_create(proto);

    assert_non_null(d);
    for (size_t i = 0; i < seq->nmsgs; i++) {
        const PgoFixtureMsg *fm = &seq->msgs[i];
        uint8_t *buf = dup_exact(fm->bytes, fm->len);
        bool was_in_stream = pgo_decoder_in_stream(d, NULL);
        PgoMessage m;

        if (pgo_decode(d, buf, fm->len, &m) != PGO_OK)
            fail_msg("%s #%zu v%d: %s", seq->name, i, proto, pgo_decoder_error(d));
        assert_string_equal(pgo_decoder_error(d), "");
        assert_int_equal(m.type, fm->tag);
        assert_views_inside(&m, buf, fm->len);
        if (m.streamed)
            assert_true(was_in_stream);
        free(buf);
    }
    assert_false(pgo_decoder_in_stream(d, NULL));
    pgo_decoder_destroy(d);
}

static void test_fixtures_decode_in_order_on_their_version_and_later(void **state)
{
    (void)state;
    for (size_t s = 0; s < NSEQS; s++)
        for (int v = pgo_fixture_seqs[s].proto_version; v <= PGO_PROTO_MAX; v++)
            decode_sequence(&pgo_fixture_seqs[s], v);
}

/* Inside a stream every data message carries its xid prefix. */
static void test_stream_data_messages_carry_the_xid_prefix(void **state)
{
    const PgoFixtureSeq *seq = find_seq("v2_stream");
    PgoDecoder *d = pgo_decoder_create(2);
    size_t nstreamed = 0;

    (void)state;
    for (size_t i = 0; i < seq->nmsgs; i++) {
        const PgoFixtureMsg *fm = &seq->msgs[i];
        uint32_t sxid = 0;
        bool in = pgo_decoder_in_stream(d, &sxid);
        PgoMessage m;

        assert_int_equal(pgo_decode(d, fm->bytes, fm->len, &m), PGO_OK);
        if (in && strchr("RYIUDTM", fm->tag)) {
            assert_true(m.streamed);
            /* the top-level xid, or a subtransaction's, which is always later */
            assert_true(m.stream_xid == sxid || (int32_t)(m.stream_xid - sxid) > 0);
            nstreamed++;
        } else {
            assert_false(m.streamed);
            assert_int_equal(m.stream_xid, 0);
        }
    }
    assert_true(nstreamed > 20);
    pgo_decoder_destroy(d);
}

/* ---- field-level expectations on captured messages ---------------------- */

typedef struct TupleCase {
    const char *seq;
    size_t idx;
    char old_kind; /* 0, 'K' or 'O' */
    const char *old_spec;
    const char *new_spec;
} TupleCase;

static const TupleCase tuple_cases[] = {
    {"v1", 3, 0, NULL, "t:1|t:alice|t:happy|n"},
    {"v1", 6, 0, NULL, "t:1|t:bob|t:happy|n"},
    {"v1", 9, 'K', "t:1|n|n|n", "t:2|t:bob|t:happy|n"},
    {"v1", 12, 'K', "t:2|n|n|n", NULL},
    {"v1", 16, 0, NULL, "t:1|t#4096|t:0"},
    /* unchanged TOAST: 'u', not a null, not a value */
    {"v1", 19, 0, NULL, "t:1|u|t:1"},
    {"v1", 23, 0, NULL, "t:1|t#4096|t:x"},
    /* REPLICA IDENTITY FULL: the old tuple has the value the new one marks 'u' */
    {"v1", 26, 'O', "t:1|t#4096|t:x", "t:1|u|t:y"},
    {"v1", 29, 'O', "t:1|t#4096|t:y", NULL},
    {"v1", 59, 0, NULL,
     "t:1|t:-216237.0000003597|t:NaN|t:2024-02-29 12:00:00.123456+00|t:\\xdeadbeef|"
     "t:{\"a\": [1, 2]}|t:{1,NULL,3}"},
    {"v1_binary", 2, 0, NULL, "b#4|b#8|b#12|b#8|b#1|b#3|b#28"},
    {"v1_binary", 5, 0, NULL, "b#4|b#8|b#12|b#8|b#1|b#3|b#28"},
    {"v2_stream", 24, 0, NULL, "t:1|t:u"},
    {"v2_stream", 25, 'K', "t:2|n", NULL},
    {"v3_twophase", 3, 0, NULL, "t:20|t:p|t:ok|n"},
};

static void check_tuple_case(const TupleCase *tc)
{
    Decoded dc;
    const PgoMessage *m = &dc.msg;

    decode_upto(&dc, tc->seq, tc->idx);
    if (m->type == PGO_MSG_INSERT) {
        assert_tuple(&m->u.insert.new_tuple, tc->new_spec);
    } else if (m->type == PGO_MSG_UPDATE) {
        assert_int_equal(m->u.update.old_kind, tc->old_kind);
        if (tc->old_kind != 0)
            assert_tuple(&m->u.update.old_tuple, tc->old_spec);
        else
            assert_int_equal(m->u.update.old_tuple.ncols, 0);
        assert_tuple(&m->u.update.new_tuple, tc->new_spec);
    } else {
        assert_int_equal(m->type, PGO_MSG_DELETE);
        assert_int_equal(m->u.del.old_kind, tc->old_kind);
        assert_tuple(&m->u.del.old_tuple, tc->old_spec);
    }
    decoded_free(&dc);
}

static void test_captured_tuples_have_the_inserted_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof tuple_cases / sizeof tuple_cases[0]; i++)
        check_tuple_case(&tuple_cases[i]);
}

static void test_binary_columns_hold_the_send_format(void **state)
{
    static const uint8_t one_point_five[8] = {0x3f, 0xf8, 0, 0, 0, 0, 0, 0};
    static const uint8_t infinity[8] = {0x7f, 0xf0, 0, 0, 0, 0, 0, 0};
    static const uint8_t two[4] = {0, 0, 0, 2};
    Decoded dc;

    (void)state;
    decode_upto(&dc, "v1_binary", 2);
    assert_memory_equal(dc.msg.u.insert.new_tuple.values[0].data, two, 4);
    assert_memory_equal(dc.msg.u.insert.new_tuple.values[1].data, one_point_five, 8);
    decoded_free(&dc);
    decode_upto(&dc, "v1_binary", 5);
    assert_memory_equal(dc.msg.u.update.new_tuple.values[1].data, infinity, 8);
    decoded_free(&dc);
}

static uint32_t relid_at(const char *seq, size_t idx, const char *relname)
{
    Decoded dc;
    uint32_t relid;

    decode_upto(&dc, seq, idx);
    assert_int_equal(dc.msg.type, PGO_MSG_RELATION);
    assert_string_equal(dc.msg.u.relation.relname, relname);
    relid = dc.msg.u.relation.relid;
    decoded_free(&dc);
    return relid;
}

static void test_relation_and_type_describe_the_table(void **state)
{
    Decoded ty, rel;
    const PgoColumn *c;

    (void)state;
    decode_upto(&ty, "v1", 1);
    assert_int_equal(ty.msg.type, PGO_MSG_TYPE);
    assert_string_equal(ty.msg.u.type_info.nspname, "public");
    assert_string_equal(ty.msg.u.type_info.typname, "mood");
    decode_upto(&rel, "v1", 2);
    assert_string_equal(rel.msg.u.relation.nspname, "public");
    assert_string_equal(rel.msg.u.relation.relname, "t_basic");
    assert_int_equal(rel.msg.u.relation.replident, 'd');
    assert_int_equal(rel.msg.u.relation.ncols, 4);
    c = rel.msg.u.relation.cols;
    assert_string_equal(c[0].name, "id");
    assert_true(c[0].key);
    assert_int_equal(c[0].type_oid, 23);
    assert_int_equal(c[0].typmod, -1);
    assert_string_equal(c[1].name, "name");
    assert_false(c[1].key);
    assert_int_equal(c[1].type_oid, 25);
    assert_string_equal(c[2].name, "m");
    assert_int_equal(c[2].type_oid, ty.msg.u.type_info.type_oid);
    assert_string_equal(c[3].name, "note");
    decoded_free(&ty);
    decoded_free(&rel);
}

static void test_replica_identity_full_flags_every_column_as_key(void **state)
{
    Decoded rel;

    (void)state;
    decode_upto(&rel, "v1", 22);
    assert_string_equal(rel.msg.u.relation.relname, "t_full");
    assert_int_equal(rel.msg.u.relation.replident, 'f');
    assert_int_equal(rel.msg.u.relation.ncols, 3);
    for (unsigned i = 0; i < 3; i++)
        assert_true(rel.msg.u.relation.cols[i].key);
    decoded_free(&rel);
}

static void test_truncate_lists_relations_and_options(void **state)
{
    uint32_t toast = relid_at("v1", 32, "t_toast");
    uint32_t full = relid_at("v1", 33, "t_full");
    uint32_t basic = relid_at("v1", 41, "t_basic");
    uint32_t ident = relid_at("v1", 42, "t_ident");
    uint32_t child = relid_at("v1", 43, "t_child");
    Decoded t;

    (void)state;
    decode_upto(&t, "v1", 34);
    assert_int_equal(t.msg.u.truncate.nrelids, 2);
    assert_false(t.msg.u.truncate.cascade);
    assert_false(t.msg.u.truncate.restart_identity);
    assert_int_equal(t.msg.u.truncate.relids[0], toast);
    assert_int_equal(t.msg.u.truncate.relids[1], full);
    decoded_free(&t);
    decode_upto(&t, "v1", 44);
    assert_int_equal(t.msg.u.truncate.nrelids, 3);
    assert_true(t.msg.u.truncate.cascade);
    assert_true(t.msg.u.truncate.restart_identity);
    assert_int_equal(t.msg.u.truncate.relids[0], basic);
    assert_int_equal(t.msg.u.truncate.relids[1], ident);
    assert_int_equal(t.msg.u.truncate.relids[2], child);
    decoded_free(&t);
}

static void assert_logical_message(const char *seq, size_t idx, bool transactional,
                                   const char *content, size_t content_len)
{
    Decoded dc;

    decode_upto(&dc, seq, idx);
    assert_int_equal(dc.msg.type, PGO_MSG_MESSAGE);
    assert_int_equal(dc.msg.u.message.transactional, transactional);
    assert_string_equal(dc.msg.u.message.prefix, "pgrelocate");
    assert_true(dc.msg.u.message.lsn != LSN_INVALID);
    assert_int_equal(dc.msg.u.message.len, content_len);
    assert_memory_equal(dc.msg.u.message.content, content, content_len);
    decoded_free(&dc);
}

static void test_logical_messages_inside_and_outside_transactions(void **state)
{
    (void)state;
    assert_logical_message("v1", 50, true, "fence 1", 7);
    assert_logical_message("v1", 52, false, "\x00\xff", 2);
    assert_logical_message("v2_stream", 41, true, "in stream", 9);
}

/* 2024-01-02 03:04:05+00 in microseconds since 2000-01-01. */
#define ORIGIN_TIME_US INT64_C(757479845000000)

static void test_begin_commit_and_origin_agree(void **state)
{
    Decoded b, c, o;

    (void)state;
    decode_upto(&b, "v1", 53);
    decode_upto(&o, "v1", 54);
    decode_upto(&c, "v1", 56);
    assert_int_equal(b.msg.type, PGO_MSG_BEGIN);
    assert_int_equal(c.msg.type, PGO_MSG_COMMIT);
    assert_true(b.msg.u.begin.xid != 0);
    assert_int_equal(b.msg.u.begin.final_lsn, c.msg.u.commit.commit_lsn);
    assert_true(c.msg.u.commit.end_lsn > c.msg.u.commit.commit_lsn);
    assert_int_equal(b.msg.u.begin.commit_time_us, ORIGIN_TIME_US);
    assert_int_equal(c.msg.u.commit.commit_time_us, ORIGIN_TIME_US);
    assert_string_equal(o.msg.u.origin.name, "upstream");
    assert_int_equal(o.msg.u.origin.origin_lsn, 0x1234ABCD);
    decoded_free(&b);
    decoded_free(&c);
    decoded_free(&o);
}

static uint32_t xid_of(const char *seq, size_t idx, PgoMsgType type)
{
    Decoded dc;
    uint32_t xid;

    decode_upto(&dc, seq, idx);
    assert_int_equal(dc.msg.type, type);
    switch (type) {
    case PGO_MSG_STREAM_START:
        xid = dc.msg.u.stream_start.xid;
        break;
    case PGO_MSG_STREAM_COMMIT:
        xid = dc.msg.u.commit.xid;
        break;
    default:
        xid = dc.msg.stream_xid;
    }
    decoded_free(&dc);
    return xid;
}

static void test_streamed_transaction_with_subtransaction_abort(void **state)
{
    uint32_t top = xid_of("v2_stream", 0, PGO_MSG_STREAM_START);
    uint32_t sub = xid_of("v2_stream", 14, PGO_MSG_INSERT);
    Decoded s, a, c;

    (void)state;
    assert_true(sub != top);
    assert_int_equal(xid_of("v2_stream", 2, PGO_MSG_INSERT), top);
    decode_upto(&s, "v2_stream", 5);
    assert_false(s.msg.u.stream_start.first_segment);
    decode_upto(&a, "v2_stream", 21);
    assert_int_equal(a.msg.u.stream_abort.xid, top);
    assert_int_equal(a.msg.u.stream_abort.subxid, sub);
    assert_false(a.msg.u.stream_abort.has_abort_info);
    decode_upto(&c, "v2_stream", 29);
    assert_int_equal(c.msg.type, PGO_MSG_STREAM_COMMIT);
    assert_int_equal(c.msg.u.commit.xid, top);
    assert_true(c.msg.u.commit.end_lsn > c.msg.u.commit.commit_lsn);
    decoded_free(&s);
    decoded_free(&a);
    decoded_free(&c);
}

static void test_streamed_transaction_aborted_whole(void **state)
{
    uint32_t top = xid_of("v2_stream", 30, PGO_MSG_STREAM_START);
    Decoded a;

    (void)state;
    decode_upto(&a, "v2_stream", 39);
    assert_int_equal(a.msg.u.stream_abort.xid, top);
    assert_int_equal(a.msg.u.stream_abort.subxid, top);
    decoded_free(&a);
    /* commit time of a transaction that carried a replication origin */
    decode_upto(&a, "v2_stream", 50);
    assert_int_equal(a.msg.u.commit.commit_time_us, ORIGIN_TIME_US);
    decoded_free(&a);
}

static void assert_gid(const char *seq, size_t idx, PgoMsgType type, const char *gid, uint32_t xid)
{
    Decoded dc;
    const char *got;
    uint32_t got_xid;

    decode_upto(&dc, seq, idx);
    assert_int_equal(dc.msg.type, type);
    if (type == PGO_MSG_COMMIT_PREPARED) {
        got = dc.msg.u.commit_prep.gid;
        got_xid = dc.msg.u.commit_prep.xid;
    } else if (type == PGO_MSG_ROLLBACK_PREPARED) {
        got = dc.msg.u.rollback_prep.gid;
        got_xid = dc.msg.u.rollback_prep.xid;
        assert_true(dc.msg.u.rollback_prep.rollback_end_lsn >
                    dc.msg.u.rollback_prep.prepare_end_lsn);
    } else {
        got = dc.msg.u.prepare.gid;
        got_xid = dc.msg.u.prepare.xid;
    }
    assert_string_equal(got, gid);
    assert_int_equal(got_xid, xid);
    decoded_free(&dc);
}

static void test_two_phase_messages_carry_gid_and_xid(void **state)
{
    Decoded b, p;
    uint32_t x1, x2, x3;

    (void)state;
    decode_upto(&b, "v3_twophase", 0);
    decode_upto(&p, "v3_twophase", 4);
    x1 = b.msg.u.prepare.xid;
    assert_int_equal(b.msg.u.prepare.prepare_lsn, p.msg.u.prepare.prepare_lsn);
    assert_int_equal(b.msg.u.prepare.end_lsn, p.msg.u.prepare.end_lsn);
    decoded_free(&b);
    decoded_free(&p);
    assert_gid("v3_twophase", 0, PGO_MSG_BEGIN_PREPARE, "gid_commit", x1);
    assert_gid("v3_twophase", 4, PGO_MSG_PREPARE, "gid_commit", x1);
    assert_gid("v3_twophase", 5, PGO_MSG_COMMIT_PREPARED, "gid_commit", x1);
    decode_upto(&b, "v3_twophase", 6);
    x2 = b.msg.u.prepare.xid;
    decoded_free(&b);
    assert_gid("v3_twophase", 8, PGO_MSG_PREPARE, "gid_rollback", x2);
    assert_gid("v3_twophase", 9, PGO_MSG_ROLLBACK_PREPARED, "gid_rollback", x2);
    x3 = xid_of("v3_twophase", 10, PGO_MSG_STREAM_START);
    assert_gid("v3_twophase", 23, PGO_MSG_STREAM_PREPARE, "gid_stream", x3);
    assert_gid("v3_twophase", 24, PGO_MSG_COMMIT_PREPARED, "gid_stream", x3);
}

/* ---- every message cut short, every message corrupted -------------------- */

/*
 * Walk every fixture in order; for each, call fn with a decoder that is in
 * the state the message was sent in (inside or outside its stream).
 */
typedef void (*FixtureFn)(PgoDecoder *d, const PgoFixtureSeq *seq, size_t i, void *arg);

static void for_each_fixture_in_state(FixtureFn fn, void *arg)
{
    for (size_t s = 0; s < NSEQS; s++) {
        const PgoFixtureSeq *seq = &pgo_fixture_seqs[s];
        PgoDecoder *walker = pgo_decoder_create(seq->proto_version);
        const PgoFixtureMsg *last_start = NULL;

        for (size_t i = 0; i < seq->nmsgs; i++) {
            const PgoFixtureMsg *fm = &seq->msgs[i];
            PgoDecoder *d = pgo_decoder_create(seq->proto_version);
            PgoMessage m;

            if (pgo_decoder_in_stream(walker, NULL))
                assert_int_equal(pgo_decode(d, last_start->bytes, last_start->len, &m), PGO_OK);
            fn(d, seq, i, arg);
            pgo_decoder_destroy(d);
            assert_int_equal(pgo_decode(walker, fm->bytes, fm->len, &m), PGO_OK);
            if (m.type == PGO_MSG_STREAM_START)
                last_start = fm;
        }
        pgo_decoder_destroy(walker);
    }
}

static void cut_short(PgoDecoder *d, const PgoFixtureSeq *seq, size_t i, void *arg)
{
    const PgoFixtureMsg *fm = &seq->msgs[i];
    bool in = pgo_decoder_in_stream(d, NULL);
    size_t *count = arg;

    for (size_t len = 0; len < fm->len; len++) {
        uint8_t *buf = dup_exact(fm->bytes, len);
        PgoMessage m;
        PgoStatus st = pgo_decode(d, buf, len, &m);

        if (st == PGO_OK)
            fail_msg("%s #%zu cut to %zu of %zu bytes decoded", seq->name, i, len, fm->len);
        assert_good_error(d);
        assert_int_equal(pgo_decoder_in_stream(d, NULL), in);
        free(buf);
        (*count)++;
    }
}

static void test_every_fixture_cut_short_at_every_length_fails(void **state)
{
    size_t count = 0;

    (void)state;
    for_each_fixture_in_state(cut_short, &count);
    assert_true(count > 10000);
}

static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void corrupt_one(PgoDecoder *d, const PgoFixtureMsg *fm, size_t pos, uint8_t val)
{
    uint8_t *buf = dup_exact(fm->bytes, fm->len);
    bool in = pgo_decoder_in_stream(d, NULL);
    PgoMessage m;

    buf[pos] = val;
    if (pgo_decode(d, buf, fm->len, &m) == PGO_OK) {
        assert_int_equal(m.type, buf[0]);
        assert_views_inside(&m, buf, fm->len);
        /* a corrupted S or E moved the state: put it back */
        if (pgo_decoder_in_stream(d, NULL) != in) {
            static const uint8_t stop[] = {'E'};
            static const uint8_t start[] = {'S', 0, 0, 0, 9, 1};

            if (in)
                assert_int_equal(pgo_decode(d, start, sizeof start, &m), PGO_OK);
            else
                assert_int_equal(pgo_decode(d, stop, sizeof stop, &m), PGO_OK);
        }
    } else {
        assert_true(pgo_decoder_error(d)[0] != '\0');
        assert_int_equal(pgo_decoder_in_stream(d, NULL), in);
    }
    free(buf);
}

/* Small messages: every position with every other byte value. Large ones:
 * a few thousand random single-byte changes. */
static void corrupt(PgoDecoder *d, const PgoFixtureSeq *seq, size_t i, void *arg)
{
    const PgoFixtureMsg *fm = &seq->msgs[i];
    uint32_t *rng = arg;

    if (fm->len <= 64) {
        for (size_t pos = 0; pos < fm->len; pos++)
            for (unsigned v = 0; v < 256; v++)
                if (v != fm->bytes[pos])
                    corrupt_one(d, fm, pos, (uint8_t)v);
        return;
    }
    for (int n = 0; n < 2000; n++) {
        size_t pos = rng_next(rng) % fm->len;
        uint8_t v = (uint8_t)(fm->bytes[pos] ^ (1 + rng_next(rng) % 255));

        corrupt_one(d, fm, pos, v);
    }
}

static void test_every_fixture_with_single_byte_corruptions_never_crashes(void **state)
{
    uint32_t rng = 0x9e3779b9;

    (void)state;
    for_each_fixture_in_state(corrupt, &rng);
}

/* Data messages sent outside a stream, replayed inside one: the missing xid
 * prefix shifts every field and the message fails. Relation, Type and
 * logical decoding messages are the exception (the shift lands inside a
 * string), see pgoutput.h. */
static void outside_msg_inside_stream(PgoDecoder *d, const PgoFixtureSeq *seq, size_t i, void *arg)
{
    static const uint8_t start[] = {'S', 0, 0, 0, 3, 1};
    const PgoFixtureMsg *fm = &seq->msgs[i];
    size_t *count = arg;
    PgoDecoder *sd;
    PgoMessage m;

    if (pgo_decoder_in_stream(d, NULL) || strchr("IUDT", fm->tag) == NULL)
        return;
    sd = pgo_decoder_create(2);
    assert_int_equal(pgo_decode(sd, start, sizeof start, &m), PGO_OK);
    if (pgo_decode(sd, fm->bytes, fm->len, &m) == PGO_OK)
        fail_msg("%s #%zu without xid prefix decoded inside a stream", seq->name, i);
    assert_good_error(sd);
    pgo_decoder_destroy(sd);
    (*count)++;
}

static void test_data_message_without_xid_prefix_inside_stream_fails(void **state)
{
    size_t count = 0;

    (void)state;
    for_each_fixture_in_state(outside_msg_inside_stream, &count);
    assert_true(count > 20);
}

static void inside_msg_outside_stream(PgoDecoder *d, const PgoFixtureSeq *seq, size_t i, void *arg)
{
    const PgoFixtureMsg *fm = &seq->msgs[i];
    PgoDecoder *o = pgo_decoder_create(seq->proto_version);
    size_t *count = arg;
    PgoMessage m;

    /* A logical message's prefix string can swallow the shifted bytes. */
    if (pgo_decoder_in_stream(d, NULL) && strchr("RYIUDT", fm->tag) != NULL) {
        if (pgo_decode(o, fm->bytes, fm->len, &m) == PGO_OK)
            fail_msg("%s #%zu with xid prefix decoded outside a stream", seq->name, i);
        assert_good_error(o);
        (*count)++;
    }
    pgo_decoder_destroy(o);
}

static void test_streamed_message_outside_stream_fails(void **state)
{
    size_t count = 0;

    (void)state;
    for_each_fixture_in_state(inside_msg_outside_stream, &count);
    assert_true(count > 20);
}

static void append_byte(PgoDecoder *d, const PgoFixtureSeq *seq, size_t i, void *arg)
{
    const PgoFixtureMsg *fm = &seq->msgs[i];
    uint8_t *buf = malloc(fm->len + 1);
    PgoMessage m;

    (void)arg;
    assert_non_null(buf);
    memcpy(buf, fm->bytes, fm->len);
    buf[fm->len] = 0;
    assert_int_not_equal(pgo_decode(d, buf, fm->len + 1, &m), PGO_OK);
    assert_good_error(d);
    free(buf);
}

static void test_every_fixture_with_a_trailing_byte_fails(void **state)
{
    (void)state;
    for_each_fixture_in_state(append_byte, NULL);
}

/* ---- hand-built messages -------------------------------------------------- */

typedef struct Msg {
    uint8_t b[16384];
    size_t n;
} Msg;

static void put8(Msg *m, uint8_t v)
{
    assert_true(m->n < sizeof m->b);
    m->b[m->n++] = v;
}

static void put16(Msg *m, uint16_t v)
{
    put8(m, (uint8_t)(v >> 8));
    put8(m, (uint8_t)v);
}

static void put32(Msg *m, uint32_t v)
{
    put16(m, (uint16_t)(v >> 16));
    put16(m, (uint16_t)v);
}

static void put64(Msg *m, uint64_t v)
{
    put32(m, (uint32_t)(v >> 32));
    put32(m, (uint32_t)v);
}

static void putstr(Msg *m, const char *s)
{
    do
        put8(m, (uint8_t)*s);
    while (*s++);
}

static void put_text(Msg *m, const char *s)
{
    put8(m, 't');
    put32(m, (uint32_t)strlen(s));
    for (; *s; s++)
        put8(m, (uint8_t)*s);
}

/* Decode m with a fresh decoder of proto (inside a stream of xid 100 when
 * in_stream); return the status and, on error, check the message. */
static PgoStatus decode_msg(const Msg *m, int proto, bool in_stream, const char *err_substr)
{
    static const uint8_t start[] = {'S', 0, 0, 0, 100, 1};
    PgoDecoder *d = pgo_decoder_create(proto);
    uint8_t *buf = dup_exact(m->b, m->n);
    PgoMessage out;
    PgoStatus st;

    if (in_stream)
        assert_int_equal(pgo_decode(d, start, sizeof start, &out), PGO_OK);
    st = pgo_decode(d, buf, m->n, &out);
    if (st == PGO_OK) {
        assert_views_inside(&out, buf, m->n);
    } else {
        assert_good_error(d);
        if (err_substr != NULL && strstr(pgo_decoder_error(d), err_substr) == NULL)
            fail_msg("error \"%s\" lacks \"%s\"", pgo_decoder_error(d), err_substr);
    }
    free(buf);
    pgo_decoder_destroy(d);
    return st;
}

static void insert_with_ncols(Msg *m, uint16_t ncols, unsigned present, char kind)
{
    m->n = 0;
    put8(m, 'I');
    put32(m, 16384);
    put8(m, 'N');
    put16(m, ncols);
    for (unsigned i = 0; i < present; i++)
        put8(m, (uint8_t)kind);
}

static void test_column_count_is_capped_and_must_fit(void **state)
{
    static Msg m;

    (void)state;
    insert_with_ncols(&m, PGO_MAX_COLUMNS, PGO_MAX_COLUMNS, 'n');
    assert_int_equal(decode_msg(&m, 1, false, NULL), PGO_OK);
    insert_with_ncols(&m, PGO_MAX_COLUMNS + 1, PGO_MAX_COLUMNS + 1, 'n');
    assert_int_equal(decode_msg(&m, 1, false, "invalid new tuple column count 1665"),
                     PGO_ERR_MALFORMED);
    insert_with_ncols(&m, 0xffff, 100, 'n'); /* -1 as Int16 */
    assert_int_equal(decode_msg(&m, 1, false, NULL), PGO_ERR_MALFORMED);
    insert_with_ncols(&m, 1000, 999, 'u');
    assert_int_equal(decode_msg(&m, 1, false, "does not fit"), PGO_ERR_TRUNCATED);
    insert_with_ncols(&m, 0, 0, 'n');
    assert_int_equal(decode_msg(&m, 1, false, NULL), PGO_OK);
}

static void test_value_length_beyond_the_message_fails(void **state)
{
    static Msg m;

    (void)state;
    m.n = 0;
    put8(&m, 'I');
    put32(&m, 16384);
    put8(&m, 'N');
    put16(&m, 2);
    put_text(&m, "ok");
    put8(&m, 't');
    put32(&m, 5);
    put8(&m, 'x');
    put8(&m, 'y');
    put8(&m, 'z');
    assert_int_equal(decode_msg(&m, 1, false,
                                "insert message: truncated new tuple column 2 value bytes at "
                                "offset 20 (need 5 bytes, 3 left)"),
                     PGO_ERR_TRUNCATED);
    m.n -= 8;
    put8(&m, 'b');
    put32(&m, 0x80000000u);
    assert_int_equal(decode_msg(&m, 1, false, "invalid new tuple column 2 length 2147483648"),
                     PGO_ERR_MALFORMED);
    m.n -= 5;
    put8(&m, 'x');
    assert_int_equal(decode_msg(&m, 1, false, "invalid new tuple column 2 kind byte 120"),
                     PGO_ERR_MALFORMED);
}

static void relation_header(Msg *m, uint16_t ncols)
{
    m->n = 0;
    put8(m, 'R');
    put32(m, 16384);
    putstr(m, "public");
    putstr(m, "t");
    put8(m, 'd');
    put16(m, ncols);
}

static void test_relation_columns_are_checked(void **state)
{
    static Msg m;

    (void)state;
    relation_header(&m, 1);
    put8(&m, 1);
    putstr(&m, "id");
    put32(&m, 23);
    put32(&m, 0xffffffff);
    assert_int_equal(decode_msg(&m, 1, false, NULL), PGO_OK);
    m.b[m.n - 12] = 2; /* unknown column flag */
    assert_int_equal(decode_msg(&m, 1, false, "invalid column flags 2"), PGO_ERR_MALFORMED);
    relation_header(&m, 1000); /* 1000 columns need >= 10000 bytes */
    for (int i = 0; i < 50; i++)
        put8(&m, 0);
    assert_int_equal(decode_msg(&m, 1, false, "does not fit"), PGO_ERR_TRUNCATED);
    relation_header(&m, 0);
    m.b[m.n - 3] = 'x';
    assert_int_equal(decode_msg(&m, 1, false, "invalid replica identity 120"), PGO_ERR_MALFORMED);
    m.n = 0;
    put8(&m, 'R');
    put32(&m, 16384);
    put8(&m, 'p');
    put8(&m, 'u');
    assert_int_equal(decode_msg(&m, 1, false, "unterminated namespace name at offset 5"),
                     PGO_ERR_TRUNCATED);
}

static void test_update_and_delete_tuple_markers(void **state)
{
    static Msg m;

    (void)state;
    /* U with K and then O: never both */
    m.n = 0;
    put8(&m, 'U');
    put32(&m, 16384);
    put8(&m, 'K');
    put16(&m, 1);
    put_text(&m, "1");
    put8(&m, 'O');
    put16(&m, 1);
    put_text(&m, "1");
    assert_int_equal(decode_msg(&m, 1, false, "invalid new tuple marker 0x4f at offset 14"),
                     PGO_ERR_MALFORMED);
    /* D needs K or O */
    m.n = 0;
    put8(&m, 'D');
    put32(&m, 16384);
    put8(&m, 'N');
    put16(&m, 1);
    put_text(&m, "1");
    assert_int_equal(decode_msg(&m, 1, false, "old tuple marker 0x4e at offset 5"),
                     PGO_ERR_MALFORMED);
    /* I needs N */
    m.b[0] = 'I';
    m.b[5] = 'K';
    assert_int_equal(decode_msg(&m, 1, false, "new tuple marker"), PGO_ERR_MALFORMED);
}

static void test_truncate_count_cannot_outgrow_the_message(void **state)
{
    static Msg m;

    (void)state;
    m.n = 0;
    put8(&m, 'T');
    put32(&m, 0x40000000u);
    put8(&m, 0);
    put32(&m, 16384);
    assert_int_equal(decode_msg(&m, 1, false, "does not fit"), PGO_ERR_TRUNCATED);
    m.b[4] = 1;
    m.b[1] = 0;
    assert_int_equal(decode_msg(&m, 1, false, NULL), PGO_OK);
    m.b[5] = 4; /* unknown option bit */
    assert_int_equal(decode_msg(&m, 1, false, "invalid options 4"), PGO_ERR_MALFORMED);
    m.b[5] = 0;
    m.b[4] = 0;
    assert_int_equal(decode_msg(&m, 1, false, "invalid relation count 0"), PGO_ERR_MALFORMED);
}

static void test_invalid_ids_and_flags_are_rejected(void **state)
{
    static Msg m;

    (void)state;
    m.n = 0;
    put8(&m, 'B');
    put64(&m, 0x1000);
    put64(&m, 0);
    put32(&m, 0);
    assert_int_equal(decode_msg(&m, 1, false, "invalid transaction id 0 at offset 17"),
                     PGO_ERR_MALFORMED);
    m.n = 0;
    put8(&m, 'C');
    put8(&m, 1);
    put64(&m, 1);
    put64(&m, 2);
    put64(&m, 3);
    assert_int_equal(decode_msg(&m, 1, false, "commit message: invalid flags 1 at offset 1"),
                     PGO_ERR_MALFORMED);
    m.n = 0;
    put8(&m, 'S');
    put32(&m, 7);
    put8(&m, 2);
    assert_int_equal(decode_msg(&m, 2, false, "invalid first segment flag 2"), PGO_ERR_MALFORMED);
    m.n = 0;
    put8(&m, 'A');
    put32(&m, 100);
    put32(&m, 99);
    assert_int_equal(decode_msg(&m, 2, false, "subtransaction id 99"), PGO_ERR_MALFORMED);
}

static void test_tags_are_gated_by_protocol_version(void **state)
{
    static const struct {
        char tag;
        int min_proto;
    } cases[] = {
        {'S', 2}, {'E', 2}, {'c', 2}, {'A', 2}, {'b', 3}, {'P', 3}, {'K', 3}, {'r', 3}, {'p', 3},
    };
    static Msg m;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        m.n = 0;
        put8(&m, (uint8_t)cases[i].tag);
        for (int v = PGO_PROTO_MIN; v < cases[i].min_proto; v++)
            assert_int_equal(decode_msg(&m, v, false, "needs protocol version"),
                             PGO_ERR_UNKNOWN_TAG);
    }
}

static void test_unknown_tags_fail(void **state)
{
    static Msg m;
    const char *known = "BCORYIUDTMSEcAbPKrp";

    (void)state;
    for (unsigned t = 0; t < 256; t++) {
        if (t != 0 && strchr(known, (int)t) != NULL)
            continue;
        m.n = 0;
        put8(&m, (uint8_t)t);
        put32(&m, 1);
        assert_int_equal(decode_msg(&m, 4, false, "unknown tag"), PGO_ERR_UNKNOWN_TAG);
        assert_int_equal(decode_msg(&m, 4, true, "unknown tag"), PGO_ERR_UNKNOWN_TAG);
    }
    m.n = 0;
    assert_int_equal(decode_msg(&m, 1, false, "empty"), PGO_ERR_TRUNCATED);
}

static void test_stream_nesting_is_enforced(void **state)
{
    static const uint8_t start7[] = {'S', 0, 0, 0, 7, 1};
    static const uint8_t start8[] = {'S', 0, 0, 0, 8, 1};
    static const uint8_t stop[] = {'E'};
    PgoDecoder *d = pgo_decoder_create(2);
    uint32_t xid = 0;
    PgoMessage m;

    (void)state;
    assert_int_equal(pgo_decode(d, stop, 1, &m), PGO_ERR_STATE);
    assert_non_null(strstr(pgo_decoder_error(d), "stream stop message: not allowed at offset 0 "
                                                 "outside a stream"));
    assert_int_equal(pgo_decode(d, start7, sizeof start7, &m), PGO_OK);
    assert_true(pgo_decoder_in_stream(d, &xid));
    assert_int_equal(xid, 7);
    assert_int_equal(pgo_decode(d, start8, sizeof start8, &m), PGO_ERR_STATE);
    assert_non_null(strstr(pgo_decoder_error(d), "inside the stream of transaction 7"));
    assert_true(pgo_decoder_in_stream(d, &xid));
    assert_int_equal(xid, 7);
    assert_int_equal(pgo_decode(d, stop, 1, &m), PGO_OK);
    assert_false(pgo_decoder_in_stream(d, &xid));
    assert_int_equal(pgo_decode(d, start8, sizeof start8, &m), PGO_OK);
    pgo_decoder_destroy(d);
}

static void test_transaction_control_is_refused_inside_a_stream(void **state)
{
    static Msg m;
    const char *tags = "BCScAbPKrp";

    (void)state;
    for (const char *t = tags; *t; t++) {
        m.n = 0;
        put8(&m, (uint8_t)*t);
        assert_int_equal(decode_msg(&m, 3, true, "inside the stream of transaction 100"),
                         PGO_ERR_STATE);
    }
}

static void test_stream_xid_prefix_must_not_precede_the_stream(void **state)
{
    static Msg m;

    (void)state;
    m.n = 0;
    put8(&m, 'I');
    put32(&m, 100);
    put32(&m, 16384);
    put8(&m, 'N');
    put16(&m, 1);
    put_text(&m, "x");
    assert_int_equal(decode_msg(&m, 2, true, NULL), PGO_OK);
    m.b[4] = 101; /* a subtransaction: later than its top-level xid */
    assert_int_equal(decode_msg(&m, 2, true, NULL), PGO_OK);
    m.b[4] = 99;
    assert_int_equal(decode_msg(&m, 2, true, "invalid transaction id prefix 99 at offset 1"),
                     PGO_ERR_MALFORMED);
    m.b[4] = 0;
    assert_int_equal(decode_msg(&m, 2, true, "invalid transaction id prefix 0"), PGO_ERR_MALFORMED);
}

static void test_origin_inside_a_stream_has_no_xid_prefix(void **state)
{
    static Msg m;

    (void)state;
    m.n = 0;
    put8(&m, 'O');
    put64(&m, 0);
    putstr(&m, "upstream");
    assert_int_equal(decode_msg(&m, 2, true, NULL), PGO_OK);
    assert_int_equal(decode_msg(&m, 2, false, NULL), PGO_OK);
}

static void test_stream_abort_info_only_from_version_4(void **state)
{
    static Msg m;
    PgoDecoder *d = pgo_decoder_create(4);
    PgoMessage out;

    (void)state;
    m.n = 0;
    put8(&m, 'A');
    put32(&m, 100);
    put32(&m, 101);
    assert_int_equal(decode_msg(&m, 2, false, NULL), PGO_OK);
    assert_int_equal(decode_msg(&m, 4, false, NULL), PGO_OK);
    put64(&m, 0x5000);
    put64(&m, 42);
    assert_int_equal(decode_msg(&m, 3, false, "16 trailing bytes at offset 9"), PGO_ERR_MALFORMED);
    assert_int_equal(pgo_decode(d, m.b, m.n, &out), PGO_OK);
    assert_true(out.u.stream_abort.has_abort_info);
    assert_int_equal(out.u.stream_abort.abort_lsn, 0x5000);
    assert_int_equal(out.u.stream_abort.abort_time_us, 42);
    m.n -= 3;
    assert_int_equal(decode_msg(&m, 4, false, "truncated abort time"), PGO_ERR_TRUNCATED);
    pgo_decoder_destroy(d);
}

static void test_decoder_storage_grows_and_is_reused(void **state)
{
    static Msg big, small;
    PgoDecoder *d = pgo_decoder_create(1);
    PgoMessage m;

    (void)state;
    insert_with_ncols(&big, PGO_MAX_COLUMNS, PGO_MAX_COLUMNS, 'u');
    insert_with_ncols(&small, 1, 1, 'n');
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pgo_decode(d, big.b, big.n, &m), PGO_OK);
        assert_int_equal(m.u.insert.new_tuple.ncols, PGO_MAX_COLUMNS);
        assert_int_equal(m.u.insert.new_tuple.values[PGO_MAX_COLUMNS - 1].kind, PGO_COL_UNCHANGED);
        assert_int_equal(pgo_decode(d, small.b, small.n, &m), PGO_OK);
        assert_int_equal(m.u.insert.new_tuple.ncols, 1);
        assert_int_equal(m.u.insert.new_tuple.values[0].kind, PGO_COL_NULL);
    }
    /* an error, then a good message: the decoder carries on */
    assert_int_not_equal(pgo_decode(d, big.b, big.n - 1, &m), PGO_OK);
    assert_int_equal(pgo_decode(d, small.b, small.n, &m), PGO_OK);
    assert_string_equal(pgo_decoder_error(d), "");
    pgo_decoder_destroy(d);
}

static void test_create_accepts_versions_1_to_4_only(void **state)
{
    (void)state;
    assert_null(pgo_decoder_create(0));
    assert_null(pgo_decoder_create(5));
    assert_null(pgo_decoder_create(-1));
    for (int v = 1; v <= 4; v++) {
        PgoDecoder *d = pgo_decoder_create(v);

        assert_non_null(d);
        assert_int_equal(pgo_decoder_proto_version(d), v);
        assert_false(pgo_decoder_in_stream(d, NULL));
        pgo_decoder_destroy(d);
    }
    pgo_decoder_destroy(NULL);
    assert_string_equal(pgo_msg_type_name(PGO_MSG_STREAM_COMMIT), "stream commit");
    assert_string_equal(pgo_msg_type_name((PgoMsgType)'z'), "unknown");
    assert_string_equal(pgo_status_name(PGO_ERR_TRUNCATED), "truncated");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_decode_in_order_on_their_version_and_later),
        cmocka_unit_test(test_stream_data_messages_carry_the_xid_prefix),
        cmocka_unit_test(test_captured_tuples_have_the_inserted_values),
        cmocka_unit_test(test_binary_columns_hold_the_send_format),
        cmocka_unit_test(test_relation_and_type_describe_the_table),
        cmocka_unit_test(test_replica_identity_full_flags_every_column_as_key),
        cmocka_unit_test(test_truncate_lists_relations_and_options),
        cmocka_unit_test(test_logical_messages_inside_and_outside_transactions),
        cmocka_unit_test(test_begin_commit_and_origin_agree),
        cmocka_unit_test(test_streamed_transaction_with_subtransaction_abort),
        cmocka_unit_test(test_streamed_transaction_aborted_whole),
        cmocka_unit_test(test_two_phase_messages_carry_gid_and_xid),
        cmocka_unit_test(test_every_fixture_cut_short_at_every_length_fails),
        cmocka_unit_test(test_every_fixture_with_single_byte_corruptions_never_crashes),
        cmocka_unit_test(test_data_message_without_xid_prefix_inside_stream_fails),
        cmocka_unit_test(test_streamed_message_outside_stream_fails),
        cmocka_unit_test(test_every_fixture_with_a_trailing_byte_fails),
        cmocka_unit_test(test_column_count_is_capped_and_must_fit),
        cmocka_unit_test(test_value_length_beyond_the_message_fails),
        cmocka_unit_test(test_relation_columns_are_checked),
        cmocka_unit_test(test_update_and_delete_tuple_markers),
        cmocka_unit_test(test_truncate_count_cannot_outgrow_the_message),
        cmocka_unit_test(test_invalid_ids_and_flags_are_rejected),
        cmocka_unit_test(test_tags_are_gated_by_protocol_version),
        cmocka_unit_test(test_unknown_tags_fail),
        cmocka_unit_test(test_stream_nesting_is_enforced),
        cmocka_unit_test(test_transaction_control_is_refused_inside_a_stream),
        cmocka_unit_test(test_stream_xid_prefix_must_not_precede_the_stream),
        cmocka_unit_test(test_origin_inside_a_stream_has_no_xid_prefix),
        cmocka_unit_test(test_stream_abort_info_only_from_version_4),
        cmocka_unit_test(test_decoder_storage_grows_and_is_reused),
        cmocka_unit_test(test_create_accepts_versions_1_to_4_only),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
