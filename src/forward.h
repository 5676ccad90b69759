/*
 * forward.h — the store-and-forward pump between the producers (rule outputs and the
 * gateway's own messages), the durable spool (spool.h) and the sinks (sink.h).
 *
 * The pump knows sinks only through struct sink_ops: one sink per destination (FWD_MQTT,
 * FWD_INFLUX), either may be absent. Records are the sinks' own encoding (mqttrec.h for MQTT,
 * a line of line protocol for InfluxDB); every record is validated by the sink's `check`
 * before anything else happens, so a record the sink would refuse is never spooled.
 *
 * Without a spool directory it is a thin pass-through: every record goes straight to its
 * sink. With one, every producer record is appended to the spool first and the pump hands
 * records to the sinks from there, inside a bounded window, and acknowledges them to the
 * spool when the server did (ack), or when the sink refused them for good (release, after
 * the reject callback). FWD_INTERNAL records (the gateway's status, stats and dead-letter
 * messages) are never spooled.
 *
 * Cursors: the spool holds four sink cursors, two per destination (MQTT 0/1, InfluxDB 2/3).
 * At start the one with fewer pending records becomes the destination's "live" cursor, the
 * other its "backlog" cursor. A record produced while the sink is healthy (ops->healthy) goes
 * to the live cursor, one produced while it is not to the backlog cursor. Backlog records and
 * every record flagged SPOOL_R_REPLAY (appended before this start, or rewound) are submitted
 * with SINK_REPLAY. The backlog cursor gets replay_share of the window while the live one is
 * busy, the whole window when it is idle (1.0: the backlog goes first). Order is kept per
 * cursor. See docs/reliability.md for the exact guarantees.
 *
 * Tokens handed to the sinks: (seq << 3) | (cursor + 1) for spooled records, 0 for direct
 * ones. The producer's own token travels inside the record (mqttrec.h `user`) and comes back
 * through the ack callback once the record is acknowledged — for spooled records only when
 * they were appended by this run (an older run's tokens mean nothing now).
 *
 * Driving: with a spool, forward_new() starts an ev_prepare (group commit under `always`,
 * idle cursor scans, pump) and an ev_timer every sync_interval (spool_tick, degraded and
 * recovered status, resend of records a sink lost). It sets the sinks' callbacks itself;
 * give it yours with forward_set_callbacks().
 *
 * Ownership: forward_new() returns an object owned by the caller, released by forward_free()
 * (which closes the spool: write, fsync, state file). The sinks are borrowed: free them
 * before forward_free() (or do not run the loop in between), so that no sink callback reaches
 * a freed pump.
 */
#ifndef IIOTGW_FORWARD_H
#define IIOTGW_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "sink.h"

enum forward_dest { FWD_MQTT = 0, FWD_INFLUX = 1, FWD_NDEST = 2 };

/* forward_submit() flags */
#define FWD_ALERT    0x1u /* spooled with SPOOL_F_ALERT: never dropped by the byte bound */
#define FWD_INTERNAL 0x2u /* the gateway's own message: never spooled (SINK_INTERNAL) */

struct forward_config {
    const char *dir;          /* spool directory; NULL, "" or "none" = no spool */
    int fsync;                /* enum spool_fsync */
    double sync_interval;     /* seconds between spool_tick() calls (0 = 0.1) */
    uint64_t max_bytes;       /* spool bound (0 = spool default) */
    uint64_t segment_bytes;   /* segment size (0 = spool default) */
    double replay_share;      /* 0..1, fraction of the window for backlog while live flows */
    size_t window[FWD_NDEST]; /* max ops->pending() the pump creates per sink, > 0 */
    const char *status_topic; /* retained spool status topic (<prefix>/gateway/spool), or
                                 NULL */
    bool open_required;       /* a spool that cannot be opened fails forward_new() instead of
                                 running degraded (the daemon's start-up) */
};

struct forward_stats {
    bool enabled; /* a spool is configured */
    uint64_t bytes;
    uint64_t pending[FWD_NDEST]; /* per destination, records not yet acknowledged */
    double oldest_age;           /* seconds, max over the sinks */
    uint64_t replayed;           /* records handed to a sink as replay (counter) */
    uint64_t drops_full;
    uint64_t drops_corrupt;
    uint64_t append_errors;
    uint64_t direct; /* records delivered around the spool (degraded) */
    bool degraded;
    struct sink_stats sink[FWD_NDEST]; /* ops->stats of each sink (zero when absent) */
};

/* An acknowledged record that carried a producer token (`user` != 0). */
typedef void (*forward_ack_cb)(void *ud, uint64_t user);
/* A record the sink refused for good (see sink_reject_cb). */
typedef void (*forward_reject_cb)(void *ud, enum forward_dest dest, const char *data, size_t len,
                                  long status, const char *message);

struct forward;

/*
 * Create the pump over sinks[FWD_NDEST] (ops NULL = absent) and open the spool if cfg->dir
 * names one and at least one sink exists. Unless cfg->open_required, an unusable spool never
 * fails this call: the pump runs degraded (records delivered directly), publishes the
 * degraded status and retries opening every 5 s.
 * Returns 0, -EINVAL (bad cfg; err set), -ENOMEM; with open_required also spool_open()'s
 * error (err set; -EBUSY: another process holds the spool).
 */
int forward_new(struct forward **out, struct ev_loop *loop, const struct forward_config *cfg,
                const struct sink sinks[FWD_NDEST], char *err, size_t errlen);

void forward_set_callbacks(struct forward *fw, forward_ack_cb ack, forward_reject_cb reject,
                           void *ud);

/* A sink exists for `dest`. */
bool forward_has(const struct forward *fw, enum forward_dest dest);

/*
 * One record for `dest` (copied). Validated by the sink (-EINVAL), then spooled and pumped (a
 * live record goes out within this call when the window has room), or submitted directly
 * (no spool, FWD_INTERNAL, or the spool refused the append). Returns 0 (accepted), -EINVAL,
 * -ENOMEM. Without a sink for `dest`: 0, nothing done.
 */
int forward_submit(struct forward *fw, enum forward_dest dest, const void *rec, size_t len,
                   unsigned flags);

/* forward_submit(FWD_MQTT) of the mqttrec.h encoding of this message. */
int forward_publish(struct forward *fw, const char *topic, const void *payload, size_t len, int qos,
                    bool retain, unsigned flags, uint64_t user);

/*
 * Records of destination `d` not yet acknowledged: in the sink plus in the spool. `exact`
 * includes records spooled before this start (costs a spool_stats call: use it for drain
 * decisions, not per packet); otherwise only this run's records are counted.
 */
size_t forward_pending(struct forward *fw, enum forward_dest d, bool exact);

/* Records the sink of `d` holds (ops->pending), leaving the spool out; 0 without a sink. */
size_t forward_sink_pending(const struct forward *fw, enum forward_dest d);

/* ops->flush on every sink that has one (send batches now). */
void forward_flush(struct forward *fw);

/*
 * Close every sink that has ops->close, each with `timeout`; `done` is called once, from the
 * loop, after the last one finished. Returns false (and never calls `done`) when no sink
 * needed closing.
 */
bool forward_close(struct forward *fw, double timeout, void (*done)(void *ud), void *ud);

void forward_get_stats(struct forward *fw, struct forward_stats *st);

/* Close the spool (write, fsync, state) and free. The sinks are not freed. NULL is a no-op. */
void forward_free(struct forward *fw);

#endif
