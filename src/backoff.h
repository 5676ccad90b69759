/*
 * backoff.h — exponential backoff with jitter, shared by every reconnecting thing
 * (exec/serial/tcp sources, the MQTT sink, InfluxDB retries).
 *
 * Policy: the nominal delay starts at `base` and doubles after each failure up to `max`.
 * The delay actually returned is drawn uniformly from [nominal/2, nominal] ("equal jitter"),
 * so a fleet of gateways restarted together does not reconnect in lock-step, while the delay
 * never collapses to zero. backoff_success() marks the start of a healthy period;
 * backoff_next() resets the ladder if that period lasted at least `stable` seconds.
 *
 * Ownership: plain value struct, embed it; no allocation.
 */
#ifndef IIOTGW_BACKOFF_H
#define IIOTGW_BACKOFF_H

#include <stdint.h>

struct backoff {
    double base;       /* first nominal delay, seconds (e.g. 1) */
    double max;        /* cap on the nominal delay, seconds (e.g. 60) */
    double stable;     /* a healthy period this long resets the ladder (e.g. 60) */
    double nominal;    /* current nominal delay */
    double healthy_at; /* monotonic time of the last backoff_success(), or < 0 */
    uint32_t rng;
    unsigned attempts; /* failures since the last reset */
};

void backoff_init(struct backoff *b, double base, double max, double stable);

/* Record that the resource came up (connected, process started) at monotonic time `now`. */
void backoff_success(struct backoff *b, double now);

/*
 * Record a failure at monotonic time `now` and return the delay in seconds to wait
 * before the next attempt (jittered, within [nominal/2, nominal]).
 */
double backoff_next(struct backoff *b, double now);

/* Forget all failures. */
void backoff_reset(struct backoff *b);

#endif
