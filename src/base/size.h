/*
 * size.h: sizes and durations as people write them ("64MB", "1.5GB", "2s",
 * "500ms") and as the tool prints them.  Pure.
 */
#ifndef PGRELOCATE_SIZE_H
#define PGRELOCATE_SIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "123", "64kB", "64KB", "10MB", "1.5GB", "2TB" (1024-based, like
 * PostgreSQL's settings).  Returns false on anything else, negative or
 * overflowing values. */
bool size_parse_bytes(const char *text, int64_t *out_bytes);

/* "250ms", "2s", "1.5s", "3min", "1h"; a bare number means seconds. */
bool size_parse_duration_ms(const char *text, int64_t *out_ms);

/* "0 B", "1023 B", "1.0 kB", "12.3 MB", "2.00 GB": into buf; returns buf. */
char *size_format_bytes(int64_t bytes, char *buf, size_t buflen);

/* "0:07", "12:05", "1:02:03": into buf; returns buf.  Negative: "--:--". */
char *size_format_seconds(double seconds, char *buf, size_t buflen);

#endif
