/*
 * proc.h: run a child program (pg_dump, pg_restore) without a shell.
 * The password, when the user gave one in the connection string, travels
 * in the child's PGPASSWORD environment variable, never in argv (which any
 * user can read in ps).  stdout and stderr are captured in memory.
 */
#ifndef PGRELOCATE_PROC_H
#define PGRELOCATE_PROC_H

#include "strbuf.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ProcResult {
    int exit_code; /* 0..255, or 128+signal, or -1 when it could not start */
    StrBuf out;    /* captured stdout (when requested) */
    StrBuf err;    /* captured stderr */
    bool killed;   /* proc_run_limited: the limit passed, the child was killed */
} ProcResult;

/* Run argv[0] (a path) with argv; password may be NULL.  When capture_out
 * is false the child's stdout goes to /dev/null.  Returns true when the
 * child exited 0.  Always initialises *r; free it with proc_result_free. */
bool proc_run(const char *const *argv, const char *password, bool capture_out, ProcResult *r);
/* proc_run that kills the child (SIGKILL: pg_dump's SIGTERM handler sends
 * a cancel request and waits for the server, which a stopped one never
 * answers) when it is still running limit_ms after it started (0: no
 * limit); r->killed says so. */
bool proc_run_limited(const char *const *argv, const char *password, bool capture_out,
                      int64_t limit_ms, ProcResult *r);
void proc_result_free(ProcResult *r);

/* Run cmd through /bin/sh -c with our environment and descriptors, in a
 * process group of its own, and wait at most limit_ms: when it is still
 * running then, the whole group gets SIGKILL (a hook's own children too)
 * and *killed is set.  Returns the exit code (0..255, 128+signal), or -1
 * when it could not start (errno says why). */
int proc_run_shell(const char *cmd, int64_t limit_ms, bool *killed);

/* Start a child whose stderr goes to err_path (a file created 0600); returns
 * its pid or -1.  For running several at once; reap with proc_wait. */
pid_t proc_spawn(const char *const *argv, const char *password, const char *err_path);
/* Wait until one of pids (entries <= 0 are skipped) exits; returns its pid
 * and exit code, or -1 when none is left.  Only these children are reaped
 * (not, say, the snapshot keeper). */
pid_t proc_wait_one(const pid_t *pids, int npids, int *exit_code);

#endif
