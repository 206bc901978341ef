/*
 * ddl.h: schema changes captured on the source and replayed by apply.
 *
 * Capture: an event trigger on the source (ddl_command_end, sql_drop,
 * table_rewrite) writes each DDL command into the stream as a transactional
 * logical message (prefix DDL_MESSAGE_PREFIX, pgoutput "messages", 14+),
 * in the transaction that ran it, so it is decoded at its place among that
 * transaction's rows.  Sources before 14 get no capture: apply stops at the
 * first schema change, as before.  This module builds the capture SQL from
 * names the caller quoted, reads the messages back and decides what apply
 * does with each: replay, replay changed (CONCURRENTLY dropped), ignore or
 * refuse.  Pure (no libpq): slot.c installs, apply.c replays.
 */
#ifndef PGRELOCATE_DDL_H
#define PGRELOCATE_DDL_H

#include <stdbool.h>
#include <stddef.h>

#define DDL_MESSAGE_PREFIX "pgrelocate.ddl"

/* The lowest source server version with capture (pgoutput messages). */
#define DDL_MIN_SOURCE_VERSION 140000

/* ALTER TABLE rewrote the table because of (pg_event_trigger_table_rewrite_reason) */
#define DDL_REWRITE_DEFAULT 0x02 /* a volatile default (or identity) filled every row */
#define DDL_REWRITE_TYPE    0x04 /* a column changed type */

/* One captured command.  Strings are owned (ddl_command_free). */
typedef struct DdlCommand {
    char *tag;         /* command tag: "ALTER TABLE" */
    char *query;       /* current_query() of the session that ran it */
    char *search_path; /* its search_path */
    char *role;        /* current_user when it ran */
    char *table;       /* the first table among its objects ("public.t"), or NULL */
    int rewrite;       /* DDL_REWRITE_* bits, 0 when the table was not rewritten */
    bool temp_only;    /* it touched only temporary objects */
    bool nested;       /* it ran inside another command (function, DO, CALL) */
    bool outside;      /* it touched only tables outside the migration (--tables) */
    int stmt;          /* which top-level schema change of query it is, from 1;
                        * 0 from a capture that did not count */
} DdlCommand;

typedef enum DdlAction {
    DDL_REPLAY, /* run sql on the target, in the apply transaction */
    DDL_IGNORE, /* nothing to do on the target (temporary objects, large
                 * objects, tables outside the migration) */
    DDL_REFUSE  /* cannot be replayed exactly: stop with reason and hint */
} DdlAction;

/* What apply does with one command.  Strings owned (ddl_verdict_free). */
typedef struct DdlVerdict {
    DdlAction action;
    char *sql;    /* DDL_REPLAY: the statement to run */
    char *note;   /* DDL_REPLAY: how sql differs from the source's; DDL_IGNORE: why,
                   * when it is worth saying; or NULL */
    char *reason; /* DDL_REFUSE: primary message (lowercase, no period) */
    char *hint;   /* DDL_REFUSE: how to repair */
} DdlVerdict;

/* The names capture uses on the source, each already quoted by the caller
 * (PQescapeIdentifier / PQescapeLiteral). */
typedef struct DdlCaptureNames {
    const char *fn;                /* the trigger function, schema-qualified */
    const char *on_end;            /* event trigger on ddl_command_end */
    const char *on_drop;           /* ... on sql_drop */
    const char *on_rewrite;        /* ... on table_rewrite */
    const char *pub_literal;       /* the publication's name as a literal: new
                                    * tables join it in the same transaction */
    const char *tables_re_literal; /* --tables as a literal of its regular
                                    * expression (tablefilter_regex); NULL:
                                    * every table */
} DdlCaptureNames;

/* The SQL that installs capture on the source (the schema pgrelocate, the
 * function, the three event triggers).  Newly allocated. */
char *ddl_capture_sql(const DdlCaptureNames *n);

/* The SQL that removes it (IF EXISTS: safe to run again; the schema is
 * the caller's).  Newly allocated. */
char *ddl_uncapture_sql(const DdlCaptureNames *n);

/* Read one message body (JSON, len bytes, not NUL-terminated).  false with
 * *err (allocated) when it is not a capture record. */
bool ddl_parse(const char *body, size_t len, DdlCommand *out, char **err);
void ddl_command_free(DdlCommand *c);

/* Decide what to do with c. */
void ddl_judge(const DdlCommand *c, DdlVerdict *out);
void ddl_verdict_free(DdlVerdict *v);

/* The number of statements in a query string (comments, quotes, dollar
 * quotes, BEGIN ATOMIC bodies and empty statements taken into account). */
int ddl_count_statements(const char *query);

/* The statement of query that the n-th (from 1) schema change of that
 * query string ran, as written, or NULL when it cannot be told exactly
 * (no such statement, or its words do not match tag).  *index gets its
 * place among all the string's statements, from 1.  Newly allocated. */
char *ddl_nth_schema_statement(const char *query, int n, const char *tag, int *index);

/* query without its first unquoted CONCURRENTLY word, or NULL when it has
 * none.  Newly allocated. */
char *ddl_strip_concurrently(const char *query);

#endif
