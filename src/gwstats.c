/*
 * gwstats.c — gateway_report_stats(): the gateway's counters, the rule engine's, the
 * latency ring's, the spool's and each sink's, as one log line, one JSON message and one
 * line-protocol point. See gwstats.h.
 *
 * The JSON and the point go through forward.c like every other output, flagged
 * FWD_INTERNAL (never spooled: a stats message replayed hours later would only mislead).
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "deadletter.h"
#include "gateway.h"
#include "lineproto.h"
#include "log.h"
#include "rules.h"
#include "util.h"

void gateway_report_stats(struct gateway *gw)
{
    struct rules_stats rs;
    double lat50, lat99, latmax;
    size_t latn;
    rules_get_stats(gw->rules, &rs);
    latency_report(&gw->lat, &lat50, &lat99, &latmax, &latn);
    /* Average rule time per call since the previous report (a gauge for dashboards). */
    struct gwstats_prev *pv = &gw->prev;
    uint64_t dcalls = rs.calls - pv->rule_calls;
    double rule_avg_us = dcalls ? (rs.time_total - pv->rule_time) / (double)dcalls * 1e6 : 0;
    pv->rule_calls = rs.calls;
    pv->rule_time = rs.time_total;
    struct forward_stats fs = {0};
    if (gw->fw)
        forward_get_stats(gw->fw, &fs);
    struct deadletter_stats ds = {0};
    if (gw->dl)
        deadletter_get_stats(gw->dl, &ds);
    const struct sink_stats *ms = &fs.sink[FWD_MQTT], *is = &fs.sink[FWD_INFLUX];
    double now = util_mono();
    double dt = now - (pv->report > 0 ? pv->report : gw->started);
    double replay_rate = dt > 0 ? (double)(fs.replayed - pv->replayed) / dt : 0;
    pv->replayed = fs.replayed;
    pv->report = now;

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
        {"deadletter_bytes", (double)ds.bytes, true},
        {"deadletter_rotations", (double)ds.rotations, true},
        {"deadletter_drops", (double)ds.drops, true},
        {"deadletter_write_errors", (double)ds.write_errors, true},
        {"alerts_active", (double)gw->alerts.nactive, true},
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
        {"mqtt_connected", ms->up ? 1 : 0, true},
        {"mqtt_queue", (double)ms->queued, true},
        {"mqtt_inflight", (double)ms->inflight, true},
        {"mqtt_acked", (double)ms->acked, true},
        {"mqtt_dropped", (double)ms->dropped, true},
        {"mqtt_reconnects", (double)ms->reconnects, true},
        {"mqtt_ack_samples", (double)latn, true},
        {"mqtt_ack_p50_ms", lat50, false},
        {"mqtt_ack_p99_ms", lat99, false},
        {"mqtt_ack_max_ms", latmax, false},
        {"influx_pending", (double)is->pending, true},
        {"influx_written", (double)is->acked, true},
        {"influx_batches", (double)is->batches, true},
        {"influx_retries", (double)is->retries, true},
        {"influx_rejected", (double)is->rejected, true},
        {"influx_dropped", (double)is->dropped, true},
    };

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
    if (!gw->fw) {
        cJSON_Delete(o);
        return;
    }
    if (o) {
        char *s = cJSON_PrintUnformatted(o);
        if (s)
            forward_publish(gw->fw, gw->topics.stats, s, strlen(s), 0, false, FWD_INTERNAL, 0);
        free(s);
        cJSON_Delete(o);
    }
    if (forward_has(gw->fw, FWD_INFLUX)) {
        struct lp_tag tag = {"gateway", gw->cfg->gateway_id};
        buf_clear(b);
        if (lp_encode(b, "iiotgw", &tag, 1, lf, ARRAY_LEN(lf), util_now_ns()) == 0)
            forward_submit(gw->fw, FWD_INFLUX, b->p, b->len, FWD_INTERNAL);
    }
}
