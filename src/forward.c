/*
 * forward.c — the store-and-forward pump: producer records -> spool -> sinks (sink.h).
 * See forward.h for the model (cursors, tokens, pacing) and docs/reliability.md for the
 * guarantees it gives.
 *
 * Why a separate module: gateway.c wires the data path; the questions "which cursor does
 * this record go to, how much may the sink hold, what is replay, when is the spool synced"
 * are one coherent piece of policy and are easier to reason about (and test, see
 * tests/sink) in one place. It is written once, against struct sink_ops: nothing here knows
 * MQTT or HTTP.
 *
 * Everything runs on the gateway's libev loop; sink callbacks re-enter the pump (an ack
 * frees room), guarded by a per-destination `pumping` flag so recursion through
 * submit -> synchronous ack (MQTT QoS 0) -> pump stays flat.
 *
 * Ownership: the forward object owns the spool and its copies of the config strings; the
 * sinks are borrowed.
 */
#include "forward.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "mqttrec.h"
#include "spool.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------
 * Types
 * ---------------------------------------------------------------------------------------- */

enum { LIVE = 0, BACK = 1 };

#define NCURSORS        (2 * FWD_NDEST) /* spool cursors: MQTT 0/1, InfluxDB 2/3 */
#define TOKEN_BITS      3 /* low bits of a sink token: 0 = direct, else spool cursor + 1 */
#define REOPEN_INTERVAL 5.0

struct fdest {
    struct sink sink;    /* ops NULL: no sink for this destination */
    unsigned cur[2];     /* spool cursor of the live and the backlog role */
    bool more[2];        /* the cursor may have unread records */
    uint64_t out[2];     /* handed to the sink, not yet acknowledged */
    uint64_t appended;   /* records appended this run */
    uint64_t handed_new; /* records of this run handed to the sink */
    size_t window;       /* max sink pending we create */
    size_t share_slots;  /* backlog's guaranteed part of the window */
    bool pumping, repump;
    bool stalled; /* the sink refused a record (closed): stop pumping */
};

struct forward {
    struct ev_loop *loop;
    struct spool *sp;
    struct spool_config scfg;
    char *dir;
    char *status_topic;
    bool backlog_first;
    uint64_t open_seq; /* records below were appended before this start */
    struct fdest d[FWD_NDEST];
    ev_prepare prep;
    ev_timer tick;
    bool dirty;    /* appended since the last spool_sync (policy `always`) */
    int degraded;  /* the errno we last reported as degraded, 0 = ok */
    int open_err;  /* spool_open failed with this (sp == NULL) */
    bool starting; /* first open with open_required: a failure is the caller's error */
    double reopen_at;
    struct buf scratch; /* forward_publish's record encoding */
    uint64_t replayed;
    uint64_t direct;
    unsigned closing; /* sinks whose close has not finished */
    void (*close_done)(void *ud);
    void *close_ud;
    forward_ack_cb ack;
    forward_reject_cb reject;
    void *ud;
};

static void fwd_pump(struct forward *fw, enum forward_dest dest);

static bool fwd_on(const struct fdest *d)
{
    return d->sink.ops != NULL;
}

static size_t fwd_sink_pending(const struct fdest *d)
{
    return fwd_on(d) ? d->sink.ops->pending(d->sink.self) : 0;
}

/* ------------------------------------------------------------------------------------------
 * Spool status topic and degraded state
 * ---------------------------------------------------------------------------------------- */

static void fwd_publish_status(struct forward *fw, int err)
{
    if (!fwd_on(&fw->d[FWD_MQTT]) || !fw->status_topic)
        return;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "state", err ? "degraded" : "ok");
    if (err)
        cJSON_AddStringToObject(o, "error", strerror(-err));
    cJSON_AddStringToObject(o, "dir", fw->dir);
    cJSON_AddNumberToObject(o, "time", (double)(util_now_ns() / 1000000) / 1000.0);
    char *s = cJSON_PrintUnformatted(o);
    if (s)
        forward_publish(fw, fw->status_topic, s, strlen(s), 1, true, FWD_INTERNAL, 0);
    free(s);
    cJSON_Delete(o);
}

/* Compare the spool's health with what we last reported; log and publish a change. */
static void fwd_check_degraded(struct forward *fw)
{
    int e = fw->sp ? spool_degraded(fw->sp) : fw->open_err;
    if (e && !fw->degraded) {
        fw->degraded = e;
        if (!fw->sp) /* spool.c logs its own degradations; an open failure is ours */
            log_error("spool_degraded", "op=open dir=%s err=\"%s\" retry_in=%.1f", log_q(fw->dir),
                      strerror(-e), REOPEN_INTERVAL);
        fwd_publish_status(fw, e);
    } else if (!e && fw->degraded) {
        log_info("spool_recovered_disk", "dir=%s was=\"%s\"", log_q(fw->dir),
                 strerror(-fw->degraded));
        fw->degraded = 0;
        fwd_publish_status(fw, 0);
    }
}

/* ------------------------------------------------------------------------------------------
 * Opening the spool: roles of the cursors
 * ---------------------------------------------------------------------------------------- */

/* Acknowledge everything a cursor of a disabled sink still holds (the sink is gone). */
static uint64_t fwd_discard_cursor(struct spool *sp, unsigned cur)
{
    struct spool_rec rec;
    uint64_t n = 0;
    while (spool_next(sp, cur, &rec) == 0) {
        spool_ack(sp, cur, rec.seq);
        n++;
    }
    return n;
}

static const char *const fwd_names[FWD_NDEST] = {"mqtt", "influx"};

static int fwd_open_spool(struct forward *fw)
{
    struct spool_report rep;
    int r = spool_open(&fw->sp, fw->dir, &fw->scfg, &rep);
    if (r < 0) {
        fw->sp = NULL;
        fw->open_err = r;
        fw->reopen_at = util_mono() + REOPEN_INTERVAL;
        if (!fw->starting)
            fwd_check_degraded(fw);
        return r;
    }
    fw->open_err = 0;
    fw->open_seq = rep.next_seq;
    struct spool_stats st;
    spool_stats(fw->sp, &st);
    for (int i = 0; i < FWD_NDEST; i++) {
        struct fdest *d = &fw->d[i];
        unsigned a = (unsigned)i * 2, b = a + 1;
        if (!fwd_on(d)) {
            uint64_t n = fwd_discard_cursor(fw->sp, a) + fwd_discard_cursor(fw->sp, b);
            if (n)
                log_warn("spool_discarded", "sink=%s records=%" PRIu64 " reason=sink_disabled",
                         fwd_names[i], n);
            continue;
        }
        /* The cursor with less to replay carries the live records, so they never wait
         * behind a large backlog (its replayed prefix is short: at most what was in flight). */
        d->cur[LIVE] = st.pending[a] <= st.pending[b] ? a : b;
        d->cur[BACK] = d->cur[LIVE] == a ? b : a;
        d->more[LIVE] = d->more[BACK] = true;
        d->out[LIVE] = d->out[BACK] = 0;
        log_info("spool_cursors",
                 "sink=%s live=%u backlog=%u replay_live=%" PRIu64 " replay_backlog=%" PRIu64,
                 fwd_names[i], d->cur[LIVE], d->cur[BACK], st.pending[d->cur[LIVE]],
                 st.pending[d->cur[BACK]]);
    }
    if (fw->degraded || spool_degraded(fw->sp))
        fwd_check_degraded(fw);
    else
        fwd_publish_status(fw, 0);
    for (int i = 0; i < FWD_NDEST; i++)
        fwd_pump(fw, (enum forward_dest)i);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The pump
 * ---------------------------------------------------------------------------------------- */

/*
 * Read the next record of one cursor and hand it to the sink. Returns 0 (sent, or the cursor
 * is caught up: more[] cleared) or a negative errno (stop pumping this destination).
 */
static int fwd_send_one(struct forward *fw, struct fdest *d, int role)
{
    unsigned cur = d->cur[role];
    struct spool_rec rec;
    int r = spool_next(fw->sp, cur, &rec);
    if (r == -EAGAIN) {
        d->more[role] = false;
        return 0;
    }
    if (r < 0) {
        d->more[role] = false; /* read error (logged by the spool); retried on the next append */
        return r;
    }
    bool replay = role == BACK || (rec.flags & SPOOL_R_REPLAY);
    uint64_t token = rec.seq << TOKEN_BITS | (cur + 1);
    r = d->sink.ops->submit(d->sink.self, rec.data, rec.len, replay ? SINK_REPLAY : 0, token);
    if (r == -ENOMEM) {
        /* Keep nothing half-done: read the cursor again from its committed point later. */
        spool_rewind(fw->sp, cur);
        d->more[role] = true;
        return r;
    }
    if (r == -EINVAL && d->sink.ops->check(d->sink.self, rec.data, rec.len) < 0) {
        /* Not a record this sink can ever take (damaged in a way the CRC missed, or written
         * by another version): drop it rather than block the cursor forever. */
        log_error("spool_bad_record", "sink=%u seq=%" PRIu64 " len=%zu", cur, rec.seq, rec.len);
        spool_ack(fw->sp, cur, rec.seq);
        return 0;
    }
    if (r < 0) {
        /* Validated at append time, so a refusal means the sink is closed (shutdown). The
         * record stays pending in the spool and is delivered after the next start. */
        if (!d->stalled)
            log_warn("spool_sink_refused", "sink=%u err=\"%s\"", cur, strerror(-r));
        d->stalled = true;
        return r;
    }
    d->out[role]++;
    if (rec.seq >= fw->open_seq)
        d->handed_new++;
    if (replay)
        fw->replayed++;
    return 0;
}

/*
 * Hand records to the sink while it holds less than the window. Live first; the backlog
 * cursor is guaranteed share_slots of the window and may use all of it while the live
 * cursor is idle (backlog_first: the backlog goes before any live record).
 */
static void fwd_pump(struct forward *fw, enum forward_dest dest)
{
    struct fdest *d = &fw->d[dest];
    if (!fw->sp || !fwd_on(d) || d->stalled)
        return;
    if (d->pumping) {
        d->repump = true;
        return;
    }
    d->pumping = true;
    do {
        d->repump = false;
        while (!d->stalled && fwd_sink_pending(d) < d->window) {
            bool live_busy = d->more[LIVE] || d->out[LIVE] > 0;
            size_t bk_cap = live_busy ? d->share_slots : d->window;
            bool bk_ok = d->more[BACK] && d->out[BACK] < bk_cap;
            int role;
            if (bk_ok && (fw->backlog_first || d->out[BACK] < d->share_slots || !d->more[LIVE]))
                role = BACK;
            else if (d->more[LIVE] && !(fw->backlog_first && d->more[BACK]))
                role = LIVE;
            else
                break;
            if (fwd_send_one(fw, d, role) < 0)
                break;
        }
    } while (d->repump && !d->stalled);
    d->pumping = false;
}

/* A cursor with nothing of its own to read still has to step over the records appended for
 * the others, or its committed point (and so segment deletion) would never move. */
static void fwd_scan_idle(struct forward *fw, struct fdest *d, int role)
{
    struct spool_rec rec;
    unsigned cur = d->cur[role];
    if (spool_next(fw->sp, cur, &rec) == 0) {
        /* Not expected (every append for this cursor sets more[]): deliver it normally. */
        spool_rewind(fw->sp, cur);
        d->more[role] = true;
    }
}

/* ------------------------------------------------------------------------------------------
 * Sink callbacks
 * ---------------------------------------------------------------------------------------- */

static void fwd_acked(struct forward *fw, enum forward_dest dest, uint64_t token, uint64_t user)
{
    unsigned k = (unsigned)(token & ((1u << TOKEN_BITS) - 1));
    uint64_t seq = token >> TOKEN_BITS;
    if (k == 0) { /* direct (no spool, degraded, or the gateway's own message) */
        if (user && fw->ack)
            fw->ack(fw->ud, user);
        return;
    }
    unsigned cur = k - 1;
    struct fdest *d = &fw->d[dest];
    if (!fw->sp || cur / 2 != (unsigned)dest)
        return;
    spool_ack(fw->sp, cur, seq);
    int role = d->cur[LIVE] == cur ? LIVE : BACK;
    if (d->out[role])
        d->out[role]--;
    if (user && seq >= fw->open_seq && fw->ack)
        fw->ack(fw->ud, user);
    fwd_pump(fw, dest);
}

static void fwd_on_mqtt_ack(void *ud, uint64_t token, uint64_t user)
{
    fwd_acked(ud, FWD_MQTT, token, user);
}

static void fwd_on_influx_ack(void *ud, uint64_t token, uint64_t user)
{
    fwd_acked(ud, FWD_INFLUX, token, user);
}

static void fwd_on_mqtt_reject(void *ud, const char *data, size_t len, long status,
                               const char *message)
{
    struct forward *fw = ud;
    if (fw->reject)
        fw->reject(fw->ud, FWD_MQTT, data, len, status, message);
}

static void fwd_on_influx_reject(void *ud, const char *data, size_t len, long status,
                                 const char *message)
{
    struct forward *fw = ud;
    if (fw->reject)
        fw->reject(fw->ud, FWD_INFLUX, data, len, status, message);
}

/* ------------------------------------------------------------------------------------------
 * Loop watchers: group commit, idle scans, tick
 * ---------------------------------------------------------------------------------------- */

/* Runs once per loop iteration, after all callbacks of the previous one: one input batch. */
static void fwd_on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct forward *fw = container_of(w, struct forward, prep);
    if (!fw->sp)
        return;
    if (fw->dirty && fw->scfg.fsync == SPOOL_FSYNC_ALWAYS) {
        fw->dirty = false;
        if (spool_sync(fw->sp) < 0)
            fwd_check_degraded(fw);
    }
    for (int i = 0; i < FWD_NDEST; i++) {
        struct fdest *d = &fw->d[i];
        for (int role = 0; role < 2; role++)
            if (!d->more[role] || !fwd_on(d))
                fwd_scan_idle(fw, d, role);
        fwd_pump(fw, (enum forward_dest)i); /* e.g. the broker came back: nothing else calls */
    }
}

static void fwd_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct forward *fw = container_of(w, struct forward, tick);
    if (!fw->sp) {
        if (util_mono() >= fw->reopen_at && fwd_open_spool(fw) == 0)
            fwd_check_degraded(fw);
        return;
    }
    spool_tick(fw->sp);
    fwd_check_degraded(fw);
    for (int i = 0; i < FWD_NDEST; i++) {
        struct fdest *d = &fw->d[i];
        if (!fwd_on(d) || d->stalled || d->out[LIVE] + d->out[BACK] == 0 ||
            fwd_sink_pending(d) != 0)
            continue;
        /* The sink holds nothing, yet records we handed were never acknowledged: it lost
         * them (dropped from a full queue, refused). Read them again from the spool. */
        log_warn("spool_resend", "sink=%s lost=%" PRIu64, d->sink.ops->name,
                 d->out[LIVE] + d->out[BACK]);
        for (int role = 0; role < 2; role++) {
            spool_rewind(fw->sp, d->cur[role]);
            d->out[role] = 0;
            d->more[role] = true;
        }
        fwd_pump(fw, (enum forward_dest)i);
    }
}

/* ------------------------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------------------------- */

bool forward_has(const struct forward *fw, enum forward_dest dest)
{
    return fwd_on(&fw->d[dest]);
}

int forward_submit(struct forward *fw, enum forward_dest dest, const void *rec, size_t len,
                   unsigned flags)
{
    struct fdest *d = &fw->d[dest];
    if (!fwd_on(d))
        return 0;
    const struct sink_ops *ops = d->sink.ops;
    if (ops->check(d->sink.self, rec, len) < 0)
        return -EINVAL;
    if (fw->sp && !(flags & FWD_INTERNAL)) {
        int role = ops->healthy(d->sink.self) ? LIVE : BACK;
        unsigned sflags = flags & FWD_ALERT ? SPOOL_F_ALERT : 0;
        int r = spool_append(fw->sp, 1u << d->cur[role], sflags, rec, len, NULL);
        if (r == 0) {
            d->more[role] = true;
            d->appended++;
            fw->dirty = true;
            fwd_pump(fw, dest);
            return 0;
        }
        fwd_check_degraded(fw);
        fw->direct++;
        log_debug("spool_append_failed", "sink=%s err=\"%s\" delivered=direct", ops->name,
                  strerror(-r));
    }
    return ops->submit(d->sink.self, rec, len, flags & FWD_INTERNAL ? SINK_INTERNAL : 0, 0);
}

int forward_publish(struct forward *fw, const char *topic, const void *payload, size_t len, int qos,
                    bool retain, unsigned flags, uint64_t user)
{
    if (!fwd_on(&fw->d[FWD_MQTT]))
        return 0;
    if (!topic)
        return -EINVAL;
    struct mqtt_rec m = {.topic = topic,
                         .topic_len = strlen(topic),
                         .payload = payload,
                         .payload_len = len,
                         .qos = qos,
                         .retain = retain,
                         .user = user};
    buf_clear(&fw->scratch);
    int r = mqtt_rec_encode(&fw->scratch, &m);
    if (r < 0)
        return r;
    return forward_submit(fw, FWD_MQTT, fw->scratch.p, fw->scratch.len, flags);
}

size_t forward_pending(struct forward *fw, enum forward_dest dest, bool exact)
{
    struct fdest *d = &fw->d[dest];
    size_t sp_n = fwd_sink_pending(d);
    if (!fw->sp || !fwd_on(d))
        return sp_n;
    uint64_t out = d->out[LIVE] + d->out[BACK];
    uint64_t unsent;
    if (exact) {
        struct spool_stats st;
        spool_stats(fw->sp, &st);
        uint64_t p = st.pending[d->cur[LIVE]] + st.pending[d->cur[BACK]];
        unsent = p > out ? p - out : 0;
    } else {
        unsent = d->appended > d->handed_new ? d->appended - d->handed_new : 0;
    }
    return sp_n + (size_t)unsent;
}

size_t forward_sink_pending(const struct forward *fw, enum forward_dest dest)
{
    return fwd_sink_pending(&fw->d[dest]);
}

void forward_flush(struct forward *fw)
{
    for (int i = 0; i < FWD_NDEST; i++)
        if (fwd_on(&fw->d[i]) && fw->d[i].sink.ops->flush)
            fw->d[i].sink.ops->flush(fw->d[i].sink.self);
}

static void fwd_on_sink_closed(void *ud)
{
    struct forward *fw = ud;
    if (fw->closing && --fw->closing == 0 && fw->close_done)
        fw->close_done(fw->close_ud);
}

bool forward_close(struct forward *fw, double timeout, void (*done)(void *ud), void *ud)
{
    fw->close_done = done;
    fw->close_ud = ud;
    fw->closing = 0;
    for (int i = 0; i < FWD_NDEST; i++)
        if (fwd_on(&fw->d[i]) && fw->d[i].sink.ops->close)
            fw->closing++;
    if (!fw->closing)
        return false;
    /* Every close calls back from the loop, never from here, so counting first is safe. */
    for (int i = 0; i < FWD_NDEST; i++)
        if (fwd_on(&fw->d[i]) && fw->d[i].sink.ops->close)
            fw->d[i].sink.ops->close(fw->d[i].sink.self, timeout, fwd_on_sink_closed, fw);
    return true;
}

void forward_get_stats(struct forward *fw, struct forward_stats *out)
{
    memset(out, 0, sizeof *out);
    out->enabled = fw->dir != NULL;
    out->replayed = fw->replayed;
    out->direct = fw->direct;
    out->degraded = fw->degraded != 0;
    for (int i = 0; i < FWD_NDEST; i++)
        if (fwd_on(&fw->d[i]))
            fw->d[i].sink.ops->stats(fw->d[i].sink.self, &out->sink[i]);
    if (!fw->sp)
        return;
    struct spool_stats st;
    spool_stats(fw->sp, &st);
    out->bytes = st.bytes;
    out->pending[FWD_MQTT] = st.pending[0] + st.pending[1];
    out->pending[FWD_INFLUX] = st.pending[2] + st.pending[3];
    for (unsigned k = 0; k < NCURSORS; k++)
        if (st.oldest_age[k] > out->oldest_age)
            out->oldest_age = st.oldest_age[k];
    out->drops_full = st.drops_full;
    out->drops_corrupt = st.drops_corrupt;
    out->append_errors = st.append_errors;
}

void forward_set_callbacks(struct forward *fw, forward_ack_cb ack, forward_reject_cb reject,
                           void *ud)
{
    fw->ack = ack;
    fw->reject = reject;
    fw->ud = ud;
}

static int fwd_dup_opt(char **dst, const char *src)
{
    if (config_is_none(src))
        return 0;
    return (*dst = strdup(src)) ? 0 : -ENOMEM;
}

/* The sinks outlive us: they must not call back into a freed object. */
static void fwd_detach(struct forward *fw)
{
    for (int i = 0; i < FWD_NDEST; i++)
        if (fwd_on(&fw->d[i]))
            fw->d[i].sink.ops->set_callbacks(fw->d[i].sink.self, NULL);
}

int forward_new(struct forward **out, struct ev_loop *loop, const struct forward_config *cfg,
                const struct sink sinks[FWD_NDEST], char *err, size_t errlen)
{
    static const sink_ack_cb acks[FWD_NDEST] = {fwd_on_mqtt_ack, fwd_on_influx_ack};
    static const sink_reject_cb rejects[FWD_NDEST] = {fwd_on_mqtt_reject, fwd_on_influx_reject};
    int rc = -ENOMEM;
    *out = NULL;
    if (cfg->replay_share < 0 || cfg->replay_share > 1) {
        snprintf(err, errlen, "spool.replay_share: %g is not in [0, 1]", cfg->replay_share);
        return -EINVAL;
    }
    struct forward *fw = calloc(1, sizeof *fw);
    if (!fw)
        return -ENOMEM;
    fw->loop = loop;
    fw->backlog_first = cfg->replay_share >= 1.0;
    bool any = false;
    for (int i = 0; i < FWD_NDEST; i++) {
        struct fdest *d = &fw->d[i];
        d->sink = sinks[i];
        d->cur[LIVE] = (unsigned)i * 2;
        d->cur[BACK] = (unsigned)i * 2 + 1;
        size_t win = cfg->window[i] ? cfg->window[i] : 1;
        d->window = win;
        double s = cfg->replay_share * (double)win;
        d->share_slots = fw->backlog_first ? win : cfg->replay_share > 0 && s < 1 ? 1 : (size_t)s;
        if (!fwd_on(d))
            continue;
        any = true;
        /* A refused line went to the reject callback (dead-letter): release it like an
         * acknowledged one, or the spool would hold it forever. */
        struct sink_callbacks cb = {
            .ack = acks[i], .release = acks[i], .reject = rejects[i], .ud = fw};
        d->sink.ops->set_callbacks(d->sink.self, &cb);
    }
    if ((any && fwd_dup_opt(&fw->dir, cfg->dir)) ||
        fwd_dup_opt(&fw->status_topic, cfg->status_topic))
        goto fail;
    if (fw->dir) {
        fw->scfg = (struct spool_config){
            .nsinks = NCURSORS,
            .max_bytes = cfg->max_bytes,
            .segment_bytes = cfg->segment_bytes,
            .fsync = cfg->fsync,
            .sync_interval =
                cfg->sync_interval > 0 ? cfg->sync_interval : SPOOL_DEFAULT_SYNC_INTERVAL,
        };
        ev_prepare_init(&fw->prep, fwd_on_prepare);
        ev_prepare_start(loop, &fw->prep);
        ev_timer_init(&fw->tick, fwd_on_tick, fw->scfg.sync_interval, fw->scfg.sync_interval);
        ev_timer_start(loop, &fw->tick);
        fw->starting = cfg->open_required;
        rc = fwd_open_spool(fw);
        fw->starting = false;
        if (rc == -EBUSY && cfg->open_required) {
            snprintf(err, errlen, "spool %s: in use by another process (one spool per instance)",
                     fw->dir);
            goto fail;
        }
        if (rc == -ENOMEM || rc == -EINVAL || (rc < 0 && cfg->open_required)) {
            snprintf(err, errlen, "spool %s: %s", fw->dir, strerror(-rc));
            goto fail;
        }
        rc = 0;
    }
    *out = fw;
    return 0;
fail:
    fwd_detach(fw);
    forward_free(fw);
    return rc;
}

void forward_free(struct forward *fw)
{
    if (!fw)
        return;
    if (fw->dir) {
        ev_prepare_stop(fw->loop, &fw->prep);
        ev_timer_stop(fw->loop, &fw->tick);
    }
    if (fw->sp) {
        struct spool_stats st;
        spool_stats(fw->sp, &st);
        log_info("spool_closed",
                 "bytes=%" PRIu64 " pending_mqtt=%" PRIu64 " pending_influx=%" PRIu64, st.bytes,
                 st.pending[0] + st.pending[1], st.pending[2] + st.pending[3]);
        spool_close(fw->sp);
    }
    free(fw->dir);
    free(fw->status_topic);
    buf_free(&fw->scratch);
    free(fw);
}
