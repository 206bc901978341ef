/*
 * catalog.h: what the source holds, read under the copy snapshot: the
 * tables whose rows are copied (ordinary tables and leaf partitions of
 * every user schema; not partitioned parents, views, foreign tables,
 * temporary tables, extension members or pgrelocate's own schema), their
 * sizes and column lists, whether binary COPY is safe for their types,
 * the sequences, and the large objects.
 */
#ifndef PGRELOCATE_CATALOG_H
#define PGRELOCATE_CATALOG_H

#include "state.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct CatSequence {
    char *schema_name;
    char *name;
} CatSequence;

typedef struct Catalog {
    StateTable *tables; /* table_no = index + 1, largest first */
    int ntables;
    CatSequence *sequences;
    int nsequences;
    int64_t large_objects;
    int64_t total_bytes;
    int block_size;
} Catalog;

/* Read the catalog on conn (in a transaction using the copy snapshot). */
bool catalog_read(PGconn *src, Catalog *out);
/* The same without the relations in excluded_oids (an oid[] literal, see
 * tableset.h; NULL: none left out). */
bool catalog_read_subset(PGconn *src, const char *excluded_oids, Catalog *out);
void catalog_free(Catalog *cat);

/* The major versions pgrelocate works with, as source or target: every
 * catalog query has a form for each.  Newer than the tested range is
 * allowed with a warning. */
#define CATALOG_MIN_MAJOR        12
#define CATALOG_MAX_TESTED_MAJOR 18

/* Server facts for checks and messages. */
typedef struct ServerInfo {
    int version_num; /* PQserverVersion, e.g. 150018 */
    char *encoding;  /* server_encoding */
    char *dbname;
    bool superuser;
} ServerInfo;

bool catalog_server_info(PGconn *conn, ServerInfo *out);
void catalog_free_server_info(ServerInfo *si);

/* Tables the connected role cannot SELECT (names, comma-separated, at most
 * a few), or NULL when it can read them all; relations in excluded_oids
 * (NULL: none) do not count. */
bool catalog_unreadable_tables(PGconn *src, const char *excluded_oids, char **names);

#endif
