/*
 * gateway.c — the daemon's wiring: data path, gateway topics, reload, stats, shutdown.
 * See gateway.h for the picture.
 *
 * Everything runs on one libev loop in one thread: a packet is read, ruled and handed to
 * the sinks synchronously, so a reload (which happens between two callbacks) can never lose
 * or duplicate a packet, and no locking exists anywhere.
 */
#include "gateway.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "deadletter.h"
#include "extract.h"
#include "forward.h"
#include "frame.h"
#include "influx.h"
#include "lineproto.h"
#include "log.h"
#include "mqtt.h"
#include "rules.h"
#include "source.h"
#include "spool.h"
#include "util.h"

#define ERRLEN 512

static void gw_finish(struct gateway *gw, int code);
static void gw_begin_shutdown(struct gateway *gw, double timeout);

/* ------------------------------------------------------------------------------------------
 * Dry-run output
 * ---------------------------------------------------------------------------------------- */

/* The "# source:line rx_ns=..." header is printed lazily, before the first output of a call,
 * so text lines that produce nothing produce no noise. Packets print it unconditionally. */
static void dry_flush_header(struct gateway *gw)
{
    if (gw->dry_header) {
        fprintf(gw->dry, "%s\n", gw->dry_header);
        gw->dry_header = NULL;
    }
}

/* ------------------------------------------------------------------------------------------
 * Rule outputs -> sinks
 * ---------------------------------------------------------------------------------------- */

/*
 * Active alerts are counted from what rules publish: a retained message under
 * <prefix>/alerts/ whose payload carries "state":"firing" marks its topic active; any other
 * retained payload there clears it. This keeps alert logic entirely in the rules while the
 * gateway can still report how many are firing (stats field alerts_active).
 */
static void track_alert(struct gateway *gw, const char *topic, const char *payload, size_t len)
{
    if (strncmp(topic, gw->alerts_prefix, gw->alerts_prefix_len) != 0)
        return;
    static const char needle[] = "\"state\":\"firing\"";
    bool firing = memmem(payload, len, needle, sizeof needle - 1) != NULL;
    for (size_t i = 0; i < gw->nalerts; i++) {
        if (strcmp(gw->alerts[i], topic) == 0) {
            if (!firing) {
                free(gw->alerts[i]);
                gw->alerts[i] = gw->alerts[--gw->nalerts];
            }
            return;
        }
    }
    if (!firing)
        return;
    char **v = realloc(gw->alerts, (gw->nalerts + 1) * sizeof *v);
    if (!v)
        return;
    gw->alerts = v;
    if ((v[gw->nalerts] = strdup(topic)))
        gw->nalerts++;
}

static int out_publish(void *ud, const char *topic, const char *payload, size_t len, int qos,
                       bool retain)
{
    struct gateway *gw = ud;
    if (retain)
        track_alert(gw, topic, payload, len);
    if (gw->dry) {
        dry_flush_header(gw);
        fprintf(gw->dry, "PUBLISH %s qos=%d retain=%d %.*s\n", topic, qos, retain ? 1 : 0, (int)len,
                payload);
        gw->n.publishes++;
        return 0;
    }
    if (!gw->mqtt)
        return 0; /* MQTT disabled (--mqtt none): nothing to do, not an error */
    struct gw_lat_slot *slot = NULL;
    if (gw->lat.current && gw->lat.ring) {
        slot = &gw->lat.ring[gw->lat.current % GW_LAT_RING];
        slot->pending++;
    }
    /* Through the spool when one is configured; forward.c decides cursor and timing. */
    int rc = forward_publish(gw->fw, topic, payload, len, qos, retain, gw->lat.current);
    if (rc) {
        if (slot)
            slot->pending--;
        return rc;
    }
    gw->n.publishes++;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Publish-to-acknowledgement latency (see gateway.h)
 * ---------------------------------------------------------------------------------------- */

static void lat_begin(struct gateway *gw, double t0)
{
    struct gw_latency *l = &gw->lat;
    if (!gw->mqtt)
        return;
    if (!l->ring && !(l->ring = calloc(GW_LAT_RING, sizeof *l->ring)))
        return;
    struct gw_lat_slot *s = &l->ring[++l->seq % GW_LAT_RING];
    if (s->open)
        l->lost_track++;
    *s = (struct gw_lat_slot){.seq = l->seq, .t0 = t0, .pending = 0, .open = true};
    l->current = l->seq;
}

static void lat_sample(struct gw_latency *l, double v)
{
    if (!l->samples && !(l->samples = malloc(GW_LAT_SAMPLES * sizeof *l->samples)))
        return;
    if (l->nsamples < GW_LAT_SAMPLES)
        l->samples[l->nsamples++] = v;
}

static void lat_end(struct gateway *gw)
{
    struct gw_latency *l = &gw->lat;
    if (!l->current)
        return;
    struct gw_lat_slot *s = &l->ring[l->current % GW_LAT_RING];
    l->current = 0;
    if (s->open && s->pending == 0)
        s->open = false; /* nothing published for this packet */
}

static void on_mqtt_ack(void *ud, uint64_t token)
{
    struct gateway *gw = ud;
    struct gw_latency *l = &gw->lat;
    if (!token || !l->ring)
        return;
    struct gw_lat_slot *s = &l->ring[token % GW_LAT_RING];
    if (!s->open || s->seq != token || s->pending == 0)
        return;
    if (--s->pending == 0 && l->current != token) {
        s->open = false;
        lat_sample(l, util_mono() - s->t0);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* p50/p99/max in ms of the samples since the last call; resets them. */
static void lat_report(struct gw_latency *l, double *p50, double *p99, double *max, size_t *n)
{
    *p50 = *p99 = *max = 0;
    *n = l->nsamples;
    if (!l->nsamples)
        return;
    qsort(l->samples, l->nsamples, sizeof *l->samples, cmp_double);
    *p50 = l->samples[(l->nsamples - 1) / 2] * 1e3;
    *p99 = l->samples[(size_t)((double)(l->nsamples - 1) * 0.99)] * 1e3;
    *max = l->samples[l->nsamples - 1] * 1e3;
    l->nsamples = 0;
}

static int out_write(void *ud, const char *line, size_t len)
{
    struct gateway *gw = ud;
    if (gw->dry) {
        dry_flush_header(gw);
        fprintf(gw->dry, "WRITE %.*s\n", (int)len, line);
        gw->n.points++;
        return 0;
    }
    if (!gw->influx)
        return 0;
    int rc = forward_write(gw->fw, line, len);
    if (rc == 0)
        gw->n.points++;
    return rc;
}

/* Gateway-internal publishes (status, stats, deadletter): same sink, never printed. */
static void gw_publish(struct gateway *gw, const char *topic, const char *payload, int qos,
                       bool retain)
{
    if (gw->mqtt)
        mqtt_sink_publish(gw->mqtt, topic, payload, strlen(payload), qos, retain, 0);
}

static void on_deadletter(void *ud, const char *json, size_t len)
{
    struct gateway *gw = ud;
    if (gw->dry) {
        dry_flush_header(gw);
        fprintf(gw->dry, "DEADLETTER %.*s\n", (int)len, json);
        return;
    }
    if (gw->mqtt && gw->cfg->deadletter_topic)
        mqtt_sink_publish(gw->mqtt, gw->topic_deadletter, json, len, 1, false, 0);
}

static void on_influx_reject(void *ud, const char *lines, size_t len, long status,
                             const char *message)
{
    struct gateway *gw = ud;
    char err[ERRLEN];
    snprintf(err, sizeof err, "HTTP %ld: %s", status, message ? message : "");
    deadletter_put(gw->dl, DL_INFLUX_REJECTED, "influx", 0, err, lines, len);
}

/* ------------------------------------------------------------------------------------------
 * Rule status topic
 * ---------------------------------------------------------------------------------------- */

static void publish_rule_status(struct gateway *gw, const char *error)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "state", error ? "error" : "ok");
    cJSON_AddStringToObject(o, "file", gw->cfg->rules);
    if (error)
        cJSON_AddStringToObject(o, "error", error);
    cJSON_AddNumberToObject(o, "time", (double)(util_now_ns() / 1000000) / 1000.0);
    char *s = cJSON_PrintUnformatted(o);
    if (s)
        gw_publish(gw, gw->topic_rules, s, 1, true);
    free(s);
    cJSON_Delete(o);
}

/* ------------------------------------------------------------------------------------------
 * The data path: one framed line from a source
 * ---------------------------------------------------------------------------------------- */

static void check_backpressure(struct gateway *gw);

static void on_source_line(void *ud, struct source *src, char *line, size_t len, uint64_t line_no,
                           unsigned flags)
{
    struct gateway *gw = ud;
    const char *name = source_name(src);
    char err[ERRLEN];
    double t_read = util_mono();
    gw->n.lines++;

    if (flags & FRAME_OVERLONG) {
        gw->n.overlong++;
        log_warn("line_rejected", "source=%s line=%" PRIu64 " reason=overlong max_line=%" PRId64,
                 name, line_no, gw->cfg->max_line);
        snprintf(err, sizeof err, "line longer than max_line (%" PRId64 " bytes); first %zu kept",
                 gw->cfg->max_line, len);
        deadletter_put(gw->dl, DL_OVERLONG, name, line_no, err, line, len);
        return;
    }

    len = extract_clean(line, len);
    size_t off = 0, olen = 0;
    enum extract_result er = extract_object(line, len, &off, &olen);
    int64_t rx_ns = util_now_ns();

    if (er == EXTRACT_NONE) {
        gw->n.text_lines++;
        if (log_enabled(LL_DEBUG)) {
            char q[300];
            log_debug("text_line", "source=%s line=%" PRIu64 " text=%s", name, line_no,
                      log_quote(q, sizeof q, line, len));
        }
        if (gw->dry) {
            snprintf(gw->dry_header_buf, sizeof gw->dry_header_buf, "# %s:%" PRIu64 " (text)", name,
                     line_no);
            gw->dry_header = gw->dry_header_buf;
        }
        int rc = rules_line(gw->rules, name, line_no, rx_ns, line, len, err, sizeof err);
        gw->dry_header = NULL;
        if (rc) {
            gw->n.rule_errors++;
            log_error("rule_error", "source=%s line=%" PRIu64 " hook=on_line error=\"%s\"", name,
                      line_no, err);
            deadletter_put(gw->dl, DL_RULE_ERROR, name, line_no, err, line, len);
        }
        return;
    }
    if (er == EXTRACT_UNTERMINATED) {
        gw->n.unterminated++;
        log_warn("line_rejected", "source=%s line=%" PRIu64 " reason=unterminated offset=%zu", name,
                 line_no, off);
        deadletter_put(gw->dl, DL_UNTERMINATED, name, line_no,
                       "JSON object never closes (line cut short?)", line, len);
        return;
    }

    struct packet pkt = {
        .source = name, .line_no = line_no, .rx_ns = rx_ns, .json = line + off, .json_len = olen};
    if (gw->dry) {
        snprintf(gw->dry_header_buf, sizeof gw->dry_header_buf, "# %s:%" PRIu64 " rx_ns=%" PRId64,
                 name, line_no, rx_ns);
        gw->dry_header = gw->dry_header_buf;
        dry_flush_header(gw);
    }
    lat_begin(gw, t_read);
    int rc = rules_packet(gw->rules, &pkt, err, sizeof err);
    lat_end(gw);
    gw->dry_header = NULL;
    if (rc == -EBADMSG) {
        gw->n.invalid_json++;
        log_warn("line_rejected", "source=%s line=%" PRIu64 " reason=invalid_json error=\"%s\"",
                 name, line_no, err);
        deadletter_put(gw->dl, DL_INVALID_JSON, name, line_no, err, line, len);
    } else if (rc) {
        gw->n.rule_errors++;
        log_error("rule_error", "source=%s line=%" PRIu64 " hook=on_packet error=\"%s\"", name,
                  line_no, err);
        deadletter_put(gw->dl, DL_RULE_ERROR, name, line_no, err, line, len);
    } else {
        gw->n.packets++;
    }
    check_backpressure(gw);
}

static void on_source_done(void *ud, struct source *src, int errnum)
{
    struct gateway *gw = ud;
    /* source.c already logged the EOF with its counts, or the read error. */
    (void)src;
    (void)errnum;
    gw->finite_done++;
    if (gw->state == GW_RUNNING && gw->finite_done == gw->nsources) {
        /* Every source was finite and is finished: deliver what is pending, then exit. */
        gw_begin_shutdown(gw, gw->cfg->drain_timeout);
    }
}

/* ------------------------------------------------------------------------------------------
 * Back-pressure (finite sources only: a replay must not overflow the sink queues, while live
 * hardware is never paused)
 * ---------------------------------------------------------------------------------------- */

/* Sink queues plus records of this run still waiting in the spool (cheap: per packet). */
static size_t mqtt_pending(const struct gateway *gw)
{
    return gw->fw ? forward_pending(gw->fw, FWD_MQTT, false) : 0;
}

static size_t influx_pending(const struct gateway *gw)
{
    return gw->fw ? forward_pending(gw->fw, FWD_INFLUX, false) : 0;
}

static bool over_high_water(const struct gateway *gw, double frac)
{
    return (double)mqtt_pending(gw) > frac * (double)gw->cfg->mqtt_queue_max_msgs ||
           (double)influx_pending(gw) > frac * 4.0 * (double)gw->cfg->influx_batch_lines + 20000;
}

static void check_backpressure(struct gateway *gw)
{
    if (gw->paused || !gw->finite_sources || gw->dry)
        return;
    if (!over_high_water(gw, 0.5))
        return;
    gw->paused = true;
    for (size_t i = 0; i < gw->nsources; i++)
        source_pause(gw->sources[i]);
    log_debug("sources_paused", "mqtt_pending=%zu influx_pending=%zu", mqtt_pending(gw),
              influx_pending(gw));
    ev_timer_again(gw->loop, &gw->resume_timer);
}

static void on_resume_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, resume_timer);
    if (!gw->paused || over_high_water(gw, 0.25))
        return;
    gw->paused = false;
    ev_timer_stop(loop, w);
    for (size_t i = 0; i < gw->nsources; i++)
        source_resume(gw->sources[i]);
    log_debug("sources_resumed", NULL);
}

/* ------------------------------------------------------------------------------------------
 * Hot reload
 * ---------------------------------------------------------------------------------------- */

static void do_reload(struct gateway *gw, const char *why)
{
    char err[ERRLEN];
    int rc = rules_reload(gw->rules, err, sizeof err);
    if (rc) {
        gw->n.reload_failures++;
        log_error("rules_reload_failed", "trigger=%s file=%s error=\"%s\" keeping=previous", why,
                  gw->cfg->rules, err);
        publish_rule_status(gw, err);
        return;
    }
    gw->n.reloads++;
    log_info("rules_reloaded", "trigger=%s file=%s", why, gw->cfg->rules);
    publish_rule_status(gw, NULL);
}

static void on_rules_stat(struct ev_loop *loop, ev_stat *w, int revents)
{
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, rules_stat);
    /* Editors write in several steps (truncate, write, rename): wait for quiet. */
    ev_timer_again(loop, &gw->reload_timer);
}

static void on_reload_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, reload_timer);
    ev_timer_stop(loop, w);
    if (gw->rules_stat.attr.st_nlink == 0) {
        log_warn("rules_file_missing", "file=%s keeping=previous", gw->cfg->rules);
        return;
    }
    do_reload(gw, "file_changed");
}

/* ------------------------------------------------------------------------------------------
 * Ticks and stats
 * ---------------------------------------------------------------------------------------- */

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, tick_timer);
    char err[ERRLEN];
    if (gw->dry) {
        snprintf(gw->dry_header_buf, sizeof gw->dry_header_buf, "# tick");
        gw->dry_header = gw->dry_header_buf;
    }
    int rc = rules_tick(gw->rules, util_now_ns(), err, sizeof err);
    gw->dry_header = NULL;
    if (rc) {
        gw->n.rule_errors++;
        log_error("rule_error", "hook=on_tick error=\"%s\"", err);
        deadletter_put(gw->dl, DL_RULE_ERROR, "tick", 0, err, "", 0);
    }
}

void gateway_report_stats(struct gateway *gw)
{
    struct rules_stats rs;
    struct mqtt_stats ms = {0};
    struct influx_stats is = {0};
    double lat50, lat99, latmax;
    size_t latn;
    rules_get_stats(gw->rules, &rs);
    lat_report(&gw->lat, &lat50, &lat99, &latmax, &latn);
    /* Average rule time per call since the previous report (a gauge for dashboards). */
    uint64_t dcalls = rs.calls - gw->prev_rule_calls;
    double rule_avg_us = dcalls ? (rs.time_total - gw->prev_rule_time) / (double)dcalls * 1e6 : 0;
    gw->prev_rule_calls = rs.calls;
    gw->prev_rule_time = rs.time_total;
    if (gw->mqtt)
        mqtt_sink_get_stats(gw->mqtt, &ms);
    if (gw->influx)
        influx_sink_get_stats(gw->influx, &is);
    struct forward_stats fs = {0};
    if (gw->fw)
        forward_get_stats(gw->fw, &fs);
    double now = util_mono();
    double dt = now - (gw->prev_report > 0 ? gw->prev_report : gw->started);
    double replay_rate = dt > 0 ? (double)(fs.replayed - gw->prev_replayed) / dt : 0;
    gw->prev_replayed = fs.replayed;
    gw->prev_report = now;

    struct {
        const char *name;
        double v;
        bool integer;
    } f[] = {
        {"uptime_s", now - gw->started, false},
        {"lines", (double)gw->n.lines, true},
        {"packets", (double)gw->n.packets, true},
        {"text_lines", (double)gw->n.text_lines, true},
        {"overlong", (double)gw->n.overlong, true},
        {"unterminated", (double)gw->n.unterminated, true},
        {"invalid_json", (double)gw->n.invalid_json, true},
        {"rule_errors", (double)gw->n.rule_errors, true},
        {"rule_overruns", (double)rs.overruns, true},
        {"rule_time_us", rule_avg_us, false},
        {"rule_time_total_us", rs.time_total * 1e6, false},
        {"rule_time_max_us", rs.time_max * 1e6, false},
        {"rule_mem_bytes", (double)rs.mem_used, true},
        {"reloads", (double)gw->n.reloads, true},
        {"reload_failures", (double)gw->n.reload_failures, true},
        {"publishes", (double)gw->n.publishes, true},
        {"points", (double)gw->n.points, true},
        {"deadletter", (double)deadletter_total(gw->dl), true},
        {"alerts_active", (double)gw->nalerts, true},
        {"spool_bytes", (double)fs.bytes, true},
        {"spool_pending_mqtt", (double)fs.pending[FWD_MQTT], true},
        {"spool_pending_influx", (double)fs.pending[FWD_INFLUX], true},
        {"spool_oldest_age_s", fs.oldest_age, false},
        {"spool_replayed", (double)fs.replayed, true},
        {"spool_replay_rate", replay_rate, false},
        {"spool_drops_full", (double)fs.drops_full, true},
        {"spool_drops_corrupt", (double)fs.drops_corrupt, true},
        {"spool_append_errors", (double)fs.append_errors, true},
        {"spool_degraded", fs.degraded ? 1 : 0, true},
        {"mqtt_connected", ms.connected ? 1 : 0, true},
        {"mqtt_queue", (double)ms.queued, true},
        {"mqtt_inflight", (double)ms.inflight, true},
        {"mqtt_acked", (double)ms.acked, true},
        {"mqtt_dropped", (double)ms.dropped, true},
        {"mqtt_reconnects", (double)ms.reconnects, true},
        {"mqtt_ack_samples", (double)latn, true},
        {"mqtt_ack_p50_ms", lat50, false},
        {"mqtt_ack_p99_ms", lat99, false},
        {"mqtt_ack_max_ms", latmax, false},
        {"influx_pending", (double)is.pending_lines, true},
        {"influx_written", (double)is.lines_written, true},
        {"influx_batches", (double)is.batches, true},
        {"influx_retries", (double)is.retries, true},
        {"influx_rejected", (double)is.lines_rejected, true},
        {"influx_dropped", (double)is.lines_dropped, true},
    };

    /* Log line + JSON on <prefix>/gateway/stats + a point in measurement "iiotgw". */
    struct buf *b = &gw->scratch;
    buf_clear(b);
    cJSON *o = cJSON_CreateObject();
    struct lp_field lf[ARRAY_LEN(f)];
    for (size_t i = 0; i < ARRAY_LEN(f); i++) {
        if (f[i].integer)
            buf_printf(b, "%s%s=%.0f", i ? " " : "", f[i].name, f[i].v);
        else
            buf_printf(b, "%s%s=%.3f", i ? " " : "", f[i].name, f[i].v);
        if (o)
            cJSON_AddNumberToObject(o, f[i].name, f[i].v);
        lf[i].key = f[i].name;
        if (f[i].integer) {
            lf[i].type = LP_INT;
            lf[i].v.i = (int64_t)f[i].v;
        } else {
            lf[i].type = LP_FLOAT;
            lf[i].v.f = f[i].v;
        }
    }
    log_info("stats", "%s", b->p ? b->p : "");
    if (o) {
        char *s = cJSON_PrintUnformatted(o);
        if (s)
            gw_publish(gw, gw->topic_stats, s, 0, false);
        free(s);
        cJSON_Delete(o);
    }
    if (gw->influx || gw->dry) {
        struct lp_tag tag = {"gateway", gw->cfg->gateway_id};
        buf_clear(b);
        if (lp_encode(b, "iiotgw", &tag, 1, lf, ARRAY_LEN(lf), util_now_ns()) == 0) {
            if (gw->dry)
                fprintf(gw->dry, "# stats\nWRITE %s\n", b->p);
            else
                influx_sink_write(gw->influx, b->p, b->len, 0);
        }
    }
}

static void on_stats_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    gateway_report_stats(container_of(w, struct gateway, stats_timer));
}

/* ------------------------------------------------------------------------------------------
 * Signals and shutdown
 *
 * Shutdown is a small state machine driven by drain_timer:
 *   RUNNING  -> DRAINING (all finite sources hit EOF) or STOPPING (SIGINT/SIGTERM):
 *               sources stopped, InfluxDB batch flushed, wait until nothing is pending or
 *               the deadline passes;
 *   DRAINING -> STOPPING on a first signal: the deadline shrinks to shutdown_timeout;
 *   STOPPING -> CLOSING at once on a second signal (the wait is skipped);
 *   -> CLOSING: MQTT publishes "offline" and disconnects; exec children are reaped;
 *   -> loop ends.
 * ---------------------------------------------------------------------------------------- */

static void on_mqtt_closed(void *ud)
{
    struct gateway *gw = ud;
    ev_break(gw->loop, EVBREAK_ALL);
}

static bool sources_stopped(const struct gateway *gw)
{
    for (size_t i = 0; i < gw->nsources; i++)
        if (!source_is_stopped(gw->sources[i]))
            return false;
    return true;
}

/* Exact counts: spooled records of earlier runs must be delivered before exit 0 too. */
static void pending_exact(struct gateway *gw, size_t *mp, size_t *ip)
{
    *mp = gw->fw ? forward_pending(gw->fw, FWD_MQTT, true) : 0;
    *ip = gw->fw ? forward_pending(gw->fw, FWD_INFLUX, true) : 0;
}

static void gw_finish(struct gateway *gw, int code)
{
    if (gw->state == GW_CLOSING)
        return;
    gw->state = GW_CLOSING;
    if (code > gw->exit_code)
        gw->exit_code = code;
    /* The final stats point goes out too: flush it and give it (and the children to be
     * reaped) a bounded moment below. */
    gateway_report_stats(gw);
    if (gw->influx)
        influx_sink_flush(gw->influx);
    gw->drain_deadline = util_mono() + 3.0;
    ev_timer_again(gw->loop, &gw->drain_timer);
}

static void on_drain_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, drain_timer);
    double now = util_mono();

    if (gw->state == GW_CLOSING) {
        bool busy = !sources_stopped(gw) || (gw->influx && influx_sink_pending(gw->influx));
        if (busy && now < gw->drain_deadline)
            return;
        ev_timer_stop(loop, w);
        if (gw->mqtt)
            mqtt_sink_close(gw->mqtt, 2.0, on_mqtt_closed, gw);
        else
            ev_break(loop, EVBREAK_ALL);
        return;
    }

    size_t mp, ip;
    pending_exact(gw, &mp, &ip);
    if (mp == 0 && ip == 0) {
        log_info("drained", "state=%s", gw->state == GW_DRAINING ? "eof" : "signal");
        gw_finish(gw, GW_EXIT_OK);
        return;
    }
    if (now >= gw->drain_deadline) {
        log_error("drain_timeout", "mqtt_pending=%zu influx_pending=%zu undelivered=true", mp, ip);
        gw_finish(gw, GW_EXIT_UNDELIVERED);
    }
}

/* RUNNING -> DRAINING (every source finished) or STOPPING (a signal). */
static void gw_begin_shutdown(struct gateway *gw, double timeout)
{
    if (gw->state != GW_RUNNING)
        return;
    gw->state = gw->finite_done == gw->nsources ? GW_DRAINING : GW_STOPPING;
    for (size_t i = 0; i < gw->nsources; i++)
        source_stop(gw->sources[i]);
    ev_timer_stop(gw->loop, &gw->resume_timer);
    if (gw->influx)
        influx_sink_flush(gw->influx);
    gw->drain_deadline = util_mono() + timeout;
    ev_timer_again(gw->loop, &gw->drain_timer);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    (void)loop;
    struct gateway *gw;
    switch (w->signum) {
    case SIGHUP:
        gw = container_of(w, struct gateway, sig_hup);
        do_reload(gw, "sighup");
        break;
    case SIGUSR1:
        gw = container_of(w, struct gateway, sig_usr1);
        gateway_report_stats(gw);
        break;
    case SIGINT:
    case SIGTERM: {
        gw = w->signum == SIGINT ? container_of(w, struct gateway, sig_int)
                                 : container_of(w, struct gateway, sig_term);
        const char *name = w->signum == SIGINT ? "SIGINT" : "SIGTERM";
        switch (gw->state) {
        case GW_RUNNING:
            log_info("shutdown", "signal=%s", name);
            gw_begin_shutdown(gw, gw->cfg->shutdown_timeout);
            break;
        case GW_DRAINING: {
            /* The first signal, arriving while the EOF drain waits: it bounds the wait by
             * shutdown_timeout like any first signal, it does not skip it. */
            log_info("shutdown", "signal=%s during=drain", name);
            gw->state = GW_STOPPING;
            double deadline = util_mono() + gw->cfg->shutdown_timeout;
            if (deadline < gw->drain_deadline)
                gw->drain_deadline = deadline;
            break;
        }
        case GW_STOPPING: {
            /* A second signal means "now": skip the wait. The exit code still says whether
             * anything was left undelivered. */
            size_t mp, ip;
            pending_exact(gw, &mp, &ip);
            log_warn("shutdown_forced", "mqtt_pending=%zu influx_pending=%zu", mp, ip);
            gw_finish(gw, mp || ip ? GW_EXIT_UNDELIVERED : GW_EXIT_OK);
            break;
        }
        case GW_CLOSING:
            break; /* past the wait already: the bounded close runs its course */
        }
        break;
    }
    }
}

/* ------------------------------------------------------------------------------------------
 * Setup
 * ---------------------------------------------------------------------------------------- */

static int setup_mqtt(struct gateway *gw, char *err, size_t errlen)
{
    const struct config *c = gw->cfg;
    struct mqtt_config mc = {0};
    char storage[1024];
    int rc = mqtt_parse_url(c->mqtt_url, &mc, storage, sizeof storage, err, errlen);
    if (rc)
        return rc;
    mc.cafile = c->mqtt_cafile;
    mc.capath = c->mqtt_capath;
    mc.certfile = c->mqtt_certfile;
    mc.keyfile = c->mqtt_keyfile;
    mc.tls_insecure = c->mqtt_tls_insecure;
    if (c->mqtt_password)
        mc.password = c->mqtt_password;
    mc.client_id = c->mqtt_client_id;
    mc.protocol = (int)c->mqtt_protocol;
    mc.keepalive = (int)c->mqtt_keepalive;
    mc.clean_session = c->mqtt_clean_session;
    mc.session_expiry = (unsigned)c->mqtt_session_expiry;
    mc.status_topic = gw->topic_status;
    mc.queue_max_msgs = (size_t)c->mqtt_queue_max_msgs;
    mc.queue_max_bytes = (size_t)c->mqtt_queue_max_bytes;
    mc.max_inflight = (unsigned)c->mqtt_max_inflight;
    mc.backoff_base = c->mqtt_backoff_base;
    mc.backoff_max = c->mqtt_backoff_max;
    /* Acks reach on_mqtt_ack through forward.c (setup_forward), which owns the tokens. */
    return mqtt_sink_new(&gw->mqtt, gw->loop, &mc, err, errlen);
}

static int setup_influx(struct gateway *gw, char *err, size_t errlen)
{
    const struct config *c = gw->cfg;
    struct influx_config ic = {
        .url = c->influx_url,
        .api = (int)c->influx_api,
        .org = c->influx_org,
        .bucket = c->influx_bucket,
        .db = c->influx_db,
        .rp = c->influx_rp,
        .token = c->influx_token,
        .batch_lines = (size_t)c->influx_batch_lines,
        .linger = c->influx_linger,
        .gzip = c->influx_gzip,
        .timeout = c->influx_timeout,
        .queue_max_bytes = (size_t)c->influx_queue_max_bytes,
        .backoff_base = c->influx_backoff_base,
        .backoff_max = c->influx_backoff_max,
    };
    /* Rejects reach on_influx_reject through forward.c (setup_forward). */
    return influx_sink_new(&gw->influx, gw->loop, &ic, err, errlen);
}

static int setup_forward(struct gateway *gw, char *err, size_t errlen)
{
    const struct config *c = gw->cfg;
    int64_t mw = 2 * c->mqtt_max_inflight;
    if (mw > c->mqtt_queue_max_msgs)
        mw = c->mqtt_queue_max_msgs; /* the sink's FIFO must never overflow */
    struct forward_config fc = {
        .dir = c->spool_dir,
        .fsync = spool_fsync_parse(c->spool_fsync),
        .sync_interval = c->spool_sync_interval,
        .max_bytes = (uint64_t)c->spool_max_bytes,
        .segment_bytes = (uint64_t)c->spool_segment_bytes,
        .replay_share = c->spool_replay_share,
        .replay_prefix = c->spool_replay_prefix,
        .mqtt_window = (size_t)mw,
        .influx_window = (size_t)(4 * c->influx_batch_lines),
        .mqtt_max_bytes = (size_t)c->mqtt_queue_max_bytes,
        .status_topic = gw->topic_spool,
        .alert_prefix = gw->alerts_prefix,
    };
    int rc = forward_new(&gw->fw, gw->loop, &fc, gw->mqtt, gw->influx, err, errlen);
    if (rc)
        return rc;
    forward_set_callbacks(gw->fw, on_mqtt_ack, on_influx_reject, gw);
    return 0;
}

int gateway_init(struct gateway *gw, struct ev_loop *loop, const struct config *cfg, char *err,
                 size_t errlen)
{
    int rc;
    memset(gw, 0, sizeof *gw);
    gw->loop = loop;
    gw->cfg = cfg;
    gw->started = util_mono();
    gw->dry = cfg->dry_run ? stdout : NULL;
    snprintf(gw->topic_status, sizeof gw->topic_status, "%s/gateway/status", cfg->prefix);
    snprintf(gw->topic_stats, sizeof gw->topic_stats, "%s/gateway/stats", cfg->prefix);
    snprintf(gw->topic_rules, sizeof gw->topic_rules, "%s/gateway/rules", cfg->prefix);
    snprintf(gw->topic_deadletter, sizeof gw->topic_deadletter, "%s/gateway/deadletter",
             cfg->prefix);
    snprintf(gw->topic_spool, sizeof gw->topic_spool, "%s/gateway/spool", cfg->prefix);
    snprintf(gw->alerts_prefix, sizeof gw->alerts_prefix, "%s/alerts/", cfg->prefix);
    gw->alerts_prefix_len = strlen(gw->alerts_prefix);

    /* Sinks first, so that the rule's init() and the rule status can publish. */
    if (!gw->dry && !config_is_none(cfg->mqtt_url) && (rc = setup_mqtt(gw, err, errlen)))
        return rc;
    if (!gw->dry && !config_is_none(cfg->influx_url) && (rc = setup_influx(gw, err, errlen)))
        return rc;
    /* The spool opens only when a sink exists (never with --dry-run or both sinks none). */
    if (!gw->dry && (rc = setup_forward(gw, err, errlen)))
        return rc;

    rc = deadletter_open(&gw->dl, gw->dry ? NULL : cfg->deadletter_file, on_deadletter, gw, err,
                         errlen);
    if (rc)
        return rc;

    struct rule_sink sink = {.ud = gw, .publish = out_publish, .write = out_write};
    struct rules_config rc_cfg = {
        .path = cfg->rules,
        .prefix = cfg->prefix,
        .mem_limit = (size_t)cfg->rule_mem_limit,
        .instr_limit = (uint64_t)cfg->rule_instr_limit,
        .lua_path = cfg->lua_path,
    };
    rc = rules_open(&gw->rules, &rc_cfg, &sink, err, errlen);
    if (rc)
        return rc;
    log_info("rules_loaded", "file=%s", cfg->rules);
    publish_rule_status(gw, NULL);

    /* Sources last: from here on lines flow. */
    gw->sources = calloc(cfg->nsources ? cfg->nsources : 1, sizeof *gw->sources);
    if (!gw->sources)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->nsources; i++) {
        struct source_config sc = {
            .spec = cfg->sources[i],
            .index = (int)i,
            .max_line = (size_t)cfg->max_line,
        };
        rc =
            source_new(&gw->sources[i], loop, &sc, on_source_line, on_source_done, gw, err, errlen);
        if (rc)
            return rc;
        gw->nsources++;
        if (source_is_finite(gw->sources[i]))
            gw->finite_sources++;
        log_info("source_added", "source=%s spec=%s", source_name(gw->sources[i]), cfg->sources[i]);
    }

    ev_signal_init(&gw->sig_int, on_signal, SIGINT);
    ev_signal_init(&gw->sig_term, on_signal, SIGTERM);
    ev_signal_init(&gw->sig_hup, on_signal, SIGHUP);
    ev_signal_init(&gw->sig_usr1, on_signal, SIGUSR1);
    ev_signal_start(loop, &gw->sig_int);
    ev_signal_start(loop, &gw->sig_term);
    ev_signal_start(loop, &gw->sig_hup);
    ev_signal_start(loop, &gw->sig_usr1);

    ev_stat_init(&gw->rules_stat, on_rules_stat, cfg->rules, 1.0);
    ev_stat_start(loop, &gw->rules_stat);
    ev_init(&gw->reload_timer, on_reload_timer);
    gw->reload_timer.repeat = cfg->reload_debounce > 0 ? cfg->reload_debounce : 0.01;

    ev_timer_init(&gw->tick_timer, on_tick, cfg->tick_interval, cfg->tick_interval);
    ev_timer_start(loop, &gw->tick_timer);
    if (cfg->stats_interval > 0 && !gw->dry) {
        ev_timer_init(&gw->stats_timer, on_stats_timer, cfg->stats_interval, cfg->stats_interval);
        ev_timer_start(loop, &gw->stats_timer);
    }
    ev_init(&gw->drain_timer, on_drain_timer);
    gw->drain_timer.repeat = 0.02;
    ev_init(&gw->resume_timer, on_resume_timer);
    gw->resume_timer.repeat = 0.02;

    /* Timers, signal and stat watchers must not keep a finished finite run alive on their
     * own: the loop's lifetime is managed explicitly with ev_break. */
    if (cfg->nsources == 0)
        log_warn("no_sources", "hint=\"add -s file:PATH, -s stdin, -s exec:CMD ...\"");
    return 0;
}

int gateway_run(struct gateway *gw)
{
    ev_run(gw->loop, 0);
    if (gw->dry)
        fflush(gw->dry);
    if (gw->mqtt) {
        struct mqtt_stats ms;
        mqtt_sink_get_stats(gw->mqtt, &ms);
        if (ms.dropped && gw->exit_code < GW_EXIT_UNDELIVERED)
            gw->exit_code = GW_EXIT_UNDELIVERED;
    }
    if (gw->influx) {
        struct influx_stats is;
        influx_sink_get_stats(gw->influx, &is);
        if (is.lines_dropped && gw->exit_code < GW_EXIT_UNDELIVERED)
            gw->exit_code = GW_EXIT_UNDELIVERED;
    }
    log_info("exit", "code=%d packets=%" PRIu64 " deadletter=%" PRIu64, gw->exit_code,
             gw->n.packets, deadletter_total(gw->dl));
    return gw->exit_code;
}

void gateway_free(struct gateway *gw)
{
    if (gw->loop) {
        ev_signal_stop(gw->loop, &gw->sig_int);
        ev_signal_stop(gw->loop, &gw->sig_term);
        ev_signal_stop(gw->loop, &gw->sig_hup);
        ev_signal_stop(gw->loop, &gw->sig_usr1);
        ev_stat_stop(gw->loop, &gw->rules_stat);
        ev_timer_stop(gw->loop, &gw->reload_timer);
        ev_timer_stop(gw->loop, &gw->tick_timer);
        ev_timer_stop(gw->loop, &gw->stats_timer);
        ev_timer_stop(gw->loop, &gw->drain_timer);
        ev_timer_stop(gw->loop, &gw->resume_timer);
    }
    for (size_t i = 0; i < gw->nsources; i++)
        source_free(gw->sources[i]);
    free(gw->sources);
    gw->sources = NULL;
    if (gw->rules)
        rules_close(gw->rules);
    if (gw->mqtt)
        mqtt_sink_free(gw->mqtt);
    if (gw->influx)
        influx_sink_free(gw->influx);
    /* After the sinks: no ack can reach it any more; closing writes the state file. */
    forward_free(gw->fw);
    gw->fw = NULL;
    deadletter_close(gw->dl);
    buf_free(&gw->scratch);
    for (size_t i = 0; i < gw->nalerts; i++)
        free(gw->alerts[i]);
    free(gw->alerts);
    gw->alerts = NULL;
    gw->nalerts = 0;
    free(gw->lat.ring);
    free(gw->lat.samples);
    gw->lat.ring = NULL;
    gw->lat.samples = NULL;
    gw->rules = NULL;
    gw->mqtt = NULL;
    gw->influx = NULL;
    gw->dl = NULL;
}
