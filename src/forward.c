/*
 * forward.c — the store-and-forward pump: rule outputs -> spool -> MQTT / InfluxDB sinks.
 * See forward.h for the model (cursors, tokens, pacing) and docs/reliability.md for the
 * guarantees it gives.
 *
 * Why a separate module: gateway.c wires the data path; the questions "which cursor does
 * this record go to, how much may the sink hold, what is replay, when is the spool synced"
 * are one coherent piece of policy and are easier to reason about (and test) in one place.
 *
 * Everything runs on the gateway's libev loop; sink callbacks re-enter the pump (an ack
 * frees room), guarded by a per-destination `pumping` flag so recursion through
 * mqtt_sink_publish -> synchronous QoS 0 ack -> pump stays flat.
 *
 * Ownership: the forward object owns the spool and its copies of the config strings; the
 * sinks are borrowed. File owned by the gateway integration (issue 3, "fwd").
 */
#include "forward.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>

#include "buf.h"
#include "influx.h"
#include "log.h"
#include "mqtt.h"
#include "spool.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------
 * Types
 * ---------------------------------------------------------------------------------------- */

enum { LIVE = 0, BACK = 1 };

#define NSINKS          4    /* spool cursors: MQTT 0/1, InfluxDB 2/3 */
#define TOKEN_BITS      3    /* low bits of a sink token: 0 = direct, else spool sink id + 1 */
#define LAT_RING        4096 /* seq -> user token, for the latency callback */
#define REOPEN_INTERVAL 5.0

struct fdest {
    bool on;             /* the sink exists */
    unsigned sink[2];    /* spool sink id of the live and the backlog cursor */
    bool more[2];        /* the cursor may have unread records */
    uint64_t out[2];     /* handed to the sink, not yet acknowledged */
    uint64_t appended;   /* records appended this run */
    uint64_t handed_new; /* records of this run handed to the sink */
    bool up;             /* InfluxDB: no failed request since the last success */
    size_t window;       /* max sink pending we create */
    size_t share_slots;  /* backlog's guaranteed part of the window */
    bool pumping, repump;
    bool stalled; /* the sink refused a record (closed): stop pumping */
};

struct lat_slot {
    uint64_t seq;
    uint64_t user;
};

struct forward {
    struct ev_loop *loop;
    struct mqtt_sink *mqtt;
    struct influx_sink *influx;
    struct spool *sp;
    struct spool_config scfg;
    char *dir;
    char *replay_prefix;
    char *status_topic;
    char *alert_prefix;
    size_t alert_len;
    size_t mqtt_max_bytes;
    bool backlog_first;
    uint64_t open_seq; /* records below were appended before this start */
    struct fdest d[2];
    ev_prepare prep;
    ev_timer tick;
    bool dirty;   /* appended since the last spool_sync (policy `always`) */
    int degraded; /* the errno we last reported as degraded, 0 = ok */
    int open_err; /* spool_open failed with this (sp == NULL) */
    double reopen_at;
    uint64_t influx_retries_seen;
    struct lat_slot *lat;
    struct buf topic;
    uint64_t replayed;
    uint64_t direct;
    forward_ack_cb ack;
    forward_reject_cb reject;
    void *ud;
};

static void pump(struct forward *fw, enum forward_dest dest);

static bool is_none(const char *s)
{
    return !s || !*s || strcmp(s, "none") == 0;
}

static size_t sink_pending(const struct forward *fw, enum forward_dest dest)
{
    if (dest == FWD_MQTT)
        return fw->mqtt ? mqtt_sink_pending(fw->mqtt) : 0;
    return fw->influx ? influx_sink_pending(fw->influx) : 0;
}

/* ------------------------------------------------------------------------------------------
 * Spool status topic and degraded state
 * ---------------------------------------------------------------------------------------- */

static void publish_status(struct forward *fw, int err)
{
    if (!fw->mqtt || !fw->status_topic)
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
        mqtt_sink_publish(fw->mqtt, fw->status_topic, s, strlen(s), 1, true, 0);
    free(s);
    cJSON_Delete(o);
}

/* Compare the spool's health with what we last reported; log and publish a change. */
static void check_degraded(struct forward *fw)
{
    int e = fw->sp ? spool_degraded(fw->sp) : fw->open_err;
    if (e && !fw->degraded) {
        fw->degraded = e;
        if (!fw->sp) /* spool.c logs its own degradations; an open failure is ours */
            log_error("spool_degraded", "op=open dir=%s err=\"%s\" retry_in=%.1f", fw->dir,
                      strerror(-e), REOPEN_INTERVAL);
        publish_status(fw, e);
    } else if (!e && fw->degraded) {
        log_info("spool_recovered_disk", "dir=%s was=\"%s\"", fw->dir, strerror(-fw->degraded));
        fw->degraded = 0;
        publish_status(fw, 0);
    }
}

/* ------------------------------------------------------------------------------------------
 * Opening the spool: roles of the cursors
 * ---------------------------------------------------------------------------------------- */

/* Acknowledge everything a cursor of a disabled sink still holds (the sink is gone). */
static uint64_t discard_cursor(struct spool *sp, unsigned sink)
{
    struct spool_rec rec;
    uint64_t n = 0;
    while (spool_next(sp, sink, &rec) == 0) {
        spool_ack(sp, sink, rec.seq);
        n++;
    }
    return n;
}

static int open_spool(struct forward *fw)
{
    struct spool_report rep;
    int r = spool_open(&fw->sp, fw->dir, &fw->scfg, &rep);
    if (r < 0) {
        fw->sp = NULL;
        fw->open_err = r;
        fw->reopen_at = util_mono() + REOPEN_INTERVAL;
        check_degraded(fw);
        return r;
    }
    fw->open_err = 0;
    fw->open_seq = rep.next_seq;
    struct spool_stats st;
    spool_stats(fw->sp, &st);
    static const char *const names[2] = {"mqtt", "influx"};
    for (int i = 0; i < 2; i++) {
        struct fdest *d = &fw->d[i];
        unsigned a = (unsigned)i * 2, b = a + 1;
        if (!d->on) {
            uint64_t n = discard_cursor(fw->sp, a) + discard_cursor(fw->sp, b);
            if (n)
                log_warn("spool_discarded", "sink=%s records=%" PRIu64 " reason=sink_disabled",
                         names[i], n);
            continue;
        }
        /* The cursor with less to replay carries the live records, so they never wait
         * behind a large backlog (its replayed prefix is short: at most what was in flight). */
        d->sink[LIVE] = st.pending[a] <= st.pending[b] ? a : b;
        d->sink[BACK] = d->sink[LIVE] == a ? b : a;
        d->more[LIVE] = d->more[BACK] = true;
        d->out[LIVE] = d->out[BACK] = 0;
        log_info("spool_cursors",
                 "sink=%s live=%u backlog=%u replay_live=%" PRIu64 " replay_backlog=%" PRIu64,
                 names[i], d->sink[LIVE], d->sink[BACK], st.pending[d->sink[LIVE]],
                 st.pending[d->sink[BACK]]);
    }
    if (fw->degraded || spool_degraded(fw->sp))
        check_degraded(fw);
    else
        publish_status(fw, 0);
    pump(fw, FWD_MQTT);
    pump(fw, FWD_INFLUX);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The pump
 * ---------------------------------------------------------------------------------------- */

/*
 * Read the next record of one cursor and hand it to the sink. Returns 0 (sent, or the cursor
 * is caught up: more[] cleared) or a negative errno (stop pumping this destination).
 */
static int send_one(struct forward *fw, enum forward_dest dest, int role)
{
    struct fdest *d = &fw->d[dest];
    unsigned sink = d->sink[role];
    struct spool_rec rec;
    int r = spool_next(fw->sp, sink, &rec);
    if (r == -EAGAIN) {
        d->more[role] = false;
        return 0;
    }
    if (r < 0) {
        d->more[role] = false; /* read error (logged by the spool); retried on the next append */
        return r;
    }
    bool replay = role == BACK || (rec.flags & SPOOL_R_REPLAY);
    uint64_t token = rec.seq << TOKEN_BITS | (sink + 1);
    if (dest == FWD_MQTT) {
        struct spool_mqtt_msg m;
        if (spool_decode_mqtt(rec.data, rec.len, &m) < 0) {
            log_error("spool_bad_record", "sink=%u seq=%" PRIu64 " len=%zu", sink, rec.seq,
                      rec.len);
            spool_ack(fw->sp, sink, rec.seq);
            return 0;
        }
        struct buf *t = &fw->topic;
        buf_clear(t);
        if (replay && fw->replay_prefix && strlen(fw->replay_prefix) + 1 + m.topic_len <= 65535) {
            buf_append(t, fw->replay_prefix, strlen(fw->replay_prefix));
            buf_append(t, "/", 1);
        }
        if (buf_append(t, m.topic, m.topic_len) < 0) /* keeps p NUL-terminated */
            r = -ENOMEM;
        else
            r = mqtt_sink_publish(fw->mqtt, t->p, m.payload, m.payload_len, m.qos,
                                  m.retain && !replay, token);
    } else {
        r = influx_sink_write(fw->influx, rec.data, rec.len, token);
    }
    if (r == -ENOMEM) {
        /* Keep nothing half-done: read the cursor again from its committed point later. */
        spool_rewind(fw->sp, sink);
        d->more[role] = true;
        return r;
    }
    if (r < 0) {
        /* Validated at append time, so a refusal means the sink is closed (shutdown). The
         * record stays pending in the spool and is delivered after the next start. */
        if (!d->stalled)
            log_warn("spool_sink_refused", "sink=%u err=\"%s\"", sink, strerror(-r));
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
static void pump(struct forward *fw, enum forward_dest dest)
{
    struct fdest *d = &fw->d[dest];
    if (!fw->sp || !d->on || d->stalled)
        return;
    if (d->pumping) {
        d->repump = true;
        return;
    }
    d->pumping = true;
    do {
        d->repump = false;
        while (!d->stalled && sink_pending(fw, dest) < d->window) {
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
            if (send_one(fw, dest, role) < 0)
                break;
        }
    } while (d->repump && !d->stalled);
    d->pumping = false;
}

/* A cursor with nothing of its own to read still has to step over the records appended for
 * the others, or its committed point (and so segment deletion) would never move. */
static void scan_idle(struct forward *fw, struct fdest *d, int role)
{
    struct spool_rec rec;
    unsigned sink = d->sink[role];
    if (spool_next(fw->sp, sink, &rec) == 0) {
        /* Not expected (every append for this cursor sets more[]): deliver it normally. */
        spool_rewind(fw->sp, sink);
        d->more[role] = true;
    }
}

/* ------------------------------------------------------------------------------------------
 * Sink callbacks
 * ---------------------------------------------------------------------------------------- */

static void acked(struct forward *fw, enum forward_dest dest, uint64_t token)
{
    unsigned k = (unsigned)(token & ((1u << TOKEN_BITS) - 1));
    uint64_t seq = token >> TOKEN_BITS;
    if (k == 0) { /* direct (no spool, degraded, or a gateway-internal message) */
        if (dest == FWD_MQTT && seq && fw->ack)
            fw->ack(fw->ud, seq);
        return;
    }
    unsigned sink = k - 1;
    struct fdest *d = &fw->d[dest];
    if (!fw->sp || sink / 2 != (unsigned)dest)
        return;
    spool_ack(fw->sp, sink, seq);
    int role = d->sink[LIVE] == sink ? LIVE : BACK;
    if (d->out[role])
        d->out[role]--;
    if (dest == FWD_INFLUX)
        d->up = true;
    if (dest == FWD_MQTT && fw->lat) {
        struct lat_slot *s = &fw->lat[seq % LAT_RING];
        if (s->seq == seq) {
            s->seq = 0;
            if (fw->ack)
                fw->ack(fw->ud, s->user);
        }
    }
    pump(fw, dest);
}

static void on_mqtt_ack(void *ud, uint64_t token)
{
    acked(ud, FWD_MQTT, token);
}

static void on_influx_ack(void *ud, uint64_t token)
{
    acked(ud, FWD_INFLUX, token);
}

static void on_influx_reject(void *ud, const char *lines, size_t len, long status,
                             const char *message)
{
    struct forward *fw = ud;
    if (fw->reject)
        fw->reject(fw->ud, lines, len, status, message);
}

/* ------------------------------------------------------------------------------------------
 * Loop watchers: group commit, idle scans, tick
 * ---------------------------------------------------------------------------------------- */

/* Runs once per loop iteration, after all callbacks of the previous one: one input batch. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct forward *fw = container_of(w, struct forward, prep);
    if (!fw->sp)
        return;
    if (fw->dirty && fw->scfg.fsync == SPOOL_FSYNC_ALWAYS) {
        fw->dirty = false;
        if (spool_sync(fw->sp) < 0)
            check_degraded(fw);
    }
    for (int i = 0; i < 2; i++) {
        struct fdest *d = &fw->d[i];
        for (int role = 0; role < 2; role++)
            if (!d->more[role] || !d->on)
                scan_idle(fw, d, role);
        pump(fw, (enum forward_dest)i); /* e.g. the broker came back: nothing else calls us */
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct forward *fw = container_of(w, struct forward, tick);
    if (!fw->sp) {
        if (util_mono() >= fw->reopen_at && open_spool(fw) == 0)
            check_degraded(fw);
        return;
    }
    spool_tick(fw->sp);
    check_degraded(fw);
    for (int i = 0; i < 2; i++) {
        struct fdest *d = &fw->d[i];
        if (!d->on || d->stalled || d->out[LIVE] + d->out[BACK] == 0 ||
            sink_pending(fw, (enum forward_dest)i) != 0)
            continue;
        /* The sink holds nothing, yet records we handed were never acknowledged: it lost
         * them (dropped from a full queue, refused). Read them again from the spool. */
        log_warn("spool_resend", "sink=%s lost=%" PRIu64, i == FWD_MQTT ? "mqtt" : "influx",
                 d->out[LIVE] + d->out[BACK]);
        for (int role = 0; role < 2; role++) {
            spool_rewind(fw->sp, d->sink[role]);
            d->out[role] = 0;
            d->more[role] = true;
        }
        pump(fw, (enum forward_dest)i);
    }
}

/* ------------------------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------------------------- */

static bool topic_ok(const char *topic, size_t *tlen)
{
    if (!topic)
        return false;
    *tlen = strlen(topic);
    return *tlen > 0 && *tlen <= 65535 && mosquitto_pub_topic_check(topic) == MOSQ_ERR_SUCCESS;
}

int forward_publish(struct forward *fw, const char *topic, const void *payload, size_t len, int qos,
                    bool retain, uint64_t user)
{
    if (!fw->mqtt)
        return 0;
    size_t tlen;
    if (!topic_ok(topic, &tlen) || qos < 0 || qos > 2 || (!payload && len) || len > 268435455u ||
        len + tlen > fw->mqtt_max_bytes)
        return -EINVAL;
    if (fw->sp) {
        struct fdest *d = &fw->d[FWD_MQTT];
        struct mqtt_stats ms;
        mqtt_sink_get_stats(fw->mqtt, &ms);
        int role = ms.connected ? LIVE : BACK;
        unsigned flags = fw->alert_prefix && strncmp(topic, fw->alert_prefix, fw->alert_len) == 0
                             ? SPOOL_F_ALERT
                             : 0;
        struct spool_mqtt_msg m = {.topic = topic,
                                   .topic_len = tlen,
                                   .payload = payload,
                                   .payload_len = len,
                                   .qos = qos,
                                   .retain = retain};
        uint64_t seq;
        int r = spool_append_mqtt(fw->sp, 1u << d->sink[role], flags, &m, &seq);
        if (r == 0) {
            d->more[role] = true;
            d->appended++;
            fw->dirty = true;
            if (user && fw->lat)
                fw->lat[seq % LAT_RING] = (struct lat_slot){seq, user};
            pump(fw, FWD_MQTT);
            return 0;
        }
        check_degraded(fw);
        fw->direct++;
        log_debug("spool_append_failed", "sink=mqtt err=\"%s\" delivered=direct", strerror(-r));
    }
    return mqtt_sink_publish(fw->mqtt, topic, payload, len, qos, retain, user << TOKEN_BITS);
}

int forward_write(struct forward *fw, const char *line, size_t len)
{
    if (!fw->influx)
        return 0;
    if (!line || !len || memchr(line, '\n', len))
        return -EINVAL;
    if (fw->sp) {
        struct fdest *d = &fw->d[FWD_INFLUX];
        struct influx_stats is;
        influx_sink_get_stats(fw->influx, &is);
        if (is.retries != fw->influx_retries_seen) {
            fw->influx_retries_seen = is.retries;
            d->up = false; /* a request failed since we last looked: until the next 2xx */
        }
        int role = d->up ? LIVE : BACK;
        int r = spool_append(fw->sp, 1u << d->sink[role], 0, line, len, NULL);
        if (r == 0) {
            d->more[role] = true;
            d->appended++;
            fw->dirty = true;
            pump(fw, FWD_INFLUX);
            return 0;
        }
        check_degraded(fw);
        fw->direct++;
        log_debug("spool_append_failed", "sink=influx err=\"%s\" delivered=direct", strerror(-r));
    }
    return influx_sink_write(fw->influx, line, len, 0);
}

size_t forward_pending(struct forward *fw, enum forward_dest dest, bool exact)
{
    size_t sp_n = sink_pending(fw, dest);
    struct fdest *d = &fw->d[dest];
    if (!fw->sp || !d->on)
        return sp_n;
    uint64_t out = d->out[LIVE] + d->out[BACK];
    uint64_t unsent;
    if (exact) {
        struct spool_stats st;
        spool_stats(fw->sp, &st);
        uint64_t p = st.pending[d->sink[LIVE]] + st.pending[d->sink[BACK]];
        unsent = p > out ? p - out : 0;
    } else {
        unsent = d->appended > d->handed_new ? d->appended - d->handed_new : 0;
    }
    return sp_n + (size_t)unsent;
}

void forward_get_stats(struct forward *fw, struct forward_stats *out)
{
    memset(out, 0, sizeof *out);
    out->enabled = fw->dir != NULL;
    out->replayed = fw->replayed;
    out->direct = fw->direct;
    out->degraded = fw->degraded != 0;
    if (!fw->sp)
        return;
    struct spool_stats st;
    spool_stats(fw->sp, &st);
    out->bytes = st.bytes;
    out->pending[FWD_MQTT] = st.pending[0] + st.pending[1];
    out->pending[FWD_INFLUX] = st.pending[2] + st.pending[3];
    for (unsigned k = 0; k < NSINKS; k++)
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

static int dup_opt(char **dst, const char *src)
{
    if (is_none(src))
        return 0;
    return (*dst = strdup(src)) ? 0 : -ENOMEM;
}

int forward_new(struct forward **out, struct ev_loop *loop, const struct forward_config *cfg,
                struct mqtt_sink *mqtt, struct influx_sink *influx, char *err, size_t errlen)
{
    int rc = -ENOMEM;
    struct forward *fw = calloc(1, sizeof *fw);
    *out = NULL;
    if (!fw)
        return -ENOMEM;
    fw->loop = loop;
    fw->mqtt = mqtt;
    fw->influx = influx;
    fw->mqtt_max_bytes = cfg->mqtt_max_bytes ? cfg->mqtt_max_bytes : SIZE_MAX;
    if (cfg->replay_share < 0 || cfg->replay_share > 1) {
        snprintf(err, errlen, "spool.replay_share: %g is not in [0, 1]", cfg->replay_share);
        rc = -EINVAL;
        goto fail;
    }
    fw->backlog_first = cfg->replay_share >= 1.0;
    if ((mqtt || influx) && dup_opt(&fw->dir, cfg->dir))
        goto fail;
    if (dup_opt(&fw->replay_prefix, cfg->replay_prefix) ||
        dup_opt(&fw->status_topic, cfg->status_topic) ||
        dup_opt(&fw->alert_prefix, cfg->alert_prefix))
        goto fail;
    fw->alert_len = fw->alert_prefix ? strlen(fw->alert_prefix) : 0;
    size_t win[2] = {cfg->mqtt_window ? cfg->mqtt_window : 200,
                     cfg->influx_window ? cfg->influx_window : 20000};
    for (int i = 0; i < 2; i++) {
        struct fdest *d = &fw->d[i];
        d->on = i == FWD_MQTT ? mqtt != NULL : influx != NULL;
        d->sink[LIVE] = (unsigned)i * 2;
        d->sink[BACK] = (unsigned)i * 2 + 1;
        d->up = true;
        d->window = win[i];
        double s = cfg->replay_share * (double)win[i];
        d->share_slots = fw->backlog_first                ? win[i]
                         : cfg->replay_share > 0 && s < 1 ? 1
                                                          : (size_t)s;
    }
    if (mqtt)
        mqtt_sink_set_ack_cb(mqtt, on_mqtt_ack, fw);
    if (influx) {
        influx_sink_set_callbacks(influx, on_influx_ack, on_influx_reject, fw);
        /* A 4xx-rejected line went to the dead-letter: release it like an acked one. */
        influx_sink_set_release_cb(influx, on_influx_ack);
    }
    if (fw->dir) {
        fw->scfg = (struct spool_config){
            .nsinks = NSINKS,
            .max_bytes = cfg->max_bytes,
            .segment_bytes = cfg->segment_bytes,
            .fsync = cfg->fsync,
            .sync_interval = cfg->sync_interval > 0 ? cfg->sync_interval : 0.1,
        };
        if (!(fw->lat = calloc(LAT_RING, sizeof *fw->lat)))
            goto fail;
        ev_prepare_init(&fw->prep, on_prepare);
        ev_prepare_start(loop, &fw->prep);
        ev_timer_init(&fw->tick, on_tick, fw->scfg.sync_interval, fw->scfg.sync_interval);
        ev_timer_start(loop, &fw->tick);
        rc = open_spool(fw);
        if (rc == -ENOMEM || rc == -EINVAL) {
            snprintf(err, errlen, "spool %s: %s", fw->dir, strerror(-rc));
            goto fail;
        }
    }
    *out = fw;
    return 0;
fail:
    /* The sinks outlive us: they must not call back into the freed object. */
    if (mqtt)
        mqtt_sink_set_ack_cb(mqtt, NULL, NULL);
    if (influx) {
        influx_sink_set_callbacks(influx, NULL, NULL, NULL);
        influx_sink_set_release_cb(influx, NULL);
    }
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
    free(fw->replay_prefix);
    free(fw->status_topic);
    free(fw->alert_prefix);
    free(fw->lat);
    buf_free(&fw->topic);
    free(fw);
}
