/*
 * proc.c: fork/exec with captured output.
 */
#include "proc.h"

#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The child's environment: ours, with PGPASSWORD set when password is
 * given.  Built before fork: the copy workers start pg_restore from their
 * threads, and a forked child of a threaded process should only exec. */
static char **child_env(const char *password)
{
    size_t n = 0, k = 0;
    char **env;

    while (environ[n])
        n++;
    env = xcalloc(n + 2, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        if (!password || strncmp(environ[i], "PGPASSWORD=", 11) != 0)
            env[k++] = environ[i];
    if (password)
        env[k++] = xasprintf("PGPASSWORD=%s", password);
    return env;
}

/* Free what child_env allocated (the PGPASSWORD entry is the last one). */
static void free_child_env(char **env, const char *password)
{
    size_t n = 0;

    while (env[n])
        n++;
    if (password && n > 0)
        free(env[n - 1]);
    free(env);
}

static void child_exec(const char *const *argv, char **env)
{
    execve(argv[0], (char *const *)argv, env);
    dprintf(STDERR_FILENO, "could not run \"%s\": %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int decode_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

/* Read both pipes until both close; false when deadline_ms (clock_now_ms,
 * 0: none) passes first (the pipes are closed then). */
static bool drain(int out_fd, int err_fd, int64_t deadline_ms, ProcResult *r)
{
    char buf[8192];

    while (out_fd >= 0 || err_fd >= 0) {
        struct pollfd pf[2];
        int n = 0, io = -1, ie = -1;

        if (out_fd >= 0) {
            io = n;
            pf[n++] = (struct pollfd){out_fd, POLLIN, 0};
        }
        if (err_fd >= 0) {
            ie = n;
            pf[n++] = (struct pollfd){err_fd, POLLIN, 0};
        }
        int64_t left = deadline_ms ? deadline_ms - clock_now_ms() : -1;
        int rc;

        if (deadline_ms && left <= 0) {
            if (out_fd >= 0)
                close(out_fd);
            if (err_fd >= 0)
                close(err_fd);
            return false;
        }
        rc = poll(pf, (nfds_t)n, left < 0 ? -1 : (int)(left > 60000 ? 60000 : left));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int k = 0; k < n; k++) {
            int *fd = k == io ? &out_fd : &err_fd;
            StrBuf *sb = k == ie ? &r->err : &r->out;
            ssize_t got;

            if (!pf[k].revents)
                continue;
            got = read(*fd, buf, sizeof(buf));
            if (got > 0)
                strbuf_append_len(sb, buf, (size_t)got);
            else if (got == 0 || errno != EINTR) {
                close(*fd);
                *fd = -1;
            }
        }
    }
    return true;
}

bool proc_run(const char *const *argv, const char *password, bool capture_out, ProcResult *r)
{
    return proc_run_limited(argv, password, capture_out, 0, r);
}

bool proc_run_limited(const char *const *argv, const char *password, bool capture_out,
                      int64_t limit_ms, ProcResult *r)
{
    int outp[2] = {-1, -1}, errp[2];
    pid_t pid;
    int status;
    char **env;

    strbuf_init(&r->out);
    strbuf_init(&r->err);
    r->exit_code = -1;
    r->killed = false;
    if ((capture_out && pipe(outp) < 0) || pipe(errp) < 0) {
        strbuf_appendf(&r->err, "could not create a pipe: %s", strerror(errno));
        return false;
    }
    env = child_env(password);
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        strbuf_appendf(&r->err, "could not fork: %s", strerror(errno));
        free_child_env(env, password);
        return false;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);

        dup2(devnull, STDIN_FILENO);
        dup2(capture_out ? outp[1] : devnull, STDOUT_FILENO);
        dup2(errp[1], STDERR_FILENO);
        child_exec(argv, env);
    }
    free_child_env(env, password);
    if (capture_out)
        close(outp[1]);
    close(errp[1]);
    if (!drain(capture_out ? outp[0] : -1, errp[0], limit_ms ? clock_now_ms() + limit_ms : 0, r)) {
        kill(pid, SIGKILL);
        r->killed = true;
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return false;
    r->exit_code = decode_status(status);
    return r->exit_code == 0;
}

int proc_run_shell(const char *cmd, int64_t limit_ms, bool *killed)
{
    int64_t deadline = clock_now_ms() + limit_ms;
    pid_t pid, r;
    int status = 0;

    *killed = false;
    fflush(NULL);
    if ((pid = fork()) < 0)
        return -1;
    if (pid == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* in both: whichever runs first */
    while ((r = waitpid(pid, &status, WNOHANG)) != pid) {
        if (r < 0 && errno != EINTR)
            return -1;
        if (clock_now_ms() >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            *killed = true;
            break;
        }
        usleep(1000);
    }
    return decode_status(status);
}

void proc_result_free(ProcResult *r)
{
    strbuf_free(&r->out);
    strbuf_free(&r->err);
}

pid_t proc_spawn(const char *const *argv, const char *password, const char *err_path)
{
    char **env = child_env(password);
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        int errfd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(errfd >= 0 ? errfd : devnull, STDERR_FILENO);
        child_exec(argv, env);
    }
    free_child_env(env, password);
    return pid;
}

pid_t proc_wait_one(const pid_t *pids, int npids, int *exit_code)
{
    for (;;) {
        bool any = false;

        for (int i = 0; i < npids; i++) {
            int status;
            pid_t got;

            if (pids[i] <= 0)
                continue;
            any = true;
            got = waitpid(pids[i], &status, WNOHANG);
            if (got == pids[i]) {
                *exit_code = decode_status(status);
                return got;
            }
        }
        if (!any)
            return -1;
        usleep(10000);
    }
}
