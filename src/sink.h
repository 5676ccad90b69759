/*
 * sink.h — the seam between the store-and-forward pump (forward.c) and the outputs.
 *
 * Every output kind registers one table of operations, in the style of Fluent Bit's
 * one-struct-per-plugin registration: mqtt.c (mqtt_sink_as_sink), influx.c
 * (influx_sink_as_sink) and dryrun.c (the --dry-run printer). The pump is written once
 * against this table and knows nothing about MQTT or HTTP.
 *
 * Records are opaque bytes to the pump and the spool. Each sink defines its own encoding (an
 * MQTT message as in mqttrec.h; one line of line protocol for InfluxDB) and validates it in
 * `check` before the record is spooled, so a record the sink would refuse never reaches the
 * disk and validation lives in the sink alone.
 *
 * Tokens: `submit` takes an opaque 64-bit token that comes back exactly once, through `ack`
 * when the server acknowledged the record or through `release` (after `reject`) when it
 * refused it for good. Records a sink drops (full queue) or loses (closed) never come back;
 * the pump notices that through `pending` (see forward.c, fwd_on_tick). `user` is the
 * producer's token carried inside the record (mqttrec.h); sinks without one pass 0.
 *
 * Callbacks run from the loop. A sink may call `ack` from inside `submit` (an MQTT QoS 0
 * message written at once), so the callee must tolerate re-entry (forward.c guards with its
 * `pumping` flag).
 *
 * Ownership: struct sink is a value (ops + instance); the instance belongs to whoever created
 * it and is released with ops->free. The pump borrows sinks.
 */
#ifndef IIOTGW_SINK_H
#define IIOTGW_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* submit() flags */
#define SINK_REPLAY   0x1u /* re-delivery (older run, backlog, rewind): MQTT drops retain */
#define SINK_INTERNAL 0x2u /* the gateway's own message (status, stats, dead-letter) */

typedef void (*sink_ack_cb)(void *ud, uint64_t token, uint64_t user);
/* A record (InfluxDB: a '\n'-joined batch) refused for good; pointers valid during the call. */
typedef void (*sink_reject_cb)(void *ud, const char *data, size_t len, long status,
                               const char *message);

struct sink_callbacks {
    sink_ack_cb ack;       /* acknowledged by the server */
    sink_ack_cb release;   /* refused for good, called right after `reject` */
    sink_reject_cb reject; /* may be NULL */
    void *ud;
};

/* What the gateway reports per sink; fields a sink does not have stay 0. */
struct sink_stats {
    bool up;         /* MQTT connected; InfluxDB no failed request since the last 2xx */
    size_t pending;  /* accepted, not yet acknowledged or refused */
    size_t queued;   /* waiting in the sink's own queue (MQTT offline FIFO) */
    size_t inflight; /* handed to the network, not yet acknowledged */
    uint64_t acked;  /* MQTT PUBACK/PUBCOMP (QoS 0: written); InfluxDB lines written */
    uint64_t rejected;
    uint64_t dropped; /* lost to a full queue: makes the run exit with GW_EXIT_UNDELIVERED */
    uint64_t retries;
    uint64_t reconnects;
    uint64_t batches;
};

struct sink_ops {
    const char *name; /* "mqtt", "influx": logs and stats */
    /* Would `submit` accept this record? 0 or -EINVAL. No side effects. */
    int (*check)(const void *self, const void *rec, size_t len);
    /* Take one record (copied). Returns 0, -EINVAL (invalid, or the sink is closed), -ENOMEM. */
    int (*submit)(void *self, const void *rec, size_t len, unsigned flags, uint64_t token);
    size_t (*pending)(const void *self);
    /* Records submitted now go out at once (MQTT connected; InfluxDB not retrying). */
    bool (*healthy)(const void *self);
    void (*set_callbacks)(void *self, const struct sink_callbacks *cb); /* NULL = none */
    /* Send what is batched now (may be NULL). */
    void (*flush)(void *self);
    /* Begin a clean close; `done` is called once, from the loop (NULL: nothing to close). */
    void (*close)(void *self, double timeout, void (*done)(void *ud), void *ud);
    void (*stats)(const void *self, struct sink_stats *st);
    void (*free)(void *self);
};

struct sink {
    const struct sink_ops *ops; /* NULL = no sink (disabled) */
    void *self;
};

#endif
