/*
 * childorder.h: inheritance children created with the source's exact
 * column order.  pg_dump recreates a child with CREATE TABLE ... INHERITS,
 * which puts the inherited columns first, so a column added to a parent
 * after the child was made moves in front of the child's own.  Here the
 * pre-data is restored as pg_restore's SQL text, each such child's CREATE
 * TABLE rewritten as pg_dump's binary-upgrade mode writes it (all columns
 * in the source's order, then ALTER TABLE ... INHERIT, attislocal and
 * conislocal set as on the source), all in one target transaction.  Needs
 * a superuser on the target (the pg_attribute update); without one the
 * plain pg_restore runs and a warning names the tables.  Does not own the
 * rest of the DDL: that is pg_dump's (schema.c).
 */
#ifndef PGRELOCATE_CHILDORDER_H
#define PGRELOCATE_CHILDORDER_H

#include "conninfo.h"
#include "schema.h"

#include <libpq-fe.h>
#include <stdbool.h>

/* SQL condition on a pg_class row aliased c: an ordinary inheriting table
 * whose columns, in attnum order, are not in the order CREATE TABLE ...
 * INHERITS gives them (each parent's columns in turn, then its own). */
#define CHILDORDER_DIFFERS_SQL                                                                     \
    " (c.relkind = 'r' AND NOT c.relispartition AND EXISTS (SELECT 1 FROM"                         \
    "  pg_catalog.pg_inherits h WHERE h.inhrelid = c.oid) AND"                                     \
    "  ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid"             \
    "   AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) IS DISTINCT FROM"               \
    "  ARRAY(SELECT m.name FROM (SELECT pa.attname AS name,"                                       \
    "    pg_catalog.min(h.inhseqno::int8 * 100000 + pa.attnum) AS pos"                             \
    "    FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_attribute pa"                            \
    "     ON pa.attrelid = h.inhparent AND pa.attnum > 0 AND NOT pa.attisdropped"                  \
    "    WHERE h.inhrelid = c.oid GROUP BY pa.attname"                                             \
    "    UNION ALL SELECT la.attname, 1000000000000 + la.attnum FROM pg_catalog.pg_attribute la"   \
    "    WHERE la.attrelid = c.oid AND la.attnum > 0 AND NOT la.attisdropped"                      \
    "     AND la.attinhcount = 0) AS m ORDER BY m.pos))"

/* Restore the pre-data section into the target, recreating the children
 * CHILDORDER_DIFFERS_SQL finds on src in the source's column order.
 * *handled: false when there are none, or when the target role is not a
 * superuser (then a warning names them) or pg_restore's text was not as
 * expected; the caller restores the pre-data as usual then.  One target
 * transaction: all or nothing.  false after logging a failure. */
bool childorder_restore_pre(PGconn *src, PGconn *tgt, const PgTools *t, const ConnInfo *tgt_ci,
                            const char *archive, const SchemaOpts *so, bool *handled);

#endif
