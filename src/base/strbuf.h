/*
 * strbuf.h: a growable, always NUL-terminated byte string.  Pure.
 * Allocation failure aborts the program (out of memory is not recoverable
 * for a command-line tool and every caller would do the same).
 */
#ifndef PGRELOCATE_STRBUF_H
#define PGRELOCATE_STRBUF_H

#include <stddef.h>

typedef struct StrBuf {
    char *data; /* NUL-terminated; NULL only after strbuf_detach */
    size_t len; /* bytes before the terminator */
    size_t cap; /* allocated bytes */
} StrBuf;

void strbuf_init(StrBuf *sb);
void strbuf_free(StrBuf *sb);
void strbuf_reset(StrBuf *sb);
void strbuf_append(StrBuf *sb, const char *s);
void strbuf_append_len(StrBuf *sb, const char *s, size_t len);
void strbuf_appendf(StrBuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the buffer to the caller (free() it); sb is left empty, owning no
 * memory, and reusable (appending allocates again). */
char *strbuf_detach(StrBuf *sb);

/* malloc/strdup that abort on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
