/*
 * slot.h: what pgrelocate creates on the source for change replication,
 * and takes away again: the publication (an explicit table list, changes
 * of partitions published as their root table), replica identity changes
 * the user asked for, the logical replication slot (created by the
 * snapshot keeper, see snapshot.h).  Every DDL on the live source runs
 * under a short lock_timeout and is retried, so it never queues the
 * application behind a lock.
 */
#ifndef PGRELOCATE_SLOT_H
#define PGRELOCATE_SLOT_H

#include "lsn.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* wal_level=logical and a role that may replicate; logs what is wrong and
 * the fix. */
bool slot_check_source(PGconn *src);

/* Tables and partitioned roots that need REPLICA IDENTITY FULL: those whose
 * UPDATE/DELETE would fail on the source once published (no primary key,
 * no replica identity), those whose key apply never receives (a generated
 * column in it), partitioned roots without a usable key (their partitions'
 * changes are published through them) and the partitions of a root that
 * gets FULL.  names: "a, b (why)" (the reason when not the first kind; ten
 * at most) or NULL; list: every qualified name.  Relations in
 * excluded_oids (oid[] literal, tableset.h; NULL: none) are skipped. */
bool slot_tables_without_identity(PGconn *src, const char *excluded_oids, char **names,
                                  char ***list, int *n);

/* ALTER TABLE ... REPLICA IDENTITY FULL on each, under lock_timeout with
 * retries. */
bool slot_set_identity_full(PGconn *src, char **qualified, int n);
/* Put back a table's replica identity ('d', 'n', 'f'). */
bool slot_restore_identity(PGconn *src, const char *qualified, char original);

/* CREATE PUBLICATION name FOR TABLE <every user table, partitioned roots
 * instead of their partitions, except excluded_oids (NULL: none)> WITH
 * (publish_via_partition_root).  Ordinary tables as ONLY: an inheritance
 * child left out must not come in with its parent. */
bool slot_create_publication(PGconn *src, const char *name, const char *excluded_oids);
bool slot_drop_publication(PGconn *src, const char *name);

/* Drop the slot if it exists.  A slot in use by another process is not
 * dropped: false with the pid named. */
bool slot_drop(PGconn *src, const char *name);

typedef struct SlotInfo {
    bool exists;
    bool active;
    int active_pid;
    Lsn confirmed_flush;
    int64_t retained_bytes; /* WAL the slot keeps on the source */
    char wal_status[16];    /* reserved, extended, unreserved, lost */
} SlotInfo;

bool slot_info(PGconn *src, const char *name, SlotInfo *out);

/* Drop the replication origin on the target if it exists. */
bool slot_drop_origin(PGconn *tgt, const char *name);

/* Why start cannot capture schema changes on this source (a sentence
 * fragment for messages: the version, the role's rights), or NULL when it
 * can (slot_install_ddl_capture).  Without capture apply stops at the
 * first schema change, as it always did. */
const char *slot_ddl_capture_refusal(PGconn *src);

/* Install on the source the event triggers that write each schema change
 * into the stream (ddl.h), for migration name (also its publication's
 * name); with tables_spec (--tables, NULL for all) a new table joins the
 * publication only when it matches, and commands on tables outside it are
 * left on the source.  false after logging. */
bool slot_install_ddl_capture(PGconn *src, const char *name, const char *tables_spec);

/* Remove them (nothing to remove is fine); the schema pgrelocate on the
 * source goes too when nothing else is in it. */
bool slot_drop_ddl_capture(PGconn *src, const char *name);

#endif
