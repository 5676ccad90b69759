/*
 * gateway.c — the daemon's wiring: data path, gateway topics, reload, shutdown.
 * See gateway.h for the picture.
 *
 * Everything runs on one libev loop in one thread: a packet is read, ruled and handed to
 * the sinks synchronously, so a reload (which happens between two callbacks) can never lose
 * or duplicate a packet, and no locking exists anywhere.
 *
 * Every output — rule publishes and points, the gateway's status, stats and dead-letter
 * messages — goes through forward.c to whatever sinks were set up (MQTT, InfluxDB, or the
 * --dry-run printer): this file does not know which.
 */
#include "gateway.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "deadletter.h"
#include "statedir.h"
#include "dryrun.h"
#include "extract.h"
#include "frame.h"
#include "hadisc.h"
#include "influx.h"
#include "log.h"
#include "mqtt.h"
#include "mqttrec.h"
#include "params.h"
#include "paramsrv.h"
#include "replay.h"
#include "rules.h"
#include "source.h"
#include "util.h"

#define ERRLEN 512

static void gw_finish(struct gateway *gw, int code);
static void gw_begin_shutdown(struct gateway *gw, double timeout);

/* ------------------------------------------------------------------------------------------
 * Outputs -> forward.c
 * ---------------------------------------------------------------------------------------- */

/*
 * What the following outputs belong to, for the --dry-run printer's "# source:line" header
 * (printed before the first output, or at once with `now`). A no-op without the printer, so
 * the data path pays nothing for it.
 */
static void gw_note(struct gateway *gw, bool now, const char *fmt, ...)
{
    if (!gw->dry)
        return;
    if (!fmt) {
        dryrun_header(gw->dry, NULL, false);
        return;
    }
    char h[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h, sizeof h, fmt, ap);
    va_end(ap);
    dryrun_header(gw->dry, h, now);
}

static int gw_out_publish(void *ud, const char *topic, const char *payload, size_t len, int qos,
                          bool retain)
{
    struct gateway *gw = ud;
    bool alert = alerts_match(&gw->alerts, topic);
    if (retain) {
        alerts_track(&gw->alerts, topic, payload, len);
        if (gw->ha && alert)
            hadisc_seen_alert(gw->ha, topic);
    }
    if (!forward_has(gw->fw, FWD_MQTT))
        return 0; /* MQTT disabled (--mqtt none): nothing to do, not an error */
    unsigned flags = alert ? FWD_ALERT : 0;
    /* A replay must not overwrite a live site's retained state with old values: its retain
     * flags go unless replay.retain; replay.prefix moves every topic under its own level. */
    retain = retain && gw->replay_retain;
    if (!config_is_none(gw->cfg->replay_prefix)) {
        gw->topic.len = 0;
        if (buf_printf(&gw->topic, "%s/%s", gw->cfg->replay_prefix, topic) < 0)
            return -ENOMEM;
        topic = gw->topic.p;
    }
    uint64_t user = latency_token(&gw->lat);
    /* Through the spool when one is configured; forward.c decides cursor and timing. */
    int rc = forward_publish(gw->fw, topic, payload, len, qos, retain, flags, user);
    if (rc) {
        latency_unsent(&gw->lat, user);
        if (rc == -EINVAL) {
            /* The sink will never take it (e.g. larger than its queue bound): keep it. */
            char err[ERRLEN], qt[256];
            snprintf(err, sizeof err,
                     "topic %s: refused by the MQTT sink (payload of %zu bytes, "
                     "mqtt.queue_max_bytes=%" PRId64 ")",
                     log_quote(qt, sizeof qt, topic, (size_t)-1), len,
                     gw->cfg->mqtt_queue_max_bytes);
            deadletter_put(gw->dl, DL_MQTT_REJECTED, "mqtt", 0, err, payload, len);
        }
        return rc;
    }
    gw->n.publishes++;
    return 0;
}

static int gw_out_write(void *ud, const char *line, size_t len)
{
    struct gateway *gw = ud;
    if (!forward_has(gw->fw, FWD_INFLUX))
        return 0;
    int rc = forward_submit(gw->fw, FWD_INFLUX, line, len, 0);
    if (rc == 0) {
        gw->n.points++;
    } else if (rc == -EINVAL) {
        /* The sink will never take it (longer than one request may be): keep it. */
        char err[ERRLEN];
        snprintf(err, sizeof err,
                 "line of %zu bytes refused by the InfluxDB sink (influx.batch_bytes=%" PRId64 ")",
                 len, gw->cfg->influx_batch_bytes);
        deadletter_put(gw->dl, DL_INFLUX_REJECTED, "influx", 0, err, line, len);
    }
    return rc;
}

/* The gateway's own messages (status, stats, dead-letter): never spooled. */
static void gw_publish_own(struct gateway *gw, const char *topic, const char *payload, size_t len,
                           int qos, bool retain)
{
    if (gw->fw)
        forward_publish(gw->fw, topic, payload, len, qos, retain, FWD_INTERNAL, 0);
}

/* ------------------------------------------------------------------------------------------
 * Tunable parameters: the live rule follows every accepted change; MQTT commands
 * ---------------------------------------------------------------------------------------- */

static void gw_param_publish(void *ud, const char *topic, const char *payload, size_t len, int qos,
                             bool retain)
{
    gw_publish_own(ud, topic, payload, len, qos, retain);
}

static void gw_on_param_changed(void *ud, const struct param_info *pi, size_t slot, double old,
                                const struct param_origin *origin)
{
    (void)old;
    (void)origin;
    struct gateway *gw = ud;
    if (!gw->rules)
        return;
    char err[ERRLEN];
    gw_note(gw, true, "# param %s", pi->decl->name);
    int rc = rules_param_changed(gw->rules, pi->decl->name, pi->slots[slot].node, err, sizeof err);
    if (rc == -ECANCELED) {
        /* The value is applied; only the rule's reaction to it failed. */
        gw->n.rule_errors++;
        char qe[ERRLEN + 8];
        log_error("rule_error", "hook=on_param param=%s error=%s", pi->decl->name,
                  log_quote(qe, sizeof qe, err, (size_t)-1));
    }
}

/*
 * Inbound MQTT (called from inside the MQTT sink's read, see mqtt.h): Home Assistant's status
 * (hadisc.c), then parameter commands.
 */
static void gw_on_mqtt_message(void *ud, const char *topic, const void *payload, size_t len,
                               bool retained)
{
    struct gateway *gw = ud;
    if (gw->ha && hadisc_on_message(gw->ha, topic, payload, len))
        return;
    if (retained)
        return; /* a retained command would re-apply an old value at every reconnect */
    if (gw->psrv && paramsrv_on_message(gw->psrv, topic, payload, len))
        return;
    log_debug("mqtt_message_ignored", "topic=%s", topic);
}

/* Create the registry (persisted in the state directory, except with --dry-run) and its
 * routes; the rule declares into it when it loads. */
static int gw_setup_params(struct gateway *gw, char *err, size_t errlen)
{
    const struct config *c = gw->cfg;
    char file[4096], sock[4096];
    bool persist = !c->dry_run;
    if (persist && (statedir_file(c->state_dir, "params.conf", file, sizeof file) ||
                    statedir_file(c->state_dir, "params.sock", sock, sizeof sock))) {
        snprintf(err, errlen, "state_dir %s: too long for params.conf", c->state_dir);
        return -EINVAL;
    }
    int rc = params_open(&gw->params, persist ? file : NULL, err, errlen);
    if (rc)
        return rc;
    struct params_listener pl = {.ud = gw, .changed = gw_on_param_changed};
    if ((rc = params_listen(gw->params, &pl)))
        return rc;
    struct paramsrv_config pc = {
        .prefix = c->prefix,
        .socket_path = persist ? sock : NULL,
        .mqtt = gw->mqtt,
        .publish = c->dry_run ? NULL : gw_param_publish,
        .ud = gw,
    };
    if ((rc = paramsrv_new(&gw->psrv, gw->loop, gw->params, &pc, err, errlen)))
        return rc;
    if (gw->mqtt) {
        char f[2][256];
        paramsrv_filters(gw->psrv, f);
        for (int i = 0; i < 2; i++)
            if ((rc = mqtt_sink_subscribe(gw->mqtt, f[i], 1))) {
                snprintf(err, errlen, "mqtt: cannot subscribe to %s", f[i]);
                return rc;
            }
    }
    return 0;
}

static void gw_on_deadletter(void *ud, const char *json, size_t len)
{
    struct gateway *gw = ud;
    if (gw->deadletter_publish)
        gw_publish_own(gw, gw->topics.deadletter, json, len, 1, false);
}

static void gw_on_ack(void *ud, uint64_t user)
{
    struct gateway *gw = ud;
    latency_ack(&gw->lat, user);
}

static void gw_on_reject(void *ud, enum forward_dest dest, const char *data, size_t len,
                         long status, const char *message)
{
    struct gateway *gw = ud;
    char err[ERRLEN];
    if (dest == FWD_INFLUX) {
        snprintf(err, sizeof err, "HTTP %ld: %s", status, message ? message : "");
        deadletter_put(gw->dl, DL_INFLUX_REJECTED, "influx", 0, err, data, len);
        return;
    }
    /* An MQTT record: keep the payload as data, the topic in the error. */
    struct mqtt_rec m;
    char qt[256];
    if (mqtt_rec_decode(data, len, &m) == 0) {
        snprintf(err, sizeof err, "topic %s: %s", log_quote(qt, sizeof qt, m.topic, m.topic_len),
                 message ? message : "refused");
        deadletter_put(gw->dl, DL_MQTT_REJECTED, "mqtt", 0, err, m.payload, m.payload_len);
    } else {
        snprintf(err, sizeof err, "undecodable record: %s", message ? message : "refused");
        deadletter_put(gw->dl, DL_MQTT_REJECTED, "mqtt", 0, err, data, len);
    }
}

/* A rule value refused on its own (rules.h `refused`): the packet goes on, and is kept. */
static void gw_on_refused(void *ud, const char *msg)
{
    struct gateway *gw = ud;
    deadletter_put(gw->dl, DL_VALUE_REFUSED, gw->cur_src ? gw->cur_src : "tick", gw->cur_line, msg,
                   gw->cur_data ? gw->cur_data : "", gw->cur_data ? gw->cur_len : 0);
}

/* ------------------------------------------------------------------------------------------
 * Rule status topic
 * ---------------------------------------------------------------------------------------- */

static void gw_publish_rule_status(struct gateway *gw, const char *error)
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
        gw_publish_own(gw, gw->topics.rules, s, strlen(s), 1, true);
    free(s);
    cJSON_Delete(o);
}

/* ------------------------------------------------------------------------------------------
 * The data path: one framed line from a source
 * ---------------------------------------------------------------------------------------- */

/*
 * Something the gateway could not use: count it, log it, dead-letter it. `src` NULL is the
 * on_tick hook (no source line). `detail` completes the line_rejected log line.
 */
static void gw_unusable(struct gateway *gw, enum dl_reason reason, const char *src,
                        uint64_t line_no, const char *hook, const char *detail, const char *err,
                        const char *data, size_t len)
{
    switch (reason) {
    case DL_OVERLONG:
        gw->n.overlong++;
        break;
    case DL_UNTERMINATED:
        gw->n.unterminated++;
        break;
    case DL_INVALID_JSON:
        gw->n.invalid_json++;
        break;
    default:
        gw->n.rule_errors++;
        break;
    }
    if (reason == DL_RULE_ERROR && src)
        log_error("rule_error", "source=%s line=%" PRIu64 " hook=%s error=%s", src, line_no, hook,
                  log_q(err));
    else if (reason == DL_RULE_ERROR)
        log_error("rule_error", "hook=%s error=%s", hook, log_q(err));
    else
        log_warn("line_rejected", "source=%s line=%" PRIu64 " reason=%s %s", src, line_no,
                 deadletter_reason_name(reason), detail);
    deadletter_put(gw->dl, reason, src ? src : "tick", line_no, err, data, len);
}

static void gw_check_backpressure(struct gateway *gw);

static void gw_set_current(struct gateway *gw, const char *src, uint64_t line_no, const char *data,
                           size_t len)
{
    gw->cur_src = src;
    gw->cur_line = line_no;
    gw->cur_data = data;
    gw->cur_len = len;
}

/* One framed line of source `name` with its receive time (the clock's now, or the replay's
 * time for it): the timestamp of its points. */
static void gw_line(struct gateway *gw, const char *name, char *line, size_t len, uint64_t line_no,
                    unsigned flags, int64_t rx_ns)
{
    char err[ERRLEN], detail[ERRLEN + 16];
    double t_read = util_mono();
    gw->n.lines++;

    if (flags & FRAME_OVERLONG) {
        snprintf(detail, sizeof detail, "max_line=%" PRId64, gw->cfg->max_line);
        snprintf(err, sizeof err, "line longer than max_line (%" PRId64 " bytes); first %zu kept",
                 gw->cfg->max_line, len);
        gw_unusable(gw, DL_OVERLONG, name, line_no, NULL, detail, err, line, len);
        return;
    }

    len = extract_clean(line, len);
    size_t off = 0, olen = 0;
    enum extract_result er = extract_object(line, len, &off, &olen);

    if (er == EXTRACT_NONE) {
        gw->n.text_lines++;
        if (log_enabled(LL_DEBUG)) {
            char q[300];
            log_debug("text_line", "source=%s line=%" PRIu64 " text=%s", name, line_no,
                      log_quote(q, sizeof q, line, len));
        }
        gw_note(gw, false, "# %s:%" PRIu64 " (text)", name, line_no);
        gw_set_current(gw, name, line_no, line, len);
        int rc = rules_line(gw->rules, name, line_no, rx_ns, line, len, err, sizeof err);
        gw_set_current(gw, NULL, 0, NULL, 0);
        gw_note(gw, false, NULL);
        if (rc)
            gw_unusable(gw, DL_RULE_ERROR, name, line_no, "on_line", NULL, err, line, len);
        return;
    }
    if (er == EXTRACT_UNTERMINATED) {
        snprintf(detail, sizeof detail, "offset=%zu", off);
        gw_unusable(gw, DL_UNTERMINATED, name, line_no, NULL, detail,
                    "JSON object never closes (line cut short?)", line, len);
        return;
    }

    struct packet pkt = {
        .source = name, .line_no = line_no, .rx_ns = rx_ns, .json = line + off, .json_len = olen};
    gw_note(gw, true, "# %s:%" PRIu64 " rx_ns=%" PRId64, name, line_no, rx_ns);
    if (forward_has(gw->fw, FWD_MQTT))
        latency_begin(&gw->lat, t_read);
    gw_set_current(gw, name, line_no, line, len);
    int rc = rules_packet(gw->rules, &pkt, err, sizeof err);
    gw_set_current(gw, NULL, 0, NULL, 0);
    latency_end(&gw->lat);
    gw_note(gw, false, NULL);
    if (rc == -EBADMSG) {
        snprintf(detail, sizeof detail, "error=%s", log_q(err));
        gw_unusable(gw, DL_INVALID_JSON, name, line_no, NULL, detail, err, line, len);
    } else if (rc) {
        gw_unusable(gw, DL_RULE_ERROR, name, line_no, "on_packet", NULL, err, line, len);
    } else {
        gw->n.packets++;
    }
    gw_check_backpressure(gw);
}

void gateway_feed_line(struct gateway *gw, const char *source, char *line, size_t len,
                       uint64_t line_no, unsigned flags)
{
    gw_line(gw, source, line, len, line_no, flags, clock_now_ns(&gw->clock));
}

static void gw_on_source_line(void *ud, struct source *src, char *line, size_t len,
                              uint64_t line_no, unsigned flags)
{
    struct gateway *gw = ud;
    if (!gw->replay) {
        gw_line(gw, source_name(src), line, len, line_no, flags, clock_now_ns(&gw->clock));
        return;
    }
    size_t index = 0;
    while (index < gw->nsources && gw->sources[index] != src)
        index++;
    replay_feed(gw->replay, src, index, line, len, line_no, flags);
}

static void gw_replay_line(void *ud, struct source *src, char *line, size_t len, uint64_t line_no,
                           unsigned flags, int64_t t_ns)
{
    gw_line(ud, source_name(src), line, len, line_no, flags, t_ns);
}

static void gw_tick(struct gateway *gw, int64_t now_ns);

static void gw_replay_tick(void *ud, int64_t t_ns)
{
    gw_tick(ud, t_ns);
}

static void gw_replay_drained(void *ud);

static void gw_on_source_done(void *ud, struct source *src, int errnum)
{
    struct gateway *gw = ud;
    /* source.c already logged the EOF with its counts, or the read error. */
    (void)src;
    (void)errnum;
    gw->finite_done++;
    /* Lines still held for pacing go first: the drain starts once they are handed on. */
    if (gw->state == GW_RUNNING && gw->finite_done == gw->nsources && !replay_holding(gw->replay)) {
        /* Every source was finite and is finished: deliver what is pending, then exit. */
        gw_begin_shutdown(gw, gw->cfg->drain_timeout);
    }
}

/* ------------------------------------------------------------------------------------------
 * Back-pressure (finite sources only: a replay must not overflow the sink queues, while live
 * hardware is never paused)
 * ---------------------------------------------------------------------------------------- */

/*
 * Sink queues plus records of this run still waiting in the spool (cheap: per packet), above
 * `frac` of their bound? MQTT is bounded by the sink's FIFO. For InfluxDB the bound is the
 * pump's window (forward_config.window), counted once more as slack: with the spool on, the
 * pump keeps a whole window in the sink by design, and the records behind it in the spool
 * must be allowed to reach another window before a replay is paused.
 */
static bool gw_over_high_water(const struct gateway *gw, double frac)
{
    double iw = (double)gw->window[FWD_INFLUX];
    return (double)forward_pending(gw->fw, FWD_MQTT, false) >
               frac * (double)gw->cfg->mqtt_queue_max_msgs ||
           (double)forward_pending(gw->fw, FWD_INFLUX, false) > frac * iw + iw;
}

static void gw_check_backpressure(struct gateway *gw)
{
    if (gw->paused || !gw->finite_sources)
        return;
    if (!gw_over_high_water(gw, 0.5))
        return;
    gw->paused = true;
    for (size_t i = 0; i < gw->nsources; i++)
        source_pause(gw->sources[i]);
    log_debug("sources_paused", "mqtt_pending=%zu influx_pending=%zu",
              forward_pending(gw->fw, FWD_MQTT, false), forward_pending(gw->fw, FWD_INFLUX, false));
    ev_timer_again(gw->loop, &gw->resume_timer);
}

static void gw_on_resume_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, resume_timer);
    if (!gw->paused || gw_over_high_water(gw, 0.25))
        return;
    gw->paused = false;
    ev_timer_stop(loop, w);
    if (replay_holding(gw->replay))
        return; /* pacing holds them; gw_replay_drained resumes */
    for (size_t i = 0; i < gw->nsources; i++)
        source_resume(gw->sources[i]);
    log_debug("sources_resumed", NULL);
}

/* Every line held for pacing was handed on: read again, or start the drain after EOF. */
static void gw_replay_drained(void *ud)
{
    struct gateway *gw = ud;
    if (gw->state != GW_RUNNING)
        return;
    if (gw->finite_done == gw->nsources) {
        gw_begin_shutdown(gw, gw->cfg->drain_timeout);
        return;
    }
    if (gw->paused)
        return; /* back-pressure: the resume timer takes over */
    for (size_t i = 0; i < gw->nsources; i++)
        source_resume(gw->sources[i]);
}

/* ------------------------------------------------------------------------------------------
 * MQTT inbound and Home Assistant discovery
 * ---------------------------------------------------------------------------------------- */

static int gw_ha_publish(void *ud, const char *topic, const char *payload, size_t len)
{
    gw_publish_own(ud, topic, payload, len, 1, true);
    return 0;
}

/* Announce what the live rule declares (after the load and every successful reload). */
static void gw_ha_update(struct gateway *gw)
{
    if (!gw->ha)
        return;
    const struct rules_entity *ents;
    size_t n = rules_entities(gw->rules, &ents);
    hadisc_update(gw->ha, ents, n);
}

/* The params were (re)declared: their bounds and set may have changed. */
static void gw_ha_params_declared(void *ud)
{
    struct gateway *gw = ud;
    if (gw->ha)
        hadisc_set_params(gw->ha, gw->params);
}

static void gw_on_mqtt_connected(void *ud)
{
    struct gateway *gw = ud;
    /* The first connection sends what was queued meanwhile; after a reconnect the broker
     * may be a new one without our retained messages. */
    if (++gw->mqtt_connects > 1 && gw->ha)
        hadisc_republish(gw->ha);
}

/* Discovery on (ha_discovery with an MQTT sink): create it and subscribe to Home Assistant's
 * status topic. */
static int gw_setup_ha(struct gateway *gw, char *err, size_t errlen)
{
    const struct config *c = gw->cfg;
    if (!c->ha_discovery)
        return 0;
    if (!gw->mqtt) {
        log_warn("ha_discovery_off", "why=\"no MQTT sink (mqtt.url none, or --dry-run)\"");
        return 0;
    }
    struct hadisc_config hc = {
        .discovery_prefix = c->ha_discovery_prefix,
        .prefix = c->prefix,
        .gateway_id = c->gateway_id,
        .status_topic = gw->topics.status,
        .stats_topic = gw->topics.stats,
        .rules_topic = gw->topics.rules,
        .sw_version = IIOTGW_VERSION,
        .support_url = c->ha_discovery_support_url,
    };
    int rc = hadisc_new(&gw->ha, &hc, gw_ha_publish, gw);
    if (!rc)
        rc = mqtt_sink_subscribe(gw->mqtt, hadisc_ha_status_topic(gw->ha), 1);
    if (rc) {
        snprintf(err, errlen, "ha_discovery: %s", strerror(-rc));
        return rc;
    }
    log_info("ha_discovery_on", "discovery_prefix=%s", c->ha_discovery_prefix);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Hot reload
 * ---------------------------------------------------------------------------------------- */

static void gw_reload(struct gateway *gw, const char *why)
{
    char err[ERRLEN];
    int rc = rules_reload(gw->rules, err, sizeof err);
    if (rc) {
        gw->n.reload_failures++;
        log_error("rules_reload_failed", "trigger=%s file=%s error=%s keeping=previous", why,
                  log_q(gw->cfg->rules), log_q(err));
        gw_publish_rule_status(gw, err);
        return;
    }
    gw->n.reloads++;
    log_info("rules_reloaded", "trigger=%s file=%s", why, log_q(gw->cfg->rules));
    gw_publish_rule_status(gw, NULL);
    gw_ha_update(gw);
}

static void gw_on_rules_stat(struct ev_loop *loop, ev_stat *w, int revents)
{
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, rules_stat);
    /* Editors write in several steps (truncate, write, rename): wait for quiet. */
    ev_timer_again(loop, &gw->reload_timer);
}

static void gw_on_reload_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, reload_timer);
    ev_timer_stop(loop, w);
    if (gw->rules_stat.attr.st_nlink == 0) {
        log_warn("rules_file_missing", "file=%s keeping=previous", log_q(gw->cfg->rules));
        return;
    }
    gw_reload(gw, "file_changed");
}

/* ------------------------------------------------------------------------------------------
 * Ticks and stats
 * ---------------------------------------------------------------------------------------- */

static void gw_tick(struct gateway *gw, int64_t now_ns)
{
    char err[ERRLEN];
    gw_note(gw, false, "# tick");
    int rc = rules_tick(gw->rules, now_ns, err, sizeof err);
    gw_note(gw, false, NULL);
    if (rc)
        gw_unusable(gw, DL_RULE_ERROR, NULL, 0, "on_tick", NULL, err, "", 0);
}

/*
 * Give the heap's free pages back once the gateway has gone quiet: no line for a whole tick
 * and nothing pending in either sink. A burst leaves freed memory behind (sent InfluxDB batches
 * and their gzip state, spool read buffers, Lua garbage) that glibc keeps resident inside the
 * heap, where free() alone never returns it; malloc_trim(0) also releases whole free pages in
 * the middle of the heap. Once per quiet period, so a steady flow never pays for it, and it
 * takes microseconds for a heap this size.
 */
static void gw_trim_when_idle(struct gateway *gw)
{
    bool quiet = gw->n.lines == gw->trim_lines;
    gw->trim_lines = gw->n.lines;
    for (enum forward_dest d = FWD_MQTT; gw->fw && quiet && d < FWD_NDEST; d++)
        if (forward_has(gw->fw, d) && forward_pending(gw->fw, d, false))
            quiet = false;
    if (!quiet) {
        gw->trimmed = false;
        return;
    }
    if (!gw->trimmed) {
        malloc_trim(0);
        gw->trimmed = true;
    }
}

static void gw_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, tick_timer);
    gw_tick(gw, clock_now_ns(&gw->clock));
    gw_trim_when_idle(gw);
}

void gateway_feed_tick(struct gateway *gw)
{
    gw_tick(gw, clock_now_ns(&gw->clock));
}

/* The STATUS= line `systemctl status` shows while running. */
static const char *gw_status_text(const struct gateway *gw, char *st, size_t len)
{
    snprintf(st, len, "running: %zu source(s), %" PRIu64 " packets, %" PRIu64 " dead-lettered",
             gw->nsources, gw->n.packets, deadletter_total(gw->dl));
    return st;
}

static void gw_on_stats_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, stats_timer);
    gateway_report_stats(gw);
    char st[160];
    if (gw->ready)
        sdnotify_status(&gw->notify, gw_status_text(gw, st, sizeof st));
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

static void gw_on_sinks_closed(void *ud)
{
    struct gateway *gw = ud;
    ev_break(gw->loop, EVBREAK_ALL);
}

static bool gw_sources_stopped(const struct gateway *gw)
{
    for (size_t i = 0; i < gw->nsources; i++)
        if (!source_is_stopped(gw->sources[i]))
            return false;
    return true;
}

/* Exact counts: spooled records of earlier runs must be delivered before exit 0 too. */
static void gw_pending_exact(struct gateway *gw, size_t *mp, size_t *ip)
{
    *mp = forward_pending(gw->fw, FWD_MQTT, true);
    *ip = forward_pending(gw->fw, FWD_INFLUX, true);
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
    forward_flush(gw->fw);
    gw->drain_deadline = util_mono() + 3.0;
    ev_timer_again(gw->loop, &gw->drain_timer);
}

static void gw_on_drain_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct gateway *gw = container_of(w, struct gateway, drain_timer);
    double now = util_mono();

    if (gw->state == GW_CLOSING) {
        bool busy = !gw_sources_stopped(gw) || forward_sink_pending(gw->fw, FWD_INFLUX);
        if (busy && now < gw->drain_deadline)
            return;
        ev_timer_stop(loop, w);
        /* MQTT publishes "offline" and disconnects; without a sink to close, stop now. */
        if (!forward_close(gw->fw, 2.0, gw_on_sinks_closed, gw))
            ev_break(loop, EVBREAK_ALL);
        return;
    }

    size_t mp, ip;
    gw_pending_exact(gw, &mp, &ip);
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
    gw->ready = false;
    sdnotify_stopping(&gw->notify, gw->state == GW_DRAINING
                                       ? "draining: sources finished"
                                       : "stopping: delivering what is pending");
    uint64_t dropped = replay_drop(gw->replay);
    if (dropped)
        log_warn("clock_held_dropped", "lines=%" PRIu64 " why=shutdown", dropped);
    for (size_t i = 0; i < gw->nsources; i++)
        source_stop(gw->sources[i]);
    ev_timer_stop(gw->loop, &gw->resume_timer);
    forward_flush(gw->fw);
    gw->drain_deadline = util_mono() + timeout;
    ev_timer_again(gw->loop, &gw->drain_timer);
}

static void gw_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    (void)loop;
    struct gateway *gw;
    switch (w->signum) {
    case SIGHUP: {
        gw = container_of(w, struct gateway, sig_hup);
        /* The params file first (a technician's edit), then the rule. */
        char err[ERRLEN];
        int bad = params_reload_file(gw->params, err, sizeof err);
        if (bad < 0)
            log_error("params_file_failed", "error=\"%s\" keeping=current", err);
        gw_reload(gw, "sighup");
        break;
    }
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
            gw_pending_exact(gw, &mp, &ip);
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

/* The sinks (or the --dry-run printer in their place) and the pump over them. */
static int gw_setup_outputs(struct gateway *gw, FILE *dry_out, char *err, size_t errlen)
{
    const struct config *c = gw->cfg;
    int rc;
    if (c->dry_run || dry_out) {
        if ((rc = dryrun_new(&gw->dry, dry_out ? dry_out : stdout, gw->topics.deadletter)))
            return rc;
        for (int i = 0; i < FWD_NDEST; i++)
            gw->sinks[i] = dryrun_sink(gw->dry, (enum forward_dest)i);
    } else {
        if (!config_is_none(c->mqtt_url)) {
            struct mqtt_config mc;
            char storage[1024];
            struct mqtt_sink *m;
            if ((rc = gwconfig_mqtt(c, gw->topics.status, &mc, storage, sizeof storage, err,
                                    errlen)) ||
                (rc = mqtt_sink_new(&m, gw->loop, &mc, err, errlen)))
                return rc;
            gw->sinks[FWD_MQTT] = mqtt_sink_as_sink(m);
            gw->mqtt = m;
            struct mqtt_inbound in = {
                .message = gw_on_mqtt_message, .connected = gw_on_mqtt_connected, .ud = gw};
            mqtt_sink_set_inbound(m, &in);
        }
        if (!config_is_none(c->influx_url)) {
            struct influx_config ic;
            struct influx_sink *s;
            gwconfig_influx(c, &ic);
            if ((rc = influx_sink_new(&s, gw->loop, &ic, err, errlen)))
                return rc;
            gw->sinks[FWD_INFLUX] = influx_sink_as_sink(s);
        }
    }
    /* The spool opens only when a sink exists (never with --dry-run or both sinks none). */
    struct forward_config fc;
    gwconfig_forward(c, gw->topics.spool, &fc);
    for (int i = 0; i < FWD_NDEST; i++)
        gw->window[i] = fc.window[i];
    if ((rc = forward_new(&gw->fw, gw->loop, &fc, gw->sinks, err, errlen)))
        return rc;
    forward_set_callbacks(gw->fw, gw_on_ack, gw_on_reject, gw);
    return 0;
}

/* metrics.c's callbacks: the numbers from gwstats.c, readiness from the state machine. */
static int gw_render_metrics(void *ud, struct buf *out)
{
    return gateway_render_metrics(ud, out);
}

static bool gw_metrics_ready(void *ud)
{
    return gateway_is_ready(ud);
}

/*
 * The path of the first file source ("[NAME=]file:PATH"), whose mtime and span anchor a
 * replay clock by default; NULL when there is none.
 */
static const char *gw_first_file(const struct config *c)
{
    for (size_t i = 0; i < c->nsources; i++) {
        const char *s = c->sources[i];
        size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-");
        if (n && s[n] == '=')
            s += n + 1;
        if (!strncmp(s, "file:", 5) && s[5])
            return s + 5;
    }
    return NULL;
}

/* clock.mode packet/log: the virtual clock and the replay that moves it (before the rules
 * open, so init() already sees the capture's time). */
static int gw_setup_clock(struct gateway *gw, char *err, size_t errlen)
{
    const struct config *c = gw->cfg;
    int mode = clock_mode_parse(c->clock_mode);
    clock_init_wall(&gw->clock);
    gw->replay_retain = true;
    if (mode <= CLOCK_MODE_RECEIVE)
        return mode < 0 ? -EINVAL : 0;
    struct replay_config rc = {
        .mode = (enum clock_mode)mode,
        .field = c->clock_field,
        .unit_ns = clock_unit_parse(c->clock_unit),
        .have_start = !config_is_none(c->clock_start),
        .tick_interval = c->tick_interval,
        .scan_path = gw_first_file(c),
        .max_line = (size_t)c->max_line,
        .nsources = c->nsources,
    };
    if (rc.have_start && clock_parse_time(c->clock_start, &rc.start_ns))
        return -EINVAL; /* config_finish checked it */
    if (config_speed(c->clock_speed, &rc.speed))
        return -EINVAL;
    struct replay_cbs cbs = {
        .ud = gw, .line = gw_replay_line, .tick = gw_replay_tick, .drained = gw_replay_drained};
    int r = replay_new(&gw->replay, gw->loop, &rc, &gw->clock, &cbs, err, errlen);
    if (r)
        return r;
    gw->replay_retain = c->replay_retain;
    if (!config_is_none(c->mqtt_url) && config_is_none(c->replay_prefix) && !c->dry_run)
        log_warn("clock_replay_topics",
                 "prefix=%s retain=%s hint=\"a replay publishes on the "
                 "same topics as a live gateway with this prefix: --replay-prefix P or "
                 "--prefix P keeps them apart\"",
                 c->prefix, c->replay_retain ? "kept" : "dropped");
    return 0;
}

/*
 * What the daemon and an embedded gateway share: the outputs (`dry_out` non-NULL: the printer
 * writing there), the dead-letter and the rule engine.
 */
static int gw_init_core(struct gateway *gw, struct ev_loop *loop, const struct config *cfg,
                        FILE *dry_out, const struct clock *clk, char *err, size_t errlen)
{
    int rc;
    memset(gw, 0, sizeof *gw);
    gw->loop = loop;
    gw->cfg = cfg;
    gw->started = util_mono();
    if (clk) {
        gw->clock = *clk; /* the embedding owns the clock: no replay */
        gw->replay_retain = true;
    } else if ((rc = gw_setup_clock(gw, err, errlen))) {
        return rc;
    }
    gwconfig_topics(cfg, &gw->topics);
    alerts_init(&gw->alerts, cfg->prefix);
    /* The printer shows every dead-letter; otherwise deadletter_topic decides. */
    gw->deadletter_publish = cfg->deadletter_topic || cfg->dry_run || dry_out;

    /* The state directory before anything writes into it; the lock before the spool, so a
     * second instance is told who holds the directory, not only that the spool is busy.
     * Neither with --dry-run nor embedded: nothing is written there. */
    if (!cfg->dry_run && !dry_out) {
        pid_t holder;
        if ((rc = statedir_create(cfg->state_dir, err, errlen)) ||
            (rc = statedir_lock(&gw->lock, cfg->state_dir, &holder, err, errlen)))
            return rc;
        log_info("state_dir", "dir=%s lock=%s/%s", cfg->state_dir, cfg->state_dir,
                 STATEDIR_LOCK_NAME);
        if (config_is_none(cfg->spool_dir))
            log_warn("spool_disabled",
                     "spool=none risk=\"outputs are held in memory only: a broker or database "
                     "outage longer than the memory queues, a burst, or a restart loses data\" "
                     "hint=\"remove spool.dir=none (default: %s/spool)\"",
                     cfg->state_dir);
    }

    /* Sinks first, so that the rule's init() and the rule status can publish. */
    if ((rc = gw_setup_outputs(gw, dry_out, err, errlen)))
        return rc;

    rc = deadletter_open(&gw->dl, cfg->dry_run || dry_out ? NULL : cfg->deadletter_file,
                         (uint64_t)cfg->deadletter_max_bytes, gw_on_deadletter, gw, err, errlen);
    if (rc)
        return rc;
    deadletter_set_clock(gw->dl, &gw->clock);

    struct rule_sink sink = {
        .ud = gw, .publish = gw_out_publish, .write = gw_out_write, .refused = gw_on_refused};
    if ((rc = gw_setup_params(gw, err, errlen)))
        return rc;

    struct rules_config rc_cfg;
    gwconfig_rules(cfg, &rc_cfg);
    rc_cfg.params = gw->params;
    rc_cfg.clock = &gw->clock;
    rc = rules_open(&gw->rules, &rc_cfg, &sink, err, errlen);
    if (rc)
        return rc;
    log_info("rules_loaded", "file=%s", log_q(cfg->rules));
    gw_publish_rule_status(gw, NULL);
    if ((rc = gw_setup_ha(gw, err, errlen)))
        return rc;
    if (gw->ha) {
        struct params_listener pl = {.ud = gw, .declared = gw_ha_params_declared};
        if ((rc = params_listen(gw->params, &pl)))
            return rc;
        gw_ha_params_declared(gw);
        gw_ha_update(gw);
        hadisc_start(gw->ha);
    }
    return 0;
}

int gateway_init_embedded(struct gateway *gw, struct ev_loop *loop, const struct config *cfg,
                          FILE *out, int64_t start_ns, char *err, size_t errlen)
{
    struct clock c;
    clock_init_virtual(&c, start_ns);
    return gw_init_core(gw, loop, cfg, out, &c, err, errlen);
}

int gateway_init(struct gateway *gw, struct ev_loop *loop, const struct config *cfg, char *err,
                 size_t errlen)
{
    int rc = gw_init_core(gw, loop, cfg, NULL, NULL, err, errlen);
    if (rc)
        return rc;

    /* The endpoint before the sources: a port in use fails the start before any child runs. */
    if (!config_is_none(cfg->metrics)) {
        struct metrics_ops mo = {.ud = gw, .render = gw_render_metrics, .ready = gw_metrics_ready};
        if ((rc = metrics_open(&gw->metrics, loop, cfg->metrics, &mo, err, errlen)))
            return rc;
    }

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
        rc = source_new(&gw->sources[i], loop, &sc, gw_on_source_line, gw_on_source_done, gw, err,
                        errlen);
        if (rc)
            return rc;
        gw->nsources++;
        if (source_is_finite(gw->sources[i]))
            gw->finite_sources++;
        log_info("source_added", "source=%s spec=%s", source_name(gw->sources[i]),
                 log_q(cfg->sources[i]));
    }

    ev_signal_init(&gw->sig_int, gw_on_signal, SIGINT);
    ev_signal_init(&gw->sig_term, gw_on_signal, SIGTERM);
    ev_signal_init(&gw->sig_hup, gw_on_signal, SIGHUP);
    ev_signal_init(&gw->sig_usr1, gw_on_signal, SIGUSR1);
    ev_signal_start(loop, &gw->sig_int);
    ev_signal_start(loop, &gw->sig_term);
    ev_signal_start(loop, &gw->sig_hup);
    ev_signal_start(loop, &gw->sig_usr1);

    ev_stat_init(&gw->rules_stat, gw_on_rules_stat, cfg->rules, 1.0);
    ev_stat_start(loop, &gw->rules_stat);
    ev_init(&gw->reload_timer, gw_on_reload_timer);
    gw->reload_timer.repeat = cfg->reload_debounce > 0 ? cfg->reload_debounce : 0.01;

    ev_timer_init(&gw->tick_timer, gw_on_tick, cfg->tick_interval, cfg->tick_interval);
    if (!gw->replay) /* a replay generates its ticks in virtual time (replay.c) */
        ev_timer_start(loop, &gw->tick_timer);
    /* A dry run prints outputs, not periodic stats (only the final report at the end). */
    if (cfg->stats_interval > 0 && !cfg->dry_run) {
        ev_timer_init(&gw->stats_timer, gw_on_stats_timer, cfg->stats_interval,
                      cfg->stats_interval);
        ev_timer_start(loop, &gw->stats_timer);
    }
    ev_init(&gw->drain_timer, gw_on_drain_timer);
    gw->drain_timer.repeat = 0.02;
    ev_init(&gw->resume_timer, gw_on_resume_timer);
    gw->resume_timer.repeat = 0.02;

    sdnotify_start(&gw->notify, loop);

    /* Timers, signal and stat watchers must not keep a finished finite run alive on their
     * own: the loop's lifetime is managed explicitly with ev_break. */
    if (cfg->nsources == 0)
        log_warn("no_sources", "hint=\"add -s file:PATH, -s stdin, -s exec:CMD ...\"");
    return 0;
}

bool gateway_is_ready(const struct gateway *gw)
{
    return gw->ready && gw->state == GW_RUNNING;
}

int gateway_run(struct gateway *gw)
{
    /* Sources, rules and sinks are set up: tell the service manager (a finite run that has
     * already hit EOF during setup is past ready). */
    if (gw->state == GW_RUNNING) {
        char st[160];
        gw->ready = true;
        sdnotify_ready(&gw->notify, gw_status_text(gw, st, sizeof st));
    }
    ev_run(gw->loop, 0);
    struct forward_stats fs;
    forward_get_stats(gw->fw, &fs);
    for (int i = 0; i < FWD_NDEST; i++)
        if (fs.sink[i].dropped && gw->exit_code < GW_EXIT_UNDELIVERED)
            gw->exit_code = GW_EXIT_UNDELIVERED;
    if (gw->replay) {
        struct replay_stats rs;
        replay_get_stats(gw->replay, &rs);
        char at[40];
        clock_format(clock_now_ns(&gw->clock), at, sizeof at);
        log_info("clock_replay_done",
                 "virtual_end=%s timed=%" PRIu64 " untimed=%" PRIu64 " reboots=%" PRIu64
                 " ticks=%" PRIu64 " ticks_skipped=%" PRIu64 " held_max=%" PRIu64,
                 at, rs.timed, rs.untimed, rs.reboots, rs.ticks, rs.skipped, rs.held_max);
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
        sdnotify_stop(&gw->notify);
    }
    metrics_close(gw->metrics);
    gw->metrics = NULL;
    for (size_t i = 0; i < gw->nsources; i++)
        source_free(gw->sources[i]);
    free(gw->sources);
    replay_free(gw->replay);
    gw->replay = NULL;
    buf_free(&gw->topic);
    gw->sources = NULL;
    paramsrv_free(gw->psrv);
    gw->psrv = NULL;
    if (gw->params)
        params_unlisten(gw->params, gw);
    if (gw->rules)
        rules_close(gw->rules);
    hadisc_free(gw->ha);
    gw->ha = NULL;
    params_close(gw->params); /* after the rule engine, which borrowed it */
    gw->params = NULL;
    for (int i = 0; i < FWD_NDEST; i++)
        if (gw->sinks[i].ops)
            gw->sinks[i].ops->free(gw->sinks[i].self);
    memset(gw->sinks, 0, sizeof gw->sinks);
    gw->dry = NULL;
    gw->mqtt = NULL;
    /* After the sinks: no ack can reach it any more; closing writes the state file. */
    forward_free(gw->fw);
    gw->fw = NULL;
    deadletter_close(gw->dl);
    /* Last: everything that writes into the state directory is closed. */
    statedir_unlock(gw->lock);
    gw->lock = NULL;
    buf_free(&gw->scratch);
    alerts_free(&gw->alerts);
    latency_free(&gw->lat);
    gw->rules = NULL;
    gw->dl = NULL;
}
