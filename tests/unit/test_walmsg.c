/*
 * test_walmsg.c: CopyBoth frame codec: XLogData and keepalive parsing (good
 * frames, every truncation, trailing bytes, bad values) and the exact bytes
 * of a standby status update.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "walmsg.h"

/* An exact-size heap copy, so ASan flags any read past the end. */
static uint8_t *dup_exact(const uint8_t *p, size_t len)
{
    uint8_t *q = malloc(len > 0 ? len : 1);

    assert_non_null(q);
    if (len > 0)
        memcpy(q, p, len);
    return q;
}

/* A captured pgoutput Begin, as an XLogData payload. */
static const uint8_t begin_payload[] = {
    0x42, 0x00, 0x00, 0x00, 0x00, 0x01, 0x94, 0x29, 0x40, 0x00, 0x03,
    0x03, 0xee, 0x3e, 0xa9, 0xcb, 0x75, 0x00, 0x00, 0x02, 0xd6,
};

typedef struct FrameCase {
    const char *name;
    uint8_t bytes[64];
    size_t len;
    bool ok;
    WalMsgType type;
    Lsn lsn1; /* start (w) or end (k) */
    Lsn lsn2; /* end (w) */
    int64_t time_us;
    bool reply;             /* k */
    size_t payload_len;     /* w */
    const char *err_substr; /* when !ok */
} FrameCase;

static const FrameCase frame_cases[] = {
    {"xlogdata with empty payload",
     {'w', 0, 0, 0, 1, 0, 0, 0, 0x28, 0, 0, 0, 1, 0, 0, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 5},
     25,
     true,
     WALMSG_XLOGDATA,
     UINT64_C(0x100000028),
     UINT64_C(0x100000030),
     5,
     false,
     0,
     NULL},
    {"xlogdata with negative send time",
     {'w', 0, 0, 0, 0,    0,    0,    0,    1,    0,    0,    0,    0,
      0,   0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'E'},
     26,
     true,
     WALMSG_XLOGDATA,
     1,
     2,
     -1,
     false,
     1,
     NULL},
    {"keepalive asking for a reply",
     {'k', 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 1},
     18,
     true,
     WALMSG_KEEPALIVE,
     0x12345678,
     0,
     1000,
     true,
     0,
     NULL},
    {"keepalive not asking for a reply",
     {'k', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0},
     18,
     true,
     WALMSG_KEEPALIVE,
     UINT64_MAX,
     0,
     0,
     false,
     0,
     NULL},
    {"keepalive with reply byte 2",
     {'k', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2},
     18,
     false,
     0,
     0,
     0,
     0,
     false,
     0,
     "invalid reply-requested byte 2 at offset 17"},
    {"keepalive with a trailing byte",
     {'k', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
     19,
     false,
     0,
     0,
     0,
     0,
     false,
     0,
     "1 trailing bytes at offset 18"},
    {"keepalive one byte short",
     {'k', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
     17,
     false,
     0,
     0,
     0,
     0,
     false,
     0,
     "keepalive frame truncated at offset 17"},
    {"xlogdata header one byte short",
     {'w', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0},
     24,
     false,
     0,
     0,
     0,
     0,
     false,
     0,
     "xlogdata frame truncated at offset 24"},
    {"standby status update is not a server frame",
     {'r', 0, 0, 0, 0, 0, 0, 0, 1},
     9,
     false,
     0,
     0,
     0,
     0,
     false,
     0,
     "unknown replication frame tag 0x72 at offset 0"},
    {"empty frame", {0}, 0, false, 0, 0, 0, 0, false, 0, "empty replication frame"},
};

static void check_frame_case(const FrameCase *fc)
{
    uint8_t *buf = dup_exact(fc->bytes, fc->len);
    char err[WALMSG_ERR_SIZE];
    WalMsg m;
    bool ok = walmsg_parse(buf, fc->len, &m, err, sizeof err);

    if (ok != fc->ok)
        fail_msg("%s: got %s (%s)", fc->name, ok ? "ok" : "error", err);
    if (!ok) {
        if (strstr(err, fc->err_substr) == NULL)
            fail_msg("%s: error \"%s\" lacks \"%s\"", fc->name, err, fc->err_substr);
        free(buf);
        return;
    }
    assert_string_equal(err, "");
    assert_int_equal(m.type, fc->type);
    if (m.type == WALMSG_XLOGDATA) {
        assert_int_equal(m.u.xlogdata.start_lsn, fc->lsn1);
        assert_int_equal(m.u.xlogdata.end_lsn, fc->lsn2);
        assert_int_equal(m.u.xlogdata.send_time_us, fc->time_us);
        assert_int_equal(m.u.xlogdata.len, fc->payload_len);
        assert_ptr_equal(m.u.xlogdata.data, buf + 25);
    } else {
        assert_int_equal(m.u.keepalive.end_lsn, fc->lsn1);
        assert_int_equal(m.u.keepalive.send_time_us, fc->time_us);
        assert_int_equal(m.u.keepalive.reply_requested, fc->reply);
    }
    free(buf);
}

static void test_frames_parse_or_fail_as_listed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof frame_cases / sizeof frame_cases[0]; i++)
        check_frame_case(&frame_cases[i]);
}

static void test_xlogdata_payload_is_a_view_of_the_frame(void **state)
{
    uint8_t frame[25 + sizeof begin_payload] = {'w', 0, 0, 0, 0, 0x01, 0x94, 0x28, 0x58};
    uint8_t *buf;
    WalMsg m;

    (void)state;
    memcpy(frame + 25, begin_payload, sizeof begin_payload);
    buf = dup_exact(frame, sizeof frame);
    assert_true(walmsg_parse(buf, sizeof frame, &m, NULL, 0));
    assert_int_equal(m.u.xlogdata.start_lsn, UINT64_C(0x1942858));
    assert_int_equal(m.u.xlogdata.len, sizeof begin_payload);
    assert_ptr_equal(m.u.xlogdata.data, buf + 25);
    assert_memory_equal(m.u.xlogdata.data, begin_payload, sizeof begin_payload);
    free(buf);
}

/* Every proper prefix of a good frame fails (XLogData: of its header). */
static void test_every_truncation_fails(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof frame_cases / sizeof frame_cases[0]; i++) {
        const FrameCase *fc = &frame_cases[i];
        size_t min = fc->type == WALMSG_XLOGDATA ? 25 : fc->len;

        if (!fc->ok)
            continue;
        for (size_t len = 0; len < min; len++) {
            uint8_t *buf = dup_exact(fc->bytes, len);
            char err[WALMSG_ERR_SIZE];
            WalMsg m;

            assert_false(walmsg_parse(buf, len, &m, err, sizeof err));
            assert_non_null(strstr(err, "offset"));
            free(buf);
        }
    }
}

static void test_error_text_is_cut_to_the_buffer(void **state)
{
    static const uint8_t bad[] = {'x'};
    char err[8];
    WalMsg m;

    (void)state;
    memset(err, 'z', sizeof err);
    assert_false(walmsg_parse(bad, sizeof bad, &m, err, sizeof err));
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_false(walmsg_parse(bad, sizeof bad, &m, NULL, 0));
}

typedef struct StatusCase {
    const char *name;
    WalStatusUpdate st;
    uint8_t expect[WALMSG_STATUS_UPDATE_SIZE];
} StatusCase;

static const StatusCase status_cases[] = {
    {"all zero", {0, 0, 0, 0, false}, {'r', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                       0,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {"distinct positions, reply requested",
     {UINT64_C(0x0000000100000028), UINT64_C(0x0000000100000020), UINT64_C(0x0000000100000010),
      INT64_C(757479845000000), true},
     {'r', 0, 0, 0, 1, 0, 0, 0,    0x28, 0,    0,    0,    1,    0,    0,    0,    0x20,
      0,   0, 0, 1, 0, 0, 0, 0x10, 0x00, 0x02, 0xb0, 0xec, 0x85, 0x15, 0xf3, 0x40, 1}},
    {"extremes and a negative time",
     {UINT64_MAX, UINT64_C(0x8000000000000000), 1, -1, false},
     {'r', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0,
      0,   0,    0,    0,    0,    0,    0,    0,    0,    0,    0, 0,
      1,   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0}},
};

static void test_status_update_bytes_are_exact(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof status_cases / sizeof status_cases[0]; i++) {
        uint8_t *buf = malloc(WALMSG_STATUS_UPDATE_SIZE);

        assert_non_null(buf);
        assert_int_equal(
            walmsg_build_status_update(&status_cases[i].st, buf, WALMSG_STATUS_UPDATE_SIZE),
            WALMSG_STATUS_UPDATE_SIZE);
        assert_memory_equal(buf, status_cases[i].expect, WALMSG_STATUS_UPDATE_SIZE);
        free(buf);
    }
}

static void test_status_update_refuses_a_small_buffer(void **state)
{
    uint8_t buf[WALMSG_STATUS_UPDATE_SIZE];
    uint8_t untouched[WALMSG_STATUS_UPDATE_SIZE];
    WalStatusUpdate st = {1, 2, 3, 4, true};

    (void)state;
    memset(buf, 0xaa, sizeof buf);
    memcpy(untouched, buf, sizeof buf);
    assert_int_equal(walmsg_build_status_update(&st, buf, sizeof buf - 1), 0);
    assert_memory_equal(buf, untouched, sizeof buf);
}

static void test_time_converts_from_unix_epoch(void **state)
{
    (void)state;
    assert_int_equal(walmsg_time_from_unix_us(INT64_C(946684800000000)), 0);
    /* 2024-01-02 03:04:05 UTC */
    assert_int_equal(walmsg_time_from_unix_us(INT64_C(1704164645000000)), INT64_C(757479845000000));
    assert_true(walmsg_time_from_unix_us(0) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_parse_or_fail_as_listed),
        cmocka_unit_test(test_xlogdata_payload_is_a_view_of_the_frame),
        cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_error_text_is_cut_to_the_buffer),
        cmocka_unit_test(test_status_update_bytes_are_exact),
        cmocka_unit_test(test_status_update_refuses_a_small_buffer),
        cmocka_unit_test(test_time_converts_from_unix_epoch),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
