/*
 * stream.h: the replication connection to the source: START_REPLICATION of
 * a pgoutput slot, reading CopyData frames, sending standby status updates.
 * Owns the connection and the frame codec calls (walmsg.c); does not
 * decode pgoutput or decide what is durable (follow.c does).
 */
#ifndef PGRELOCATE_STREAM_H
#define PGRELOCATE_STREAM_H

#include "conninfo.h"
#include "lsn.h"
#include "valueformat.h"
#include "walmsg.h"

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct Stream Stream;

typedef enum {
    STREAM_FRAME,   /* *msg filled; frame views valid until the next read */
    STREAM_TIMEOUT, /* nothing arrived within the timeout */
    STREAM_END,     /* the server ended the stream */
    STREAM_ERROR    /* connection lost or protocol error (logged) */
} StreamStatus;

/* Connect (replication=database) and START_REPLICATION SLOT slot LOGICAL
 * start_lsn with proto_version and publication_names, and binary when
 * protocol allows it and every type the publication's columns use is safe
 * in binary (valueformat.h; each type's decision logged at info when loud,
 * else at debug).  NULL after logging; *fatal when trying again cannot
 * help (--protocol binary refused). */
Stream *stream_start(const ConnInfo *source, const char *slot, Lsn start_lsn, int proto_version,
                     const char *publication, ValueProtocol protocol, bool loud, bool *fatal);
/* Whether the stream asked for values in binary. */
bool stream_binary(const Stream *s);
void stream_close(Stream *s);

/* Wake the reader only once this many bytes have arrived (SO_RCVLOWAT):
 * while the source sends a backlog, one wake-up per batch instead of one per
 * send, which the sending walsender pays for.  stream_read still returns
 * what arrived when its timeout ends.  1 restores the default. */
void stream_set_wake_bytes(Stream *s, int bytes);

/* Wait up to timeout_ms for one frame. */
StreamStatus stream_read(Stream *s, int timeout_ms, WalMsg *msg);

/* After a read that timed out: true while the source is heard from.  Once
 * no frame (not even a keepalive) has come for half of the source's
 * wal_sender_timeout, asks it for a reply (a status update with the last
 * positions sent and reply requested); once none has come for
 * wal_sender_timeout plus a margin (stream_silence_limit_ms), logs what it
 * waited for and on which host, and returns false: reconnect.  Only time
 * spent waiting for the socket counts.  Never gives up when the source's
 * wal_sender_timeout is 0 (TCP keepalives and tcp_user_timeout remain). */
bool stream_check_silence(Stream *s);

/* The silence stream_check_silence tolerates, in ms (0: no limit). */
int stream_silence_limit_ms(const Stream *s);

/* Send a standby status update.  false when the connection is gone. */
bool stream_send_status(Stream *s, Lsn write_lsn, Lsn flush_lsn, Lsn apply_lsn,
                        bool reply_requested);

/* The pgoutput protocol version to ask for from a server version. */
int stream_proto_for_server(int server_version_num);

#endif
