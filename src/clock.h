/*
 * clock.h — the gateway's one notion of "now": the wall clock, or a virtual clock that a
 * replay (or a rule test) moves.
 *
 * Why a seam: a live gateway stamps every packet with the time it was read, but a replay of
 * a recorded session must stamp points, meta.rx_ns, alert times and on_tick with the time
 * the capture was made, and a rule test must step time by hand. Everything time-based in the
 * data path (rules.c's gw.now / gw.now_ns / gw.iso8601, the default point timestamp, the
 * tick time) reads clock_now_ns() of one struct clock instead of the system clock.
 *
 * Two kinds:
 *   wall     clock_now_ns() is CLOCK_REALTIME (util_now_ns()); clock_set/advance do nothing.
 *   virtual  clock_now_ns() is the value last set; it moves only when the owner says so
 *            (clock_advance: forward only, the replay's rule; clock_set: anywhere, for tests).
 *
 * The second half is the replay's arithmetic, pure and allocation-free, so tests can drive it
 * without a loop: clock_field_ns() reads a packet's uptime field out of its JSON text,
 * clock_log_stamp_ns() the defmt timestamp at the start of a log line, and struct
 * clock_track turns one node's uptime readings into virtual times, surviving reboots.
 *
 * Ownership: struct clock and struct clock_track are plain values owned by whoever embeds
 * them (no heap, nothing to free). Re-entrancy: no global state; one thread per struct.
 */
#ifndef IIOTGW_CLOCK_H
#define IIOTGW_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum clock_kind { CLOCK_KIND_WALL = 0, CLOCK_KIND_VIRTUAL = 1 };

/* The latest time a replay can reach, 2^62 ns (year 2116): every time and uptime the replay
 * handles is in [0, CLOCK_MAX_NS], so sums and differences of two never overflow int64. */
#define CLOCK_MAX_NS (INT64_C(1) << 62)

/* Read the fields through the functions below; a zeroed struct is a wall clock. */
struct clock {
    enum clock_kind kind;
    int64_t now_ns; /* virtual: the current time, ns since the Unix epoch */
};

/* A wall clock (the same as a zeroed struct). */
void clock_init_wall(struct clock *c);

/* A virtual clock standing at start_ns (ns since the epoch). */
void clock_init_virtual(struct clock *c, int64_t start_ns);

/* Now in ns since the epoch: the wall clock for a wall clock or NULL, else the set value. */
int64_t clock_now_ns(const struct clock *c);

/* True for a virtual clock (false for NULL). */
bool clock_is_virtual(const struct clock *c);

/*
 * Virtual clock: move now to t_ns if that is later (time never runs backwards in a replay)
 * and return the new now. Wall clock or NULL: nothing changes, returns the wall time.
 */
int64_t clock_advance(struct clock *c, int64_t t_ns);

/* Virtual clock: set now to t_ns, backwards too (rule tests). Returns 0; -EINVAL for a wall
 * clock or NULL (whose time cannot be set). */
int clock_set(struct clock *c, int64_t t_ns);

/*
 * Parse an ISO-8601 / RFC 3339 UTC time: "2026-01-01T00:00:00Z", with optional fractional
 * seconds (".250"), 'T' or ' ' between date and time, and "Z", "+HH:MM", "-HH:MM" or
 * "+HHMM" as the zone (a missing zone is refused: a replay anchor must not depend on TZ).
 * Also accepts "@SECONDS" (Unix seconds, fraction allowed). Returns 0 and *out_ns, or -EINVAL
 * (also for a time before 1970 or after CLOCK_MAX_NS).
 */
int clock_parse_time(const char *s, int64_t *out_ns);

/* Format ns since the epoch as "2026-01-01T00:00:00.000Z" into out (at least 32 bytes). */
void clock_format(int64_t t_ns, char *out, size_t n);

/* ---- replay clocks ---- */

/* How a replay derives each line's receive time. */
enum clock_mode {
    CLOCK_MODE_RECEIVE = 0, /* the wall clock when the line is read (live sources) */
    CLOCK_MODE_PACKET = 1,  /* a packet field: the node's uptime (default "ts", ms) */
    CLOCK_MODE_LOG = 2,     /* the log line's defmt timestamp (seconds of uptime), falling back
                             * to the packet field on lines that carry none */
};

/* "receive" | "packet" | "log" -> the mode, or -EINVAL. */
int clock_mode_parse(const char *s);
const char *clock_mode_name(enum clock_mode m);

/* "ns" | "us" | "ms" | "s" -> nanoseconds per unit (1, 1000, ...), or -EINVAL. */
int64_t clock_unit_parse(const char *s);

/*
 * The number at `path` in the JSON object text json[0..len) times unit_ns, in *out_ns.
 * path is a key of the top-level object, or dotted keys into nested objects ("hdr.up").
 * Keys are compared byte for byte (escaped keys do not match). Scans without allocating.
 * Returns 0; -ENOENT when the path is absent; -EINVAL when the value is not a finite
 * non-negative number, is CLOCK_MAX_NS or more once in ns, or the text is not an object.
 */
int clock_field_ns(const char *json, size_t len, const char *path, int64_t unit_ns,
                   int64_t *out_ns);

/*
 * A defmt timestamp at the start of a cleaned log line ("53.305000 INFO  ..."): digits, a '.'
 * and fraction digits, then a blank. Seconds -> *out_ns. Returns 0, or -ENOENT when the line
 * does not start with one (or its seconds are beyond CLOCK_MAX_NS).
 */
int clock_log_stamp_ns(const char *line, size_t len, int64_t *out_ns);

/*
 * One node's uptime readings -> virtual times. The first reading maps to `start_ns`; after
 * that virtual time moves by exactly as much as the uptime did, so silences in the capture
 * (the node or the radio quiet, lines lost) stay silences of the same length. An uptime that
 * goes back is a reboot: the node's new uptime is counted from a reboot assumed to follow the
 * last reading at once (virtual = last virtual + new uptime), the earliest time consistent
 * with the capture. A step back of at most `tolerance_ns` is not a reboot but jitter between
 * two readings of the same uptime (a log stamp and a packet field): the time stays put.
 * Zero-initialise (tolerance 0: any step back is a reboot); `start_ns` is read on the first
 * reading only.
 */
struct clock_track {
    bool started;
    int64_t base_v;       /* virtual time of the segment's origin (uptime 0 after a reboot) */
    int64_t last_u;       /* last uptime reading, ns */
    int64_t last_v;       /* virtual time of the last reading */
    uint64_t reboots;     /* backward uptime jumps seen */
    int64_t tolerance_ns; /* set by the owner: steps back up to this are jitter */
};

/* Map uptime u_ns (0 <= u_ns < CLOCK_MAX_NS) to a virtual time; updates t. start_ns in
 * [0, CLOCK_MAX_NS]. Never returns less than the previous result, nor more than
 * CLOCK_MAX_NS (where a pathological capture saturates). */
int64_t clock_track_map(struct clock_track *t, int64_t start_ns, int64_t u_ns);

#endif
