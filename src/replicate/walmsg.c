/*
 * walmsg.c: the CopyBoth frames of the streaming replication protocol.
 * Owns their byte layout and strict parsing; not the socket or the feedback
 * schedule (stream.c). Integers are big-endian; times are Int64 microseconds
 * since 2000-01-01.
 *   w  XLogData (server):  Int64 start_lsn, Int64 end_lsn, Int64 send_time, Byte[rest] payload
 *   k  keepalive (server): Int64 end_lsn, Int64 send_time, Byte1 reply_requested(0|1)
 *   r  standby status update (client, 34 bytes): Int64 write_lsn, Int64 flush_lsn,
 *      Int64 apply_lsn, Int64 client_time, Byte1 reply_requested(0|1)
 */
#include "walmsg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define XLOGDATA_HEADER_SIZE 25
#define KEEPALIVE_SIZE       18

static void set_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errsize == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static int64_t get_be64_signed(const uint8_t *p)
{
    uint64_t u = get_be64(p);
    int64_t v;

    memcpy(&v, &u, sizeof v);
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static bool parse_xlogdata(const uint8_t *buf, size_t len, WalMsg *out, char *err, size_t errsize)
{
    WalXLogData *x = &out->u.xlogdata;

    if (len < XLOGDATA_HEADER_SIZE) {
        set_err(err, errsize,
                "xlogdata frame truncated at offset %zu: header needs %d bytes, frame has %zu", len,
                XLOGDATA_HEADER_SIZE, len);
        return false;
    }
    x->start_lsn = get_be64(buf + 1);
    x->end_lsn = get_be64(buf + 9);
    x->send_time_us = get_be64_signed(buf + 17);
    x->data = buf + XLOGDATA_HEADER_SIZE;
    x->len = len - XLOGDATA_HEADER_SIZE;
    return true;
}

static bool parse_keepalive(const uint8_t *buf, size_t len, WalMsg *out, char *err, size_t errsize)
{
    WalKeepalive *k = &out->u.keepalive;

    if (len < KEEPALIVE_SIZE) {
        set_err(err, errsize,
                "keepalive frame truncated at offset %zu: needs %d bytes, frame has %zu", len,
                KEEPALIVE_SIZE, len);
        return false;
    }
    if (len > KEEPALIVE_SIZE) {
        set_err(err, errsize, "keepalive frame has %zu trailing bytes at offset %d",
                len - KEEPALIVE_SIZE, KEEPALIVE_SIZE);
        return false;
    }
    if (buf[17] > 1) {
        set_err(err, errsize, "keepalive frame: invalid reply-requested byte %u at offset 17",
                buf[17]);
        return false;
    }
    k->end_lsn = get_be64(buf + 1);
    k->send_time_us = get_be64_signed(buf + 9);
    k->reply_requested = buf[17] == 1;
    return true;
}

bool walmsg_parse(const uint8_t *buf, size_t len, WalMsg *out, char *err, size_t errsize)
{
    memset(out, 0, sizeof *out);
    set_err(err, errsize, "%s", "");
    if (len == 0) {
        set_err(err, errsize, "empty replication frame at offset 0 (no tag byte)");
        return false;
    }
    switch (buf[0]) {
    case WALMSG_XLOGDATA:
        out->type = WALMSG_XLOGDATA;
        return parse_xlogdata(buf, len, out, err, errsize);
    case WALMSG_KEEPALIVE:
        out->type = WALMSG_KEEPALIVE;
        return parse_keepalive(buf, len, out, err, errsize);
    default:
        set_err(err, errsize, "unknown replication frame tag 0x%02x at offset 0", buf[0]);
        return false;
    }
}

size_t walmsg_build_status_update(const WalStatusUpdate *st, uint8_t *buf, size_t cap)
{
    uint64_t time_bits;

    if (cap < WALMSG_STATUS_UPDATE_SIZE)
        return 0;
    memcpy(&time_bits, &st->client_time_us, sizeof time_bits);
    buf[0] = 'r';
    put_be64(buf + 1, st->write_lsn);
    put_be64(buf + 9, st->flush_lsn);
    put_be64(buf + 17, st->apply_lsn);
    put_be64(buf + 25, time_bits);
    buf[33] = st->reply_requested ? 1 : 0;
    return WALMSG_STATUS_UPDATE_SIZE;
}

int64_t walmsg_time_from_unix_us(int64_t unix_us)
{
    return unix_us - WALMSG_EPOCH_OFFSET_US;
}
