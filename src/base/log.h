/*
 * log.h: one place that writes messages for people, in PostgreSQL's style:
 * "pgrelocate: error: [copy public.t 3/8] primary message" then optional
 * DETAIL/HINT lines.  Thread-safe.  Never given passwords: callers pass
 * scrubbed connection strings (conninfo_display()).
 */
#ifndef PGRELOCATE_LOG_H
#define PGRELOCATE_LOG_H

#include <stdbool.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERROR } LogLevel;

/* Messages below this level are dropped (set once in main()). */
void log_set_level(LogLevel level);
LogLevel log_get_level(void);
void log_set_program(const char *name);

/* A display that owns the terminal (progress) may clear itself before a
 * message is printed and redraw after it. */
typedef void (*LogHook)(void *arg);
void log_set_hooks(LogHook before, LogHook after, void *arg);

/* The primary text of the last error logged ("" if none), for recording
 * in the migration's event log.  Copied into buf (bufsize bytes). */
void log_last_error(char *buf, unsigned bufsize);
/* How many errors were logged so far. */
long log_error_count(void);
/* Note that an error just logged would recur on every retry (the server
 * rejects the statement as written, a program is missing...), so that the
 * command does not suggest running it again. */
void log_note_lasting_error(void);
/* Whether such an error was logged in this process. */
bool log_had_lasting_error(void);

/* Emit a message; detail and hint may be NULL. */
void log_msg(LogLevel level, const char *detail, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(...)   log_msg(LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, NULL, NULL, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, NULL, NULL, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, NULL, NULL, __VA_ARGS__)
#define log_error(...)   log_msg(LOG_ERROR, NULL, NULL, __VA_ARGS__)

#endif
