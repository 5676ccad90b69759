/*
 * spool.h — the durable on-disk store-and-forward spool.
 *
 * Every record the rules produce is appended here once as opaque bytes (the sinks define the
 * encoding: mqttrec.h for an MQTT message, a line of line protocol for InfluxDB),
 * tagged with the sinks that need it (a bitmask, up to SPOOL_MAX_SINKS). Each sink reads the
 * records in append order through its own cursor (spool_next) and acknowledges them when the
 * downstream server did (MQTT PUBACK/PUBCOMP, InfluxDB 2xx) with spool_ack, in any order. A
 * sink's durable "committed" cursor is its lowest un-acknowledged sequence number; a segment
 * file is deleted once every sink has committed past its last record. After a restart each
 * sink re-reads from its committed cursor: delivery is at-least-once, duplicates are bounded
 * by what was in flight (delivered but not acked, or acked but not yet in the state file).
 *
 * On disk (see docs/reliability.md for the byte layout and the guarantees):
 *   DIR/spool-<first seq, 16 hex>.seg   append-only segment files of CRC-32C checked records
 *   DIR/spool.state                     committed cursors, replaced atomically (tmp+rename)
 *   DIR/spool.lock                      flock()ed while open: one process per spool
 *
 * Cost model: spool_append() only copies into a write buffer (no syscall); the buffer is
 * written with one write(2) when it fills (cfg.write_buffer, 64 KiB) and by spool_flush /
 * spool_sync / spool_tick. fsync happens only in spool_sync (and spool_tick under the
 * `interval` policy), never per record.
 *
 * How the daemon is meant to drive it (single-threaded, from the libev loop):
 *
 *   spool_open(&sp, dir, &cfg, &report);          once; log/report the recovery counts
 *   per rule output:   spool_append(sp, SINK_BIT, flags, data, len, &seq);  on error (< 0) deliver
 * directly, token 0, and raise the "spool degraded" status (spool_degraded() != 0) after each input
 * batch:  spool_sync(sp) under the `always` policy (nothing to do otherwise; spool_flush(sp) if you
 * want a process-crash window of 0) ev_timer every cfg.sync_interval: spool_tick(sp)   (write,
 * fsync, delete, retry, state) per sink, when it can take more: while (room && spool_next(sp, sink,
 * &rec) == 0) publish(rec.data, rec.len, token = rec.seq)   [no retain if rec.flags & REPLAY] sink
 * ack callback(token):  spool_ack(sp, sink, token)   (token 0 = not spooled: ignore) sink lost its
 * in-flight messages (clean session reconnect): spool_rewind(sp, sink) shutdown: spool_close(sp)
 *
 * Ownership: spool_open() returns an object owned by the caller, released by spool_close().
 * Appended data is copied. Pointers returned by spool_next() point into
 * spool-owned buffers and stay valid until the next spool_next() for the same sink or the next
 * spool_append, spool_appendv, spool_flush, spool_sync, spool_tick, spool_retry, spool_rewind or
 * spool_close call, whichever comes first: copy what you keep.
 *
 * Not thread-safe: one thread (the event loop) uses a spool.
 */
#ifndef IIOTGW_SPOOL_H
#define IIOTGW_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "buf.h"

/* ----------------------------------------------------------------------------------------- */
/* Configuration                                                                             */
/* ----------------------------------------------------------------------------------------- */

#define SPOOL_MAX_SINKS  8
#define SPOOL_MAX_RECORD (16u * 1024 * 1024) /* payload bytes; larger appends get -EMSGSIZE */
#define SPOOL_SEQ_NONE   0                   /* never a valid sequence number (they start at 1) */

enum spool_fsync {
    SPOOL_FSYNC_INTERVAL = 0, /* default: write + fdatasync on every spool_tick() */
    SPOOL_FSYNC_ALWAYS,       /* write + fdatasync on every spool_sync() (call it per batch) */
    SPOOL_FSYNC_NONE,         /* write on tick/sync, never fsync: the OS decides */
};

/* CRC-32C (Castagnoli), as stored in records and the state file. Chain: crc = f(crc, ...),
 * start with 0. Uses the SSE4.2 instruction when the CPU has it. */
uint32_t spool_crc32c(uint32_t crc, const void *data, size_t len);

/* Parse "always" | "interval" | "none". Returns the enum value or -EINVAL. */
int spool_fsync_parse(const char *s);
const char *spool_fsync_name(int policy);

/* Defaults of a zero field, stated once: the spool applies them and the config table
 * (config.c) shows them as the options' defaults. Plain literals (stringified there). */
#define SPOOL_DEFAULT_MAX_BYTES     268435456 /* 256 MiB */
#define SPOOL_DEFAULT_SEGMENT_BYTES 8388608   /* 8 MiB */
#define SPOOL_DEFAULT_SYNC_INTERVAL 0.1

struct spool_config {
    unsigned nsinks;        /* number of sink cursors, 1..SPOOL_MAX_SINKS (0 -> 2) */
    uint64_t max_bytes;     /* bound on all segments, default 256 MiB */
    uint64_t segment_bytes; /* roll segments at this size, default 8 MiB (clamped to
                               max_bytes / 4 so dropping one segment frees room) */
    size_t write_buffer;    /* user-space write buffer, default 64 KiB */
    int fsync;              /* enum spool_fsync, default SPOOL_FSYNC_INTERVAL */
    double sync_interval;   /* seconds between spool_tick() calls the daemon makes
                               (documentation of the loss window; default 0.1) */
    double state_interval;  /* minimum seconds between state-file writes, default 1.0 */
    double retry_interval;  /* degraded: retry the disk after this many seconds, default 5 */
};

/* ----------------------------------------------------------------------------------------- */
/* Records, recovery report, statistics                                                       */
/* ----------------------------------------------------------------------------------------- */

/* Flags stored with a record (spool_append `flags`). */
#define SPOOL_F_ALERT 0x01u /* never dropped by the byte bound (see docs/reliability.md) */
#define SPOOL_F_RELOCATED                                                                          \
    0x02u /* set by the spool: an alert copied forward out of a dropped                            \
             segment, so it arrives later than its neighbours */
/* Set in spool_rec.flags only (not stored): the record was appended before this spool_open()
 * or is being re-delivered after spool_rewind(). Publish such MQTT messages without retain. */
#define SPOOL_R_REPLAY 0x100u

struct spool_rec {
    uint64_t seq;     /* sequence number; pass it as the sink token and to spool_ack */
    int64_t wall_ns;  /* CLOCK_REALTIME when appended */
    unsigned flags;   /* SPOOL_F_* | SPOOL_R_REPLAY */
    unsigned sinks;   /* the record's sink mask */
    const void *data; /* payload, owned by the spool (see the lifetime rule above) */
    size_t len;
};

enum spool_state_status { SPOOL_STATE_OK = 0, SPOOL_STATE_MISSING, SPOOL_STATE_CORRUPT };

/* What spool_open() found and did. Also logged (event=spool_recovered). */
struct spool_report {
    unsigned segments;          /* segment files found */
    unsigned segments_damaged;  /* segments where something was skipped or truncated */
    uint64_t records_kept;      /* intact records (acknowledged or not) */
    uint64_t records_pending;   /* intact records some sink still has to deliver */
    uint64_t records_discarded; /* damaged regions skipped (each counts as one record) and
                                   duplicate sequence numbers */
    uint64_t bytes_discarded;   /* bytes skipped in the middle plus bytes truncated */
    uint64_t bytes_truncated;   /* torn tails cut off segment ends */
    int state;                  /* enum spool_state_status; CORRUPT/MISSING -> replay from the
                                   oldest record for every sink */
    uint64_t next_seq;          /* first sequence number this run will assign */
};

struct spool_stats {
    uint64_t bytes; /* segment bytes incl. the write buffer */
    unsigned segments;
    uint64_t next_seq;
    uint64_t written_seq;                /* highest seq handed to write(2) */
    uint64_t synced_seq;                 /* highest seq fdatasync()ed (0 with `none`) */
    uint64_t pending[SPOOL_MAX_SINKS];   /* records not yet acked, per sink */
    uint64_t committed[SPOOL_MAX_SINKS]; /* lowest un-acked seq, per sink */
    double oldest_age[SPOOL_MAX_SINKS];  /* seconds since the oldest un-acked record of the
                                            sink was appended; 0 when none */
    uint64_t appended;                   /* records appended since open */
    uint64_t appended_bytes;
    uint64_t drops_full;    /* non-alert records dropped by the byte bound */
    uint64_t drops_corrupt; /* damaged records skipped (recovery + reads) */
    uint64_t rejected_full; /* appends refused: spool full of alerts */
    uint64_t append_errors; /* appends refused: disk error (degraded) */
    uint64_t relocated;     /* alerts copied forward out of dropped segments */
    uint64_t writes;        /* write(2) calls */
    uint64_t fsyncs;        /* fdatasync/fsync calls */
    uint64_t state_writes;
    int degraded; /* 0, or the negative errno that degraded it */
};

struct spool;

/* ----------------------------------------------------------------------------------------- */
/* Lifecycle                                                                                 */
/* ----------------------------------------------------------------------------------------- */

/*
 * Open (creating if needed) the spool in directory `dir` and recover it: scan every segment,
 * skip damaged records by resynchronising on the next valid record, truncate invalid tails,
 * load the committed cursors (a missing or corrupt state file means every sink restarts from
 * the oldest record), and start a fresh active segment.
 *
 * Parameters:
 *   out    receives the spool on success
 *   dir    spool directory (created with mode 0700 if missing; parent must exist)
 *   cfg    configuration, may be NULL for defaults; copied
 *   report may be NULL; filled with what recovery found
 *
 * Returns 0; -EINVAL (bad cfg), -EBUSY (another process has it open), -ENOMEM, or the
 * negative errno of an unusable directory (-EACCES, -ENOTDIR, -EROFS, ...). Damage is never
 * an error.
 */
int spool_open(struct spool **out, const char *dir, const struct spool_config *cfg,
               struct spool_report *report);

/*
 * Write the buffer, fdatasync (unless `none`), write the state file, close. Returns 0 or the
 * negative errno of a failed write/fsync (the spool is freed either way). sp may be NULL.
 */
int spool_close(struct spool *sp);

/* ----------------------------------------------------------------------------------------- */
/* Appending                                                                                 */
/* ----------------------------------------------------------------------------------------- */

/*
 * Append one record for the sinks in `sinks` (bit i = sink i), with SPOOL_F_ALERT or 0 in
 * `flags`. The payload is copied into the write buffer; no syscall unless the buffer fills or
 * a segment rolls. When the spool is over max_bytes the oldest segment is dropped first
 * (its pending non-alert records are counted in drops_full and logged; pending alerts are
 * copied forward).
 *
 * Returns 0 and *seq (may be NULL); -EINVAL (empty/unknown sink mask); -EMSGSIZE (too big);
 * -ENOBUFS (full of alerts: nothing could be dropped); or, when the disk fails, the write's
 * negative errno (-ENOSPC, -EIO, -EDQUOT, ...) — the spool is then degraded: further appends
 * fail fast with the same code until a retry (spool_retry, or automatically every
 * retry_interval from spool_append/spool_tick) succeeds. Nothing already in the spool is
 * damaged by a failure; records accepted before it stay readable and are written on retry.
 */
int spool_append(struct spool *sp, unsigned sinks, unsigned flags, const void *data, size_t len,
                 uint64_t *seq);

/* Same, payload gathered from `iov` (no intermediate copy). */
int spool_appendv(struct spool *sp, unsigned sinks, unsigned flags, const struct iovec *iov,
                  int iovcnt, uint64_t *seq);

/* ----------------------------------------------------------------------------------------- */
/* Reading and acknowledging (per sink)                                                      */
/* ----------------------------------------------------------------------------------------- */

/*
 * Next record for `sink` that it has not been given yet (in append order), skipping records
 * not tagged for it. Records already in the write buffer are readable at once.
 * Returns 0 and fills *rec; -EAGAIN when the sink is caught up; -EINVAL (bad sink).
 * Damaged records met while reading are skipped and counted in drops_corrupt.
 */
int spool_next(struct spool *sp, unsigned sink, struct spool_rec *rec);

/*
 * Acknowledge record `seq` for `sink` (in any order). Advances the sink's committed cursor
 * over every acknowledged prefix. Cheap (bit set, no syscall); persisted by spool_sync /
 * spool_tick / spool_close. Returns 0; 0 for a duplicate or for seq 0 (not spooled);
 * -ERANGE for a seq never handed out by spool_next; -EINVAL (bad sink).
 */
int spool_ack(struct spool *sp, unsigned sink, uint64_t seq);

/*
 * Make `sink` re-read every un-acknowledged record from its committed cursor (they come back
 * flagged SPOOL_R_REPLAY). Use when the sink lost its in-flight messages. Returns 0 or -EINVAL.
 */
int spool_rewind(struct spool *sp, unsigned sink);

/* ----------------------------------------------------------------------------------------- */
/* Durability, timer, health                                                                 */
/* ----------------------------------------------------------------------------------------- */

/*
 * write(2) the buffered records (no fsync). Returns 0 or a negative errno (-> degraded).
 */
int spool_flush(struct spool *sp);

/*
 * Group commit: spool_flush, then fdatasync the active segment (not under `none`), fsync the
 * directory if a segment was created, delete fully committed segments and write the state
 * file if cursors moved and state_interval passed. Returns 0 or a negative errno (-> degraded).
 */
int spool_sync(struct spool *sp);

/*
 * Call from a timer every cfg.sync_interval. `interval`: spool_sync; `always`/`none`:
 * spool_flush plus segment deletion and state file. Also retries a degraded spool when due.
 * Returns what the sync/flush returned.
 */
int spool_tick(struct spool *sp);

/*
 * Try the disk again now: write what is buffered, reopen the active segment if needed.
 * Returns 0 (healthy again or never degraded) or the negative errno (still degraded).
 */
int spool_retry(struct spool *sp);

/* 0 when healthy, else the negative errno that degraded the spool. */
int spool_degraded(const struct spool *sp);

/* Fill *st. Computing oldest_age may read a little from disk (a few records per sink). */
void spool_stats(struct spool *sp, struct spool_stats *st);

#endif
