/*
 * source_tcp.c — the tcp:HOST:PORT kind of source: a TCP server that streams the lines, in
 * practice an RTT server (OpenOCD `rtt server`, J-Link's port 19021) on the same machine.
 * Private to the source module (see source_int.h); the contract is source.h.
 *
 * Non-blocking connect: HOST is resolved on every connection attempt (addresses may change)
 * and each resolved address is tried in turn (localhost may be ::1 then 127.0.0.1) with a
 * SOCK_NONBLOCK socket. connect() returning EINPROGRESS is completed by an EV_WRITE watcher
 * reading SO_ERROR; the retry timer doubles as the connect timeout (a SYN into a black hole
 * would otherwise take minutes). When every address failed the source backs off. Connected
 * sockets get SO_KEEPALIVE; EOF or a read error means reconnect with backoff, forever, and
 * each successful reconnect counts as a restart.
 *
 * Caveat: getaddrinfo() is synchronous and is the one call in the source module that can
 * block the loop — for a HOST that is neither numeric nor in /etc/hosts, while DNS does not
 * answer. The intended targets are on localhost, answered from /etc/hosts.
 */
#include "log.h"
#include "source_int.h"
#include "util.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SOURCE_TCP_CONNECT_TIMEOUT 10.0 /* seconds for one address to answer */

struct source_tcp {
    struct source base; /* base.arg is the host */
    char *port;
    struct addrinfo *ai;      /* resolved list, kept while trying its entries */
    struct addrinfo *ai_next; /* next entry to try */
    bool connecting;          /* a non-blocking connect is in flight on base.fd */
};

static struct source_tcp *source_tcp_of(struct source *s)
{
    return container_of(s, struct source_tcp, base);
}

/* tcp:HOST:PORT, HOST may be [v6addr] */
static int source_tcp_parse(struct source_spec *sp, const char *spec, char *err, size_t errlen)
{
    const char *a = sp->arg, *colon;
    size_t n = sp->arg_len;
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close || close[1] != ':')
            return source_spec_error(err, errlen, spec, "expected tcp:[IPV6]:PORT");
        sp->arg = a + 1;
        sp->arg_len = (size_t)(close - a - 1);
        colon = close + 1;
    } else {
        colon = strrchr(a, ':');
        if (!colon)
            return source_spec_error(err, errlen, spec, "expected tcp:HOST:PORT");
        sp->arg_len = (size_t)(colon - a);
        if (memchr(a, ':', sp->arg_len))
            return source_spec_error(err, errlen, spec,
                                     "IPv6 addresses need brackets, e.g. tcp:[::1]:9090");
    }
    if (sp->arg_len == 0)
        return source_spec_error(err, errlen, spec, "empty host (expected tcp:HOST:PORT)");
    sp->opt = colon + 1;
    sp->opt_len = strlen(sp->opt);
    bool digits = source_all_digits(sp->opt, sp->opt_len) && sp->opt_len <= 5;
    long port = digits ? source_parse_num(sp->opt, sp->opt_len) : 0;
    if (port < 1 || port > 65535)
        return source_spec_error(err, errlen, spec, "port \"%s\" is not a number in 1..65535",
                                 sp->opt);
    return 0;
}

static int source_tcp_init(struct source *s, const struct source_spec *sp,
                           const struct source_config *cfg)
{
    (void)cfg;
    struct source_tcp *t = source_tcp_of(s);
    t->port = source_strndup(sp->opt, sp->opt_len);
    return t->port ? 0 : -ENOMEM;
}

static void source_tcp_forget_addrs(struct source_tcp *t)
{
    freeaddrinfo(t->ai);
    t->ai = t->ai_next = NULL;
}

static void source_tcp_try(struct source *s);

/* One address failed (refused, timed out): try the next one, or back off when none is left. */
static void source_tcp_attempt_failed(struct source_tcp *t, int err)
{
    struct source *s = &t->base;
    ev_timer_stop(s->loop, &s->retry);
    source_close_data(s);
    if (t->ai_next) {
        source_tcp_try(s);
        return;
    }
    source_tcp_forget_addrs(t);
    source_live_retry(s, err, "connect");
}

static void source_tcp_connected(struct source_tcp *t)
{
    struct source *s = &t->base;
    t->connecting = false;
    ev_timer_stop(s->loop, &s->retry);
    ev_io_stop(s->loop, &s->io);
    ev_io_init(&s->io, source_live_io_cb, s->fd, EV_READ);
    ev_io_start(s->loop, &s->io);
    source_tcp_forget_addrs(t); /* resolve again next time: addresses may change */
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    bool again = s->ever_up;
    source_live_up(s);
    log_info("source_up", "source=%s host=%s port=%s reconnected=%d", s->name, log_q(s->arg),
             log_q(t->port), again);
}

static void source_tcp_connect_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct source *s = container_of(w, struct source, io);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr == 0)
        source_tcp_connected(source_tcp_of(s));
    else
        source_tcp_attempt_failed(source_tcp_of(s), soerr);
}

/* Resolve (when no list is pending) and try the remaining addresses in order. */
static void source_tcp_try(struct source *s)
{
    struct source_tcp *t = source_tcp_of(s);
    int err = 0;
    if (!t->ai) {
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int g = getaddrinfo(s->arg, t->port, &hints, &t->ai);
        if (g != 0) {
            t->ai = NULL;
            /* getaddrinfo codes are negative, so they never equal an errno in last_err */
            if (g != s->last_err) {
                char qh[256], qe[128];
                log_warn("source_resolve_failed", "source=%s host=%s err=%s", s->name,
                         log_quote(qh, sizeof qh, s->arg, (size_t)-1),
                         log_quote(qe, sizeof qe, gai_strerror(g), (size_t)-1));
            }
            s->last_err = g;
            source_close_data(s);
            source_start_retry(s, backoff_next(&s->bo, util_mono()));
            return;
        }
        t->ai_next = t->ai;
    }
    while (t->ai_next) {
        struct addrinfo *a = t->ai_next;
        t->ai_next = a->ai_next;
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        s->fd = fd;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            source_tcp_connected(t);
            return;
        }
        if (errno == EINPROGRESS) {
            t->connecting = true;
            ev_io_init(&s->io, source_tcp_connect_cb, fd, EV_WRITE);
            ev_io_start(s->loop, &s->io);
            source_start_retry(s, SOURCE_TCP_CONNECT_TIMEOUT);
            return;
        }
        err = errno;
        source_close_data(s);
    }
    source_tcp_forget_addrs(t);
    source_live_retry(s, err, "connect");
}

static int source_tcp_start(struct source *s, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    source_tcp_try(s);
    return 0;
}

/* The retry timer: the connect timeout while connecting, else the backoff delay. */
static void source_tcp_retry(struct source *s)
{
    struct source_tcp *t = source_tcp_of(s);
    if (t->connecting)
        source_tcp_attempt_failed(t, ETIMEDOUT);
    else
        source_tcp_try(s);
}

static void source_tcp_before_close(struct source *s)
{
    source_tcp_of(s)->connecting = false;
}

static void source_tcp_stop(struct source *s)
{
    source_tcp_forget_addrs(source_tcp_of(s));
}

static void source_tcp_release(struct source *s)
{
    struct source_tcp *t = source_tcp_of(s);
    source_tcp_forget_addrs(t);
    free(t->port);
    t->port = NULL;
}

const struct source_kind_ops source_tcp_ops = {
    .name = "tcp",
    .kind = SOURCE_TCP,
    .size = sizeof(struct source_tcp),
    .parse = source_tcp_parse,
    .init = source_tcp_init,
    .start = source_tcp_start,
    .retry = source_tcp_retry,
    .before_close = source_tcp_before_close,
    .stop = source_tcp_stop,
    .release = source_tcp_release,
};
