/*
 * metrics.h — the HTTP endpoint Prometheus scrapes (`--metrics ADDR:PORT`, off by default).
 *
 *   GET /metrics   the exposition text (Prometheus text format 0.0.4) its owner renders
 *   GET /healthz   200 "ok" while the owner says it is ready, 503 otherwise
 *   HEAD           as GET without the body; other methods 405 (with Allow), other paths 404
 *
 * The HTTP server is libmicrohttpd driven from the libev loop (MHD_USE_EPOLL without a
 * thread: an ev_io on MHD's epoll descriptor and an ev_timer from MHD_get_timeout() call
 * MHD_run()), so the counters are read on the loop thread between two callbacks — no
 * locking, and a consistent snapshot. MHD_run() never blocks; connections are limited in
 * number and time, so a slow or hostile client cannot stall the loop or take its memory.
 * This file knows nothing about the gateway's numbers: they come from the render callback
 * (gwstats.c writes them).
 *
 * Ownership: metrics_open() creates the endpoint, metrics_close() stops and frees it. Loop
 * thread only; the callbacks run inside MHD_run() on the loop thread.
 */
#ifndef IIOTGW_METRICS_H
#define IIOTGW_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "buf.h"

struct metrics;

struct metrics_ops {
    void *ud;
    /* Append the /metrics body to `out` (empty on entry). Returns 0 or -ENOMEM (answered 500). */
    int (*render)(void *ud, struct buf *out);
    /* True while /healthz should answer 200. */
    bool (*ready)(void *ud);
};

/*
 * Check an ADDR:PORT spec without binding: HOST:PORT, [IPV6]:PORT (HOST may be a name that
 * resolves). Returns 0, or -EINVAL with a message in err that quotes the spec.
 */
int metrics_check_addr(const char *spec, char *err, size_t errlen);

/*
 * Listen on `spec` and serve from `loop`. `ops` is copied. Returns 0, -EINVAL (bad spec) or
 * -EADDRINUSE / another negative errno (cannot listen) with a message in err, or -ENOMEM.
 */
int metrics_open(struct metrics **out, struct ev_loop *loop, const char *spec,
                 const struct metrics_ops *ops, char *err, size_t errlen);

/* Stop listening, close every connection, free. NULL is a no-op. */
void metrics_close(struct metrics *m);

#endif
