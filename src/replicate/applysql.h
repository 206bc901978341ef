/*
 * applysql.h: the SQL apply sends to the target: INSERT (one or many rows),
 * UPDATE and DELETE of one row found by its key or by all its columns
 * (replica identity FULL), UPDATE of many rows by key, TRUNCATE, and the
 * identity toggles around an UPDATE of a GENERATED ALWAYS column; the
 * quoting of the names in it.  Pure (no libpq): apply.c owns the connection,
 * the relation cache and the values, which always go as parameters.
 */
#ifndef PGRELOCATE_APPLYSQL_H
#define PGRELOCATE_APPLYSQL_H

#include "strbuf.h"

#include <stdbool.h>

/* What a statement does. */
typedef enum ApplySqlOp {
    APPLYSQL_INSERT,       /* INSERT ... VALUES: rows rows (0 means 1) */
    APPLYSQL_UPDATE,       /* UPDATE ... SET ... WHERE: one row */
    APPLYSQL_UPDATE_BATCH, /* UPDATE ... FROM (VALUES ...): rows rows, each by its
                            * unchanged key (keys distinct in one statement) */
    APPLYSQL_DELETE        /* DELETE ... WHERE: one row */
} ApplySqlOp;

/* How an UPDATE or DELETE finds its row. */
typedef enum ApplySqlWhere {
    APPLYSQL_WHERE_NONE, /* INSERT */
    APPLYSQL_WHERE_KEY,  /* key columns, each with = */
    APPLYSQL_WHERE_FULL  /* replica identity FULL: every column present, IS NOT
                          * DISTINCT FROM (NULLs match), one row (LIMIT 1) */
} ApplySqlWhere;

/* The target table as statements name it.  Names are quoted already
 * (conn_quote_ident, conn_qualify: PQescapeIdentifier); arrays have ncols
 * entries.
 * Borrowed: applysql never frees or keeps them. */
typedef struct ApplySqlTable {
    const char *qualified;  /* "schema"."table" */
    int ncols;              /* source columns, in the source's order */
    char *const *quoted;    /* column names */
    const bool *text_cmp;   /* no default btree equality: compared as text */
    char *const *type_name; /* target types (format_type): casts in batched updates */
    bool partitioned;       /* no ONLY: rows route to partitions */
    bool has_always;        /* a GENERATED ALWAYS identity column: inserts override */
} ApplySqlTable;

/* Which columns a statement uses, '1' or '0' per column (ncols chars; the
 * cache key of a prepared statement, with op, where mode and rows). */
typedef struct ApplySqlShape {
    ApplySqlOp op;
    char *set;          /* columns written (INSERT, UPDATE, UPDATE_BATCH) */
    char *where;        /* columns that find the row (UPDATE, UPDATE_BATCH, DELETE) */
    ApplySqlWhere mode; /* UPDATE_BATCH: always KEY */
    int rows;           /* INSERT and UPDATE_BATCH: rows in one statement (0 means 1) */
} ApplySqlShape;

/* The statement of shape sh on table t, with $1..$n placeholders; *nparams
 * gets n.  Parameters come in the order applysql_param_of describes.
 * Caller frees. */
char *applysql_build_statement(const ApplySqlTable *t, const ApplySqlShape *sh, int *nparams);

/* A key that tells shapes apart (op, where mode, rows, column masks), for
 * the cache of prepared statements.  Caller frees. */
char *applysql_shape_key(const ApplySqlShape *sh, int ncols);

/* Parameter order.  INSERT: the set columns, row after row.  UPDATE: the
 * set columns, then the where columns.  UPDATE_BATCH: per row, the where
 * (key) columns, then the set columns.  DELETE: the where columns.
 * Values held per row as key columns then set columns (apply's held
 * updates): which of them parameter param (0-based) of a statement of
 * nparams parameters takes, nkey of them key columns per row. */
int applysql_param_of(const ApplySqlShape *sh, int param, int nparams, int nkey);

/* TRUNCATE of n quoted tables, with RESTART IDENTITY and CASCADE when
 * asked.  Caller frees. */
char *applysql_build_truncate(const char *const *qualified, int n, bool restart_identity,
                              bool cascade);

/* Append to sql (after "; " when it holds a statement already) the ALTER
 * TABLE that makes identity column col of t GENERATED ALWAYS (always) or
 * BY DEFAULT (so an UPDATE may write it). */
void applysql_append_set_generated(StrBuf *sql, const ApplySqlTable *t, int col, bool always);

#endif
