/*
 * walmsg.h: pure codec for the CopyBoth frames of the streaming replication
 * protocol: parse XLogData and primary keepalive, build standby status update.
 * Does not own the connection, timing of feedback, or the XLogData payload
 * (pgoutput.c decodes that). No I/O, no libpq. Layouts are listed in walmsg.c.
 */
#ifndef PGRELOCATE_WALMSG_H
#define PGRELOCATE_WALMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsn.h"

/* Size of a standby status update frame. */
#define WALMSG_STATUS_UPDATE_SIZE 34
/* Size that holds any walmsg_parse() error message. */
#define WALMSG_ERR_SIZE 160
/* Microseconds from 1970-01-01 (Unix) to 2000-01-01 (PostgreSQL epoch). */
#define WALMSG_EPOCH_OFFSET_US INT64_C(946684800000000)

/* Frame types; each value is the frame's tag byte. */
typedef enum WalMsgType {
    WALMSG_XLOGDATA = 'w',
    WALMSG_KEEPALIVE = 'k',
} WalMsgType;

typedef struct WalXLogData {
    Lsn start_lsn;        /* WAL position of the start of data */
    Lsn end_lsn;          /* current end of WAL on the server */
    int64_t send_time_us; /* since 2000-01-01 */
    const uint8_t *data;  /* payload view into the frame, len bytes */
    size_t len;
} WalXLogData;

typedef struct WalKeepalive {
    Lsn end_lsn;
    int64_t send_time_us;
    bool reply_requested;
} WalKeepalive;

/* One parsed server frame; views are valid as long as the frame buffer. */
typedef struct WalMsg {
    WalMsgType type;
    union {
        WalXLogData xlogdata;
        WalKeepalive keepalive;
    } u;
} WalMsg;

typedef struct WalStatusUpdate {
    Lsn write_lsn; /* received and written */
    Lsn flush_lsn; /* durably applied: the only one the server trusts */
    Lsn apply_lsn;
    int64_t client_time_us; /* since 2000-01-01 */
    bool reply_requested;
} WalStatusUpdate;

/*
 * Parse one CopyData payload sent by the server. Returns true and fills *out;
 * or false, with a one-line lowercase message naming the field and byte
 * offset in err (errsize bytes, WALMSG_ERR_SIZE is enough; err may be NULL).
 */
bool walmsg_parse(const uint8_t *buf, size_t len, WalMsg *out, char *err, size_t errsize);

/* Write a standby status update ('r') into buf. Returns the bytes written
 * (WALMSG_STATUS_UPDATE_SIZE), or 0, writing nothing, if cap is smaller. */
size_t walmsg_build_status_update(const WalStatusUpdate *st, uint8_t *buf, size_t cap);

/* Convert Unix-epoch microseconds to the protocol's 2000-01-01 epoch. */
int64_t walmsg_time_from_unix_us(int64_t unix_us);

#endif
