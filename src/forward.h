/*
 * forward.h — the store-and-forward pump between the rule outputs, the durable spool
 * (spool.h) and the two sinks (mqtt.h, influx.h). Issue 3.
 *
 * Without a spool directory it is a thin pass-through: every publish/point goes straight to
 * its sink. With one, every rule output is appended to the spool first and the pump hands
 * records to the sinks from there, inside a bounded window, and acknowledges them to the
 * spool when the server did (PUBACK/PUBCOMP, HTTP 2xx; a 4xx-rejected line is released too).
 *
 * Cursors: the spool holds four sink cursors, two per destination (MQTT 0/1, InfluxDB 2/3).
 * At start the one with fewer pending records becomes the destination's "live" cursor, the
 * other its "backlog" cursor. A record produced while the sink is up goes to the live
 * cursor, one produced while it is down (MQTT disconnected; InfluxDB retrying) to the backlog
 * cursor. Backlog records and every record flagged SPOOL_R_REPLAY (appended before this
 * start, or rewound) are sent as *replay*: MQTT without retain, under replay_prefix if set;
 * InfluxDB lines unchanged (they carry their timestamp). Live records keep the rule's retain
 * flag. The backlog cursor gets replay_share of the window while the live one is busy, the
 * whole window when it is idle (1.0: the backlog goes first). Order is kept per cursor. See
 * docs/reliability.md for the exact guarantees.
 *
 * Tokens handed to the sinks: (seq << 3) | (cursor + 1) for spooled records, (user << 3) for
 * direct ones; the ack callbacks decode them. The caller's user token (the gateway's
 * latency slot) comes back through the user ack callback once the record is acknowledged.
 *
 * Driving: forward_new() embeds an ev_prepare (group commit under `always`, idle cursor
 * scans, pump) and an ev_timer every sync_interval (spool_tick, degraded/recovered status).
 * It sets the sinks' ack callbacks itself; give it yours with forward_set_callbacks().
 *
 * Ownership: forward_new() returns an object owned by the caller, released by forward_free()
 * (which closes the spool: write, fsync, state file). The sinks are borrowed: they must
 * outlive the forward object's use, and no sink callback may reach it after forward_free()
 * (free the sinks first, or do not run the loop in between).
 */
#ifndef IIOTGW_FORWARD_H
#define IIOTGW_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

struct mqtt_sink;
struct influx_sink;

enum forward_dest { FWD_MQTT = 0, FWD_INFLUX = 1 };

struct forward_config {
    const char *dir;           /* spool directory; NULL, "" or "none" = no spool */
    int fsync;                 /* enum spool_fsync */
    double sync_interval;      /* seconds between spool_tick() calls (default 0.1) */
    uint64_t max_bytes;        /* spool bound (0 = spool default 256 MiB) */
    uint64_t segment_bytes;    /* segment size (0 = spool default 8 MiB) */
    double replay_share;       /* 0..1, fraction of the window for backlog while live flows */
    const char *replay_prefix; /* NULL/"none" = replay on the original topic */
    size_t mqtt_window;        /* max mqtt_sink_pending() we create (e.g. 2*max_inflight) */
    size_t influx_window;      /* max influx_sink_pending() we create (a few batches) */
    size_t mqtt_max_bytes;     /* the MQTT sink's queue_max_bytes: larger messages are refused
                                  up front (-EINVAL), as mqtt_sink_publish would */
    const char *status_topic;  /* retained spool status topic (<prefix>/gateway/spool) */
    const char *alert_prefix;  /* "<prefix>/alerts/": spooled with SPOOL_F_ALERT (never
                                  dropped by the byte bound); may be NULL */
};

struct forward_stats {
    bool enabled; /* a spool is configured */
    uint64_t bytes;
    uint64_t pending[2]; /* per destination, records not yet acknowledged */
    double oldest_age;   /* seconds, max over the sinks */
    uint64_t replayed;   /* records handed to a sink as replay (counter) */
    uint64_t drops_full;
    uint64_t drops_corrupt;
    uint64_t append_errors;
    uint64_t direct; /* records delivered around the spool (degraded, too big) */
    bool degraded;
};

/* Acknowledged direct or spooled MQTT message: `user` is the token given to forward_publish. */
typedef void (*forward_ack_cb)(void *ud, uint64_t user);
typedef void (*forward_reject_cb)(void *ud, const char *lines, size_t len, long status,
                                  const char *message);

struct forward;

/*
 * Create the pump over the given sinks (either may be NULL = disabled) and open the spool if
 * cfg->dir names one and at least one sink exists. An unusable spool never fails this call:
 * the pump runs degraded (records delivered directly), publishes the degraded status and
 * retries opening every 5 s.
 * Returns 0, -EINVAL (bad cfg; err set), -ENOMEM.
 */
int forward_new(struct forward **out, struct ev_loop *loop, const struct forward_config *cfg,
                struct mqtt_sink *mqtt, struct influx_sink *influx, char *err, size_t errlen);

/* User callbacks: MQTT acks (user tokens) and InfluxDB rejects (for the dead-letter). */
void forward_set_callbacks(struct forward *fw, forward_ack_cb ack, forward_reject_cb reject,
                           void *ud);

/*
 * One rule publish. Validated like mqtt_sink_publish (-EINVAL for a bad topic/qos/size), then
 * spooled and pumped (a live message goes out within this call when the window has room).
 * Returns 0 (accepted), -EINVAL, -ENOMEM. With no MQTT sink: 0, nothing done.
 */
int forward_publish(struct forward *fw, const char *topic, const void *payload, size_t len, int qos,
                    bool retain, uint64_t user);

/* One rule point (line protocol, no '\n'). Returns 0, -EINVAL, -ENOMEM. */
int forward_write(struct forward *fw, const char *line, size_t len);

/*
 * Records of destination `d` not yet acknowledged: in the sink plus in the spool. `exact`
 * includes records spooled before this start (costs a spool_stats call: use it for drain
 * decisions, not per packet); otherwise only this run's records are counted.
 */
size_t forward_pending(struct forward *fw, enum forward_dest d, bool exact);

void forward_get_stats(struct forward *fw, struct forward_stats *st);

/* Close the spool (write, fsync, state) and free. NULL is a no-op. */
void forward_free(struct forward *fw);

#endif
