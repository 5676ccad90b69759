/*
 * influx.c — the InfluxDB sink: line protocol batches over libcurl multi on the libev loop.
 *
 * Why: the prototype did one blocking HTTP write per point and lost everything while the
 * server was down. Here lines are batched (by count and by linger time), sent without ever
 * blocking the loop, retried with backoff on transient failures, split on 413, and handed
 * back to the caller (reject callback) when the server refuses them for good.
 *
 * curl integration follows the "multi_socket" pattern of curl's docs/examples/evhiperfifo.c:
 * CURLMOPT_SOCKETFUNCTION keeps one ev_io per curl socket, CURLMOPT_TIMERFUNCTION drives one
 * ev_timer. Two fixes against that example: the timeout is converted with timeout_ms / 1000.0
 * (the example's integer division turns 999 ms into 0 s and busy-loops), and a 0 timeout is
 * served by a 0 s ev_timer instead of calling curl_multi_socket_action() from inside the
 * timer callback (curl forbids re-entering the multi handle from its own callbacks).
 *
 * Ordering: exactly ONE request is in flight per sink. Batches are delivered (and acked) in
 * the order they were written, also across retries and 413 splits. At the gateway's rate
 * (tens of lines per second) one request of up to 5000 lines is far more throughput than
 * needed: measured on loopback, 100k lines reach victoria-metrics in ~0.05 s (20 requests).
 *
 * Ownership: the sink owns its config copies, batches, the curl handles and its watchers.
 */
#include "influx.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <zlib.h>

#include "backoff.h"
#include "buf.h"
#include "log.h"
#include "sink.h"
#include "util.h"

/* ---------------------------------------------------------------------------------------- */
/* Types                                                                                    */
/* ---------------------------------------------------------------------------------------- */

#define RESP_MAX    4096 /* response body bytes kept for error messages */
#define MESSAGE_MAX 512  /* server message handed to the reject callback */

/* One batch: lines joined by '\n' (no trailing '\n') and one token per line. */
struct batch {
    struct batch *next;
    struct buf body;
    uint64_t *tokens;
    size_t n;
    size_t cap;
};

/* One curl socket watched by libev (created in sock_cb, freed on CURL_POLL_REMOVE). */
struct influx_sock {
    ev_io io;
    struct influx_sink *s;
    struct influx_sock *prev, *next;
};

struct influx_sink {
    struct ev_loop *loop;

    /* config (copied) */
    char *write_url; /* full request URL incl. query */
    char *secret;    /* token or "user:password": only for redaction, never logged */
    char *secret_pw; /* v1 password part (points into secret), redacted too */
    size_t batch_lines;
    size_t batch_bytes;
    double linger;
    bool gzip;
    size_t queue_max_bytes;
    double backoff_max;

    /* curl */
    CURLM *multi;
    CURL *easy;
    struct curl_slist *headers_plain;
    struct curl_slist *headers_gzip;
    struct influx_sock *socks;
    char errbuf[CURL_ERROR_SIZE];
    ev_timer curl_timer;

    /* batching */
    struct batch *cur;           /* accumulating, may be NULL */
    struct batch *qhead, *qtail; /* sealed, waiting to be sent, in order */
    struct batch *inflight;      /* being sent (at most one) */
    ev_timer linger_timer;
    ev_timer retry_timer;
    struct backoff bo;

    /* the current response */
    struct buf gz;      /* compressed body of the in-flight batch */
    struct buf resp;    /* response body, capped at RESP_MAX */
    double retry_after; /* seconds from Retry-After, < 0 when absent */

    influx_ack_cb ack;
    influx_reject_cb reject;
    influx_ack_cb release;
    void *ud;
    struct sink_callbacks seam; /* set through the sink ops; wins over the callbacks above */
    bool up;                    /* no failed request since the last 2xx */
    struct influx_stats st;
};

static void influx_kick(struct influx_sink *s);

/* ---------------------------------------------------------------------------------------- */
/* Batches                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void batch_free(struct batch *b)
{
    if (!b)
        return;
    buf_free(&b->body);
    free(b->tokens);
    free(b);
}

static int batch_add(struct batch *b, const char *line, size_t len, uint64_t token)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        uint64_t *t = realloc(b->tokens, cap * sizeof *t);
        if (!t)
            return -ENOMEM;
        b->tokens = t;
        b->cap = cap;
    }
    int rc = buf_reserve(&b->body, len + 1);
    if (rc)
        return rc;
    if (b->n)
        buf_append_char(&b->body, '\n');
    buf_append(&b->body, line, len);
    b->tokens[b->n++] = token;
    return 0;
}

/* Bytes a batch counts against pending_bytes / queue_max_bytes: each line plus its '\n'. */
static size_t batch_bytes(const struct batch *b)
{
    return b->body.len + 1;
}

/* Build a batch from lines [from, from+count) of `b`. Returns NULL on ENOMEM. */
static struct batch *batch_slice(const struct batch *b, size_t from, size_t count)
{
    struct batch *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    const char *p = b->body.p, *end = b->body.p + b->body.len;
    for (size_t i = 0; i < from + count; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (i >= from && batch_add(o, p, (size_t)(le - p), b->tokens[i])) {
            batch_free(o);
            return NULL;
        }
        p = nl ? nl + 1 : end;
    }
    return o;
}

static void queue_push_front(struct influx_sink *s, struct batch *b)
{
    b->next = s->qhead;
    s->qhead = b;
    if (!s->qtail)
        s->qtail = b;
}

static void queue_push_back(struct influx_sink *s, struct batch *b)
{
    b->next = NULL;
    if (s->qtail)
        s->qtail->next = b;
    else
        s->qhead = b;
    s->qtail = b;
}

static struct batch *queue_pop(struct influx_sink *s)
{
    struct batch *b = s->qhead;
    if (b) {
        s->qhead = b->next;
        if (!s->qhead)
            s->qtail = NULL;
        b->next = NULL;
    }
    return b;
}

/* Forget a batch's lines in the pending counters (acked, rejected or dropped). */
static void pending_sub(struct influx_sink *s, const struct batch *b)
{
    s->st.pending_lines -= b->n;
    s->st.pending_bytes -= batch_bytes(b);
}

/*
 * Enforce queue_max_bytes: drop the oldest waiting batches while the sink holds too much.
 * The newest batch and the in-flight one are never dropped (a single batch larger than the
 * bound would otherwise make the sink drop everything).
 */
static void queue_enforce(struct influx_sink *s)
{
    while (s->st.pending_bytes > s->queue_max_bytes && s->qhead && s->qhead != s->qtail) {
        struct batch *b = queue_pop(s);
        pending_sub(s, b);
        s->st.lines_dropped += b->n;
        log_error("influx_queue_full",
                  "dropped_lines=%zu dropped_bytes=%zu pending_bytes=%zu "
                  "queue_max_bytes=%zu",
                  b->n, b->body.len, s->st.pending_bytes, s->queue_max_bytes);
        batch_free(b);
    }
}

/* Move the accumulating batch to the send queue. */
static void seal(struct influx_sink *s)
{
    ev_timer_stop(s->loop, &s->linger_timer);
    if (!s->cur)
        return;
    queue_push_back(s, s->cur);
    s->cur = NULL;
    queue_enforce(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Helpers: redaction, Retry-After, gzip                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Replace every occurrence of `secret` in the NUL-terminated `msg` by "***" (in place). */
static void redact(char *msg, const char *secret)
{
    if (!secret || !*secret)
        return;
    size_t sl = strlen(secret);
    char *p;
    while ((p = strstr(msg, secret)) != NULL) {
        memcpy(p, "***", sl < 3 ? sl : 3);
        if (sl > 3)
            memmove(p + 3, p + sl, strlen(p + sl) + 1);
    }
}

/* Retry-After: delta-seconds or an HTTP-date. Returns seconds (>= 0) or -1 if unparsable. */
static double parse_retry_after(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    if (isdigit((unsigned char)*v)) {
        char *end;
        double d = strtod(v, &end);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (*end == '\0')
            return d;
    }
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1)
        return -1;
    double d = difftime(t, time(NULL));
    return d > 0 ? d : 0;
}

/* gzip `in` into `out` (RFC 1952 header via windowBits 15+16). Returns 0 or -ENOMEM/-EIO. */
static int gzip_body(struct buf *out, const char *in, size_t len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return -ENOMEM;
    int rc = 0;
    buf_clear(out);
    uLong bound = deflateBound(&zs, (uLong)len) + 32;
    if (buf_reserve(out, bound)) {
        rc = -ENOMEM;
        goto fail;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out->p;
    zs.avail_out = (uInt)bound;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
        rc = -EIO;
        goto fail;
    }
    out->len = zs.total_out;
fail:
    deflateEnd(&zs);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Response handling                                                                        */
/* ---------------------------------------------------------------------------------------- */

static void influx_schedule_retry(struct influx_sink *s, struct batch *b, double delay, long status,
                                  const char *why)
{
    queue_push_front(s, b);
    s->st.retries++;
    s->up = false;
    ev_timer_stop(s->loop, &s->retry_timer);
    ev_timer_set(&s->retry_timer, delay, 0.);
    ev_timer_start(s->loop, &s->retry_timer);
    char q[256];
    log_warn("influx_retry", "status=%ld reason=%s lines=%zu retry_in=%.3f", status,
             log_quote(q, sizeof q, why, (size_t)-1), b->n, delay);
}

/* The server's message for a refused batch: the body, trimmed, truncated, secrets redacted. */
static void server_message(struct influx_sink *s, char *out, size_t outlen)
{
    size_t n = s->resp.len;
    const char *p = s->resp.p ? s->resp.p : "";
    while (n && isspace((unsigned char)p[n - 1]))
        n--;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    redact(out, s->secret);
    redact(out, s->secret_pw);
}

static void do_reject(struct influx_sink *s, struct batch *b, long status, const char *msg)
{
    char q[300];
    log_error("influx_reject", "status=%ld lines=%zu message=%s", status, b->n,
              log_quote(q, sizeof q, msg, (size_t)-1));
    pending_sub(s, b);
    s->st.lines_rejected += b->n;
    if (s->seam.release) {
        if (s->seam.reject)
            s->seam.reject(s->seam.ud, b->body.p, b->body.len, status, msg);
        for (size_t i = 0; i < b->n; i++)
            s->seam.release(s->seam.ud, b->tokens[i], 0);
    } else {
        if (s->reject)
            s->reject(s->ud, b->body.p, b->body.len, status, msg);
        if (s->release)
            for (size_t i = 0; i < b->n; i++)
                s->release(s->ud, b->tokens[i]);
    }
    batch_free(b);
}

static void on_done(struct influx_sink *s, CURLcode res, long status)
{
    struct batch *b = s->inflight;
    s->inflight = NULL;
    if (!b)
        return;
    s->st.last_status = res == CURLE_OK ? (int)status : 0;
    double now = util_mono();

    if (res != CURLE_OK) {
        /* Timeouts, refused/reset connections, DNS: all transient from our point of view. */
        influx_schedule_retry(s, b, backoff_next(&s->bo, now), 0,
                              s->errbuf[0] ? s->errbuf : curl_easy_strerror(res));
    } else if (status >= 200 && status < 300) {
        backoff_reset(&s->bo);
        s->up = true;
        pending_sub(s, b);
        s->st.lines_written += b->n;
        s->st.batches++;
        log_debug("influx_written", "status=%ld lines=%zu bytes=%zu", status, b->n, b->body.len);
        if (s->seam.ack)
            for (size_t i = 0; i < b->n; i++)
                s->seam.ack(s->seam.ud, b->tokens[i], 0);
        else if (s->ack)
            for (size_t i = 0; i < b->n; i++)
                s->ack(s->ud, b->tokens[i]);
        batch_free(b);
    } else if (status == 413 || status == 400 || status == 422) {
        /* 413: too large. 400/422: some line refused (InfluxDB 1.x answers "partial write"
         * or "field type conflict" and names no line): halve until the refused lines stand
         * alone, so one bad line costs only itself. */
        char msg[MESSAGE_MAX];
        server_message(s, msg, sizeof msg);
        if (b->n == 1) {
            do_reject(s, b, status, msg);
        } else {
            size_t half = b->n / 2;
            struct batch *lo = batch_slice(b, 0, half);
            struct batch *hi = batch_slice(b, half, b->n - half);
            if (!lo || !hi) {
                batch_free(lo);
                batch_free(hi);
                influx_schedule_retry(s, b, backoff_next(&s->bo, now), status,
                                      "split failed: ENOMEM");
            } else {
                s->st.splits++;
                char q[300];
                log_warn("influx_split", "status=%ld lines=%zu halves=%zu+%zu message=%s", status,
                         b->n, lo->n, hi->n, log_quote(q, sizeof q, msg, (size_t)-1));
                /* The halves together count exactly what b counted. */
                s->st.pending_bytes =
                    s->st.pending_bytes - batch_bytes(b) + batch_bytes(lo) + batch_bytes(hi);
                queue_push_front(s, hi);
                queue_push_front(s, lo);
                batch_free(b);
            }
        }
    } else if (status == 429 || status == 503) {
        double delay = s->retry_after >= 0 ? s->retry_after : backoff_next(&s->bo, now);
        if (delay > s->backoff_max)
            delay = s->backoff_max;
        influx_schedule_retry(s, b, delay, status, s->retry_after >= 0 ? "retry-after" : "backoff");
    } else if (status >= 500 && status < 600) {
        influx_schedule_retry(s, b, backoff_next(&s->bo, now), status, "server error");
    } else {
        /* 401/403/404, any other 4xx, and unexpected 1xx/3xx: the server will not take this
         * batch as it is; retrying would only repeat the refusal. */
        char msg[MESSAGE_MAX];
        server_message(s, msg, sizeof msg);
        do_reject(s, b, status, msg);
    }
}

static void check_multi_info(struct influx_sink *s)
{
    CURLMsg *m;
    int left;
    bool done = false;
    CURLcode res = CURLE_OK;
    long status = 0;
    while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        res = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(s->multi, m->easy_handle);
        done = true;
    }
    /* Handled after the loop: on_done may start the next request on the same easy handle. */
    if (done) {
        on_done(s, res, status);
        influx_kick(s);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* curl <-> libev glue (evhiperfifo pattern)                                                */
/* ---------------------------------------------------------------------------------------- */

static void curl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct influx_sink *s = container_of(w, struct influx_sink, curl_timer);
    int running;
    curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(s);
}

static int multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct influx_sink *s = userp;
    ev_timer_stop(s->loop, &s->curl_timer);
    if (timeout_ms >= 0) {
        /* 0 ms: fire on the next loop iteration, never re-enter curl from here. */
        ev_timer_set(&s->curl_timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(s->loop, &s->curl_timer);
    }
    /* -1: curl wants no timeout; the timer stays stopped. */
    return 0;
}

static void sock_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct influx_sock *k = container_of(w, struct influx_sock, io);
    struct influx_sink *s = k->s;
    int action =
        ((revents & EV_READ) ? CURL_CSELECT_IN : 0) | ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    /* k may be freed inside (CURL_POLL_REMOVE): do not touch it afterwards. */
    curl_multi_socket_action(s->multi, w->fd, action, &running);
    /* Unlike evhiperfifo we do not stop the timer when running == 0: check_multi_info may
     * have added the next request, whose 0 ms timer curl has just asked for. curl itself
     * reports -1 through multi_timer_cb when it needs no timer. */
    check_multi_info(s);
}

static void sock_free(struct influx_sink *s, struct influx_sock *k)
{
    ev_io_stop(s->loop, &k->io);
    if (k->prev)
        k->prev->next = k->next;
    else
        s->socks = k->next;
    if (k->next)
        k->next->prev = k->prev;
    free(k);
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
    (void)e;
    struct influx_sink *s = userp;
    struct influx_sock *k = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (k)
            sock_free(s, k);
        return 0;
    }
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k)
            return -1;
        k->s = s;
        k->next = s->socks;
        if (s->socks)
            s->socks->prev = k;
        s->socks = k;
        curl_multi_assign(s->multi, fd, k);
    } else {
        ev_io_stop(s->loop, &k->io);
    }
    int ev = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    ev_io_init(&k->io, sock_io_cb, fd, ev);
    ev_io_start(s->loop, &k->io);
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
    struct influx_sink *s = userp;
    size_t n = size * nmemb;
    if (s->resp.len < RESP_MAX) {
        size_t take = n < RESP_MAX - s->resp.len ? n : RESP_MAX - s->resp.len;
        if (buf_append(&s->resp, ptr, take))
            return 0;
    }
    return n;
}

static size_t header_cb(char *buffer, size_t size, size_t nitems, void *userp)
{
    struct influx_sink *s = userp;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n > 5 && memcmp(buffer, "HTTP/", 5) == 0) {
        /* A new response (e.g. after 100 Continue): forget the previous one's headers. */
        s->retry_after = -1;
    } else if (n > sizeof name - 1 && strncasecmp(buffer, name, sizeof name - 1) == 0) {
        char v[128];
        size_t vl = n - (sizeof name - 1);
        if (vl >= sizeof v)
            vl = sizeof v - 1;
        memcpy(v, buffer + sizeof name - 1, vl);
        v[vl] = '\0';
        char *end = v + strlen(v);
        while (end > v && isspace((unsigned char)end[-1]))
            *--end = '\0';
        s->retry_after = parse_retry_after(v);
    }
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Sending                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void start_request(struct influx_sink *s)
{
    struct batch *b = queue_pop(s);
    s->inflight = b;
    const char *body = b->body.p;
    size_t len = b->body.len;
    struct curl_slist *hdrs = s->headers_plain;
    if (s->gzip) {
        int rc = gzip_body(&s->gz, b->body.p, b->body.len);
        if (rc == 0) {
            body = s->gz.p;
            len = s->gz.len;
            hdrs = s->headers_gzip;
        } else {
            log_warn("influx_gzip_failed", "rc=%d lines=%zu sending=plain", rc, b->n);
        }
    }
    buf_clear(&s->resp);
    s->retry_after = -1;
    s->errbuf[0] = '\0';
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, body);
    CURLMcode mc = curl_multi_add_handle(s->multi, s->easy);
    if (mc != CURLM_OK) {
        s->inflight = NULL;
        influx_schedule_retry(s, b, backoff_next(&s->bo, util_mono()), 0, curl_multi_strerror(mc));
    }
}

/* Start the next request if nothing is in flight and no retry delay is running. */
static void influx_kick(struct influx_sink *s)
{
    if (s->inflight || ev_is_active(&s->retry_timer) || !s->qhead)
        return;
    start_request(s);
}

static void linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct influx_sink *s = container_of(w, struct influx_sink, linger_timer);
    seal(s);
    influx_kick(s);
}

static void influx_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct influx_sink *s = container_of(w, struct influx_sink, retry_timer);
    influx_kick(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Public API                                                                               */
/* ---------------------------------------------------------------------------------------- */

/* Append "key=escaped(value)" to the query string. */
static int query_add(struct buf *u, CURL *e, const char *key, const char *val, bool *first)
{
    char *esc = curl_easy_escape(e, val, 0);
    if (!esc)
        return -ENOMEM;
    int rc = buf_printf(u, "%c%s=%s", *first ? '?' : '&', key, esc);
    curl_free(esc);
    *first = false;
    return rc;
}

int influx_sink_new(struct influx_sink **out, struct ev_loop *loop, const struct influx_config *cfg,
                    char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
#define BAD(...)                                                                                   \
    do {                                                                                           \
        if (err && errlen)                                                                         \
            snprintf(err, errlen, __VA_ARGS__);                                                    \
        return -EINVAL;                                                                            \
    } while (0)
    if (!loop || !cfg)
        BAD("influx: no loop or config");
    if (!cfg->url ||
        (strncmp(cfg->url, "http://", 7) != 0 && strncmp(cfg->url, "https://", 8) != 0))
        BAD("influx: url must start with http:// or https://");
    int api = cfg->api ? cfg->api : INFLUX_DEFAULT_API;
    if (api != 1 && api != 2)
        BAD("influx: api must be 1 or 2");
    if (api == 2 && (!cfg->org || !*cfg->org || !cfg->bucket || !*cfg->bucket))
        BAD("influx: api 2 needs org and bucket");
    if (api == 1 && (!cfg->db || !*cfg->db))
        BAD("influx: api 1 needs db");
    if (cfg->linger < 0 || cfg->timeout < 0 || cfg->backoff_base < 0 || cfg->backoff_max < 0)
        BAD("influx: negative linger/timeout/backoff");
#undef BAD

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -ENOMEM;
    int rc = -ENOMEM;
    struct buf u = BUF_INIT;
    struct buf auth = BUF_INIT;
    struct curl_slist *h = NULL;
    struct influx_sink *s = calloc(1, sizeof *s);
    if (!s) {
        curl_global_cleanup();
        return -ENOMEM;
    }
    s->loop = loop;
    s->up = true;
    s->batch_lines = cfg->batch_lines ? cfg->batch_lines : INFLUX_DEFAULT_BATCH_LINES;
    s->batch_bytes = cfg->batch_bytes ? cfg->batch_bytes : INFLUX_DEFAULT_BATCH_BYTES;
    s->linger = cfg->linger > 0 ? cfg->linger : INFLUX_DEFAULT_LINGER;
    s->gzip = cfg->gzip;
    s->queue_max_bytes =
        cfg->queue_max_bytes ? cfg->queue_max_bytes : (size_t)INFLUX_DEFAULT_QUEUE_MAX_BYTES;
    double base = cfg->backoff_base > 0 ? cfg->backoff_base : INFLUX_DEFAULT_BACKOFF_BASE;
    s->backoff_max = cfg->backoff_max > 0 ? cfg->backoff_max : INFLUX_DEFAULT_BACKOFF_MAX;
    if (s->backoff_max < base)
        s->backoff_max = base;
    /* A request timeout beyond a day is a typo, and (long)(t * 1000) of a huge double is
     * undefined: clamp. */
    double timeout = cfg->timeout > 0 ? (cfg->timeout < 86400.0 ? cfg->timeout : 86400.0)
                                      : INFLUX_DEFAULT_TIMEOUT;
    /* stable = 0: the ladder is reset explicitly on every 2xx (backoff_reset in on_done). */
    backoff_init(&s->bo, base, s->backoff_max, 0);
    s->retry_after = -1;
    ev_timer_init(&s->curl_timer, curl_timer_cb, 0., 0.);
    ev_timer_init(&s->linger_timer, linger_cb, s->linger, 0.);
    ev_timer_init(&s->retry_timer, influx_retry_cb, 0., 0.);

    s->multi = curl_multi_init();
    s->easy = curl_easy_init();
    if (!s->multi || !s->easy)
        goto fail;
    if (cfg->token && *cfg->token && !(s->secret = strdup(cfg->token)))
        goto fail;

    /* URL: base without trailing '/', then path and escaped query. */
    size_t ul = strlen(cfg->url);
    while (ul > 8 && cfg->url[ul - 1] == '/')
        ul--;
    bool first = true;
    if (buf_append(&u, cfg->url, ul) || buf_append_str(&u, api == 2 ? "/api/v2/write" : "/write"))
        goto fail;
    if (api == 2) {
        if (query_add(&u, s->easy, "org", cfg->org, &first) ||
            query_add(&u, s->easy, "bucket", cfg->bucket, &first))
            goto fail;
    } else {
        if (query_add(&u, s->easy, "db", cfg->db, &first))
            goto fail;
        if (cfg->rp && *cfg->rp && query_add(&u, s->easy, "rp", cfg->rp, &first))
            goto fail;
    }
    if (query_add(&u, s->easy, "precision", "ns", &first))
        goto fail;
    s->write_url = u.p;
    u = (struct buf)BUF_INIT;

    /* Headers: one list without and one with Content-Encoding (gzip may fail per batch). */
    struct curl_slist *t;
    const char *auth_kind = "none";
    const char *common[] = {"Content-Type: text/plain; charset=utf-8",
                            /* no 100-continue round trip for bodies > 1 MiB */
                            "Expect:"};
    for (size_t i = 0; i < ARRAY_LEN(common); i++) {
        if (!(t = curl_slist_append(h, common[i])))
            goto fail;
        h = t;
    }
    if (s->secret && (api == 2 || !strchr(s->secret, ':'))) {
        /* v2 token; for v1 a value without ':' is sent the same way (InfluxDB 1.8+ "Token"). */
        if (buf_printf(&auth, "Authorization: Token %s", s->secret) ||
            !(t = curl_slist_append(h, auth.p)))
            goto fail;
        h = t;
        auth_kind = "token";
    } else if (s->secret) {
        char *colon = strchr(s->secret, ':');
        s->secret_pw = colon[1] ? colon + 1 : NULL;
        curl_easy_setopt(s->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(s->easy, CURLOPT_USERPWD, s->secret);
        auth_kind = "basic";
    }
    s->headers_plain = h;
    h = NULL;
    for (struct curl_slist *it = s->headers_plain; it; it = it->next) {
        if (!(t = curl_slist_append(h, it->data)))
            goto fail;
        h = t;
    }
    if (!(t = curl_slist_append(h, "Content-Encoding: gzip")))
        goto fail;
    s->headers_gzip = t;
    h = NULL;
    if (auth.p) /* the header text holds the token: wipe our copy */
        memset(auth.p, 0, auth.len);
    buf_free(&auth);

    long tmo_ms = (long)(timeout * 1000.0);
    curl_easy_setopt(s->easy, CURLOPT_URL, s->write_url);
    curl_easy_setopt(s->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, tmo_ms);
    curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, tmo_ms);
    curl_easy_setopt(s->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(s->easy, CURLOPT_ERRORBUFFER, s->errbuf);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);

    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);

    log_info("influx_sink_started",
             "api=%d batch_lines=%zu batch_bytes=%zu linger=%.3f gzip=%d timeout=%.3f "
             "auth=%s",
             api, s->batch_lines, s->batch_bytes, s->linger, (int)s->gzip, timeout, auth_kind);
    *out = s;
    return 0;

fail:
    curl_slist_free_all(h);
    if (auth.p)
        memset(auth.p, 0, auth.len);
    buf_free(&auth);
    buf_free(&u);
    influx_sink_free(s);
    return rc;
}

void influx_sink_set_callbacks(struct influx_sink *s, influx_ack_cb ack, influx_reject_cb reject,
                               void *ud)
{
    s->ack = ack;
    s->reject = reject;
    s->ud = ud;
}

void influx_sink_set_release_cb(struct influx_sink *s, influx_ack_cb release)
{
    s->release = release;
}

int influx_sink_write(struct influx_sink *s, const char *line, size_t len, uint64_t token)
{
    if (!line || len == 0 || memchr(line, '\n', len))
        return -EINVAL;
    if (len + 1 > s->batch_bytes) {
        s->st.lines_oversize++;
        return -EINVAL; /* could never be sent within the bound */
    }
    if (s->cur && s->cur->n && batch_bytes(s->cur) + len + 1 > s->batch_bytes) {
        /* The bound holds for the batch being filled too: send what it has first. */
        seal(s);
        influx_kick(s);
    }
    if (!s->cur) {
        s->cur = calloc(1, sizeof *s->cur);
        if (!s->cur)
            return -ENOMEM;
    }
    size_t before = s->cur->n ? batch_bytes(s->cur) : 0;
    int rc = batch_add(s->cur, line, len, token);
    if (rc) {
        if (s->cur->n == 0) {
            batch_free(s->cur);
            s->cur = NULL;
        }
        return rc;
    }
    s->st.lines++;
    s->st.pending_lines++;
    s->st.pending_bytes += batch_bytes(s->cur) - before;
    if (s->cur->n == 1) {
        ev_timer_set(&s->linger_timer, s->linger, 0.);
        ev_timer_start(s->loop, &s->linger_timer);
    }
    if (s->cur->n >= s->batch_lines) {
        seal(s);
        influx_kick(s);
    }
    return 0;
}

void influx_sink_flush(struct influx_sink *s)
{
    seal(s);
    influx_kick(s);
}

size_t influx_sink_pending(const struct influx_sink *s)
{
    return s->st.pending_lines;
}

void influx_sink_get_stats(const struct influx_sink *s, struct influx_stats *out)
{
    *out = s->st;
}

void influx_sink_free(struct influx_sink *s)
{
    if (!s)
        return;
    if (s->st.pending_lines)
        log_warn("influx_sink_free_pending", "lines=%zu bytes=%zu", s->st.pending_lines,
                 s->st.pending_bytes);
    ev_timer_stop(s->loop, &s->linger_timer);
    ev_timer_stop(s->loop, &s->retry_timer);
    if (s->multi && s->easy && s->inflight)
        curl_multi_remove_handle(s->multi, s->easy);
    if (s->easy)
        curl_easy_cleanup(s->easy);
    if (s->multi)
        curl_multi_cleanup(s->multi); /* may still call sock_cb(CURL_POLL_REMOVE) */
    while (s->socks)
        sock_free(s, s->socks);
    ev_timer_stop(s->loop, &s->curl_timer);
    batch_free(s->inflight);
    batch_free(s->cur);
    while (s->qhead)
        batch_free(queue_pop(s));
    curl_slist_free_all(s->headers_plain);
    curl_slist_free_all(s->headers_gzip);
    buf_free(&s->gz);
    buf_free(&s->resp);
    free(s->write_url);
    if (s->secret) {
        memset(s->secret, 0, strlen(s->secret));
        free(s->secret);
    }
    free(s);
    curl_global_cleanup();
}

/* ---------------------------------------------------------------------------------------- */
/* The sink seam (sink.h): records are lines of line protocol                               */
/* ---------------------------------------------------------------------------------------- */

static int influx_op_check(const void *self, const void *rec, size_t len)
{
    const struct influx_sink *s = self;
    return !rec || len == 0 || len + 1 > s->batch_bytes || memchr(rec, '\n', len) ? -EINVAL : 0;
}

static int influx_op_submit(void *self, const void *rec, size_t len, unsigned flags, uint64_t token)
{
    (void)flags; /* a replayed line is sent unchanged: it carries its own timestamp */
    return influx_sink_write(self, rec, len, token);
}

static size_t influx_op_pending(const void *self)
{
    return influx_sink_pending(self);
}

static bool influx_op_healthy(const void *self)
{
    const struct influx_sink *s = self;
    return s->up;
}

static void influx_op_set_callbacks(void *self, const struct sink_callbacks *cb)
{
    struct influx_sink *s = self;
    s->seam = cb ? *cb : (struct sink_callbacks){0};
}

static void influx_op_flush(void *self)
{
    influx_sink_flush(self);
}

static void influx_op_stats(const void *self, struct sink_stats *st)
{
    const struct influx_sink *s = self;
    *st = (struct sink_stats){.up = s->up,
                              .pending = s->st.pending_lines,
                              .acked = s->st.lines_written,
                              .rejected = s->st.lines_rejected,
                              .dropped = s->st.lines_dropped,
                              .retries = s->st.retries,
                              .batches = s->st.batches};
}

static void influx_op_free(void *self)
{
    influx_sink_free(self);
}

static const struct sink_ops influx_sink_ops = {
    .name = "influx",
    .check = influx_op_check,
    .submit = influx_op_submit,
    .pending = influx_op_pending,
    .healthy = influx_op_healthy,
    .set_callbacks = influx_op_set_callbacks,
    .flush = influx_op_flush,
    .close = NULL,
    .stats = influx_op_stats,
    .free = influx_op_free,
};

struct sink influx_sink_as_sink(struct influx_sink *s)
{
    return (struct sink){.ops = s ? &influx_sink_ops : NULL, .self = s};
}
