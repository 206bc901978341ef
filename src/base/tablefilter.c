/*
 * tablefilter.c: --tables pattern parsing and matching.  A compiled part
 * is an array of ints: 0..255 a literal byte, TF_STAR, TF_ONE.
 */
#include "tablefilter.h"

#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TF_STAR (-1)
#define TF_ONE  (-2)

typedef struct Part {
    int *tok;
    size_t n;
} Part;

typedef struct Pattern {
    char *text; /* as written, blanks trimmed */
    bool has_schema;
    Part schema;
    Part table;
    bool matched;
} Pattern;

struct TableFilter {
    Pattern *pats;
    int n;
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Compile text[0..len) (one pattern) into its parts.  False with err set. */
static bool compile(const char *text, size_t len, Pattern *p, char *err, size_t errlen)
{
    Part parts[2] = {{xcalloc(len + 1, sizeof(int)), 0}, {NULL, 0}};
    int cur = 0;
    bool inq = false, quoted_any[2] = {false, false};

    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        Part *pt = &parts[cur];

        if (c == '"') {
            if (inq && i + 1 < len && text[i + 1] == '"') {
                pt->tok[pt->n++] = '"';
                i++;
            } else {
                inq = !inq;
                quoted_any[cur] = true;
            }
        } else if (inq)
            pt->tok[pt->n++] = (unsigned char)c;
        else if (c == '.') {
            if (cur == 1) {
                snprintf(err, errlen,
                         "--tables pattern \"%.*s\" has more than one dot: write SCHEMA.TABLE "
                         "or TABLE (quote a name that holds a dot)",
                         (int)len, text);
                goto fail;
            }
            cur = 1;
            parts[1].tok = xcalloc(len + 1, sizeof(int));
        } else if (c == '*')
            pt->tok[pt->n++] = TF_STAR;
        else if (c == '?')
            pt->tok[pt->n++] = TF_ONE;
        else
            pt->tok[pt->n++] = (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : (unsigned char)c;
    }
    if (inq) {
        snprintf(err, errlen, "--tables pattern \"%.*s\" has an unterminated double quote",
                 (int)len, text);
        goto fail;
    }
    for (int k = 0; k <= cur; k++)
        if (parts[k].n == 0 && !quoted_any[k]) {
            snprintf(err, errlen, "--tables pattern \"%.*s\" has an empty %s name", (int)len, text,
                     k == 0 && cur == 1 ? "schema" : "table");
            goto fail;
        }
    p->text = xasprintf("%.*s", (int)len, text);
    p->has_schema = cur == 1;
    p->schema = cur == 1 ? parts[0] : (Part){NULL, 0};
    p->table = cur == 1 ? parts[1] : parts[0];
    return true;
fail:
    free(parts[0].tok);
    free(parts[1].tok);
    return false;
}

TableFilter *tablefilter_parse(const char *spec, char *err, size_t errlen)
{
    TableFilter *f = xcalloc(1, sizeof(TableFilter));
    size_t len = strlen(spec), start = 0;
    bool inq = false;

    f->pats = xcalloc(len / 2 + 2, sizeof(Pattern));
    for (size_t i = 0; i <= len; i++) {
        size_t b = start, e = i;

        if (i < len && spec[i] == '"')
            inq = !inq; /* "" inside quotes toggles twice: still inside */
        if (i < len && (inq || spec[i] != ','))
            continue;
        while (b < e && is_blank(spec[b]))
            b++;
        while (e > b && is_blank(spec[e - 1]))
            e--;
        if (b == e) {
            snprintf(err, errlen, "--tables has an empty pattern in \"%s\"", spec);
            tablefilter_destroy(f);
            return NULL;
        }
        if (!compile(spec + b, e - b, &f->pats[f->n], err, errlen)) {
            tablefilter_destroy(f);
            return NULL;
        }
        f->n++;
        start = i + 1;
    }
    return f;
}

void tablefilter_destroy(TableFilter *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++) {
        free(f->pats[i].text);
        free(f->pats[i].schema.tok);
        free(f->pats[i].table.tok);
    }
    free(f->pats);
    free(f);
}

/* Length of the UTF-8 character starting at s (1 for invalid bytes). */
static size_t char_len(const unsigned char *s)
{
    size_t n = 1;

    if (*s >= 0xC0)
        while (n < 4 && (s[n] & 0xC0) == 0x80)
            n++;
    return n;
}

/* Glob match with one backtracking point per star (linear in practice). */
static bool part_match(const Part *p, const char *name)
{
    const unsigned char *s = (const unsigned char *)name, *star_s = NULL;
    size_t i = 0, star_i = 0;
    bool have_star = false;

    while (*s) {
        if (i < p->n && p->tok[i] == TF_STAR) {
            have_star = true;
            star_i = ++i;
            star_s = s;
        } else if (i < p->n && p->tok[i] == TF_ONE) {
            s += char_len(s);
            i++;
        } else if (i < p->n && p->tok[i] == *s) {
            s++;
            i++;
        } else if (have_star) {
            star_s += char_len(star_s);
            s = star_s;
            i = star_i;
        } else
            return false;
    }
    while (i < p->n && p->tok[i] == TF_STAR)
        i++;
    return i == p->n;
}

bool tablefilter_match(TableFilter *f, const char *schema, const char *table)
{
    bool any = false;

    for (int i = 0; i < f->n; i++) {
        Pattern *p = &f->pats[i];

        if ((!p->has_schema || part_match(&p->schema, schema)) && part_match(&p->table, table)) {
            p->matched = true;
            any = true;
        }
    }
    return any;
}

char *tablefilter_unmatched(const TableFilter *f)
{
    StrBuf sb;

    strbuf_init(&sb);
    for (int i = 0; i < f->n; i++)
        if (!f->pats[i].matched)
            strbuf_appendf(&sb, "%s%s", sb.len ? ", " : "", f->pats[i].text);
    if (sb.len == 0) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}

int tablefilter_count(const TableFilter *f)
{
    return f->n;
}

/* Append part p as a regular expression (ARE): a star is any run of
 * characters of one name, ? one character, everything else literal. */
static void part_regex(StrBuf *sb, const Part *p)
{
    for (size_t i = 0; i < p->n; i++) {
        int c = p->tok[i];
        char ch = (char)c;

        if (c == TF_STAR)
            strbuf_append(sb, "[^\\u0001]*");
        else if (c == TF_ONE)
            strbuf_append(sb, "[^\\u0001]");
        else if (c < 0x80 &&
                 !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            strbuf_appendf(sb, "\\u%04x", c); /* no character is special so */
        else
            strbuf_append_len(sb, &ch, 1);
    }
}

char *tablefilter_regex(const TableFilter *f)
{
    StrBuf sb;

    strbuf_init(&sb);
    strbuf_append(&sb, "^(?:");
    for (int i = 0; i < f->n; i++) {
        const Pattern *p = &f->pats[i];

        strbuf_append(&sb, i ? "|(?:" : "(?:");
        if (p->has_schema)
            part_regex(&sb, &p->schema);
        else
            strbuf_append(&sb, "[^\\u0001]*");
        strbuf_append(&sb, "\\u0001");
        part_regex(&sb, &p->table);
        strbuf_append(&sb, ")");
    }
    strbuf_append(&sb, ")$");
    return strbuf_detach(&sb);
}
