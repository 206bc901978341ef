/*
 * earlyindex.h: a table's indexes (and primary key, unique and exclusion
 * constraints) built as soon as all its rows are copied, by the copy
 * workers, while other tables' rows still copy.  Owns the mapping from the
 * schema archive's post-data entries to the copied tables; each entry built
 * here is recorded done in the state (same as the post-data phase records
 * it), so that phase skips it and a resumed run never builds it twice.
 * Foreign keys, check constraints, partitioned-parent indexes and the
 * rest still wait for the post-data phase (schema.h).
 */
#ifndef PGRELOCATE_EARLYINDEX_H
#define PGRELOCATE_EARLYINDEX_H

#include "conninfo.h"
#include "progress.h"
#include "schema.h"
#include "state.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct EarlyIndexes {
    const PgTools *tools;
    const ConnInfo *target;
    const char *archive;
    SchemaOpts so;
    const char *tmpdir;
    bool resuming; /* "already exists" counts as built (see schema.h) */
    Progress *progress;
    PostEntry *entries; /* the archive's post-data entries */
    int nentries;
    int *table_of; /* per entry: the table_no it builds on, 0: not early */
    atomic_int built;
} EarlyIndexes;

/* List the archive's entries, leave out those the state has done, and map
 * the rest that build on one copied table (looked up by object oid on src,
 * outside any snapshot: oids do not change).  On false (logged) the caller
 * goes on without early builds.  Free with earlyindex_free. */
bool earlyindex_prepare(EarlyIndexes *ei, PGconn *src, PGconn *tgt, const StateTable *tables,
                        int ntables);

/* CopyTableReadyFn (copy.h): build table_no's pending entries, one by
 * one, recording each done on tgt. */
bool earlyindex_build_table(void *arg, int table_no, int worker, PGconn *tgt);

void earlyindex_free(EarlyIndexes *ei);

#endif
