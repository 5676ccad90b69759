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
 * deadletter), hot reload (ev_stat + debounce, SIGHUP), periodic stats (and SIGUSR1), the
 * on_tick timer, back-pressure for finite sources, and shutdown (SIGINT/SIGTERM, or EOF of all
 * finite sources followed by a bounded wait for every acknowledgement).
 *
 * Ownership: struct gateway is embedded by main(); gateway_init() borrows `cfg` (it must
 * outlive the gateway) and creates everything else, released by gateway_free().
 */
#ifndef IIOTGW_GATEWAY_H
#define IIOTGW_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <ev.h>

#include "buf.h"
#include "config.h"

/* Exit codes (documented in --help and docs/configuration.md). */
#define GW_EXIT_OK          0 /* clean shutdown, or finite sources fully delivered */
#define GW_EXIT_CONFIG      1 /* bad configuration or rules (also --check failure) */
#define GW_EXIT_UNDELIVERED 2 /* gave up on data: drain timeout or queue drops */
#define GW_EXIT_FATAL       3 /* could not start (e.g. out of memory) */

struct gateway_counters {
    uint64_t lines;        /* lines framed, all sources */
    uint64_t packets;      /* JSON objects handed to on_packet */
    uint64_t text_lines;   /* non-JSON lines */
    uint64_t overlong;     /* lines longer than max_line */
    uint64_t unterminated; /* JSON objects cut short */
    uint64_t invalid_json; /* balanced but invalid objects */
    uint64_t rule_errors;  /* rule errors + overruns */
    uint64_t publishes;    /* rule publishes accepted by the MQTT sink (or printed) */
    uint64_t points;       /* rule points accepted by the InfluxDB sink (or printed) */
    uint64_t reloads;
    uint64_t reload_failures;
};

/*
 * Publish-to-acknowledgement latency per packet: from the moment its line was read to the
 * PUBACK/PUBCOMP of the last message the rule published for it. A ring indexed by packet
 * sequence follows packets in flight; completed latencies are kept until the next stats report
 * (p50/p99/max go into the stats).
 */
#define GW_LAT_RING    4096
#define GW_LAT_SAMPLES 65536

struct gw_lat_slot {
    uint64_t seq;
    double t0;
    uint32_t pending;
    bool open;
};

struct gw_latency {
    struct gw_lat_slot *ring; /* GW_LAT_RING slots, allocated on first use */
    uint64_t seq;             /* last packet sequence */
    uint64_t current;         /* token for publishes of the packet being ruled (0 = none) */
    double *samples;          /* completed latencies (seconds) since the last report */
    size_t nsamples;
    uint64_t lost_track; /* packets still unacknowledged when their slot was reused */
};

struct gateway {
    struct ev_loop *loop;
    const struct config *cfg;
    struct rules *rules;
    struct mqtt_sink *mqtt;     /* NULL: disabled or dry-run */
    struct influx_sink *influx; /* NULL: disabled or dry-run */
    struct forward *fw;         /* rule outputs -> spool -> sinks (forward.h); NULL in dry-run */
    struct deadletter *dl;
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

    FILE *dry;              /* --dry-run output (stdout), else NULL */
    const char *dry_header; /* pending "# source:line" header for the current call */
    char dry_header_buf[256];

    char topic_status[256];
    char topic_stats[256];
    char topic_rules[256];
    char topic_deadletter[256];
    char topic_spool[256];

    struct buf scratch;
    struct gateway_counters n;
    struct gw_latency lat;

    /* Alert topics (<prefix>/alerts/...) whose last retained payload says "firing". */
    char **alerts;
    size_t nalerts;
    size_t alerts_prefix_len;
    char alerts_prefix[256];

    /* Rule time at the previous stats report, for the per-call average. */
    uint64_t prev_rule_calls;
    double prev_rule_time;

    /* Replayed spool records at the previous stats report, for spool_replay_rate. */
    uint64_t prev_replayed;
    double prev_report;
};

/*
 * Create everything from cfg and start the sources. Returns 0, or a negative errno with a
 * message in err (-EINVAL: configuration or rule error). On failure call gateway_free().
 */
int gateway_init(struct gateway *gw, struct ev_loop *loop, const struct config *cfg, char *err,
                 size_t errlen);

/* Run the loop until shutdown. Returns a GW_EXIT_* code. */
int gateway_run(struct gateway *gw);

/* Publish/log the stats now (also on SIGUSR1 and every stats_interval). */
void gateway_report_stats(struct gateway *gw);

void gateway_free(struct gateway *gw);

#endif
