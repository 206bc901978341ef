/*
 * lsn.c: parse and print WAL positions.
 */
#include "lsn.h"

#include <stdio.h>
#include <stdlib.h>

static bool parse_hex32(const char *s, const char *end, uint32_t *out)
{
    uint64_t v = 0;

    if (s == end || end - s > 8)
        return false;
    for (; s < end; s++) {
        int d;

        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if (*s >= 'a' && *s <= 'f')
            d = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F')
            d = *s - 'A' + 10;
        else
            return false;
        v = (v << 4) | (uint64_t)d;
    }
    *out = (uint32_t)v;
    return true;
}

bool lsn_parse(const char *text, Lsn *out)
{
    const char *slash;
    const char *end;
    uint32_t hi, lo;

    if (text == NULL)
        return false;
    for (slash = text; *slash && *slash != '/'; slash++)
        ;
    if (*slash != '/')
        return false;
    for (end = slash + 1; *end; end++)
        ;
    if (!parse_hex32(text, slash, &hi) || !parse_hex32(slash + 1, end, &lo))
        return false;
    *out = ((Lsn)hi << 32) | lo;
    return true;
}

char *lsn_format(Lsn lsn, char *buf)
{
    snprintf(buf, LSN_TEXT_SIZE, LSN_FMT, LSN_ARGS(lsn));
    return buf;
}
