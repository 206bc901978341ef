/*
 * names.h: object names as people should read them in messages: quoted
 * the way PostgreSQL would need them (so `t` and `"T"` differ), with
 * control characters shown as '?'.  For display only, never for SQL (SQL
 * quotes through PQescapeIdentifier).  Pure.
 */
#ifndef PGRELOCATE_NAMES_H
#define PGRELOCATE_NAMES_H

/* "public.orders", "public.\"Order Items\"": caller frees. */
char *names_display(const char *schema, const char *name);

/* One name alone (a column): "id", "\"Order Id\"".  Caller frees. */
char *names_ident_display(const char *name);

/* text as it is when it is valid UTF-8 (as PostgreSQL accepts it: no
 * overlong forms, surrogates or code points above U+10FFFF), else with each
 * byte of an invalid sequence shown as \xNN: names pg_restore lists in the
 * source database's encoding, stored on a UTF8 target.  Caller frees. */
char *names_utf8_or_escaped(const char *text);

#endif
