/*
 * log.c: message output to stderr, serialised by a mutex so lines from
 * worker threads never interleave.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

static LogLevel min_level = LOG_INFO;
static const char *program = "pgrelocate";
static LogHook hook_before, hook_after;
static void *hook_arg;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_error[512];
static long error_count;
static atomic_bool lasting_error;

void log_set_level(LogLevel level)
{
    min_level = level;
}

LogLevel log_get_level(void)
{
    return min_level;
}

void log_set_program(const char *name)
{
    program = name;
}

void log_set_hooks(LogHook before, LogHook after, void *arg)
{
    pthread_mutex_lock(&log_lock);
    hook_before = before;
    hook_after = after;
    hook_arg = arg;
    pthread_mutex_unlock(&log_lock);
}

static const char *level_word(LogLevel level)
{
    switch (level) {
    case LOG_DEBUG:
        return "debug: ";
    case LOG_INFO:
        return "";
    case LOG_NOTICE:
        return "notice: ";
    case LOG_WARNING:
        return "warning: ";
    case LOG_ERROR:
        return "error: ";
    }
    return "";
}

void log_msg(LogLevel level, const char *detail, const char *hint, const char *fmt, ...)
{
    va_list ap;

    if (level < min_level)
        return;
    pthread_mutex_lock(&log_lock);
    if (hook_before)
        hook_before(hook_arg);
    fprintf(stderr, "%s: %s", program, level_word(level));
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (level == LOG_ERROR) {
        error_count++;
        va_start(ap, fmt);
        vsnprintf(last_error, sizeof(last_error), fmt, ap);
        va_end(ap);
    }
    if (detail && *detail)
        fprintf(stderr, "DETAIL:  %s\n", detail);
    if (hint && *hint)
        fprintf(stderr, "HINT:  %s\n", hint);
    fflush(stderr);
    if (hook_after)
        hook_after(hook_arg);
    pthread_mutex_unlock(&log_lock);
}

void log_last_error(char *buf, unsigned bufsize)
{
    pthread_mutex_lock(&log_lock);
    snprintf(buf, bufsize, "%s", last_error);
    pthread_mutex_unlock(&log_lock);
}

void log_note_lasting_error(void)
{
    atomic_store(&lasting_error, true);
}

bool log_had_lasting_error(void)
{
    return atomic_load(&lasting_error);
}

long log_error_count(void)
{
    long n;

    pthread_mutex_lock(&log_lock);
    n = error_count;
    pthread_mutex_unlock(&log_lock);
    return n;
}
