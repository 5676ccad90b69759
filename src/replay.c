/*
 * replay.c — a capture replayed on its own clock: line times, virtual ticks, pacing. See
 * replay.h.
 *
 * Why a queue: a source delivers a whole chunk of lines in one callback, and pausing it only
 * stops the next read. Pacing therefore holds the first line that is not due yet and every
 * line after it (order must be kept) in a FIFO, pauses the source, and a timer hands them on
 * when the wall clock reaches their paced time. The FIFO holds at most the rest of one read
 * chunk per source plus a partial last line, because the source stays paused until it is
 * empty.
 */
#include "replay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "extract.h"
#include "frame.h"
#include "log.h"
#include "source.h"
#include "util.h"

#define NS_PER_S 1000000000LL

/* One gap never generates more ticks than this: a capture with a week of silence must not
 * spend minutes in on_tick. The ticks closest to the next line are the ones kept. */
#define REPLAY_MAX_TICKS_PER_GAP 100000

/* Under the log clock a line's stamp and its packet field are two readings of one uptime,
 * taken a little apart: a step back this small is jitter, not a reboot. */
#define REPLAY_LOG_TOLERANCE_NS (2 * NS_PER_S)

struct held {
    struct held *next;
    struct source *src;
    uint64_t line_no;
    unsigned flags;
    int64_t t_ns;
    size_t len;
    char data[]; /* len bytes + NUL */
};

struct replay {
    struct replay_config cfg;
    char *field; /* owned copy of cfg.field */
    struct ev_loop *loop;
    struct clock *clock;
    struct replay_cbs cbs;
    struct clock_track *tracks; /* one per source */
    int64_t start_ns;
    int64_t tick_ns;   /* tick interval */
    int64_t next_tick; /* virtual time of the next tick */
    int64_t last_t;    /* time given to the latest line fed (held ones included) */
    /* pacing: the wall (monotonic) time at which virtual time anchor_v was reached */
    bool anchored;
    double anchor_mono;
    int64_t anchor_v;
    struct held *head, *tail;
    uint64_t nheld;
    ev_timer pace;
    struct buf scratch; /* cleaned copy of the line being timed */
    struct replay_stats st;
};

int replay_uptime(const struct replay_config *cfg, char *copy, size_t len, int64_t *u_ns)
{
    len = extract_clean(copy, len);
    if (cfg->mode == CLOCK_MODE_LOG && clock_log_stamp_ns(copy, len, u_ns) == 0)
        return 0;
    size_t off = 0, olen = 0;
    if (extract_object(copy, len, &off, &olen) != EXTRACT_OK)
        return -ENOENT;
    return clock_field_ns(copy + off, olen, cfg->field, cfg->unit_ns, u_ns) ? -ENOENT : 0;
}

/* ------------------------------------------------------------------------------------------
 * The default anchor: a first pass over the capture file
 * ---------------------------------------------------------------------------------------- */

struct scan {
    const struct replay_config *cfg;
    struct clock_track track;
    struct buf copy;
    bool any;
    int64_t first_v, last_v;
};

static void replay_scan_line(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags)
{
    (void)line_no;
    struct scan *sc = ud;
    int64_t u;
    if (flags & FRAME_OVERLONG)
        return;
    sc->copy.len = 0;
    if (buf_append(&sc->copy, line, len))
        return;
    if (replay_uptime(sc->cfg, sc->copy.p, len, &u))
        return;
    int64_t v = clock_track_map(&sc->track, 0, u);
    if (!sc->any)
        sc->first_v = v;
    sc->any = true;
    sc->last_v = v;
}

/* The capture's span (last timed line - first, reboots mapped as in the replay) and its
 * modification time. */
static int replay_scan(const struct replay_config *cfg, int64_t *span_ns, int64_t *mtime_ns,
                       char *err, size_t errlen)
{
    struct scan sc = {.cfg = cfg};
    struct framer fr;
    int rc = 0;
    sc.track.tolerance_ns = cfg->mode == CLOCK_MODE_LOG ? REPLAY_LOG_TOLERANCE_NS : 0;
    if ((rc = framer_init(&fr, cfg->max_line ? cfg->max_line : FRAME_DEFAULT_MAX_LINE)))
        return rc;
    FILE *f = fopen(cfg->scan_path, "rb");
    struct stat stb;
    if (!f || fstat(fileno(f), &stb)) {
        rc = -errno;
        snprintf(err, errlen, "clock: cannot read %s to measure its span: %s", cfg->scan_path,
                 strerror(errno));
        goto fail;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        framer_feed(&fr, chunk, n, replay_scan_line, &sc);
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, errlen, "clock: read error on %s", cfg->scan_path);
        goto fail;
    }
    framer_finish(&fr, replay_scan_line, &sc);
    *span_ns = sc.any ? sc.last_v - sc.first_v : 0;
    *mtime_ns = (int64_t)stb.st_mtim.tv_sec * NS_PER_S + stb.st_mtim.tv_nsec;
fail:
    if (f)
        fclose(f);
    framer_free(&fr);
    buf_free(&sc.copy);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Ticks and handing lines on
 * ---------------------------------------------------------------------------------------- */

/* Fire every tick at or before `until` (virtual ns). */
static void replay_ticks_until(struct replay *rp, int64_t until)
{
    if (until < rp->next_tick)
        return;
    int64_t due = (until - rp->next_tick) / rp->tick_ns + 1;
    if (due > REPLAY_MAX_TICKS_PER_GAP) {
        int64_t skip = due - REPLAY_MAX_TICKS_PER_GAP;
        rp->next_tick += skip * rp->tick_ns;
        rp->st.skipped += (uint64_t)skip;
        log_warn("clock_ticks_skipped", "ticks=%" PRId64 " max_per_gap=%d", skip,
                 REPLAY_MAX_TICKS_PER_GAP);
    }
    while (rp->next_tick <= until) {
        int64_t t = rp->next_tick;
        rp->next_tick += rp->tick_ns;
        clock_advance(rp->clock, t);
        rp->st.ticks++;
        rp->cbs.tick(rp->cbs.ud, t);
    }
}

static void replay_deliver(struct replay *rp, struct source *src, char *line, size_t len,
                           uint64_t line_no, unsigned flags, int64_t t_ns)
{
    replay_ticks_until(rp, t_ns);
    clock_advance(rp->clock, t_ns);
    rp->cbs.line(rp->cbs.ud, src, line, len, line_no, flags, t_ns);
}

/* Wall (monotonic) time at which virtual time v is due. */
static double replay_due(const struct replay *rp, int64_t v)
{
    return rp->anchor_mono + (double)(v - rp->anchor_v) / 1e9 / rp->cfg.speed;
}

/* Virtual time the paced replay has reached by wall time `mono`. */
static int64_t replay_virtual_at(const struct replay *rp, double mono)
{
    return rp->anchor_v + (int64_t)((mono - rp->anchor_mono) * rp->cfg.speed * 1e9);
}

static void replay_arm(struct replay *rp)
{
    if (!rp->head) {
        ev_timer_stop(rp->loop, &rp->pace);
        return;
    }
    int64_t next = rp->head->t_ns;
    if (rp->next_tick < next)
        next = rp->next_tick;
    double wait = replay_due(rp, next) - util_mono();
    ev_timer_stop(rp->loop, &rp->pace);
    ev_timer_set(&rp->pace, wait > 0 ? wait : 0, 0);
    ev_timer_start(rp->loop, &rp->pace);
}

static void replay_on_pace(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct replay *rp = container_of(w, struct replay, pace);
    /* 1 ms of slack: the timer may fire a hair early, and a line due in 1 ms is due now. */
    int64_t reached = replay_virtual_at(rp, util_mono() + 0.001);
    while (rp->head && rp->head->t_ns <= reached) {
        struct held *h = rp->head;
        rp->head = h->next;
        if (!rp->head)
            rp->tail = NULL;
        rp->nheld--;
        replay_deliver(rp, h->src, h->data, h->len, h->line_no, h->flags, h->t_ns);
        free(h);
    }
    if (rp->head) {
        /* Ticks before the next held line fire at their own paced time. */
        replay_ticks_until(rp, reached < rp->head->t_ns ? reached : rp->head->t_ns - 1);
        replay_arm(rp);
        return;
    }
    ev_timer_stop(rp->loop, &rp->pace);
    rp->cbs.drained(rp->cbs.ud);
}

static int replay_hold(struct replay *rp, struct source *src, const char *line, size_t len,
                       uint64_t line_no, unsigned flags, int64_t t_ns)
{
    struct held *h = malloc(sizeof *h + len + 1);
    if (!h)
        return -ENOMEM;
    *h = (struct held){.src = src, .line_no = line_no, .flags = flags, .t_ns = t_ns, .len = len};
    memcpy(h->data, line, len);
    h->data[len] = '\0';
    if (rp->tail)
        rp->tail->next = h;
    else
        rp->head = h;
    rp->tail = h;
    if (++rp->nheld > rp->st.held_max)
        rp->st.held_max = rp->nheld;
    source_pause(src);
    if (rp->nheld == 1)
        replay_arm(rp);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------------------------- */

void replay_feed(struct replay *rp, struct source *src, size_t index, char *line, size_t len,
                 uint64_t line_no, unsigned flags)
{
    /* Not the clock's now: with lines held, the clock still stands at the last line handed
     * on, and a line fed after the held ones must not get an earlier time than theirs. */
    int64_t u, t = rp->last_t;
    bool timed = false;
    if (!(flags & FRAME_OVERLONG) && buf_append(&rp->scratch, line, len) == 0) {
        timed = replay_uptime(&rp->cfg, rp->scratch.p, len, &u) == 0;
        rp->scratch.len = 0;
    }
    if (timed && index < rp->cfg.nsources) {
        struct clock_track *tr = &rp->tracks[index];
        uint64_t reboots = tr->reboots;
        t = clock_track_map(tr, rp->start_ns, u);
        rp->st.timed++;
        if (tr->reboots != reboots) {
            rp->st.reboots++;
            char at[40];
            clock_format(t, at, sizeof at);
            log_info("clock_reboot",
                     "source=%s line=%" PRIu64 " uptime_ms=%" PRId64 " continues_at=%s",
                     source_name(src), line_no, u / 1000000, at);
        }
    } else {
        rp->st.untimed++;
        if (rp->st.untimed == 1 && rp->cfg.mode == CLOCK_MODE_PACKET &&
            (flags & FRAME_OVERLONG) == 0)
            log_debug("clock_untimed", "source=%s line=%" PRIu64 " field=%s", source_name(src),
                      line_no, rp->cfg.field);
    }
    if (t < rp->last_t)
        t = rp->last_t; /* another source ahead: time does not run back */
    rp->last_t = t;

    bool paced = rp->cfg.speed > 0 && source_is_finite(src);
    if (paced && !rp->anchored) {
        rp->anchored = true;
        rp->anchor_mono = util_mono();
        rp->anchor_v = t;
    }
    if (paced && (rp->head || replay_due(rp, t) > util_mono() + 0.001)) {
        if (replay_hold(rp, src, line, len, line_no, flags, t) == 0)
            return;
        log_warn("clock_pacing_failed", "source=%s line=%" PRIu64 " error=\"out of memory\"",
                 source_name(src), line_no);
    }
    replay_deliver(rp, src, line, len, line_no, flags, t);
}

bool replay_holding(const struct replay *rp)
{
    return rp && rp->head;
}

uint64_t replay_drop(struct replay *rp)
{
    uint64_t n = 0;
    if (!rp)
        return 0;
    while (rp->head) {
        struct held *h = rp->head;
        rp->head = h->next;
        free(h);
        n++;
    }
    rp->tail = NULL;
    rp->nheld = 0;
    rp->st.dropped += n;
    ev_timer_stop(rp->loop, &rp->pace);
    return n;
}

int replay_new(struct replay **out, struct ev_loop *loop, const struct replay_config *cfg,
               struct clock *clock, const struct replay_cbs *cbs, char *err, size_t errlen)
{
    *out = NULL;
    if ((cfg->mode != CLOCK_MODE_PACKET && cfg->mode != CLOCK_MODE_LOG) || cfg->unit_ns <= 0 ||
        !(cfg->tick_interval > 0) || cfg->speed < 0 || !cfg->field || !*cfg->field) {
        snprintf(err, errlen, "clock: invalid replay configuration");
        return -EINVAL;
    }
    struct replay *rp = calloc(1, sizeof *rp);
    int rc = -ENOMEM;
    if (!rp)
        return rc;
    rp->cfg = *cfg;
    rp->loop = loop;
    rp->clock = clock;
    rp->cbs = *cbs;
    rp->field = strdup(cfg->field);
    rp->tracks = calloc(cfg->nsources ? cfg->nsources : 1, sizeof *rp->tracks);
    if (!rp->field || !rp->tracks)
        goto fail;
    rp->cfg.field = rp->field;
    for (size_t i = 0; i < cfg->nsources; i++)
        rp->tracks[i].tolerance_ns = cfg->mode == CLOCK_MODE_LOG ? REPLAY_LOG_TOLERANCE_NS : 0;
    if (cfg->have_start) {
        rp->start_ns = cfg->start_ns;
    } else if (cfg->scan_path) {
        int64_t span, mtime;
        if ((rc = replay_scan(&rp->cfg, &span, &mtime, err, errlen)))
            goto fail;
        rp->start_ns = mtime - span;
    } else {
        rp->start_ns = util_now_ns();
    }
    if (rp->start_ns < 0) /* a capture "longer" than its mtime since 1970: start at 1970 */
        rp->start_ns = 0;
    if (rp->start_ns > CLOCK_MAX_NS)
        rp->start_ns = CLOCK_MAX_NS;
    rp->tick_ns = cfg->tick_interval > 1e9 ? INT64_C(1000000000000000000)
                                           : (int64_t)(cfg->tick_interval * 1e9);
    if (rp->tick_ns < 1000000)
        rp->tick_ns = 1000000;
    rp->next_tick = rp->start_ns + rp->tick_ns;
    rp->last_t = rp->start_ns;
    clock_init_virtual(clock, rp->start_ns);
    ev_init(&rp->pace, replay_on_pace);
    char at[40];
    clock_format(rp->start_ns, at, sizeof at);
    log_info("clock_replay", "mode=%s start=%s anchor=%s field=%s speed=%g",
             clock_mode_name(cfg->mode), at,
             cfg->have_start  ? "given"
             : cfg->scan_path ? "mtime_minus_span"
                              : "now",
             rp->field, cfg->speed);
    *out = rp;
    return 0;
fail:
    replay_free(rp);
    return rc;
}

void replay_get_stats(const struct replay *rp, struct replay_stats *out)
{
    *out = rp->st;
}

void replay_free(struct replay *rp)
{
    if (!rp)
        return;
    replay_drop(rp);
    buf_free(&rp->scratch);
    free(rp->tracks);
    free(rp->field);
    free(rp);
}
