/*
 * gwstats.h — the gateway's periodic report: one log line, JSON on <prefix>/gateway/stats and
 * a point in measurement "iiotgw" (gateway_report_stats() in gateway.h is implemented in
 * gwstats.c). The field names are a public interface (dashboards, docs/configuration.md).
 */
#ifndef IIOTGW_GWSTATS_H
#define IIOTGW_GWSTATS_H

#include <stdint.h>

/* Values at the previous report, for per-interval figures. */
struct gwstats_prev {
    uint64_t rule_calls; /* rule time per call since the previous report */
    double rule_time;
    uint64_t replayed; /* spool_replay_rate */
    double report;     /* monotonic time of the previous report, 0 = none yet */
};

#endif
