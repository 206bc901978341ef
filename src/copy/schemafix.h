/*
 * schemafix.h: what pg_restore leaves different from the source, set right
 * on the target afterwards: the names of foreign keys cloned onto
 * partitions (PostgreSQL names a clone after its partition when the
 * partition is attached, pg_dump only creates the parent's) and the
 * database's own settings, ACL and comment (pg_dump carries them only with
 * --create, which we cannot use).  Does not own the DDL of objects: that
 * is pg_dump's (schema.c).
 */
#ifndef PGRELOCATE_SCHEMAFIX_H
#define PGRELOCATE_SCHEMAFIX_H

#include <libpq-fe.h>
#include <stdbool.h>

/* Rename each foreign key the target cloned onto a partition to the name
 * its twin has on the source (same table, referenced table and parent
 * constraint), level by level, through temporary names so that swapped
 * names work.  Constraints only one side has are left alone.  *renamed:
 * how many.  false after logging. */
bool schemafix_constraint_names(PGconn *src, PGconn *tgt, int *renamed);

/* The source database's settings onto the target database: ALTER DATABASE
 * ... SET, ALTER ROLE ... IN DATABASE ... SET for the roles the target has
 * (the others are named in a warning), its ACL (unless no_acl: grants and
 * revokes until the target's equals the source's, the owners' own
 * privileges aside) and its comment.  A setting the target refuses (a
 * locale it lacks, say) is named in a warning and the rest goes on.
 * false after logging a failure to read or to connect. */
bool schemafix_database(PGconn *src, PGconn *tgt, bool no_acl);

#endif
