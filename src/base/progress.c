/*
 * progress.c: the counters workers report into, the live terminal display
 * (a thread redrawing stderr ~5 times a second), the plain per-table lines
 * and the end-of-run summary.  It does not decide what is copied or when
 * (copyplan.c, copy.c), and it does not own the log: it only hooks into
 * log.c to clear the display before a message and redraw it after.
 *
 * Lock order: log.c's lock, then Progress.lock (the log hooks take ours
 * while log.c holds its own), so nothing here calls log_msg() with
 * Progress.lock held.
 */
#include "progress.h"

#include "clock.h"
#include "log.h"
#include "size.h"
#include "strbuf.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS         200
#define RATE_WINDOW_S   5.0
#define RATE_MIN_GAP_S  0.1 /* samples closer than this are dropped */
#define RATE_SAMPLES    64  /* > RATE_WINDOW_S / RATE_MIN_GAP_S */
#define BAR_MAX_COLS    30
#define NAME_MAX_COLS   64 /* summary name column; longer names overflow */
#define TABLE_MAX_COLS  5
#define WORKER_NUM_COLS 21 /* "  %8s  %9s" after a worker's label */
#define DEFAULT_COLS    80
#define DEFAULT_ROWS    24
#define ESC_CLEAR_EOL   "\033[K"
#define ESC_CLEAR_BELOW "\033[J"

/* A cumulative byte counter sampled over time; the rate is the slope from
 * the oldest sample inside the window to the newest, so it follows the last
 * few seconds, not the average since start. */
typedef struct RateMeter {
    double t[RATE_SAMPLES];
    int64_t bytes[RATE_SAMPLES];
    int head; /* next slot to write */
    int count;
} RateMeter;

typedef enum { WORKER_IDLE, WORKER_CHUNK, WORKER_STATUS } WorkerState;

typedef struct WorkerSlot {
    /* Every byte this worker ever moved; only grows, written only by the
     * worker itself (progress_worker_add), read by anyone. */
    _Atomic int64_t moved_bytes;
    /* The rest is under Progress.lock. */
    WorkerState state;
    char *label;              /* sanitised copy; NULL when idle */
    int64_t chunk_base_bytes; /* moved_bytes when the chunk began */
    int64_t chunk_est_bytes;
    double since_s; /* when the chunk or status began */
    RateMeter rate; /* of moved_bytes */
} WorkerSlot;

/* end_s < 0 while the phase runs; only the last phase may be running. */
typedef struct PhaseSpan {
    char *name;
    double start_s;
    double end_s;
} PhaseSpan;

typedef struct TableStat {
    char *name;
    int64_t rows;
    int64_t bytes;
    double seconds;
    double end_s; /* when progress_table_done was called */
} TableStat;

struct Progress {
    ProgressMode mode;
    int nworkers;
    WorkerSlot *workers;
    int *order; /* scratch for the display: which workers get a line */
    double created_s;

    pthread_mutex_t lock;
    pthread_cond_t wake;     /* display thread: stop now (monotonic clock) */
    pthread_cond_t unhidden; /* a log message finished printing */
    pthread_t thread;
    bool running;    /* display thread started and not yet stopped */
    bool stopping;   /* display thread must exit */
    bool hidden;     /* between the log hooks: log.c owns the terminal */
    int drawn_lines; /* display lines on screen; the cursor is just below */
    int *line_cols;  /* width of each, nworkers + 2 slots */
    StrBuf frame;

    int64_t total_bytes;
    int total_chunks;
    int64_t finished_est_bytes; /* est_bytes of ended chunks */
    int chunks_done;
    RateMeter rate; /* of done bytes */

    PhaseSpan *phases;
    int nphases, phases_cap;
    TableStat *tables;
    int ntables, tables_cap;
};

/* ---- text: UTF-8, display width, fitting ---- */

/* Decodes one UTF-8 sequence at s into *cp; returns its length (1..4), or
 * 0 if the bytes are not valid UTF-8 (overlong, surrogate, cut short).
 * Never reads past a NUL, which is not a continuation byte. */
static int utf8_decode(const unsigned char *s, uint32_t *cp)
{
    uint32_t c = s[0], min;
    int len;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, c &= 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, c &= 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

typedef struct CodeRange {
    uint32_t lo, hi;
} CodeRange;

static bool in_ranges(uint32_t cp, const CodeRange *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i].lo && cp <= r[i].hi)
            return true;
    return false;
}

/* Terminal columns of one code point: 0 for common combining marks and
 * zero-width characters, 2 for East Asian wide ranges and emoji, else 1.
 * Deliberately small (no locale, no full Unicode tables): enough to keep
 * names in Latin, Cyrillic, Greek, CJK and Hangul aligned. */
static int codepoint_width(uint32_t cp)
{
    static const CodeRange zero[] = {
        {0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF},
        {0x200B, 0x200F}, {0x20D0, 0x20FF}, {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F}, {0xFEFF, 0xFEFF},
    };
    static const CodeRange wide[] = {
        {0x1100, 0x115F},   {0x2E80, 0x303E},   {0x3041, 0x33FF},   {0x3400, 0x4DBF},
        {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},
        {0xFE30, 0xFE4F},   {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x1F300, 0x1F64F},
        {0x1F900, 0x1F9FF}, {0x20000, 0x2FFFD}, {0x30000, 0x3FFFD},
    };

    if (cp < 0x300)
        return 1;
    if (in_ranges(cp, zero, sizeof zero / sizeof zero[0]))
        return 0;
    if (in_ranges(cp, wide, sizeof wide / sizeof wide[0]))
        return 2;
    return 1;
}

/* Length and width of the character at s (invalid bytes: one column). */
static int char_at(const char *s, int *width)
{
    uint32_t cp;
    int len = utf8_decode((const unsigned char *)s, &cp);

    if (len == 0) {
        *width = 1;
        return 1;
    }
    *width = codepoint_width(cp);
    return len;
}

static int text_width(const char *s)
{
    int total = 0, w;

    while (*s) {
        s += char_at(s, &w);
        total += w;
    }
    return total;
}

/* A copy of s safe to print on a terminal: control characters (C0, DEL,
 * C1, which includes the 8-bit CSI) and invalid UTF-8 become '?', so a
 * table named "a\nb" or "\033[2J" cannot break lines or drive the
 * terminal.  The caller frees the result. */
static char *display_copy(const char *s)
{
    char *out = xmalloc(strlen(s) + 1), *o = out; /* never longer: '?' replaces >= 1 byte */

    while (*s) {
        uint32_t cp;
        int len = utf8_decode((const unsigned char *)s, &cp);

        if (len == 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
            *o++ = '?';
            s += len ? len : 1;
        } else {
            memcpy(o, s, (size_t)len);
            o += len;
            s += len;
        }
    }
    *o = '\0';
    return out;
}

static void append_spaces(StrBuf *sb, int n)
{
    for (int i = 0; i < n; i++)
        strbuf_append_len(sb, " ", 1);
}

/* Appends s cut to at most width columns (ending in "..." when cut and
 * there is room for it); returns the columns used. */
static int append_fit(StrBuf *sb, const char *s, int width)
{
    int used = 0, keep, w, len;

    if (width <= 0)
        return 0;
    if (text_width(s) <= width) {
        strbuf_append(sb, s);
        return text_width(s);
    }
    keep = width >= 4 ? width - 3 : width;
    while (*s) {
        len = char_at(s, &w);
        if (used + w > keep)
            break;
        strbuf_append_len(sb, s, (size_t)len);
        used += w;
        s += len;
    }
    if (width >= 4) {
        strbuf_append(sb, "...");
        used += 3;
    }
    return used;
}

/* ---- rates ---- */

static void rate_sample(RateMeter *m, double t, int64_t bytes)
{
    int last = (m->head + RATE_SAMPLES - 1) % RATE_SAMPLES;

    if (m->count > 0 && t - m->t[last] < RATE_MIN_GAP_S)
        return;
    m->t[m->head] = t;
    m->bytes[m->head] = bytes;
    m->head = (m->head + 1) % RATE_SAMPLES;
    if (m->count < RATE_SAMPLES)
        m->count++;
}

/* Bytes per second over the window; 0 with fewer than two samples. */
static double rate_get(const RateMeter *m)
{
    int newest = (m->head + RATE_SAMPLES - 1) % RATE_SAMPLES;
    int oldest = newest;

    for (int age = 1; age < m->count; age++) {
        int i = (newest + RATE_SAMPLES - age) % RATE_SAMPLES;

        if (m->t[newest] - m->t[i] > RATE_WINDOW_S && oldest != newest)
            break;
        oldest = i;
    }
    /* done bytes can go down (a chunk given up): show 0, not a negative rate */
    if (oldest == newest || m->t[newest] <= m->t[oldest] || m->bytes[newest] <= m->bytes[oldest])
        return 0.0;
    return (double)(m->bytes[newest] - m->bytes[oldest]) / (m->t[newest] - m->t[oldest]);
}

/* ---- counters (all *_locked functions need Progress.lock) ---- */

static int64_t worker_chunk_moved(WorkerSlot *wk)
{
    return atomic_load_explicit(&wk->moved_bytes, memory_order_relaxed) - wk->chunk_base_bytes;
}

static int64_t done_bytes_locked(Progress *p)
{
    int64_t done = p->finished_est_bytes;

    for (int w = 0; w < p->nworkers; w++) {
        WorkerSlot *wk = &p->workers[w];
        int64_t moved;

        if (wk->state != WORKER_CHUNK)
            continue;
        moved = worker_chunk_moved(wk);
        done += moved < wk->chunk_est_bytes ? moved : wk->chunk_est_bytes;
    }
    if (p->total_bytes > 0 && done > p->total_bytes)
        done = p->total_bytes;
    return done < 0 ? 0 : done;
}

/* Percent done, by bytes when a byte total is known, else by chunks;
 * rounded down to 0.1 so "100.0%" means really done. */
static double percent_locked(Progress *p, int64_t done)
{
    double frac;
    long tenths;

    if (p->total_bytes > 0)
        frac = (double)done / (double)p->total_bytes;
    else if (p->total_chunks > 0)
        frac = (double)p->chunks_done / (double)p->total_chunks;
    else
        return 0.0;
    tenths = (long)(frac * 1000.0); /* truncation: rounds down, no libm */
    return tenths < 0 ? 0.0 : tenths > 1000 ? 100.0 : (double)tenths / 10.0;
}

/* Totals are set and not everything is done yet: only then is there a bar
 * to show (after the copy, the indexes phase must not read "100%"). */
static bool copy_pending_locked(Progress *p)
{
    if (p->total_chunks > 0)
        return p->chunks_done < p->total_chunks;
    return p->total_bytes > 0 && done_bytes_locked(p) < p->total_bytes;
}

static void sample_locked(Progress *p, double t)
{
    for (int w = 0; w < p->nworkers; w++)
        rate_sample(&p->workers[w].rate, t,
                    atomic_load_explicit(&p->workers[w].moved_bytes, memory_order_relaxed));
    rate_sample(&p->rate, t, done_bytes_locked(p));
}

static PhaseSpan *current_phase_locked(Progress *p)
{
    if (p->nphases > 0 && p->phases[p->nphases - 1].end_s < 0)
        return &p->phases[p->nphases - 1];
    return NULL;
}

/* ---- the live display ---- */

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;

    return (x > y) - (x < y);
}

static void terminal_size(int *cols, int *rows)
{
    struct winsize ws;

    *cols = DEFAULT_COLS;
    *rows = DEFAULT_ROWS;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0) {
        if (ws.ws_col > 0)
            *cols = ws.ws_col;
        if (ws.ws_row > 0)
            *rows = ws.ws_row;
    }
}

/* "  w3  public.orders 3/8     412 MB  85.2 MB/s" */
static void render_worker(WorkerSlot *wk, int w, int num_cols, int label_cols, double t,
                          StrBuf *line)
{
    char a[32], b[32];

    strbuf_appendf(line, "  w%-*d  ", num_cols, w + 1);
    if (wk->state == WORKER_IDLE) {
        strbuf_append(line, "idle");
        return;
    }
    append_spaces(line, label_cols - append_fit(line, wk->label, label_cols));
    if (wk->state == WORKER_CHUNK) {
        size_format_bytes(worker_chunk_moved(wk), a, sizeof a);
        size_format_bytes((int64_t)rate_get(&wk->rate), b, sizeof b);
        strbuf_appendf(line, "  %8s  %7s/s", a, b);
    } else {
        strbuf_appendf(line, "  %8s", size_format_seconds(t - wk->since_s, a, sizeof a));
    }
}

/* The pieces after the bar, in display order; when the terminal is too
 * narrow the highest "drop" goes first (chunks, rate, bytes), so percent
 * and ETA stay longest. */
typedef struct OverallPiece {
    char text[64];
    int drop;
} OverallPiece;

static int overall_pieces(Progress *p, int64_t done, double pct, OverallPiece *pc)
{
    double rate = rate_get(&p->rate), eta_s;
    char a[32], b[32];
    int n = 0;

    snprintf(pc[n].text, sizeof pc[n].text, "  %5.1f%%", pct);
    pc[n++].drop = 0;
    if (p->total_bytes > 0) {
        eta_s = done >= p->total_bytes ? 0 : rate > 0 ? (double)(p->total_bytes - done) / rate : -1;
        snprintf(pc[n].text, sizeof pc[n].text, "  %s / %s", size_format_bytes(done, a, sizeof a),
                 size_format_bytes(p->total_bytes, b, sizeof b));
        pc[n++].drop = 2;
        snprintf(pc[n].text, sizeof pc[n].text, "  %s/s",
                 size_format_bytes((int64_t)rate, a, sizeof a));
        pc[n++].drop = 3;
        snprintf(pc[n].text, sizeof pc[n].text, "  ETA %s",
                 size_format_seconds(eta_s, a, sizeof a));
        pc[n++].drop = 1;
    }
    if (p->total_chunks > 0) {
        snprintf(pc[n].text, sizeof pc[n].text, "  %d/%d chunks", p->chunks_done, p->total_chunks);
        pc[n++].drop = 4;
    }
    return n;
}

/* "  data  [#####.....]  42.1%  1.23 GB / 2.92 GB  85.2 MB/s  ETA 0:20  12/40 chunks",
 * what fits of it in cols - 1; with no copy pending the phase and its elapsed time. */
static void render_overall(Progress *p, int cols, double t, StrBuf *line)
{
    PhaseSpan *ph = current_phase_locked(p);
    int64_t done = done_bytes_locked(p);
    double pct = percent_locked(p, done);
    OverallPiece pc[5];
    int n, room, used = 0, bar, worst;
    char a[32];

    strbuf_append(line, "  ");
    strbuf_append(line, ph ? ph->name : "elapsed");
    if (!copy_pending_locked(p)) {
        strbuf_appendf(line, "  %s",
                       size_format_seconds(t - (ph ? ph->start_s : p->created_s), a, sizeof a));
        return;
    }
    n = overall_pieces(p, done, pct, pc);
    room = cols - 1 - text_width(line->data);
    for (int i = 0; i < n; i++)
        used += (int)strlen(pc[i].text);
    while (used > room) { /* drop the least useful piece still shown */
        worst = 0;
        for (int i = 1; i < n; i++)
            worst = pc[i].drop > pc[worst].drop ? i : worst;
        if (pc[worst].drop == 0)
            break;
        used -= (int)strlen(pc[worst].text);
        pc[worst].text[0] = '\0';
        pc[worst].drop = 0;
    }
    bar = room - used - 4 > BAR_MAX_COLS ? BAR_MAX_COLS : room - used - 4;
    if (bar >= 5) {
        strbuf_append(line, "  [");
        for (int i = 0; i < bar; i++)
            strbuf_append_len(line, i < (int)(pct * bar / 100.0) ? "#" : ".", 1);
        strbuf_append(line, "]");
    }
    for (int i = 0; i < n; i++)
        strbuf_append(line, pc[i].text);
}

/* One display line into the frame, cut to the terminal width less one
 * column so it never wraps (a wrapped line would break "cursor up N"). */
static void frame_line(Progress *p, const StrBuf *line, int cols)
{
    strbuf_append(&p->frame, "\r");
    p->line_cols[p->drawn_lines++] = append_fit(&p->frame, line->data, cols - 1);
    strbuf_append(&p->frame, ESC_CLEAR_EOL "\n");
}

/* Rows the frame on screen takes up now.  Its lines fitted the width they
 * were drawn at; if the terminal has since narrowed, one that reflows
 * (tmux, VTE, iTerm2, kitty, Windows Terminal) wraps the longer ones. */
static int drawn_rows_locked(Progress *p, int cols)
{
    int rows = 0;

    for (int i = 0; i < p->drawn_lines; i++)
        rows += p->line_cols[i] <= cols ? 1 : (p->line_cols[i] + cols - 1) / cols;
    return rows;
}

/* Which workers get a line, in slot order: all of them if they fit, else
 * busy ones first.  Fills order[]; returns how many. */
static int pick_workers_locked(Progress *p, int max, int *order)
{
    int n = 0;

    if (max >= p->nworkers) {
        for (int w = 0; w < p->nworkers; w++)
            order[n++] = w;
        return n;
    }
    for (int w = 0; w < p->nworkers && n < max; w++)
        if (p->workers[w].state != WORKER_IDLE)
            order[n++] = w;
    for (int w = 0; w < p->nworkers && n < max; w++)
        if (p->workers[w].state == WORKER_IDLE)
            order[n++] = w;
    qsort(order, (size_t)n, sizeof *order, cmp_int);
    return n;
}

/* Worker lines (as many as fit the terminal's height), then the overall
 * line, appended to p->frame and counted in p->drawn_lines. */
static void render_frame_locked(Progress *p, double t, int cols, int rows)
{
    int max_lines, shown, num_cols, label_cols = 4;
    StrBuf line;

    max_lines = rows > 2 ? rows - 1 : 1;
    shown = pick_workers_locked(p, p->nworkers + 1 <= max_lines ? p->nworkers : max_lines - 2,
                                p->order);
    num_cols = snprintf(NULL, 0, "%d", p->nworkers);
    for (int i = 0; i < shown; i++) {
        const WorkerSlot *wk = &p->workers[p->order[i]];
        int lw = wk->state == WORKER_IDLE ? 0 : text_width(wk->label);

        label_cols = lw > label_cols ? lw : label_cols;
    }
    if (label_cols > cols - 1 - (num_cols + 5) - WORKER_NUM_COLS)
        label_cols = cols - 1 - (num_cols + 5) - WORKER_NUM_COLS;
    if (label_cols < 4)
        label_cols = 4;
    strbuf_init(&line);
    for (int i = 0; i < shown; i++) {
        strbuf_reset(&line);
        render_worker(&p->workers[p->order[i]], p->order[i], num_cols, label_cols, t, &line);
        frame_line(p, &line, cols);
    }
    if (shown < p->nworkers && max_lines >= 2) {
        strbuf_reset(&line);
        strbuf_appendf(&line, "  ... and %d more workers", p->nworkers - shown);
        frame_line(p, &line, cols);
    }
    strbuf_reset(&line);
    render_overall(p, cols, t, &line);
    frame_line(p, &line, cols);
    strbuf_free(&line);
}

/* Redraws in place: up to the first line of the previous frame, overwrite
 * each line, clear whatever is left below.  One write, so no flicker. */
static void draw_locked(Progress *p, double t)
{
    int cols, rows, up;

    terminal_size(&cols, &rows);
    up = drawn_rows_locked(p, cols);
    strbuf_reset(&p->frame);
    if (up > 0)
        strbuf_appendf(&p->frame, "\033[%dA", up);
    p->drawn_lines = 0;
    render_frame_locked(p, t, cols, rows);
    strbuf_append(&p->frame, ESC_CLEAR_BELOW);
    fwrite(p->frame.data, 1, p->frame.len, stderr);
    fflush(stderr);
}

/* Clears the frame line by line and leaves the cursor where it began.
 * Not "clear to end of screen" from its first line: tmux takes that, at
 * the top-left corner, as a full clear and copies the frame into the
 * scrollback. */
static void erase_locked(Progress *p)
{
    int cols, rows, up;

    terminal_size(&cols, &rows);
    up = drawn_rows_locked(p, cols);
    if (up > 0) {
        strbuf_reset(&p->frame);
        strbuf_appendf(&p->frame, "\033[%dA\r", up);
        for (int i = 0; i < up; i++)
            strbuf_append(&p->frame, i + 1 < up ? "\033[2K\033[B" : "\033[2K");
        if (up > 1)
            strbuf_appendf(&p->frame, "\033[%dA", up - 1);
        fwrite(p->frame.data, 1, p->frame.len, stderr);
        fflush(stderr);
    }
    p->drawn_lines = 0;
}

static void hook_before_log(void *arg)
{
    Progress *p = arg;

    pthread_mutex_lock(&p->lock);
    if (p->running) {
        erase_locked(p);
        p->hidden = true;
    }
    pthread_mutex_unlock(&p->lock);
}

static void hook_after_log(void *arg)
{
    Progress *p = arg;

    pthread_mutex_lock(&p->lock);
    if (p->hidden) {
        p->hidden = false;
        if (!p->stopping)
            draw_locked(p, clock_now_s());
        pthread_cond_broadcast(&p->unhidden);
    }
    pthread_mutex_unlock(&p->lock);
}

static void *display_main(void *arg)
{
    Progress *p = arg;

    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        struct timespec deadline;
        double t = clock_now_s();

        sample_locked(p, t);
        if (!p->hidden)
            draw_locked(p, t);
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += TICK_MS * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (!p->stopping && pthread_cond_timedwait(&p->wake, &p->lock, &deadline) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- public: lifecycle ---- */

Progress *progress_create(ProgressMode mode, int nworkers)
{
    Progress *p = xcalloc(1, sizeof *p);
    pthread_condattr_t attr;

    p->mode = mode;
    p->nworkers = nworkers > 0 ? nworkers : 0;
    p->workers = xcalloc((size_t)p->nworkers, sizeof *p->workers);
    p->order = xcalloc((size_t)p->nworkers, sizeof *p->order);
    p->line_cols = xcalloc((size_t)p->nworkers + 2, sizeof *p->line_cols);
    for (int w = 0; w < p->nworkers; w++)
        atomic_init(&p->workers[w].moved_bytes, 0);
    p->created_s = clock_now_s();
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&p->unhidden, NULL);
    strbuf_init(&p->frame);
    return p;
}

void progress_destroy(Progress *p)
{
    if (p == NULL)
        return;
    progress_stop(p);
    for (int w = 0; w < p->nworkers; w++)
        free(p->workers[w].label);
    for (int i = 0; i < p->nphases; i++)
        free(p->phases[i].name);
    for (int i = 0; i < p->ntables; i++)
        free(p->tables[i].name);
    free(p->workers);
    free(p->order);
    free(p->line_cols);
    free(p->phases);
    free(p->tables);
    strbuf_free(&p->frame);
    pthread_cond_destroy(&p->unhidden);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Hooks into the log first (from then on a message erases the display
 * before it prints), draws the first frame at once so the display is
 * there when this returns, then leaves redrawing to the thread. */
void progress_start(Progress *p)
{
    int err;

    if (p == NULL || p->mode != PROGRESS_TTY)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->running) {
        pthread_mutex_unlock(&p->lock);
        return;
    }
    p->running = true;
    p->stopping = false;
    p->hidden = false;
    p->drawn_lines = 0;
    pthread_mutex_unlock(&p->lock);
    log_set_hooks(hook_before_log, hook_after_log, p);

    pthread_mutex_lock(&p->lock);
    sample_locked(p, clock_now_s());
    if (!p->hidden)
        draw_locked(p, clock_now_s());
    err = pthread_create(&p->thread, NULL, display_main, p);
    if (err != 0) {
        while (p->hidden)
            pthread_cond_wait(&p->unhidden, &p->lock);
        erase_locked(p);
        p->running = false;
    }
    pthread_mutex_unlock(&p->lock);
    if (err != 0) {
        log_set_hooks(NULL, NULL, NULL);
        log_warning("could not start the progress display: %s", strerror(err));
    }
}

/* Stops the thread (it wakes at once) and erases the display; if the copy
 * is unfinished (interrupted), its overall line stays in the scrollback. */
void progress_stop(Progress *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    if (!p->running || p->stopping) {
        pthread_mutex_unlock(&p->lock);
        return;
    }
    p->stopping = true;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);

    pthread_mutex_lock(&p->lock);
    while (p->hidden) /* a log message is printing: let it finish */
        pthread_cond_wait(&p->unhidden, &p->lock);
    erase_locked(p);
    if (copy_pending_locked(p)) {
        int cols, rows;
        StrBuf line;

        terminal_size(&cols, &rows);
        strbuf_init(&line);
        render_overall(p, cols, clock_now_s(), &line);
        strbuf_reset(&p->frame);
        frame_line(p, &line, cols);
        fwrite(p->frame.data, 1, p->frame.len, stderr);
        fflush(stderr);
        strbuf_free(&line);
        p->drawn_lines = 0; /* that line stays */
    }
    p->running = false;
    pthread_mutex_unlock(&p->lock);
    log_set_hooks(NULL, NULL, NULL);
}

/* ---- public: phases, totals, workers, tables ---- */

/* Ends the running phase, if any; returns its name (caller frees) and
 * duration for the log line, or NULL. */
static char *end_phase_locked(Progress *p, double t, double *seconds)
{
    PhaseSpan *ph = current_phase_locked(p);

    if (ph == NULL)
        return NULL;
    ph->end_s = t;
    *seconds = t - ph->start_s;
    return xstrdup(ph->name);
}

static void log_phase_end(Progress *p, char *ended, double seconds)
{
    if (ended != NULL && p->mode != PROGRESS_QUIET)
        log_info("phase %s done in %.1f s", ended, seconds);
    free(ended);
}

void progress_phase_begin(Progress *p, const char *phase)
{
    double t = clock_now_s(), seconds = 0;
    char *ended, *name;

    if (p == NULL)
        return;
    name = display_copy(phase ? phase : "?");
    pthread_mutex_lock(&p->lock);
    ended = end_phase_locked(p, t, &seconds);
    if (p->nphases == p->phases_cap) {
        p->phases_cap = p->phases_cap ? 2 * p->phases_cap : 8;
        p->phases = xrealloc(p->phases, (size_t)p->phases_cap * sizeof *p->phases);
    }
    p->phases[p->nphases++] = (PhaseSpan){.name = name, .start_s = t, .end_s = -1};
    pthread_mutex_unlock(&p->lock);

    log_phase_end(p, ended, seconds);
    if (p->mode == PROGRESS_PLAIN)
        log_info("phase %s ...", name);
}

void progress_phase_end(Progress *p)
{
    double seconds = 0;
    char *ended;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    ended = end_phase_locked(p, clock_now_s(), &seconds);
    pthread_mutex_unlock(&p->lock);
    log_phase_end(p, ended, seconds);
}

void progress_set_total(Progress *p, int64_t total_bytes, int total_chunks)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->total_bytes = total_bytes > 0 ? total_bytes : 0;
    p->total_chunks = total_chunks > 0 ? total_chunks : 0;
    pthread_mutex_unlock(&p->lock);
}

/* Puts a worker in a new state, taking label (already a display_copy;
 * NULL = idle).  A chunk still in flight is dropped (its moved bytes stop
 * counting): that is a chunk given up, to be redone. */
static void worker_set_locked(WorkerSlot *wk, WorkerState state, char *label, int64_t est)
{
    free(wk->label);
    wk->label = label;
    wk->state = label ? state : WORKER_IDLE;
    wk->chunk_base_bytes = atomic_load_explicit(&wk->moved_bytes, memory_order_relaxed);
    wk->chunk_est_bytes = est > 0 ? est : 0;
    wk->since_s = clock_now_s();
}

static void worker_set(Progress *p, int w, WorkerState state, const char *label, int64_t est)
{
    char *copy;

    if (p == NULL || w < 0 || w >= p->nworkers)
        return;
    copy = label ? display_copy(label) : NULL;
    pthread_mutex_lock(&p->lock);
    worker_set_locked(&p->workers[w], state, copy, est);
    pthread_mutex_unlock(&p->lock);
}

void progress_worker_begin(Progress *p, int w, const char *label, int64_t est_bytes)
{
    worker_set(p, w, WORKER_CHUNK, label ? label : "?", est_bytes);
}

void progress_worker_add(Progress *p, int w, int64_t bytes)
{
    if (p == NULL || w < 0 || w >= p->nworkers || bytes <= 0)
        return;
    atomic_fetch_add_explicit(&p->workers[w].moved_bytes, bytes, memory_order_relaxed);
}

/* One critical section, so no frame counts the chunk both as finished and
 * in flight.  rows are not kept per chunk: progress_table_done has them
 * per table. */
void progress_worker_end(Progress *p, int w, int64_t rows)
{
    WorkerSlot *wk;

    (void)rows;
    if (p == NULL || w < 0 || w >= p->nworkers)
        return;
    wk = &p->workers[w];
    pthread_mutex_lock(&p->lock);
    if (wk->state == WORKER_CHUNK) {
        p->finished_est_bytes += wk->chunk_est_bytes;
        p->chunks_done++;
        worker_set_locked(wk, WORKER_IDLE, NULL, 0);
    }
    pthread_mutex_unlock(&p->lock);
}

void progress_worker_status(Progress *p, int w, const char *label)
{
    worker_set(p, w, WORKER_STATUS, label, 0);
}

void progress_table_done(Progress *p, const char *table, int64_t rows, int64_t bytes,
                         double seconds)
{
    char *name;
    char a[32], b[32];

    if (p == NULL)
        return;
    name = display_copy(table ? table : "?");
    pthread_mutex_lock(&p->lock);
    if (p->ntables == p->tables_cap) {
        p->tables_cap = p->tables_cap ? 2 * p->tables_cap : 64;
        p->tables = xrealloc(p->tables, (size_t)p->tables_cap * sizeof *p->tables);
    }
    p->tables[p->ntables++] = (TableStat){
        .name = name, .rows = rows, .bytes = bytes, .seconds = seconds, .end_s = clock_now_s()};
    pthread_mutex_unlock(&p->lock);

    if (p->mode == PROGRESS_PLAIN)
        log_info(
            "[copy %s] %lld rows, %s in %.1f s (%s/s)", name, (long long)rows,
            size_format_bytes(bytes, a, sizeof a), seconds,
            size_format_bytes(seconds > 0 ? (int64_t)((double)bytes / seconds) : 0, b, sizeof b));
}

void progress_get_snapshot(Progress *p, ProgressSnapshot *out)
{
    memset(out, 0, sizeof *out);
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    sample_locked(p, clock_now_s());
    out->done_bytes = done_bytes_locked(p);
    out->total_bytes = p->total_bytes;
    for (int w = 0; w < p->nworkers; w++)
        out->moved_bytes += atomic_load_explicit(&p->workers[w].moved_bytes, memory_order_relaxed);
    out->chunks_done = p->chunks_done;
    out->total_chunks = p->total_chunks;
    out->percent = percent_locked(p, out->done_bytes);
    out->rate_bytes_per_s = rate_get(&p->rate);
    pthread_mutex_unlock(&p->lock);
}

/* ---- summary ---- */

/* An aligned text table: column 0 (names, any UTF-8) left-aligned and at
 * most NAME_MAX_COLS wide (longer names overflow their row), the others
 * right-aligned, two spaces between columns. */
typedef enum { ROW_CELLS, ROW_RULE, ROW_NOTE } RowKind;

typedef struct TextRow {
    RowKind kind;
    char *cell[TABLE_MAX_COLS]; /* ROW_NOTE: cell[0] only; ROW_RULE: none */
} TextRow;

typedef struct TextTable {
    int ncols;
    int nrows, cap;
    TextRow *rows;
} TextTable;

static void tt_add(TextTable *t, RowKind kind, const char *const *cells)
{
    TextRow *r;

    if (t->nrows == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->rows = xrealloc(t->rows, (size_t)t->cap * sizeof *t->rows);
    }
    r = &t->rows[t->nrows++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    for (int c = 0; c < (kind == ROW_CELLS ? t->ncols : kind == ROW_NOTE ? 1 : 0); c++)
        r->cell[c] = xstrdup(cells[c]);
}

static void put_repeat(FILE *out, int ch, int n)
{
    for (int i = 0; i < n; i++)
        fputc(ch, out);
}

static void tt_print_row(const TextTable *t, const TextRow *r, const int *width, FILE *out)
{
    for (int c = 0; c < t->ncols && r->kind != ROW_NOTE; c++) {
        int pad = r->kind == ROW_CELLS ? width[c] - text_width(r->cell[c]) : 0;

        if (c > 0)
            fputs("  ", out);
        if (r->kind == ROW_RULE) {
            put_repeat(out, '-', width[c]);
        } else if (c == 0) {
            fputs(r->cell[c], out);
            put_repeat(out, ' ', pad);
        } else {
            put_repeat(out, ' ', pad);
            fputs(r->cell[c], out);
        }
    }
    if (r->kind == ROW_NOTE)
        fputs(r->cell[0], out);
    fputc('\n', out);
}

static void tt_print_and_free(TextTable *t, FILE *out)
{
    int width[TABLE_MAX_COLS] = {0};

    for (int i = 0; i < t->nrows; i++) {
        for (int c = 0; c < t->ncols && t->rows[i].kind == ROW_CELLS; c++) {
            int w = text_width(t->rows[i].cell[c]);

            if (w > width[c] && (c > 0 || w <= NAME_MAX_COLS))
                width[c] = w;
        }
    }
    for (int i = 0; i < t->nrows; i++) {
        tt_print_row(t, &t->rows[i], width, out);
        for (int c = 0; c < TABLE_MAX_COLS; c++)
            free(t->rows[i].cell[c]);
    }
    free(t->rows);
}

static void format_rate(int64_t bytes, double seconds, char *buf, size_t len)
{
    if (seconds > 0)
        snprintf(buf, len, "%.1f", (double)bytes / seconds / (1024.0 * 1024.0));
    else
        snprintf(buf, len, "-");
}

static void print_phases_locked(Progress *p, FILE *out, double t)
{
    TextTable tt = {.ncols = 2};
    double total = 0;
    char secs[32];

    tt_add(&tt, ROW_CELLS, (const char *[]){"phase", "seconds"});
    tt_add(&tt, ROW_RULE, NULL);
    for (int i = 0; i < p->nphases; i++) {
        const PhaseSpan *ph = &p->phases[i];
        double s = (ph->end_s < 0 ? t : ph->end_s) - ph->start_s;

        total += s;
        snprintf(secs, sizeof secs, "%.1f", s);
        tt_add(&tt, ROW_CELLS, (const char *[]){ph->name, secs});
    }
    tt_add(&tt, ROW_RULE, NULL);
    snprintf(secs, sizeof secs, "%.1f", total);
    tt_add(&tt, ROW_CELLS, (const char *[]){"total", secs});
    tt_print_and_free(&tt, out);
}

/* Longest seconds first; ties by name so the output is stable. */
static int cmp_table_seconds_desc(const void *a, const void *b)
{
    const TableStat *x = *(const TableStat *const *)a, *y = *(const TableStat *const *)b;

    if (x->seconds != y->seconds)
        return x->seconds > y->seconds ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void add_table_row(TextTable *tt, const char *name, int64_t rows, int64_t bytes,
                          double seconds)
{
    char r[32], b[32], s[32], mb[32];

    snprintf(r, sizeof r, "%lld", (long long)rows);
    size_format_bytes(bytes, b, sizeof b);
    snprintf(s, sizeof s, "%.1f", seconds);
    format_rate(bytes, seconds, mb, sizeof mb);
    tt_add(tt, ROW_CELLS, (const char *[]){name, r, b, s, mb});
}

/* The total row's seconds are wall-clock: from the earliest table start to
 * the latest table end, so tables copied in parallel are not summed. */
static void print_tables_locked(Progress *p, FILE *out, int max_tables)
{
    TextTable tt = {.ncols = 5};
    const TableStat **sorted = xmalloc((size_t)p->ntables * sizeof *sorted);
    int shown = max_tables > 0 && max_tables < p->ntables ? max_tables : p->ntables;
    int64_t rows = 0, bytes = 0;
    double first_s = 0, last_s = 0;
    char label[64];

    for (int i = 0; i < p->ntables; i++) {
        const TableStat *ts = &p->tables[i];

        sorted[i] = ts;
        rows += ts->rows;
        bytes += ts->bytes;
        if (i == 0 || ts->end_s - ts->seconds < first_s)
            first_s = ts->end_s - ts->seconds;
        if (i == 0 || ts->end_s > last_s)
            last_s = ts->end_s;
    }
    qsort(sorted, (size_t)p->ntables, sizeof *sorted, cmp_table_seconds_desc);
    tt_add(&tt, ROW_CELLS, (const char *[]){"table", "rows", "bytes", "seconds", "MB/s"});
    tt_add(&tt, ROW_RULE, NULL);
    for (int i = 0; i < shown; i++)
        add_table_row(&tt, sorted[i]->name, sorted[i]->rows, sorted[i]->bytes, sorted[i]->seconds);
    if (shown < p->ntables) {
        snprintf(label, sizeof label, "... and %d more", p->ntables - shown);
        tt_add(&tt, ROW_NOTE, (const char *[]){label});
    }
    tt_add(&tt, ROW_RULE, NULL);
    snprintf(label, sizeof label, "total (%d table%s)", p->ntables, p->ntables == 1 ? "" : "s");
    add_table_row(&tt, label, rows, bytes, last_s - first_s);
    tt_print_and_free(&tt, out);
    free(sorted);
}

/* max_tables <= 0 lists every table. */
void progress_print_summary(Progress *p, FILE *out, int max_tables)
{
    if (p == NULL || out == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->nphases > 0)
        print_phases_locked(p, out, clock_now_s());
    if (p->nphases > 0 && p->ntables > 0)
        fputc('\n', out);
    if (p->ntables > 0)
        print_tables_locked(p, out, max_tables);
    pthread_mutex_unlock(&p->lock);
    fflush(out);
}
