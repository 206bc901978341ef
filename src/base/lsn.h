/*
 * lsn.h: the one WAL position type and its one textual form (%X/%X).
 * Pure: no libpq.
 */
#ifndef PGRELOCATE_LSN_H
#define PGRELOCATE_LSN_H

#include <stdbool.h>
#include <stdint.h>

typedef uint64_t Lsn;

#define LSN_INVALID ((Lsn)0)
#define LSN_FMT     "%X/%X"
#define LSN_ARGS(l) (unsigned)((l) >> 32), (unsigned)(l)
/* Buffer size that holds any formatted LSN with its terminator. */
#define LSN_TEXT_SIZE 18

/* Parse "XXXXXXXX/XXXXXXXX" (hex halves, as the server prints them).
 * Returns false, leaving *out untouched, on anything else. */
bool lsn_parse(const char *text, Lsn *out);

/* Format into buf (at least LSN_TEXT_SIZE bytes); returns buf. */
char *lsn_format(Lsn lsn, char *buf);

#endif
