/*
 * latency.h — publish-to-acknowledgement latency per packet: from the moment its line was
 * read to the PUBACK/PUBCOMP of the last message the rule published for it.
 *
 * One ring indexed by packet sequence follows packets in flight. The packet's sequence
 * number is the token its messages carry through the pump and the spool (mqttrec.h `user`)
 * and come back with when acknowledged (forward_ack_cb), so no second map from spool records
 * to packets is needed. Completed latencies are kept until the next report (p50/p99/max go
 * into the stats).
 *
 * Ownership: struct latency is embedded by its user; the ring and the samples are allocated
 * on first use and released by latency_free().
 */
#ifndef IIOTGW_LATENCY_H
#define IIOTGW_LATENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LATENCY_RING    4096
#define LATENCY_SAMPLES 65536

struct latency_slot {
    uint64_t seq;
    double t0;
    uint32_t pending;
    bool open;
};

struct latency {
    struct latency_slot *ring; /* LATENCY_RING slots */
    uint64_t seq;              /* last packet sequence */
    uint64_t current;          /* token of the packet being ruled (0 = none) */
    double *samples;           /* completed latencies (seconds) since the last report */
    size_t nsamples;
    uint64_t lost_track; /* packets still unacknowledged when their slot was reused */
};

/* A packet read at monotonic time t0 is being ruled: its messages get latency_token(). */
void latency_begin(struct latency *l, double t0);

/* The token for one more message of the current packet (0 = not tracked). latency_unsent()
 * takes it back when the message was not accepted. */
uint64_t latency_token(struct latency *l);
void latency_unsent(struct latency *l, uint64_t token);

/* The current packet's rule call is over (a packet that published nothing is forgotten). */
void latency_end(struct latency *l);

/* A message with this token was acknowledged. Unknown or stale tokens are ignored. */
void latency_ack(struct latency *l, uint64_t token);

/* p50/p99/max in ms and the count of the samples since the last call; resets them. */
void latency_report(struct latency *l, double *p50, double *p99, double *max, size_t *n);

/* The same figures without resetting (a metrics scrape must not take the report's samples). */
void latency_peek(struct latency *l, double *p50, double *p99, double *max, size_t *n);

void latency_free(struct latency *l);

#endif
