/*
 * digest.c: bucket arithmetic, block ranges, row matching, key display.
 */
#include "digest.h"

#include "names.h"
#include "strbuf.h"

#include <stdlib.h>
#include <string.h>

int digest_bucket_bits(int64_t est_rows)
{
    int bits = 4;

    while (bits < 16 && ((int64_t)1 << bits) * 256 < est_rows)
        bits++;
    return bits;
}

bool digest_parse_sum(const char *text, uint64_t *out)
{
    const char *p = text;
    bool neg = false;
    uint64_t v = 0;

    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    if (!*p)
        return false;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0'); /* wraps: exact mod 2^64 */
    }
    *out = neg ? (uint64_t)0 - v : v;
    return true;
}

void digest_add_buckets(DigestBucket *dst, const DigestBucket *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i].rows += src[i].rows;
        dst[i].sum += src[i].sum;
    }
}

static void close_pass(StrBuf *sb, char ***passes, int *n)
{
    strbuf_append(sb, "}");
    *passes = xrealloc(*passes, (size_t)(*n + 1) * sizeof(char *));
    (*passes)[(*n)++] = strbuf_detach(sb);
    strbuf_free(sb);
    strbuf_init(sb);
}

int digest_plan_passes(const DigestBucket *src, const DigestBucket *tgt, int nbuckets,
                       int64_t max_rows, char ***passes)
{
    StrBuf sb;
    int64_t rows = 0;
    int n = 0;

    *passes = NULL;
    strbuf_init(&sb);
    for (int b = 0; b < nbuckets; b++) {
        int64_t r = src[b].rows > tgt[b].rows ? src[b].rows : tgt[b].rows;

        if (src[b].rows == tgt[b].rows && src[b].sum == tgt[b].sum)
            continue;
        if (sb.len > 0 && rows + r > max_rows) {
            close_pass(&sb, passes, &n);
            rows = 0;
        }
        strbuf_appendf(&sb, "%s%d", sb.len ? "," : "{", b);
        rows += r;
    }
    if (sb.len > 0)
        close_pass(&sb, passes, &n);
    strbuf_free(&sb);
    return n;
}

#define RANGE_MAX_BYTES ((int64_t)256 * 1024 * 1024)
#define RANGE_MIN_BYTES ((int64_t)32 * 1024 * 1024)

int digest_range_count(int64_t bytes, int64_t nblocks, int jobs)
{
    int64_t n = (bytes + RANGE_MAX_BYTES - 1) / RANGE_MAX_BYTES;
    int64_t by_min = (bytes + RANGE_MIN_BYTES - 1) / RANGE_MIN_BYTES;
    int64_t want = jobs < by_min ? jobs : by_min;

    if (n < want)
        n = want;
    if (n > nblocks)
        n = nblocks;
    if (n > 100000)
        n = 100000;
    return n < 1 ? 1 : (int)n;
}

int digest_split_blocks(int64_t nblocks, int64_t blocks_per_range, DigestRange **out)
{
    int64_t n;

    if (blocks_per_range < 1)
        blocks_per_range = 1;
    n = nblocks <= 0 ? 1 : (nblocks + blocks_per_range - 1) / blocks_per_range;
    *out = xcalloc((size_t)n, sizeof(DigestRange));
    for (int64_t i = 0; i < n; i++) {
        (*out)[i].start = i * blocks_per_range;
        (*out)[i].end = i == n - 1 ? -1 : (i + 1) * blocks_per_range;
    }
    return (int)n;
}

static int cmp_key(const DigestRow *a, const DigestRow *b)
{
    size_t n = a->keylen < b->keylen ? a->keylen : b->keylen;
    int c = memcmp(a->key, b->key, n);

    if (c != 0)
        return c;
    return a->keylen < b->keylen ? -1 : a->keylen > b->keylen;
}

static int cmp_by_key(const void *a, const void *b)
{
    return cmp_key(a, b);
}

static int cmp_by_hash(const void *a, const void *b)
{
    const DigestRow *x = a, *y = b;

    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return cmp_key(x, y); /* deterministic order among equal hashes */
}

static int64_t match_keyed(const DigestRow *s, size_t ns, const DigestRow *t, size_t nt,
                           DigestDiffFn fn, void *arg)
{
    size_t i = 0, j = 0;
    int64_t n = 0;

    while (i < ns || j < nt) {
        int c = i == ns ? 1 : j == nt ? -1 : cmp_key(&s[i], &t[j]);

        if (c < 0) {
            fn(DIGEST_MISSING, &s[i++], NULL, 1, arg);
            n++;
        } else if (c > 0) {
            fn(DIGEST_EXTRA, NULL, &t[j++], 1, arg);
            n++;
        } else {
            if (s[i].hash != t[j].hash) {
                fn(DIGEST_CHANGED, &s[i], &t[j], 1, arg);
                n++;
            }
            i++;
            j++;
        }
    }
    return n;
}

/* Multisets: equal hashes are equal rows; count the copies on each side. */
static int64_t match_keyless(const DigestRow *s, size_t ns, const DigestRow *t, size_t nt,
                             DigestDiffFn fn, void *arg)
{
    size_t i = 0, j = 0;
    int64_t n = 0;

    while (i < ns || j < nt) {
        uint64_t h = i == ns                 ? t[j].hash
                     : j == nt               ? s[i].hash
                     : s[i].hash < t[j].hash ? s[i].hash
                                             : t[j].hash;
        size_t i0 = i, j0 = j;

        while (i < ns && s[i].hash == h)
            i++;
        while (j < nt && t[j].hash == h)
            j++;
        if (i - i0 > j - j0) {
            fn(DIGEST_MISSING, &s[i0], NULL, (int64_t)((i - i0) - (j - j0)), arg);
            n += (int64_t)((i - i0) - (j - j0));
        } else if (j - j0 > i - i0) {
            fn(DIGEST_EXTRA, NULL, &t[j0], (int64_t)((j - j0) - (i - i0)), arg);
            n += (int64_t)((j - j0) - (i - i0));
        }
    }
    return n;
}

int64_t digest_match_rows(DigestRow *src, size_t nsrc, DigestRow *tgt, size_t ntgt, bool keyed,
                          DigestDiffFn fn, void *arg)
{
    int (*cmp)(const void *, const void *) = keyed ? cmp_by_key : cmp_by_hash;

    if (nsrc > 1)
        qsort(src, nsrc, sizeof(DigestRow), cmp);
    if (ntgt > 1)
        qsort(tgt, ntgt, sizeof(DigestRow), cmp);
    return keyed ? match_keyed(src, nsrc, tgt, ntgt, fn, arg)
                 : match_keyless(src, nsrc, tgt, ntgt, fn, arg);
}

static bool plain_number(const char *v, size_t len)
{
    size_t i = 0, digits = 0;
    bool dot = false;

    if (i < len && v[i] == '-')
        i++;
    for (; i < len; i++) {
        if (v[i] >= '0' && v[i] <= '9')
            digits++;
        else if (v[i] == '.' && !dot && digits > 0)
            dot = true;
        else
            return false;
    }
    return digits > 0 && v[len - 1] != '.';
}

/* Control characters as C escapes; backslashes doubled when escaping. */
static void append_escaped(StrBuf *sb, const char *v, size_t len, bool quote_doubling)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];

        if (c == '\n')
            strbuf_append(sb, "\\n");
        else if (c == '\r')
            strbuf_append(sb, "\\r");
        else if (c == '\t')
            strbuf_append(sb, "\\t");
        else if (c < 0x20 || c == 0x7f)
            strbuf_appendf(sb, "\\x%02x", c);
        else if (c == '\\')
            strbuf_append(sb, "\\\\");
        else if (c == '\'' && quote_doubling)
            strbuf_append(sb, "''");
        else
            strbuf_append_len(sb, v + i, 1);
    }
}

static bool needs_escapes(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return true;
    return false;
}

static void append_literal(StrBuf *sb, const char *v, size_t len)
{
    if (plain_number(v, len)) {
        strbuf_append_len(sb, v, len);
        return;
    }
    if (needs_escapes(v, len)) {
        strbuf_append(sb, "E'");
        append_escaped(sb, v, len, true);
    } else {
        strbuf_append(sb, "'");
        for (size_t i = 0; i < len; i++)
            strbuf_append(sb, v[i] == '\'' ? "''" : (char[]){v[i], '\0'});
    }
    strbuf_append(sb, "'");
}

char *digest_format_key(const char *const *names, int ncols, const char *key, size_t keylen)
{
    StrBuf sb;
    const char *p = key, *end = key + keylen;

    strbuf_init(&sb);
    strbuf_append(&sb, "(");
    for (int i = 0; i < ncols; i++) {
        char *n = names_ident_display(names[i]);

        strbuf_appendf(&sb, "%s%s", i ? ", " : "", n);
        free(n);
    }
    strbuf_append(&sb, ")=(");
    for (int i = 0; i < ncols && p < end; i++) {
        size_t len = strnlen(p, (size_t)(end - p));

        if (i)
            strbuf_append(&sb, ", ");
        append_literal(&sb, p, len);
        p += len + 1;
    }
    strbuf_append(&sb, ")");
    return strbuf_detach(&sb);
}

char *digest_format_row(const char *text, size_t len, size_t max_chars)
{
    StrBuf sb;
    size_t n = len;

    if (n > max_chars) {
        n = max_chars;
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--; /* never cut a UTF-8 character in two */
    }
    strbuf_init(&sb);
    append_escaped(&sb, text, n, false);
    if (n < len)
        strbuf_append(&sb, "...");
    return strbuf_detach(&sb);
}
