/*
 * bouncerconf.c: find and rewrite one [databases] entry of a pgbouncer.ini.
 * Syntax as pgbouncer reads it: "[section]" lines, comments starting with
 * ';' or '#', "name = value" lines; a database name is bare or a "quoted"
 * identifier ("" for a quote); the value is a connection string of
 * key=value pairs whose values may be 'quoted' ('' for a quote).
 */
#include "bouncerconf.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where the value of an entry sits in the text: [start, end). */
typedef struct Entry {
    size_t value_start;
    size_t value_end;
} Entry;

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* The database name at p (bare or quoted) into name; returns the position
 * after it, or NULL when the line is not "name = value". */
static const char *parse_key(const char *p, const char *end, StrBuf *name)
{
    strbuf_reset(name);
    if (*p == '"') {
        for (p++;; p++) {
            if (p >= end)
                return NULL;
            if (*p == '"') {
                if (p + 1 < end && p[1] == '"') {
                    strbuf_append_len(name, "\"", 1);
                    p++;
                    continue;
                }
                return p + 1;
            }
            strbuf_append_len(name, p, 1);
        }
    }
    while (p < end && !is_blank(*p) && *p != '=')
        strbuf_append_len(name, p++, 1);
    return name->len ? p : NULL;
}

/* Look at one line [p, end) of the [databases] section: when it is the
 * entry of dbname, fill e and return true. */
static bool line_is_entry(const char *text, const char *p, const char *end, const char *dbname,
                          StrBuf *name, Entry *e)
{
    const char *v;

    p = parse_key(p, end, name);
    if (!p || strcmp(name->data, dbname) != 0)
        return false;
    while (p < end && is_blank(*p))
        p++;
    if (p >= end || *p != '=')
        return false;
    for (v = p + 1; v < end && is_blank(*v); v++)
        ;
    while (end > v && is_blank(end[-1]))
        end--;
    e->value_start = (size_t)(v - text);
    e->value_end = (size_t)(end - text);
    return true;
}

/* Find dbname's entry; exactly one must exist. */
static bool find_entry(const char *text, size_t len, const char *dbname, Entry *e, char *err,
                       size_t errlen)
{
    const char *p = text, *stop = text + len;
    bool in_databases = false;
    int found = 0;
    StrBuf name;

    strbuf_init(&name);
    while (p < stop) {
        const char *eol = memchr(p, '\n', (size_t)(stop - p));
        const char *end = eol ? eol : stop;
        const char *q = p;

        while (q < end && is_blank(*q))
            q++;
        if (q < end && *q == '[') {
            const char *close = memchr(q, ']', (size_t)(end - q));

            in_databases = close && close - q - 1 == 9 && strncasecmp(q + 1, "databases", 9) == 0;
        } else if (in_databases && q < end && *q != ';' && *q != '#') {
            Entry here;

            if (line_is_entry(text, q, end, dbname, &name, &here)) {
                *e = here;
                found++;
            }
        }
        p = eol ? eol + 1 : stop;
    }
    strbuf_free(&name);
    if (found == 1)
        return true;
    snprintf(err, errlen,
             found ? "database \"%s\" has %d entries in the [databases] section"
                   : "database \"%s\" has no entry in the [databases] section",
             dbname, found);
    return false;
}

/* One key=value pair of a connection string.  raw spans the whole pair as
 * written. */
typedef struct Pair {
    const char *raw, *raw_end;
    char *key;
    char *value; /* unquoted */
} Pair;

/* Parse the pair at *pp (after blanks); false at the end or on bad
 * syntax (*bad set). */
static bool next_pair(const char **pp, const char *end, Pair *out, bool *bad)
{
    const char *p = *pp, *k;
    StrBuf v;

    while (p < end && is_blank(*p))
        p++;
    if (p >= end)
        return false;
    out->raw = k = p;
    while (p < end && !is_blank(*p) && *p != '=')
        p++;
    out->key = strndup(k, (size_t)(p - k));
    while (p < end && is_blank(*p))
        p++;
    if (p >= end || *p != '=' || p == k) {
        *bad = true;
        free(out->key);
        return false;
    }
    for (p++; p < end && is_blank(*p); p++)
        ;
    strbuf_init(&v);
    if (p < end && *p == '\'') {
        for (p++;; p++) {
            if (p >= end) {
                *bad = true;
                free(out->key);
                strbuf_free(&v);
                return false;
            }
            if (*p == '\'' && !(p + 1 < end && p[1] == '\''))
                break;
            if (*p == '\'')
                p++;
            strbuf_append_len(&v, p, 1);
        }
        p++;
    } else {
        while (p < end && !is_blank(*p))
            strbuf_append_len(&v, p++, 1);
    }
    out->value = strbuf_detach(&v);
    out->raw_end = p;
    *pp = p;
    return true;
}

static void append_quoted(StrBuf *sb, const char *v)
{
    bool plain = *v != '\0';

    for (const char *c = v; *c && plain; c++)
        if (is_blank(*c) || *c == '\'' || *c == '=' || *c == '\\' || *c == '\n')
            plain = false;
    if (plain) {
        strbuf_append(sb, v);
        return;
    }
    strbuf_append_len(sb, "'", 1);
    for (const char *c = v; *c; c++) {
        if (*c == '\'')
            strbuf_append_len(sb, "'", 1);
        strbuf_append_len(sb, c, 1);
    }
    strbuf_append_len(sb, "'", 1);
}

static const char *set_value_of(const char *const *set, const char *key)
{
    for (const char *const *s = set; s && s[0]; s += 2)
        if (strcmp(s[0], key) == 0)
            return s[1];
    return NULL;
}

/* The new connection string: the old pairs in order, those named in set
 * replaced, then the rest of set. */
static bool build_value(const char *v, const char *end, const char *const *set, StrBuf *out,
                        char *err, size_t errlen)
{
    const char *p = v;
    bool bad = false;
    StrBuf seen;
    Pair pair;

    strbuf_init(&seen);
    strbuf_append(&seen, "\n");
    while (next_pair(&p, end, &pair, &bad)) {
        const char *nv = set_value_of(set, pair.key);

        if (out->len)
            strbuf_append_len(out, " ", 1);
        if (nv) {
            strbuf_appendf(out, "%s=", pair.key);
            append_quoted(out, nv);
            strbuf_appendf(&seen, "%s\n", pair.key);
        } else {
            strbuf_append_len(out, pair.raw, (size_t)(pair.raw_end - pair.raw));
        }
        free(pair.key);
        free(pair.value);
    }
    for (const char *const *s = set; !bad && s && s[0]; s += 2) {
        char *marker = xasprintf("\n%s\n", s[0]);

        if (!strstr(seen.data, marker)) {
            strbuf_appendf(out, "%s%s=", out->len ? " " : "", s[0]);
            append_quoted(out, s[1]);
        }
        free(marker);
    }
    strbuf_free(&seen);
    if (bad)
        snprintf(err, errlen, "cannot parse the connection string of the entry (near \"%.20s\")",
                 p);
    return !bad;
}

bool bouncerconf_rewrite(const char *text, size_t len, const char *dbname, const char *const *set,
                         StrBuf *out, char **old_value, char *err, size_t errlen)
{
    Entry e;
    StrBuf value;

    if (!find_entry(text, len, dbname, &e, err, errlen))
        return false;
    strbuf_init(&value);
    if (!build_value(text + e.value_start, text + e.value_end, set, &value, err, errlen)) {
        strbuf_free(&value);
        return false;
    }
    strbuf_reset(out);
    strbuf_append_len(out, text, e.value_start);
    strbuf_append_len(out, value.data, value.len);
    strbuf_append_len(out, text + e.value_end, len - e.value_end);
    strbuf_free(&value);
    if (old_value)
        *old_value = strndup(text + e.value_start, e.value_end - e.value_start);
    return true;
}

bool bouncerconf_get(const char *text, size_t len, const char *dbname, const char *keyword,
                     char **value, char *err, size_t errlen)
{
    Entry e;
    const char *p, *end;
    bool bad = false;
    Pair pair;

    *value = NULL;
    if (!find_entry(text, len, dbname, &e, err, errlen))
        return false;
    p = text + e.value_start;
    end = text + e.value_end;
    while (next_pair(&p, end, &pair, &bad)) {
        if (strcmp(pair.key, keyword) == 0) {
            free(*value);
            *value = pair.value;
        } else {
            free(pair.value);
        }
        free(pair.key);
    }
    if (bad)
        snprintf(err, errlen, "cannot parse the connection string of database \"%s\"", dbname);
    return !bad;
}

bool bouncerconf_read_file(const char *path, StrBuf *sb, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char buf[8192];
    size_t n;
    bool ok;

    if (!f) {
        snprintf(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
        return false;
    }
    strbuf_reset(sb);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        strbuf_append_len(sb, buf, n);
    ok = !ferror(f);
    if (!ok)
        snprintf(err, errlen, "could not read \"%s\": %s", path, strerror(errno));
    fclose(f);
    return ok;
}

static bool write_all(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, text, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        text += w;
        len -= (size_t)w;
    }
    return true;
}

static bool fsync_dir_of(const char *path)
{
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    bool ok = fd >= 0 && fsync(fd) == 0;

    if (fd >= 0)
        close(fd);
    free(copy);
    return ok;
}

bool bouncerconf_write_file(const char *path, const char *text, size_t len, char *err,
                            size_t errlen)
{
    char *tmp = xasprintf("%s.pgrelocate-XXXXXX", path);
    struct stat st;
    int fd = -1;
    bool ok = false;

    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "could not stat \"%s\": %s", path, strerror(errno));
        goto done;
    }
    if ((fd = mkstemp(tmp)) < 0) {
        snprintf(err, errlen, "could not create a file next to \"%s\": %s", path, strerror(errno));
        goto done;
    }
    if (fchmod(fd, st.st_mode & 07777) != 0 || !write_all(fd, text, len) || fsync(fd) != 0) {
        snprintf(err, errlen, "could not write \"%s\": %s", tmp, strerror(errno));
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "could not write \"%s\": %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "could not rename \"%s\" to \"%s\": %s", tmp, path, strerror(errno));
        goto done;
    }
    if (!fsync_dir_of(path)) {
        snprintf(err, errlen, "could not fsync the directory of \"%s\": %s", path, strerror(errno));
        goto done;
    }
    ok = true;
done:
    if (fd >= 0)
        close(fd);
    if (!ok)
        unlink(tmp);
    free(tmp);
    return ok;
}
