/*
 * names.c: display forms of identifiers.
 */
#include "names.h"

#include "strbuf.h"

#include <stdbool.h>
#include <string.h>

/* Lower-case letters, digits and underscores, not starting with a digit,
 * need no quotes (reserved words are quoted too, conservatively, only
 * when a few common ones appear). */
static bool needs_quotes(const char *s)
{
    static const char *const reserved[] = {"select", "table", "from", "where", "user",
                                           "order",  "group", "all",  "and",   "or",
                                           "not",    "null",  NULL};

    if (!*s || (*s >= '0' && *s <= '9'))
        return true;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              (unsigned char)*p >= 0x80))
            return true;
    for (const char *const *r = reserved; *r; r++)
        if (strcmp(s, *r) == 0)
            return true;
    return false;
}

static void append_name(StrBuf *sb, const char *s)
{
    bool q = needs_quotes(s);

    if (q)
        strbuf_append(sb, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            strbuf_append(sb, "\"\"");
        else if ((unsigned char)*p < 0x20 || *p == 0x7f)
            strbuf_append(sb, "?");
        else
            strbuf_append_len(sb, p, 1);
    }
    if (q)
        strbuf_append(sb, "\"");
}

char *names_display(const char *schema, const char *name)
{
    StrBuf sb;
    char *out;

    strbuf_init(&sb);
    append_name(&sb, schema);
    strbuf_append(&sb, ".");
    append_name(&sb, name);
    out = strbuf_detach(&sb);
    strbuf_free(&sb);
    return out;
}

char *names_ident_display(const char *name)
{
    StrBuf sb;

    strbuf_init(&sb);
    append_name(&sb, name);
    return strbuf_detach(&sb);
}
