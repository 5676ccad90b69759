/*
 * replay.h — replaying a capture on its own clock: each line's time from the capture (a
 * packet field or the log line's stamp, see clock.h), on_tick generated in virtual time
 * between lines, and pacing at N x the capture's speed.
 *
 * The gateway creates one struct replay when clock.mode is "packet" or "log" and routes every
 * framed line through replay_feed() instead of handling it at once. For each line the replay:
 *   1. derives the line's uptime (replay_uptime) and maps it through the source's
 *      clock_track to a virtual time (lines without one keep the current virtual time);
 *   2. with a finite speed and a finite source, holds the line until the wall clock reaches
 *      its paced time (the source is paused meanwhile, the rest of its chunk queued behind);
 *   3. when the line is due: calls cbs.tick for every tick time up to the line's time (the
 *      clock standing at the tick's time), moves the clock to the line's time and calls
 *      cbs.line with it.
 * Under pacing, ticks that fall before the next held line fire at their own paced time, so a
 * silence in a real-time replay fires on_tick as the capture's silence did.
 *
 * Anchor: cfg.start_ns, or (have_start false) the modification time of cfg.scan_path minus
 * the capture's span, measured by a first pass over that file with the same arithmetic (so
 * the last line lands at the file's mtime: a recording is written until its last line);
 * without a scan_path, the wall clock at replay_new().
 *
 * Ownership: replay_new() returns an object owned by the caller (replay_free()); it borrows
 * the loop, the clock and the sources handed to replay_feed (they must outlive it). Lines are
 * copied when held. Callbacks run from replay_feed or from the pacing timer, never re-entered.
 */
#ifndef IIOTGW_REPLAY_H
#define IIOTGW_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "clock.h"

struct source;

struct replay_config {
    enum clock_mode mode;  /* CLOCK_MODE_PACKET or CLOCK_MODE_LOG */
    const char *field;     /* packet field holding the uptime, dotted path (default "ts") */
    int64_t unit_ns;       /* ns per unit of that field (default ms) */
    bool have_start;       /* start_ns given (clock.start) */
    int64_t start_ns;      /* virtual time of the capture's first timed line */
    double speed;          /* x the capture's pace; 0 = as fast as the sinks take it */
    double tick_interval;  /* seconds between generated ticks (> 0) */
    const char *scan_path; /* file measured for the default anchor; NULL = none */
    size_t max_line;       /* framer bound for that scan */
    size_t nsources;       /* sources are identified by index 0..nsources-1 */
};

struct replay_cbs {
    void *ud;
    /* A line, due now, with its receive time (the clock already stands there). */
    void (*line)(void *ud, struct source *src, char *line, size_t len, uint64_t line_no,
                 unsigned flags, int64_t t_ns);
    /* A tick at virtual time t_ns (the clock already stands there). */
    void (*tick)(void *ud, int64_t t_ns);
    /* Every held line was handed on: the sources the replay paused may read again. */
    void (*drained)(void *ud);
};

struct replay_stats {
    uint64_t timed;    /* lines whose time came from the capture */
    uint64_t untimed;  /* lines that kept the current virtual time (no field / stamp) */
    uint64_t reboots;  /* uptime jumps back, all sources */
    uint64_t ticks;    /* ticks generated */
    uint64_t skipped;  /* ticks not generated because one gap needed too many */
    uint64_t held_max; /* most lines held at once */
    uint64_t dropped;  /* held lines dropped by replay_drop */
};

struct replay;

/*
 * Create the replay and set the clock to the anchor (clock_init_virtual). Returns 0;
 * -EINVAL (bad mode, unit, tick interval) or the -errno of stat/open/read of scan_path, with
 * err set; -ENOMEM.
 */
int replay_new(struct replay **out, struct ev_loop *loop, const struct replay_config *cfg,
               struct clock *clock, const struct replay_cbs *cbs, char *err, size_t errlen);

/*
 * A framed line from source number `index` (finite: may be paced). The line is read-only for
 * the replay (it cleans a copy); it reaches cbs.line now or later, in order per replay.
 */
void replay_feed(struct replay *rp, struct source *src, size_t index, char *line, size_t len,
                 uint64_t line_no, unsigned flags);

/* True while lines are held for pacing (the sources must stay paused). */
bool replay_holding(const struct replay *rp);

/* Forget the held lines (shutdown by signal): returns how many were dropped. */
uint64_t replay_drop(struct replay *rp);

/*
 * The uptime of one line, as the replay reads it: under CLOCK_MODE_LOG the leading defmt
 * stamp, else (or when there is none) the packet field of the line's JSON object. `copy`
 * (len bytes, writable) is cleaned in place. Returns 0 and *u_ns, or -ENOENT.
 */
int replay_uptime(const struct replay_config *cfg, char *copy, size_t len, int64_t *u_ns);

void replay_get_stats(const struct replay *rp, struct replay_stats *out);
void replay_free(struct replay *rp);

#endif
