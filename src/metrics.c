/*
 * metrics.c — the /metrics and /healthz endpoint on libmicrohttpd, driven by libev.
 * See metrics.h.
 *
 * Why libmicrohttpd in "external epoll" mode rather than its own thread: the render callback
 * reads the gateway's counters, which the loop thread changes; on the loop thread there is
 * nothing to lock and every scrape sees one consistent state. MHD hands out one epoll
 * descriptor that becomes readable whenever any of its sockets (listener or connection) has
 * work; MHD_get_timeout() says when it must run at the latest (connection timeouts, data
 * already buffered).
 */
#include "metrics.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "log.h"
#include "util.h"

/* Scrapers are few; anything beyond this is refused by MHD at accept. */
#define METRICS_MAX_CONNECTIONS 16
/* Seconds an idle or slow connection may stay open. */
#define METRICS_CONN_TIMEOUT 10

struct metrics {
    struct ev_loop *loop;
    struct metrics_ops ops;
    struct MHD_Daemon *d;
    ev_io io;       /* MHD's epoll descriptor */
    ev_timer timer; /* MHD_get_timeout() */
    struct buf body;
};

static const char content_type[] = "text/plain; version=0.0.4; charset=utf-8";

/* Split HOST:PORT / [V6]:PORT and resolve it. Returns 0 or -EINVAL (message in err). */
static int metrics_resolve(const char *spec, struct addrinfo **res, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (!spec || !*spec) {
        snprintf(err, errlen, "metrics: empty address (expected ADDR:PORT, e.g. 127.0.0.1:9108)");
        return -EINVAL;
    }
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof host) {
            snprintf(err, errlen, "metrics: \"%s\": expected [IPV6]:PORT", spec);
            return -EINVAL;
        }
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host ||
            memchr(spec, ':', (size_t)(colon - spec))) {
            snprintf(err, errlen,
                     "metrics: \"%s\": expected ADDR:PORT (e.g. 127.0.0.1:9108, [::1]:9108)", spec);
            return -EINVAL;
        }
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 1 || p > 65535) {
        snprintf(err, errlen, "metrics: \"%s\": port must be a number in 1..65535", spec);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    int rc = getaddrinfo(host, port, &hints, res);
    if (rc) {
        snprintf(err, errlen, "metrics: \"%s\": %s", spec, gai_strerror(rc));
        return -EINVAL;
    }
    return 0;
}

int metrics_check_addr(const char *spec, char *err, size_t errlen)
{
    struct addrinfo *res = NULL;
    int rc = metrics_resolve(spec, &res, err, errlen);
    if (res)
        freeaddrinfo(res);
    return rc;
}

/* A fixed-text answer (404, 405, 503, healthz). */
static enum MHD_Result metrics_reply(struct MHD_Connection *c, unsigned status, const char *text,
                                     bool allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result metrics_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                          const char *method, const char *version,
                                          const char *upload_data, size_t *upload_data_size,
                                          void **req_cls)
{
    struct metrics *m = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    bool known = strcmp(url, "/metrics") == 0 || strcmp(url, "/healthz") == 0;
    if (!known)
        return metrics_reply(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /healthz\n", false);
    if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0)
        return metrics_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", true);
    if (strcmp(url, "/healthz") == 0) {
        bool ok = m->ops.ready && m->ops.ready(m->ops.ud);
        return metrics_reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                             ok ? "ok\n" : "not ready\n", false);
    }
    buf_clear(&m->body);
    if (m->ops.render(m->ops.ud, &m->body) || !m->body.p)
        return metrics_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", false);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(m->body.len, m->body.p, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* Let MHD work, then arm the timer for its next deadline. */
static void metrics_run(struct metrics *m)
{
    MHD_run(m->d);
    ev_timer_stop(m->loop, &m->timer);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(m->d, &ms) == MHD_YES) {
        ev_timer_set(&m->timer, (double)ms / 1000.0, 0.);
        ev_timer_start(m->loop, &m->timer);
    }
}

static void metrics_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    metrics_run(container_of(w, struct metrics, io));
}

static void metrics_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    metrics_run(container_of(w, struct metrics, timer));
}

static void metrics_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    char q[300];
    log_warn("metrics_http", "error=%s", log_quote(q, sizeof q, msg, n));
}

int metrics_open(struct metrics **out, struct ev_loop *loop, const char *spec,
                 const struct metrics_ops *ops, char *err, size_t errlen)
{
    *out = NULL;
    struct addrinfo *res = NULL;
    int rc = metrics_resolve(spec, &res, err, errlen);
    if (rc)
        return rc;
    struct metrics *m = calloc(1, sizeof *m);
    if (!m) {
        rc = -ENOMEM;
        goto fail;
    }
    m->loop = loop;
    m->ops = *ops;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (res->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* No MHD_OPTION_LISTENING_ADDRESS_REUSE: it means SO_REUSEPORT, with which a second
     * gateway on the same port would silently share the scrapes instead of failing. */
    errno = 0;
    m->d = MHD_start_daemon(flags, 0, NULL, NULL, metrics_on_request, m, MHD_OPTION_EXTERNAL_LOGGER,
                            metrics_on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, res->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONNECTIONS,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                            (unsigned)METRICS_MAX_CONNECTIONS / 2, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)METRICS_CONN_TIMEOUT, MHD_OPTION_END);
    if (!m->d) {
        int e = errno ? errno : EADDRINUSE;
        snprintf(err, errlen, "metrics: cannot listen on %s: %s", spec, strerror(e));
        rc = -e;
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info) {
        snprintf(err, errlen, "metrics: libmicrohttpd has no epoll descriptor");
        rc = -EINVAL;
        goto fail;
    }
    ev_io_init(&m->io, metrics_on_io, info->epoll_fd, EV_READ);
    ev_io_start(loop, &m->io);
    ev_init(&m->timer, metrics_on_timer);
    metrics_run(m);
    freeaddrinfo(res);
    log_info("metrics_listening", "addr=%s paths=/metrics,/healthz", spec);
    *out = m;
    return 0;
fail:
    freeaddrinfo(res);
    metrics_close(m);
    return rc;
}

void metrics_close(struct metrics *m)
{
    if (!m)
        return;
    if (m->d) {
        ev_io_stop(m->loop, &m->io);
        ev_timer_stop(m->loop, &m->timer);
        MHD_stop_daemon(m->d);
    }
    buf_free(&m->body);
    free(m);
}
