/*
 * conninfo.c: parse and re-render connection strings without leaking the
 * password.
 */
#include "conninfo.h"

#include "strbuf.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

struct ConnInfo {
    int n;
    char **keys;
    char **values;
    char *display;
};

static bool is_secret(const char *keyword)
{
    return strcmp(keyword, "password") == 0 || strcmp(keyword, "sslpassword") == 0;
}

/* libpq's parse errors quote fragments of the input: keep only the words
 * outside quotes. */
static void copy_unquoted(const char *msg, bool input_has_quote, char *err, size_t errlen)
{
    size_t o = 0;
    bool inq = false;

    for (const char *p = msg; *p && o + 5 < errlen; p++) {
        if (*p == '"') {
            if (!inq)
                err[o++] = '"', err[o++] = '.', err[o++] = '.', err[o++] = '.';
            else
                err[o++] = '"';
            inq = !inq;
            if (inq && input_has_quote) {
                err[o++] = '"';
                break;
            }
            continue;
        }
        if (*p == '\n')
            continue;
        if (!inq)
            err[o++] = *p;
    }
    err[o] = '\0';
}

static void build_display(ConnInfo *ci)
{
    static const char *shown[] = {"host", "hostaddr", "port", "dbname", "user", "sslmode", NULL};
    StrBuf sb;

    strbuf_init(&sb);
    for (const char **k = shown; *k; k++) {
        const char *v = conninfo_get(ci, *k);

        if (v && *v)
            strbuf_appendf(&sb, "%s%s=%s", sb.len ? " " : "", *k, v);
    }
    if (sb.len == 0)
        strbuf_append(&sb, "(libpq defaults)");
    ci->display = strbuf_detach(&sb);
    strbuf_free(&sb);
}

ConnInfo *conninfo_parse(const char *text, char *err, size_t errlen)
{
    char *pqerr = NULL;
    PQconninfoOption *opts = PQconninfoParse(text ? text : "", &pqerr);
    ConnInfo *ci;
    int n = 0;

    if (!opts) {
        copy_unquoted(pqerr ? pqerr : "out of memory", text && strchr(text, '"'), err, errlen);
        PQfreemem(pqerr);
        return NULL;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && *o->val)
            n++;
    ci = xcalloc(1, sizeof(*ci));
    ci->keys = xcalloc((size_t)n + 1, sizeof(char *));
    ci->values = xcalloc((size_t)n + 1, sizeof(char *));
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        ci->keys[ci->n] = xstrdup(o->keyword);
        ci->values[ci->n] = xstrdup(o->val);
        ci->n++;
    }
    PQconninfoFree(opts);
    build_display(ci);
    return ci;
}

void conninfo_destroy(ConnInfo *ci)
{
    if (!ci)
        return;
    for (int i = 0; i < ci->n; i++) {
        /* wipe secrets before freeing */
        if (is_secret(ci->keys[i]))
            memset(ci->values[i], 0, strlen(ci->values[i]));
        free(ci->keys[i]);
        free(ci->values[i]);
    }
    free(ci->keys);
    free(ci->values);
    free(ci->display);
    free(ci);
}

const char *conninfo_get(const ConnInfo *ci, const char *keyword)
{
    for (int i = 0; i < ci->n; i++)
        if (strcmp(ci->keys[i], keyword) == 0)
            return ci->values[i];
    return NULL;
}

const char *conninfo_display(const ConnInfo *ci)
{
    return ci->display;
}

const char *conninfo_password(const ConnInfo *ci)
{
    return conninfo_get(ci, "password");
}

/* Keyword, value: what a connection gets unless the user set it. */
static const char *const timeout_defaults[] = {"connect_timeout",
                                               "10",
                                               "keepalives",
                                               "1",
                                               "keepalives_idle",
                                               "10",
                                               "keepalives_interval",
                                               "5",
                                               "keepalives_count",
                                               "3",
                                               "tcp_user_timeout",
                                               "30000",
                                               NULL};

static const char *env_connect_timeout(void)
{
    const char *e = getenv("PGCONNECT_TIMEOUT");

    return e && *e ? e : NULL;
}

int conninfo_timeouts(const ConnInfo *ci, const char **out)
{
    int n = 0;

    for (const char *const *d = timeout_defaults; *d; d += 2) {
        if (conninfo_get(ci, d[0]) ||
            (strcmp(d[0], "connect_timeout") == 0 && env_connect_timeout()))
            continue;
        out[n++] = d[0];
        out[n++] = d[1];
    }
    out[n] = NULL;
    return n;
}

int conninfo_connect_timeout_s(const ConnInfo *ci)
{
    const char *v = conninfo_get(ci, "connect_timeout");
    int s;

    if (!v)
        v = env_connect_timeout();
    if (!v)
        v = timeout_defaults[1];
    s = atoi(v);
    return s <= 0 ? 0 : s < 2 ? 2 : s;
}

static bool in_extra(const char *const *extra, const char *keyword)
{
    for (const char *const *e = extra; e && *e; e += 2)
        if (strcmp(*e, keyword) == 0)
            return true;
    return false;
}

void conninfo_params(const ConnInfo *ci, const char *const *extra, const char ***keywords,
                     const char ***values)
{
    int nextra = 0, k = 0;
    const char **kw, **val;

    for (const char *const *e = extra; e && *e; e += 2)
        nextra++;
    kw = xcalloc((size_t)(ci->n + nextra + 1), sizeof(char *));
    val = xcalloc((size_t)(ci->n + nextra + 1), sizeof(char *));
    for (int i = 0; i < ci->n; i++) {
        if (in_extra(extra, ci->keys[i]))
            continue;
        kw[k] = ci->keys[i];
        val[k++] = ci->values[i];
    }
    for (const char *const *e = extra; e && *e; e += 2) {
        kw[k] = e[0];
        val[k++] = e[1];
    }
    *keywords = kw;
    *values = val;
}

static void append_quoted(StrBuf *sb, const char *v)
{
    strbuf_append(sb, "'");
    for (const char *p = v; *p; p++) {
        if (*p == '\'' || *p == '\\')
            strbuf_append(sb, "\\");
        strbuf_append_len(sb, p, 1);
    }
    strbuf_append(sb, "'");
}

char *conninfo_for_child(const ConnInfo *ci, const char *const *extra)
{
    StrBuf sb;
    char *out;

    strbuf_init(&sb);
    for (int i = 0; i < ci->n; i++) {
        if (is_secret(ci->keys[i]) || in_extra(extra, ci->keys[i]))
            continue;
        strbuf_appendf(&sb, "%s%s=", sb.len ? " " : "", ci->keys[i]);
        append_quoted(&sb, ci->values[i]);
    }
    for (const char *const *e = extra; e && *e; e += 2) {
        strbuf_appendf(&sb, "%s%s=", sb.len ? " " : "", e[0]);
        append_quoted(&sb, e[1]);
    }
    out = strbuf_detach(&sb);
    strbuf_free(&sb);
    return out;
}
