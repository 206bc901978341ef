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

/* Length of the valid UTF-8 sequence at s (as PostgreSQL accepts it: no
 * overlong forms, no surrogates, nothing above U+10FFFF), 0 if none. */
static int utf8_sequence(const unsigned char *s)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    int n;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

char *names_utf8_or_escaped(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    StrBuf sb;

    strbuf_init(&sb);
    while (*s) {
        int n = utf8_sequence(s);

        if (n > 0) {
            strbuf_append_len(&sb, (const char *)s, (size_t)n);
            s += n;
        } else {
            strbuf_appendf(&sb, "\\x%02X", *s++);
        }
    }
    return strbuf_detach(&sb);
}
