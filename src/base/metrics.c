/*
 * metrics.c: the metrics endpoint.
 */
#include "metrics.h"

#include "log.h"
#include "state.h"
#include "strbuf.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct Series {
    const char *name;
    const char *type;
    const char *help;
    size_t offset;
} Series;

#define M(f) offsetof(Metrics, f)

static const Series series[] = {
    {"pgrelocate_copy_bytes_total", "counter", "Bytes of rows copied by COPY in this run.",
     M(copy_bytes)},
    {"pgrelocate_copy_rows_total", "counter", "Rows copied in this run.", M(copy_rows)},
    {"pgrelocate_copy_chunks_done_total", "counter", "Chunks copied in this run.",
     M(copy_chunks_done)},
    {"pgrelocate_apply_transactions_total", "counter",
     "Source transactions committed on the target by this process.", M(apply_transactions)},
    {"pgrelocate_apply_rows_total", "counter", "Rows inserted, updated or deleted by apply.",
     M(apply_changes)},
    {"pgrelocate_apply_schema_changes_total", "counter",
     "Schema changes captured on the source and replayed on the target.", M(apply_schema_changes)},
    {"pgrelocate_replication_lag_bytes", "gauge",
     "Source WAL position minus what is durably applied on the target.", M(lag_bytes)},
    {"pgrelocate_source_retained_wal_bytes", "gauge",
     "WAL the replication slot keeps on the source (-1: unknown).", M(retained_wal_bytes)},
    {"pgrelocate_errors_total", "counter", "Errors logged by this process.", M(errors)},
};

char *metrics_render(const Metrics *m)
{
    StrBuf sb;
    char *out;
    int64_t phase = atomic_load(&m->phase);

    atomic_store((atomic_int_fast64_t *)&m->errors, log_error_count());
    strbuf_init(&sb);
    for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++) {
        const atomic_int_fast64_t *v =
            (const atomic_int_fast64_t *)((const char *)m + series[i].offset);

        strbuf_appendf(&sb, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", series[i].name, series[i].help,
                       series[i].name, series[i].type, series[i].name, (long long)atomic_load(v));
    }
    strbuf_append(&sb, "# HELP pgrelocate_phase The migration's phase (1 for the current one).\n"
                       "# TYPE pgrelocate_phase gauge\n");
    for (int p = PHASE_SCHEMA; p <= PHASE_LAST; p++)
        strbuf_appendf(&sb, "pgrelocate_phase{phase=\"%s\"} %d\n", state_phase_name((Phase)p),
                       p == phase);
    out = strbuf_detach(&sb);
    return out;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    const Metrics *m = cls;
    struct MHD_Response *r;
    enum MHD_Result ret;
    bool found = strcmp(url, "/metrics") == 0 || strcmp(url, "/") == 0;
    char *body;

    (void)version;
    (void)upload;
    (void)upload_size;
    (void)con_cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        found = false;
    body = found ? metrics_render(m) : xstrdup("not found: try /metrics\n");
    r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    ret = MHD_queue_response(c, found ? MHD_HTTP_OK : MHD_HTTP_NOT_FOUND, r);
    MHD_destroy_response(r);
    return ret;
}

/* "host:port" or "[v6]:port" -> resolved address. */
static bool parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    struct addrinfo hints = {.ai_flags = AI_NUMERICSERV, .ai_socktype = SOCK_STREAM}, *ai;
    size_t n;

    if (!colon || colon == listen || !colon[1])
        return false;
    n = (size_t)(colon - listen);
    if (listen[0] == '[' && n >= 2 && listen[n - 1] == ']') {
        listen++;
        n -= 2;
    }
    if (n >= sizeof(host))
        return false;
    memcpy(host, listen, n);
    host[n] = '\0';
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
        return false;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return true;
}

bool metrics_start(Metrics *m, const char *listen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

    if (!parse_listen(listen, &ss, &len)) {
        log_msg(LOG_ERROR, NULL, "Give an address and a port, e.g. 127.0.0.1:9187.",
                "invalid --metrics-listen \"%s\"", listen);
        return false;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    m->daemon = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                 MHD_OPTION_END);
    if (!m->daemon) {
        log_msg(LOG_ERROR, NULL, "Choose a free port, on an address of this machine.",
                "could not listen for metrics on %s", listen);
        return false;
    }
    log_info("[metrics] serving Prometheus metrics at http://%s/metrics", listen);
    return true;
}

void metrics_stop(Metrics *m)
{
    if (m->daemon)
        MHD_stop_daemon(m->daemon);
    m->daemon = NULL;
}
