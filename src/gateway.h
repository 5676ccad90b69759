/*
 * gateway.h — the daemon: one context struct that owns the loop's watchers, the sources, the
 * rule engine, the sinks and the dead-letter, and wires the data path between them:
 *
 *   source (bytes) -> framer (lines) -> extract (clean + JSON span) -> rules (Lua)
 *        -> forward (durable spool, optional) -> MQTT sink / InfluxDB sink
 *                                                 (or stdout with --dry-run)
 *   anything unusable -> dead-letter (file + <prefix>/gateway/deadletter)
 *
 * It also owns the gateway's own topics under <prefix>/gateway/ (status, stats, rules,
 * deadletter), the MQTT inbound side (subscriptions dispatched to Home Assistant discovery,
 * hadisc.c), hot reload (ev_stat + debounce, SIGHUP), the on_tick timer, back-pressure for
 * finite sources, and shutdown (SIGINT/SIGTERM, or EOF of all finite sources followed by a
 * bounded wait for every acknowledgement). Its own messages take the same path as the rule
 * outputs (forward.c, flagged FWD_INTERNAL: never spooled). Split out: the stats report, its
 * Prometheus rendering and the latency ring (gwstats.c, latency.c), the HTTP endpoint
 * (metrics.c), service-manager notification (sdnotify.c), alert counting (alerts.c), and the
 * translation of the configuration into each module's config (gwconfig.c, shared with
 * --check).
 *
 * An embedded gateway (gateway_init_embedded) is the same data path without sources and
 * watchers, fed line by line on a virtual clock: `iiotgw test` (ruletest.c) runs rule tests
 * through it.
 *
 * Ownership: struct gateway is embedded by main() (or ruletest.c); gateway_init() borrows
 * `cfg` (it must outlive the gateway) and creates everything else, released by
 * gateway_free().
 */
#ifndef IIOTGW_GATEWAY_H
#define IIOTGW_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <ev.h>

#include "alerts.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "forward.h"
#include "gwconfig.h"
#include "gwstats.h"
#include "latency.h"
#include "metrics.h"
#include "sdnotify.h"
#include "sink.h"

struct replay;
struct statedir_lock;

/* Exit codes (documented in --help and docs/configuration.md). */
#define GW_EXIT_OK          0 /* clean shutdown, or finite sources fully delivered */
#define GW_EXIT_CONFIG      1 /* bad configuration or rules (also --check failure) */
#define GW_EXIT_UNDELIVERED 2 /* gave up on data: drain timeout or queue drops */
#define GW_EXIT_FATAL       3 /* could not start (out of memory, a full or failing disk) */
#define GW_EXIT_LOCKED      4 /* another instance holds the state directory (or the spool) */

struct gateway_counters {
    uint64_t lines;        /* lines framed, all sources */
    uint64_t packets;      /* JSON objects handed to on_packet */
    uint64_t text_lines;   /* non-JSON lines */
    uint64_t overlong;     /* lines longer than max_line */
    uint64_t unterminated; /* JSON objects cut short */
    uint64_t invalid_json; /* balanced but invalid objects */
    uint64_t rule_errors;  /* rule errors + overruns */
    uint64_t publishes;    /* rule publishes accepted for the MQTT sink (or printed) */
    uint64_t points;       /* rule points accepted for the InfluxDB sink (or printed) */
    uint64_t reloads;
    uint64_t reload_failures;
};

struct params;
struct paramsrv;
struct mqtt_sink;

struct gateway {
    struct ev_loop *loop;
    const struct config *cfg;
    struct rules *rules;
    struct params *params;  /* the rule's tunable parameters (params.h) */
    struct paramsrv *psrv;  /* their MQTT and local-socket routes (paramsrv.h) */
    struct mqtt_sink *mqtt; /* the MQTT sink behind sinks[FWD_MQTT] (subscriptions), or NULL */
    struct clock clock;     /* the data path's "now": wall, or a replay's virtual time */
    struct replay *replay;  /* clock.mode packet/log: line times, virtual ticks, pacing */
    bool replay_retain;     /* keep rule retain flags (wall clock, or replay.retain) */
    struct buf topic;       /* replay.prefix + a rule's topic */
    struct sink sinks[FWD_NDEST]; /* MQTT, InfluxDB, or the --dry-run printer (ops NULL: off) */
    struct dryrun *dry;           /* the printer behind sinks[] with --dry-run, else NULL */
    struct forward *fw;           /* every output -> spool (optional) -> sinks (forward.h) */
    size_t window[FWD_NDEST];     /* the pump's windows (gwconfig_forward) */
    struct deadletter *dl;
    struct statedir_lock *lock; /* the state directory's instance lock (not with --dry-run) */
    bool deadletter_publish;    /* dead-letters also go to topics.deadletter */
    struct source **sources;
    size_t nsources;
    size_t finite_sources;
    size_t finite_done;

    ev_signal sig_int, sig_term, sig_hup, sig_usr1;
    ev_stat rules_stat;
    ev_timer reload_timer; /* debounce after a rule file change */
    ev_timer tick_timer;   /* on_tick */
    ev_timer stats_timer;
    ev_timer drain_timer;  /* polls pending acks while draining / shutting down */
    ev_timer resume_timer; /* back-pressure: resume paused finite sources */

    enum { GW_RUNNING, GW_DRAINING, GW_STOPPING, GW_CLOSING } state;
    double drain_deadline;
    bool paused;
    int exit_code;
    double started; /* monotonic */

    struct gw_topics topics;
    struct buf scratch;
    struct gateway_counters n;
    struct latency lat;
    struct alerts alerts;
    struct gwstats_prev prev; /* gwstats.c: values at the previous report */
    struct sdnotify notify;   /* READY/STOPPING/WATCHDOG to the service manager */
    struct metrics *metrics;  /* --metrics endpoint, or NULL */
    bool ready;               /* set up and running (READY=1 sent); false once shutdown begins */
    uint64_t trim_lines;      /* n.lines at the previous tick (gw_trim_when_idle) */
    bool trimmed;             /* the heap was trimmed since the last line or pending record */
    /* The input line the rule is running on (for dead-lettering a refused value), or NULL. */
    const char *cur_src, *cur_data;
    uint64_t cur_line;
    size_t cur_len;

    unsigned mqtt_connects; /* CONNACKs seen (the first needs no republish) */
    struct hadisc *ha;      /* Home Assistant discovery (ha_discovery), or NULL */
};

/*
 * Create everything from cfg and start the sources: first the state directory (created, and
 * locked against a second instance; not with --dry-run), then sinks, spool, dead-letter,
 * rules, sources. Returns 0, or a negative errno with a message in err (-EINVAL:
 * configuration or rule error; -EBUSY: the state directory or spool is another instance's).
 * On failure call gateway_free().
 */
int gateway_init(struct gateway *gw, struct ev_loop *loop, const struct config *cfg, char *err,
                 size_t errlen);

/*
 * An embedded gateway for `iiotgw test` (ruletest.c): the same outputs, dead-letter and rule
 * engine as gateway_init(), with the --dry-run printer writing to `out` (borrowed) in place of
 * the sinks, a virtual clock standing at start_ns (gw->clock: the caller moves it with
 * clock_set() between calls), and nothing else: no sources, signals, file watch or timers, so
 * the loop is never run. The caller feeds lines and ticks with gateway_feed_line() and
 * gateway_feed_tick(). Same returns as gateway_init(); on failure call gateway_free().
 */
int gateway_init_embedded(struct gateway *gw, struct ev_loop *loop, const struct config *cfg,
                          FILE *out, int64_t start_ns, char *err, size_t errlen);

/*
 * One framed line (frame.h: without its '\n', `flags` FRAME_*), taking exactly the path of a
 * source's line: overlong dead-letter, cleaning, extraction, on_packet / on_line,
 * dead-letter. `line` is modified in place (cleaning). Received at clock_now_ns(&gw->clock)
 * (the timestamp of its points and meta.rx_ns).
 */
void gateway_feed_line(struct gateway *gw, const char *source, char *line, size_t len,
                       uint64_t line_no, unsigned flags);

/* One on_tick at clock_now_ns(&gw->clock), as the tick timer calls it; a rule error is
 * dead-lettered. */
void gateway_feed_tick(struct gateway *gw);

/* Run the loop until shutdown. Returns a GW_EXIT_* code. */
int gateway_run(struct gateway *gw);

/* Publish/log the stats now (also on SIGUSR1 and every stats_interval). In gwstats.c. */
void gateway_report_stats(struct gateway *gw);

/*
 * Append the Prometheus exposition (text format 0.0.4) of the same figures the stats report
 * gives, per-source and build info included, to `out`. Changes no state (the report's
 * per-interval figures are left alone). Returns 0 or -ENOMEM. In gwstats.c.
 */
int gateway_render_metrics(struct gateway *gw, struct buf *out);

/* True after setup until shutdown begins: what /healthz answers 200 for. */
bool gateway_is_ready(const struct gateway *gw);

void gateway_free(struct gateway *gw);

#endif
