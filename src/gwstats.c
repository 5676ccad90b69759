/*
 * gwstats.c — the gateway's numbers, in one table, and its two presentations:
 *
 *   gateway_report_stats()    one log line, one JSON message and line-protocol points
 *   gateway_render_metrics()  the Prometheus exposition text behind --metrics (metrics.c)
 *
 * Both read the same table (gwstats_fill), so the log, the stats topic, the `iiotgw`
 * measurement and /metrics cannot disagree. Each row names its stats key, its Prometheus
 * name, kind, label, unit scale and help text. Rows without a Prometheus name are per-interval
 * figures of the report (averages and rates since the previous report), which Prometheus
 * derives itself from the counters.
 *
 * The JSON and the points go through forward.c like every other output, flagged
 * FWD_INTERNAL (never spooled: a stats message replayed hours later would only mislead).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "deadletter.h"
#include "gateway.h"
#include "lineproto.h"
#include "log.h"
#include "rules.h"
#include "source.h"
#include "util.h"

enum gws_kind { GWS_COUNTER, GWS_GAUGE };

struct gws_field {
    const char *name; /* stats key: log, JSON, line-protocol field */
    double v;
    bool integer;
    enum gws_kind kind;
    const char *metric; /* Prometheus name after "iiotgw_"; NULL = report only */
    const char *label;  /* `key="value"` for the metric, or NULL */
    double scale;       /* metric value = v * scale (the report's ms/us -> seconds) */
    const char *help;
};

#define GWS_MAX_FIELDS 64

/* Resident set size in bytes from /proc/self/statm (0 when unreadable). */
static double gwstats_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (double)resident * (double)sysconf(_SC_PAGESIZE) : 0;
}

/*
 * Fill f[] (at least GWS_MAX_FIELDS entries) with every figure. `advance`: this is a report,
 * so the per-interval figures are computed and the "previous report" values move on; a scrape
 * passes false and changes nothing. Returns the number of rows.
 */
static size_t gwstats_fill(struct gateway *gw, struct gws_field *f, bool advance)
{
    struct rules_stats rs = {0};
    double lat50, lat99, latmax;
    size_t latn;
    if (gw->rules)
        rules_get_stats(gw->rules, &rs);
    if (advance)
        latency_report(&gw->lat, &lat50, &lat99, &latmax, &latn);
    else
        latency_peek(&gw->lat, &lat50, &lat99, &latmax, &latn);
    struct forward_stats fs = {0};
    if (gw->fw)
        forward_get_stats(gw->fw, &fs);
    struct deadletter_stats ds = {0};
    if (gw->dl)
        deadletter_get_stats(gw->dl, &ds);
    const struct sink_stats *ms = &fs.sink[FWD_MQTT], *is = &fs.sink[FWD_INFLUX];
    double now = util_mono();

    /* Per-interval figures of the report: rule time per call, replay rate. */
    double rule_avg_us = 0, replay_rate = 0;
    struct gwstats_prev *pv = &gw->prev;
    if (advance) {
        uint64_t dcalls = rs.calls - pv->rule_calls;
        rule_avg_us = dcalls ? (rs.time_total - pv->rule_time) / (double)dcalls * 1e6 : 0;
        double dt = now - (pv->report > 0 ? pv->report : gw->started);
        replay_rate = dt > 0 ? (double)(fs.replayed - pv->replayed) / dt : 0;
        pv->rule_calls = rs.calls;
        pv->rule_time = rs.time_total;
        pv->replayed = fs.replayed;
        pv->report = now;
    }

#define C(n, v, m, l, s, h)                                                                        \
    {                                                                                              \
        n, (double)(v), true, GWS_COUNTER, m, l, s, h                                              \
    }
#define G(n, v, i, m, l, s, h)                                                                     \
    {                                                                                              \
        n, (double)(v), i, GWS_GAUGE, m, l, s, h                                                   \
    }
#define MQ "sink=\"mqtt\""
#define IX "sink=\"influx\""
    const struct gws_field rows[] = {
        G("uptime_s", now - gw->started, false, "uptime_seconds", NULL, 1,
          "Seconds since the gateway started."),
        C("lines", gw->n.lines, "lines_total", NULL, 1, "Lines framed from all sources."),
        C("packets", gw->n.packets, "packets_total", NULL, 1,
          "JSON packets the rule handled without error."),
        C("text_lines", gw->n.text_lines, "text_lines_total", NULL, 1,
          "Lines without a JSON object."),
        C("overlong", gw->n.overlong, "rejected_lines_total", "reason=\"overlong\"", 1,
          "Lines dead-lettered before the rule, by reason."),
        C("unterminated", gw->n.unterminated, "rejected_lines_total", "reason=\"unterminated\"", 1,
          NULL),
        C("invalid_json", gw->n.invalid_json, "rejected_lines_total", "reason=\"invalid_json\"", 1,
          NULL),
        C("rule_errors", gw->n.rule_errors, "rule_errors_total", NULL, 1,
          "Rule calls that failed (errors, budget overruns, memory cap)."),
        C("rule_overruns", rs.overruns, "rule_overruns_total", NULL, 1,
          "Rule calls stopped by the instruction budget or the call time limit."),
        G("rule_time_us", rule_avg_us, false, NULL, NULL, 1, NULL),
        {"rule_time_total_us", rs.time_total * 1e6, false, GWS_COUNTER, "rule_time_seconds_total",
         NULL, 1e-6, "Time spent in rule calls."},
        G("rule_time_max_us", rs.time_max * 1e6, false, "rule_time_max_seconds", NULL, 1e-6,
          "Longest single rule call."),
        G("rule_mem_bytes", rs.mem_used, true, "rule_memory_bytes", NULL, 1,
          "Memory used by the rule's Lua state."),
        C("reloads", gw->n.reloads, "rule_reloads_total", NULL, 1, "Successful rule reloads."),
        C("reload_failures", gw->n.reload_failures, "rule_reload_failures_total", NULL, 1,
          "Rule reloads refused (the previous rules stayed)."),
        C("publishes", gw->n.publishes, "publishes_total", NULL, 1,
          "Rule publishes accepted for the MQTT sink."),
        C("points", gw->n.points, "points_total", NULL, 1,
          "Rule points accepted for the InfluxDB sink."),
        C("deadletter", gw->dl ? deadletter_total(gw->dl) : 0, "deadletter_total", NULL, 1,
          "Records written to the dead-letter."),
        G("deadletter_bytes", ds.bytes, true, "deadletter_size_bytes", NULL, 1,
          "Bytes in the current dead-letter file."),
        C("deadletter_rotations", ds.rotations, "deadletter_rotations_total", NULL, 1,
          "Times the dead-letter file reached its cap and was rotated."),
        C("deadletter_drops", ds.drops, "deadletter_dropped_total", NULL, 1,
          "Dead-letter records not written to the file (larger than its cap)."),
        C("deadletter_write_errors", ds.write_errors, "deadletter_write_errors_total", NULL, 1,
          "Dead-letter records a write or rotation failure lost from the file."),
        G("alerts_active", gw->alerts.nactive, true, "alerts_active", NULL, 1,
          "Alert topics whose last retained payload is firing."),
        C("alerts_refused", gw->alerts.refused, "alerts_refused_total", NULL, 1,
          "Firing alert topics not tracked because the tracker was full."),
        G("spool_bytes", fs.bytes, true, "spool_size_bytes", NULL, 1, "Bytes in the spool."),
        G("spool_pending_mqtt", fs.pending[FWD_MQTT], true, "spool_pending_records", MQ, 1,
          "Spooled records not yet acknowledged, by sink."),
        G("spool_pending_influx", fs.pending[FWD_INFLUX], true, "spool_pending_records", IX, 1,
          NULL),
        G("spool_oldest_age_s", fs.oldest_age, false, "spool_oldest_age_seconds", NULL, 1,
          "Age of the oldest unacknowledged spooled record."),
        C("spool_replayed", fs.replayed, "spool_replayed_total", NULL, 1,
          "Backlog records handed to a sink from the spool."),
        G("spool_replay_rate", replay_rate, false, NULL, NULL, 1, NULL),
        C("spool_drops_full", fs.drops_full, "spool_dropped_total", "reason=\"full\"", 1,
          "Spooled records dropped, by reason."),
        C("spool_drops_corrupt", fs.drops_corrupt, "spool_dropped_total", "reason=\"corrupt\"", 1,
          NULL),
        C("spool_append_errors", fs.append_errors, "spool_append_errors_total", NULL, 1,
          "Failed spool appends."),
        G("spool_degraded", fs.degraded ? 1 : 0, true, "spool_degraded", NULL, 1,
          "1 while the spool cannot be written."),
        G("mqtt_connected", ms->up ? 1 : 0, true, "sink_up", MQ, 1,
          "1 while the sink is healthy (MQTT connected; InfluxDB: no failed request since the "
          "last success)."),
        G("mqtt_queue", ms->queued, true, "sink_queue_records", MQ, 1,
          "Records waiting in the sink's queue, by sink."),
        G("mqtt_inflight", ms->inflight, true, "sink_inflight_records", MQ, 1,
          "Records sent and not yet acknowledged, by sink."),
        C("mqtt_acked", ms->acked, "sink_acked_total", MQ, 1,
          "Records the server acknowledged (PUBACK, HTTP 2xx), by sink."),
        C("mqtt_dropped", ms->dropped, "sink_dropped_total", MQ, 1,
          "Records dropped by a full sink queue, by sink."),
        C("mqtt_reconnects", ms->reconnects, "sink_reconnects_total", MQ, 1,
          "Reconnections, by sink."),
        G("mqtt_ack_samples", latn, true, "mqtt_ack_latency_samples", NULL, 1,
          "Packets behind the latency figures (since the previous report)."),
        G("mqtt_ack_p50_ms", lat50, false, "mqtt_ack_latency_seconds", "stat=\"p50\"", 1e-3,
          "Line read to last PUBACK of its publishes, since the previous report."),
        G("mqtt_ack_p99_ms", lat99, false, "mqtt_ack_latency_seconds", "stat=\"p99\"", 1e-3, NULL),
        G("mqtt_ack_max_ms", latmax, false, "mqtt_ack_latency_seconds", "stat=\"max\"", 1e-3, NULL),
        G("influx_up", is->up ? 1 : 0, true, "sink_up", IX, 1, NULL),
        G("influx_pending", is->pending, true, "sink_queue_records", IX, 1, NULL),
        C("influx_written", is->acked, "sink_acked_total", IX, 1, NULL),
        C("influx_batches", is->batches, "sink_batches_total", IX, 1, "Requests sent, by sink."),
        C("influx_retries", is->retries, "sink_retries_total", IX, 1, "Retried requests, by sink."),
        C("influx_rejected", is->rejected, "sink_rejected_total", IX, 1,
          "Records the server refused for good (dead-lettered), by sink."),
        C("influx_dropped", is->dropped, "sink_dropped_total", IX, 1, NULL),
        G("rss_bytes", gwstats_rss(), true, "resident_memory_bytes", NULL, 1,
          "Resident set size of the process."),
    };
#undef C
#undef G
#undef MQ
#undef IX
    _Static_assert(ARRAY_LEN(rows) <= GWS_MAX_FIELDS, "raise GWS_MAX_FIELDS");
    memcpy(f, rows, sizeof rows);
    return ARRAY_LEN(rows);
}

/* Per-source figures (source_get_stats), in the report and in /metrics. */
static void gwstats_report_sources(struct gateway *gw, struct buf *b, cJSON *o)
{
    cJSON *all = o ? cJSON_AddObjectToObject(o, "sources") : NULL;
    for (size_t i = 0; i < gw->nsources; i++) {
        struct source_stats st;
        const char *name = source_name(gw->sources[i]);
        source_get_stats(gw->sources[i], &st);
        buf_printf(b,
                   " source.%s.up=%d source.%s.bytes=%" PRIu64 " source.%s.lines=%" PRIu64
                   " source.%s.overlong=%" PRIu64 " source.%s.restarts=%" PRIu64,
                   name, st.up ? 1 : 0, name, st.bytes, name, st.lines, name, st.overlong, name,
                   st.restarts);
        cJSON *so = all ? cJSON_AddObjectToObject(all, name) : NULL;
        if (so) {
            cJSON_AddNumberToObject(so, "up", st.up ? 1 : 0);
            cJSON_AddNumberToObject(so, "bytes", (double)st.bytes);
            cJSON_AddNumberToObject(so, "lines", (double)st.lines);
            cJSON_AddNumberToObject(so, "overlong", (double)st.overlong);
            cJSON_AddNumberToObject(so, "restarts", (double)st.restarts);
        }
    }
}

/* One point per source in measurement iiotgw_source, tagged gateway and source. */
static void gwstats_write_sources(struct gateway *gw, struct buf *b)
{
    for (size_t i = 0; i < gw->nsources; i++) {
        struct source_stats st;
        source_get_stats(gw->sources[i], &st);
        struct lp_tag tags[2] = {{"gateway", gw->cfg->gateway_id},
                                 {"source", source_name(gw->sources[i])}};
        struct lp_field lf[5] = {
            {.key = "up", .type = LP_INT, .v.i = st.up ? 1 : 0},
            {.key = "bytes", .type = LP_INT, .v.i = (int64_t)st.bytes},
            {.key = "lines", .type = LP_INT, .v.i = (int64_t)st.lines},
            {.key = "overlong", .type = LP_INT, .v.i = (int64_t)st.overlong},
            {.key = "restarts", .type = LP_INT, .v.i = (int64_t)st.restarts},
        };
        buf_clear(b);
        if (lp_encode(b, "iiotgw_source", tags, 2, lf, ARRAY_LEN(lf), util_now_ns()) == 0)
            forward_submit(gw->fw, FWD_INFLUX, b->p, b->len, FWD_INTERNAL);
    }
}

void gateway_report_stats(struct gateway *gw)
{
    struct gws_field f[GWS_MAX_FIELDS];
    size_t nf = gwstats_fill(gw, f, true);

    struct buf *b = &gw->scratch;
    buf_clear(b);
    cJSON *o = cJSON_CreateObject();
    struct lp_field lf[GWS_MAX_FIELDS];
    for (size_t i = 0; i < nf; i++) {
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
    gwstats_report_sources(gw, b, o);
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
        if (lp_encode(b, "iiotgw", &tag, 1, lf, nf, util_now_ns()) == 0)
            forward_submit(gw->fw, FWD_INFLUX, b->p, b->len, FWD_INTERNAL);
        gwstats_write_sources(gw, b);
    }
}

/* ------------------------------------------------------------------------------------------
 * Prometheus text format 0.0.4
 * ---------------------------------------------------------------------------------------- */

/* A sample value: integers exactly, the rest with full precision, non-finite as Prometheus
 * spells them. */
static int prom_value(struct buf *out, double v)
{
    if (isnan(v))
        return buf_append_str(out, "NaN");
    if (isinf(v))
        return buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
    if (v == floor(v) && fabs(v) < 9e15)
        return buf_printf(out, "%.0f", v);
    return buf_printf(out, "%.17g", v);
}

/* A label value: backslash, double quote and newline escaped. */
static int prom_label_value(struct buf *out, const char *s)
{
    int rc = 0;
    for (; *s && !rc; s++) {
        if (*s == '\n')
            rc = buf_append_str(out, "\\n");
        else if (*s == '\\' || *s == '"')
            rc = buf_append_char(out, '\\') || buf_append_char(out, *s) ? -ENOMEM : 0;
        else
            rc = buf_append_char(out, *s);
    }
    return rc;
}

static int prom_header(struct buf *out, const char *name, const char *type, const char *help)
{
    return buf_printf(out, "# HELP iiotgw_%s %s\n# TYPE iiotgw_%s %s\n", name, help, name, type);
}

static int prom_sources(struct gateway *gw, struct buf *out)
{
    int rc = 0;
    static const struct {
        const char *metric, *type, *help;
    } m[] = {
        {"source_up", "gauge", "1 while the source is connected, running or open."},
        {"source_bytes_total", "counter", "Bytes read, by source (exec: stdout only)."},
        {"source_lines_total", "counter", "Lines framed, by source."},
        {"source_overlong_lines_total", "counter", "Lines longer than max_line, by source."},
        {"source_restarts_total", "counter",
         "Times a live source came up again (respawn, reconnect, reopen)."},
    };
    for (size_t k = 0; k < ARRAY_LEN(m); k++) {
        if (!gw->nsources)
            break;
        rc |= prom_header(out, m[k].metric, m[k].type, m[k].help);
        for (size_t i = 0; i < gw->nsources; i++) {
            struct source_stats st;
            source_get_stats(gw->sources[i], &st);
            uint64_t v[] = {st.up ? 1 : 0, st.bytes, st.lines, st.overlong, st.restarts};
            rc |= buf_printf(out, "iiotgw_%s{source=\"", m[k].metric);
            rc |= prom_label_value(out, source_name(gw->sources[i]));
            rc |= buf_printf(out, "\"} %" PRIu64 "\n", v[k]);
        }
    }
    return rc;
}

int gateway_render_metrics(struct gateway *gw, struct buf *out)
{
    struct gws_field f[GWS_MAX_FIELDS];
    size_t nf = gwstats_fill(gw, f, false);
    bool done[GWS_MAX_FIELDS] = {false};

    /* Any failed append (out of memory) fails the whole answer: never a truncated scrape. */
    int rc = prom_header(out, "build_info", "gauge", "Version of the running gateway (value 1).");
    rc |= buf_printf(out, "iiotgw_build_info{version=\"%s\"} 1\n", IIOTGW_VERSION);
    rc |=
        prom_header(out, "ready", "gauge", "1 while the gateway is set up and not shutting down.");
    rc |= buf_printf(out, "iiotgw_ready %d\n", gateway_is_ready(gw) ? 1 : 0);
    /* Rows sharing a name (different labels) form one family under one HELP/TYPE. */
    for (size_t i = 0; i < nf; i++) {
        if (!f[i].metric || done[i])
            continue;
        rc |= prom_header(out, f[i].metric, f[i].kind == GWS_COUNTER ? "counter" : "gauge",
                          f[i].help ? f[i].help : "");
        for (size_t j = i; j < nf; j++) {
            if (!f[j].metric || strcmp(f[j].metric, f[i].metric) != 0)
                continue;
            done[j] = true;
            rc |= buf_printf(out, "iiotgw_%s", f[j].metric);
            if (f[j].label)
                rc |= buf_printf(out, "{%s}", f[j].label);
            rc |= buf_append_char(out, ' ');
            rc |= prom_value(out, f[j].v * f[j].scale);
            rc |= buf_append_char(out, '\n');
        }
    }
    rc |= prom_sources(gw, out);
    return rc || !out->p ? -ENOMEM : 0;
}
