/*
 * test_progress.c: counters (exact under concurrency, never past 100%),
 * summary layout, and what each mode writes to stderr (captured by
 * pointing fd 2 at a temporary file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "progress.h"

#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* ---- helpers ---- */

/* What erasing a 2-line display writes: up, clear, down, clear, up. */
#define ERASE_2_LINES "\033[2A\r\033[2K\033[B\033[2K\033[1A"

typedef struct Capture {
    FILE *file;
    int saved_fd;
} Capture;

static void capture_begin(Capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(c->saved_fd >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Restores stderr; returns what was written to it (caller frees). */
static char *capture_end(Capture *c)
{
    long len;
    char *text;

    fflush(stderr);
    assert_true(dup2(c->saved_fd, STDERR_FILENO) >= 0);
    close(c->saved_fd);
    len = ftell(c->file);
    assert_true(len >= 0);
    text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    rewind(c->file);
    assert_int_equal(fread(text, 1, (size_t)len, c->file), (size_t)len);
    fclose(c->file);
    return text;
}

static char *summary_text(Progress *p, int max_tables)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    assert_non_null(out);
    progress_print_summary(p, out, max_tables);
    fclose(out);
    return buf;
}

static int count_occurrences(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *s = strstr(hay, needle); s; s = strstr(s + 1, needle))
        n++;
    return n;
}

/* Columns of the longest line once escape sequences and \r are removed
 * (ASCII only, which is what these tests draw). */
static int longest_visible_line(const char *s)
{
    int longest = 0, cur = 0;

    for (; *s; s++) {
        if (*s == '\033') {
            s++; /* '[' */
            while (s[1] && !(s[1] >= '@' && s[1] <= '~'))
                s++;
            s++; /* final byte */
        } else if (*s == '\n') {
            cur = 0;
        } else if (*s != '\r') {
            longest = ++cur > longest ? cur : longest;
        }
    }
    return longest;
}

/* stderr becomes a pseudo-terminal of the given size; returns the master
 * side to read what was drawn from. */
static int pty_begin(Capture *c, int cols, int rows)
{
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    int master = posix_openpt(O_RDWR | O_NOCTTY), slave;

    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    assert_true(slave >= 0);
    assert_int_equal(ioctl(slave, TIOCSWINSZ, &ws), 0);
    fflush(stderr);
    c->file = NULL;
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(dup2(slave, STDERR_FILENO) >= 0);
    close(slave);
    return master;
}

/* Restores stderr; returns what the pty received (caller frees). */
static char *pty_end(Capture *c, int master)
{
    size_t cap = 1 << 16, len = 0;
    char *text = calloc(1, cap);
    ssize_t n;

    fflush(stderr);
    assert_true(dup2(c->saved_fd, STDERR_FILENO) >= 0);
    close(c->saved_fd);
    fcntl(master, F_SETFL, O_NONBLOCK);
    while (len < cap - 1 && (n = read(master, text + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    close(master);
    return text;
}

/* ---- summary ---- */

static void test_summary_lists_phases_then_tables_by_seconds(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 2);
    char *text;

    (void)state;
    progress_phase_begin(p, "schema");
    progress_phase_begin(p, "data");
    progress_table_done(p, "public.small", 10, 2048, 0.5);
    progress_table_done(p, "public.pgbench_accounts", 10000000, 1288490189, 41.0);
    progress_table_done(p, "public.orders", 12345, 47185920, 2.5);
    progress_phase_end(p);
    text = summary_text(p, 10);
    assert_string_equal(text, "phase   seconds\n"
                              "------  -------\n"
                              "schema      0.0\n"
                              "data        0.0\n"
                              "------  -------\n"
                              "total       0.0\n"
                              "\n"
                              "table                        rows    bytes  seconds  MB/s\n"
                              "-----------------------  --------  -------  -------  ----\n"
                              "public.pgbench_accounts  10000000  1.20 GB     41.0  30.0\n"
                              "public.orders               12345  45.0 MB      2.5  18.0\n"
                              "public.small                   10  2.00 kB      0.5   0.0\n"
                              "-----------------------  --------  -------  -------  ----\n"
                              "total (3 tables)         10012355  1.24 GB     41.0  31.1\n");
    free(text);
    progress_destroy(p);
}

static void test_summary_shows_top_n_and_counts_the_rest(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 1);
    char *text;

    (void)state;
    for (int i = 1; i <= 5; i++) {
        char name[16];

        snprintf(name, sizeof name, "t%d", i);
        progress_table_done(p, name, i, 100 * i, (double)i);
    }
    text = summary_text(p, 2);
    assert_string_equal(text, "table             rows    bytes  seconds  MB/s\n"
                              "----------------  ----  -------  -------  ----\n"
                              "t5                   5    500 B      5.0   0.0\n"
                              "t4                   4    400 B      4.0   0.0\n"
                              "... and 3 more\n"
                              "----------------  ----  -------  -------  ----\n"
                              "total (5 tables)    15  1.46 kB      5.0   0.0\n");
    free(text);
    progress_destroy(p);
}

static void test_summary_aligns_quotes_spaces_and_utf8_names(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 1);
    char *text;

    (void)state;
    progress_table_done(p, "public.\"we ird\"", 1, 1, 3.0);
    progress_table_done(p, "public.caf\xc3\xa9", 2, 2, 2.0);                    /* café: 11 cols */
    progress_table_done(p, "\xe6\x97\xa5\xe6\x9c\xac.\xe8\xa1\xa8", 3, 3, 1.0); /* 日本.表: 7 */
    text = summary_text(p, 0);
    assert_string_equal(text, "table             rows  bytes  seconds  MB/s\n"
                              "----------------  ----  -----  -------  ----\n"
                              "public.\"we ird\"      1    1 B      3.0   0.0\n"
                              "public.caf\xc3\xa9          2    2 B      2.0   0.0\n"
                              "\xe6\x97\xa5\xe6\x9c\xac.\xe8\xa1\xa8"
                              "              3    3 B      1.0   0.0\n"
                              "----------------  ----  -----  -------  ----\n"
                              "total (3 tables)     6    6 B      3.0   0.0\n");
    free(text);
    progress_destroy(p);
}

static void test_summary_replaces_control_characters(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 1);
    char *text;

    (void)state;
    progress_table_done(p, "evil\n\033[2J\x7f\xc2\x9b\xff", 1, 1, 1.0);
    text = summary_text(p, 0);
    assert_non_null(strstr(text, "\nevil??[2J???  "));
    assert_null(strchr(text, '\033'));
    free(text);
    progress_destroy(p);
}

static void test_summary_of_nothing_is_empty(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 1);
    char *text;

    (void)state;
    text = summary_text(p, 10);
    assert_string_equal(text, "");
    free(text);
    progress_destroy(p);
}

/* ---- counters ---- */

static void test_done_counts_finished_estimates_and_capped_inflight(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 2);
    ProgressSnapshot s;

    (void)state;
    progress_set_total(p, 1000, 2);
    progress_worker_begin(p, 0, "public.a 1/2", 600);
    progress_worker_add(p, 0, 100);
    progress_worker_begin(p, 1, "public.a 2/2", 400);
    progress_worker_add(p, 1, 900); /* moved more than its estimate */
    progress_get_snapshot(p, &s);
    assert_int_equal(s.done_bytes, 100 + 400);
    assert_int_equal(s.moved_bytes, 1000);
    assert_true(s.percent == 50.0);

    progress_worker_end(p, 0, 10); /* moved less than its estimate */
    progress_get_snapshot(p, &s);
    assert_int_equal(s.done_bytes, 600 + 400);
    assert_int_equal(s.chunks_done, 1);
    assert_true(s.percent == 100.0);
    progress_destroy(p);
}

static void test_percent_never_exceeds_100(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 3);
    ProgressSnapshot s;

    (void)state;
    /* Estimates add up to more than the total and every chunk overshoots. */
    progress_set_total(p, 1000, 2);
    for (int w = 0; w < 3; w++) {
        progress_worker_begin(p, w, "t", 800);
        progress_worker_add(p, w, 5000);
        progress_get_snapshot(p, &s);
        assert_true(s.percent <= 100.0);
        assert_true(s.done_bytes <= s.total_bytes);
        progress_worker_end(p, w, 1);
        progress_get_snapshot(p, &s);
        assert_true(s.percent <= 100.0);
        assert_true(s.done_bytes <= s.total_bytes);
    }
    assert_true(s.percent == 100.0);
    progress_destroy(p);
}

static void test_percent_rounds_down_until_really_done(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 1);
    ProgressSnapshot s;

    (void)state;
    progress_set_total(p, 100000, 1);
    progress_worker_begin(p, 0, "t", 100000);
    progress_worker_add(p, 0, 99999);
    progress_get_snapshot(p, &s);
    assert_true(s.percent == 99.9);
    progress_destroy(p);
}

typedef struct AddArgs {
    Progress *p;
    int worker;
} AddArgs;

#define ADD_THREADS 8
#define ADD_CALLS   200000

static void *add_many(void *arg)
{
    const AddArgs *a = arg;

    for (int i = 0; i < ADD_CALLS; i++)
        progress_worker_add(a->p, a->worker, 1 + i % 7);
    return NULL;
}

static void test_concurrent_adds_sum_exactly(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 4);
    pthread_t threads[ADD_THREADS];
    AddArgs args[ADD_THREADS];
    ProgressSnapshot s;
    int64_t per_thread = 0;

    (void)state;
    for (int i = 0; i < ADD_CALLS; i++)
        per_thread += 1 + i % 7;
    for (int w = 0; w < 4; w++)
        progress_worker_begin(p, w, "t", INT64_MAX / 8);
    /* Two threads per slot, so adds to one counter really do race. */
    for (int t = 0; t < ADD_THREADS; t++) {
        args[t] = (AddArgs){.p = p, .worker = t % 4};
        assert_int_equal(pthread_create(&threads[t], NULL, add_many, &args[t]), 0);
    }
    for (int t = 0; t < ADD_THREADS; t++)
        pthread_join(threads[t], NULL);
    progress_get_snapshot(p, &s);
    assert_int_equal(s.moved_bytes, per_thread * ADD_THREADS);
    assert_int_equal(s.done_bytes, per_thread * ADD_THREADS);
    progress_destroy(p);
}

static void test_bad_arguments_are_ignored(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 1);
    ProgressSnapshot s;

    (void)state;
    progress_worker_add(p, -1, 10);
    progress_worker_add(p, 1, 10);
    progress_worker_add(p, 0, -10);
    progress_worker_begin(p, 7, "t", 10);
    progress_worker_end(p, 0, 1); /* no chunk running */
    progress_worker_add(NULL, 0, 10);
    progress_phase_end(p); /* no phase running */
    progress_phase_begin(NULL, "x");
    progress_get_snapshot(p, &s);
    assert_int_equal(s.moved_bytes, 0);
    assert_int_equal(s.chunks_done, 0);
    progress_destroy(p);
    progress_destroy(NULL);
}

/* ---- what each mode prints ---- */

static void test_plain_prints_phase_and_table_lines_without_escapes(void **state)
{
    Progress *p = progress_create(PROGRESS_PLAIN, 1);
    Capture c;
    char *out;

    (void)state;
    capture_begin(&c);
    progress_start(p); /* no-op outside TTY mode */
    progress_phase_begin(p, "data");
    progress_table_done(p, "public.orders", 12345, 47185920, 2.5);
    progress_phase_begin(p, "indexes");
    progress_phase_end(p);
    progress_stop(p);
    out = capture_end(&c);
    assert_non_null(strstr(out, "pgrelocate: phase data ...\n"));
    assert_non_null(
        strstr(out, "pgrelocate: [copy public.orders] 12345 rows, 45.0 MB in 2.5 s (18.0 MB/s)\n"));
    assert_non_null(strstr(out, "pgrelocate: phase data done in 0.0 s\n"));
    assert_non_null(strstr(out, "pgrelocate: phase indexes done in 0.0 s\n"));
    assert_null(strchr(out, '\033'));
    free(out);
    progress_destroy(p);
}

static void test_quiet_prints_nothing_but_keeps_the_summary(void **state)
{
    Progress *p = progress_create(PROGRESS_QUIET, 1);
    Capture c;
    char *out, *text;

    (void)state;
    capture_begin(&c);
    progress_start(p);
    progress_phase_begin(p, "data");
    progress_worker_begin(p, 0, "public.t 1/1", 10);
    progress_worker_add(p, 0, 10);
    progress_worker_end(p, 0, 1);
    progress_table_done(p, "public.t", 1, 10, 1.0);
    progress_phase_end(p);
    progress_stop(p);
    out = capture_end(&c);
    assert_string_equal(out, "");
    text = summary_text(p, 10);
    assert_non_null(strstr(text, "public.t"));
    free(text);
    free(out);
    progress_destroy(p);
}

static void test_tty_final_line_is_capped_at_100_percent(void **state)
{
    Progress *p = progress_create(PROGRESS_TTY, 2);
    Capture c;
    char *out;

    (void)state;
    capture_begin(&c);
    progress_phase_begin(p, "data");
    progress_set_total(p, 1000, 1);
    progress_worker_begin(p, 0, "public.t 1/1", 1000);
    progress_worker_add(p, 0, 5000);
    progress_start(p);
    progress_stop(p);
    out = capture_end(&c);
    /* Not a terminal: 80 columns, so no line is longer than 79. */
    assert_non_null(strstr(out, "\r  w1  public.t 1/1   4.88 kB  "));
    assert_non_null(strstr(out, "\r  w2  idle"
                                "\033[K\n"));
    assert_non_null(
        strstr(out, "#]  100.0%  1000 B / 1000 B  0 B/s  ETA 0:00  0/1 chunks\033[K\n"));
    assert_true(longest_visible_line(out) <= 79);
    assert_null(strstr(out, "500"));
    free(out);
    progress_destroy(p);
}

static void test_tty_after_the_copy_shows_the_phase_not_a_full_bar(void **state)
{
    Progress *p = progress_create(PROGRESS_TTY, 1);
    Capture c;
    char *out;
    size_t len;

    (void)state;
    capture_begin(&c);
    progress_phase_begin(p, "data");
    progress_set_total(p, 100, 1);
    progress_worker_begin(p, 0, "public.t 1/1", 100);
    progress_worker_add(p, 0, 100);
    progress_worker_end(p, 0, 1);
    progress_phase_begin(p, "indexes");
    progress_worker_status(p, 0, "index public.t_pkey");
    progress_start(p);
    progress_stop(p);
    out = capture_end(&c);
    assert_non_null(strstr(out, "\r  w1  index public.t_pkey      0:00\033[K\n"));
    assert_non_null(strstr(out, "\r  indexes  0:00\033[K\n"));
    assert_null(strstr(out, "[#"));
    /* a finished copy leaves nothing behind: the display is just erased */
    len = strlen(out);
    assert_true(len > strlen(ERASE_2_LINES));
    assert_string_equal(out + len - strlen(ERASE_2_LINES), ERASE_2_LINES);
    free(out);
    progress_destroy(p);
}

static void test_tty_log_line_erases_display_then_redraws(void **state)
{
    Progress *p = progress_create(PROGRESS_TTY, 1);
    Capture c;
    char *out, *msg;

    (void)state;
    capture_begin(&c);
    progress_phase_begin(p, "data");
    progress_start(p); /* draws 2 lines at once */
    log_info("hello from a worker");
    progress_stop(p);
    out = capture_end(&c);
    msg = strstr(out, "pgrelocate: hello from a worker\n");
    assert_non_null(msg);
    /* Right before the message: cursor up over both lines, clear each. */
    assert_true(msg - out >= (ptrdiff_t)strlen(ERASE_2_LINES));
    assert_memory_equal(msg - strlen(ERASE_2_LINES), ERASE_2_LINES, strlen(ERASE_2_LINES));
    /* Right after it: a fresh frame (not "cursor up" over the message). */
    assert_memory_equal(msg + strlen("pgrelocate: hello from a worker\n"), "\r  w1  idle", 11);
    free(out);
    progress_destroy(p);
}

static void test_tty_fits_a_narrow_short_terminal(void **state)
{
    Progress *p = progress_create(PROGRESS_TTY, 5);
    Capture c;
    int master = pty_begin(&c, 40, 5);
    char *out;

    (void)state;
    progress_phase_begin(p, "data");
    progress_set_total(p, 10LL << 30, 40);
    progress_worker_begin(p, 1, "public.a_table_with_a_very_long_name 12/40", 1 << 30);
    progress_worker_add(p, 1, 300 << 20);
    progress_worker_status(p, 3, "index public.another_very_long_index_name_pkey");
    progress_start(p);
    log_info("a log line in the middle");
    progress_stop(p);
    out = pty_end(&c, master);
    assert_true(longest_visible_line(out) <= 39);
    /* 5 rows: 4 display lines, so the 2 busy workers and "... and 3 more" */
    assert_non_null(strstr(out, "\r  w2  public.a_...    300 MB      0 B/s\033[K"));
    assert_non_null(strstr(out, "\r  w4  index pub...      0:00\033[K"));
    assert_null(strstr(out, "  w1  "));
    assert_non_null(strstr(out, "\r  ... and 3 more workers\033[K"));
    /* percent and ETA outlast bytes, rate and chunks */
    assert_non_null(strstr(out, "\r  data  [..........]    2.9%  ETA --:--\033[K"));
    assert_non_null(strstr(out, "\033[4A\r\033[2K\033[B\033[2K\033[B\033[2K\033[B\033[2K\033[3A"
                                "pgrelocate: a log line in the middle"));
    free(out);
    progress_destroy(p);
}

static void test_start_stop_repeatedly(void **state)
{
    Capture c;
    char *out;

    (void)state;
    capture_begin(&c);
    for (int i = 0; i < 20; i++) {
        Progress *p = progress_create(PROGRESS_TTY, 3);

        progress_set_total(p, 100, 4);
        for (int j = 0; j < 3; j++) {
            progress_start(p);
            progress_start(p); /* twice is harmless */
            progress_worker_begin(p, j, "public.t 1/4", 25);
            progress_worker_add(p, j, 25);
            log_info("line %d.%d", i, j);
            progress_worker_end(p, j, 1);
            progress_stop(p);
            progress_stop(p);
        }
        progress_start(p); /* destroy stops it */
        progress_destroy(p);
    }
    out = capture_end(&c);
    assert_int_equal(count_occurrences(out, "pgrelocate: line "), 60);
    assert_true(count_occurrences(out, "3/4 chunks\033[K\n") >= 20 * 2);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_summary_lists_phases_then_tables_by_seconds),
        cmocka_unit_test(test_summary_shows_top_n_and_counts_the_rest),
        cmocka_unit_test(test_summary_aligns_quotes_spaces_and_utf8_names),
        cmocka_unit_test(test_summary_replaces_control_characters),
        cmocka_unit_test(test_summary_of_nothing_is_empty),
        cmocka_unit_test(test_done_counts_finished_estimates_and_capped_inflight),
        cmocka_unit_test(test_percent_never_exceeds_100),
        cmocka_unit_test(test_percent_rounds_down_until_really_done),
        cmocka_unit_test(test_concurrent_adds_sum_exactly),
        cmocka_unit_test(test_bad_arguments_are_ignored),
        cmocka_unit_test(test_plain_prints_phase_and_table_lines_without_escapes),
        cmocka_unit_test(test_quiet_prints_nothing_but_keeps_the_summary),
        cmocka_unit_test(test_tty_final_line_is_capped_at_100_percent),
        cmocka_unit_test(test_tty_after_the_copy_shows_the_phase_not_a_full_bar),
        cmocka_unit_test(test_tty_log_line_erases_display_then_redraws),
        cmocka_unit_test(test_tty_fits_a_narrow_short_terminal),
        cmocka_unit_test(test_start_stop_repeatedly),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
