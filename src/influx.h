/*
 * influx.h — the InfluxDB sink: line protocol batches over libcurl multi, on the libev loop
 * (the curl "multi_socket" pattern of docs/examples/evhiperfifo.c).
 *
 * Lines are appended to the current batch; a batch is sent when it holds batch_lines lines,
 * when the next line would take it past batch_bytes bytes, or `linger` seconds after its
 * first line, whichever comes first. A single line longer than batch_bytes is refused
 * (influx_sink_write and the seam's check: -EINVAL), so no batch ever exceeds the bound. Two APIs:
 *   v2: POST {url}/api/v2/write?org=ORG&bucket=BUCKET&precision=ns, Authorization: Token T
 *   v1: POST {url}/write?db=DB&precision=ns (optional u/p via Basic auth, rp=)
 * Optional gzip (Content-Encoding: gzip). Responses:
 *   2xx                 done (ack callback per line token)
 *   429, 503            retry after Retry-After (seconds or HTTP date), else backoff
 *   other 5xx, timeout, connection error  retry with exponential backoff + jitter
 *   413                 split the batch in halves and retry each (a single line -> reject)
 *   400, 422            the server refused some line (a type conflict, a partial write): split
 *                       in halves and resend each, so that only the refused lines end up
 *                       rejected, one by one (lines the server had already stored are written
 *                       again: same series, time and value, which both servers keep once)
 *   401/403/404 and other 4xx  reject: reject callback with status and server message,
 *                       no retry
 * Batches waiting for retry are kept in order, bounded by queue_max_bytes (oldest dropped,
 * counted, logged). The token is never logged: it is also redacted ("***") from server
 * messages before they are logged or handed to the reject callback.
 *
 * Ordering: one request is in flight per sink, so batches are sent, acked and rejected in
 * the order their lines were written, also across retries and 413 splits. (At 10 packets/s
 * one request of up to 5000 lines is far more than enough; ordering matters more.)
 * While a retry delay runs nothing is sent, not even after influx_sink_flush().
 *
 * Callbacks run from the loop (never from inside influx_sink_write/flush). They may call
 * influx_sink_write/flush/get_stats, but must not call influx_sink_free.
 *
 * Ownership: influx_sink_new() returns an object owned by the caller (influx_sink_free()). All
 * config strings are copied. Lines are copied. The sink takes a reference on curl's global
 * state (curl_global_init) and drops it in influx_sink_free.
 */
#ifndef IIOTGW_INFLUX_H
#define IIOTGW_INFLUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "sink.h"

/* Defaults of a zero field, stated once: the sink applies them and the config table
 * (config.c) shows them as the options' defaults. Plain literals (stringified there). */
#define INFLUX_DEFAULT_API             2
#define INFLUX_DEFAULT_BATCH_LINES     5000
#define INFLUX_DEFAULT_BATCH_BYTES     4194304 /* 4 MiB, well below InfluxDB's 25 MB body cap */
#define INFLUX_DEFAULT_LINGER          1.0
#define INFLUX_DEFAULT_TIMEOUT         10.0
#define INFLUX_DEFAULT_QUEUE_MAX_BYTES 67108864 /* 64 MiB */
#define INFLUX_DEFAULT_BACKOFF_BASE    1.0
#define INFLUX_DEFAULT_BACKOFF_MAX     60.0

/* Zero fields take the defaults above. */
struct influx_config {
    const char *url;        /* base URL, e.g. http://127.0.0.1:8086 (required) */
    int api;                /* 2 (default) or 1 */
    const char *org;        /* v2 */
    const char *bucket;     /* v2 */
    const char *db;         /* v1 */
    const char *rp;         /* v1, optional */
    const char *token;      /* v2 token, or v1 "user:password"; never logged */
    size_t batch_lines;     /* default 5000 */
    size_t batch_bytes;     /* bound of one request body, default 4 MiB */
    double linger;          /* seconds, default 1.0 */
    bool gzip;              /* default false */
    double timeout;         /* per request, seconds, default 10 */
    size_t queue_max_bytes; /* pending batches bound, default 64 MiB */
    double backoff_base;    /* default 1 s */
    double backoff_max;     /* default 60 s */
};

struct influx_stats {
    uint64_t lines;          /* accepted by influx_sink_write */
    uint64_t lines_written;  /* acknowledged with 2xx */
    uint64_t lines_rejected; /* 4xx: handed to the reject callback */
    uint64_t lines_dropped;  /* dropped from a full queue */
    uint64_t batches;        /* requests that got a 2xx */
    uint64_t retries;        /* failed attempts that were scheduled again */
    uint64_t splits;         /* 413 and 400 splits */
    uint64_t lines_oversize; /* refused: longer than batch_bytes */
    size_t pending_lines;    /* accepted, not yet acknowledged or rejected */
    size_t pending_bytes; /* their bytes, each line + 1 (its '\n'); what queue_max_bytes bounds */
    int last_status;      /* last HTTP status (0 = transport error) */
};

/*
 * A batch the server refused for good. `lines` is '\n'-separated (no trailing '\n'),
 * `status` the HTTP status, `message` the server's response body (trimmed, at most 511
 * bytes, secrets redacted). All pointers are valid only during the call.
 */
typedef void (*influx_reject_cb)(void *ud, const char *lines, size_t len, long status,
                                 const char *message);
/* Every line of a 2xx batch, by the token given to influx_sink_write. */
typedef void (*influx_ack_cb)(void *ud, uint64_t token);

struct influx_sink;

/*
 * Create a sink on `loop`. cfg: url must be http:// or https://; api 2 needs org and bucket,
 * api 1 needs db; negative times are invalid. err/errlen (may be NULL/0) receive a message.
 * Returns 0 (*out set), -EINVAL (bad config; err set), -ENOMEM.
 */
int influx_sink_new(struct influx_sink **out, struct ev_loop *loop, const struct influx_config *cfg,
                    char *err, size_t errlen);
void influx_sink_set_callbacks(struct influx_sink *s, influx_ack_cb ack, influx_reject_cb reject,
                               void *ud);

/*
 * Optional (used by the spool): called with the token of every line of a batch the server
 * refused for good (the 4xx cases above), right after the reject callback, with the same ud
 * as influx_sink_set_callbacks. Such lines are never acked; this lets the caller release
 * them. Lines dropped from a full queue are not reported here. NULL = off.
 */
void influx_sink_set_release_cb(struct influx_sink *s, influx_ack_cb release);

/* Append one line (no '\n'). Returns 0, -EINVAL (empty or contains '\n'), -ENOMEM. */
int influx_sink_write(struct influx_sink *s, const char *line, size_t len, uint64_t token);

/* Send the current batch now instead of waiting for the linger timer (it is queued behind
 * earlier batches; a running retry delay is not cut short). */
void influx_sink_flush(struct influx_sink *s);

/* Lines not yet acknowledged or rejected. */
size_t influx_sink_pending(const struct influx_sink *s);

void influx_sink_get_stats(const struct influx_sink *s, struct influx_stats *out);

/*
 * The sink seam (sink.h) over this sink: a record is one line (ops->check: non-empty, no
 * '\n'); ops->healthy is false from a failed request until the next 2xx. While seam
 * callbacks are set they replace the callbacks above (a refused batch: reject, then release
 * per line). A NULL sink gives a struct sink with ops NULL. ops->free is influx_sink_free.
 */
struct sink influx_sink_as_sink(struct influx_sink *s);

/* Abort any request and free everything, including lines not yet sent (logged as a warning:
 * flush and run the loop until influx_sink_pending() == 0 first for a clean shutdown).
 * NULL is fine. */
void influx_sink_free(struct influx_sink *s);

#endif
