/*
 * size.c: parse and format byte sizes and durations.
 */
#include "size.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct Unit {
    const char *name;
    double factor;
} Unit;

static const Unit byte_units[] = {
    {"", 1.0},
    {"B", 1.0},
    {"kB", 1024.0},
    {"KB", 1024.0},
    {"MB", 1024.0 * 1024},
    {"GB", 1024.0 * 1024 * 1024},
    {"TB", 1024.0 * 1024 * 1024 * 1024},
};

static const Unit time_units[] = {
    {"", 1000.0},     {"ms", 1.0},    {"s", 1000.0},    {"sec", 1000.0},
    {"min", 60000.0}, {"m", 60000.0}, {"h", 3600000.0},
};

static bool parse_with_units(const char *text, const Unit *units, size_t nunits, int64_t *out)
{
    char *end;
    double v;

    if (text == NULL)
        return false;
    while (isspace((unsigned char)*text))
        text++;
    if (!isdigit((unsigned char)*text) && *text != '.')
        return false;
    v = strtod(text, &end);
    if (end == text || !isfinite(v) || v < 0)
        return false;
    while (isspace((unsigned char)*end))
        end++;
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(end, units[i].name) == 0) {
            double r = v * units[i].factor;

            if (r > 9.2e18)
                return false;
            *out = (int64_t)llround(r);
            return true;
        }
    }
    return false;
}

bool size_parse_bytes(const char *text, int64_t *out_bytes)
{
    return parse_with_units(text, byte_units, sizeof(byte_units) / sizeof(byte_units[0]),
                            out_bytes);
}

bool size_parse_duration_ms(const char *text, int64_t *out_ms)
{
    return parse_with_units(text, time_units, sizeof(time_units) / sizeof(time_units[0]), out_ms);
}

char *size_format_bytes(int64_t bytes, char *buf, size_t buflen)
{
    static const char *names[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    double v = (double)bytes;
    int u = 0;

    if (bytes < 1024) {
        snprintf(buf, buflen, "%lld B", (long long)bytes);
        return buf;
    }
    while (v >= 1023.5 && u < 5) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, buflen, v < 9.995 ? "%.2f %s" : v < 99.95 ? "%.1f %s" : "%.0f %s", v, names[u]);
    return buf;
}

char *size_format_seconds(double seconds, char *buf, size_t buflen)
{
    long s;

    if (seconds < 0 || !isfinite(seconds) || seconds >= 1e9) {
        snprintf(buf, buflen, "--:--");
        return buf;
    }
    s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, buflen, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else
        snprintf(buf, buflen, "%ld:%02ld", s / 60, s % 60);
    return buf;
}
