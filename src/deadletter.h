/*
 * deadletter.h — where bad input and refused data is kept instead of being dropped.
 *
 * Every line the gateway cannot use (overlong, cut-off JSON, invalid JSON, a rule error or
 * budget overrun, points the database refused for good) becomes one JSON record:
 *
 *   {"time":"2026-11-24T21:51:30.123Z","source":"rx","line":118,"reason":"invalid_json",
 *    "error":"offset 57: expected ':'","data":"<the raw line or payload>"}
 *
 * appended to a JSON-lines file (O_APPEND, one write(2) per record, so a crash never leaves
 * half a record in the middle) and, optionally, handed to a publish callback that puts it on
 * <prefix>/gateway/deadletter. Records are counted per reason.
 *
 * The file is bounded: a record that would take it past max_bytes first rotates it — the
 * file becomes "<path>.1" (replacing the previous one) and a new file is started — so the
 * dead letters never take more than 2 x max_bytes of disk (DEADLETTER_KEEP rotated files),
 * however fast a device sends garbage. A single record larger than max_bytes is not written
 * (it is still counted and published) and counted as dropped. Rotations and drops are
 * counted (deadletter_get_stats) and appear in the gateway's stats report.
 *
 * Ownership: deadletter_open() returns an object owned by the caller (deadletter_close()).
 * Inputs are copied into the record; nothing is retained after deadletter_put() returns.
 */
#ifndef IIOTGW_DEADLETTER_H
#define IIOTGW_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

enum dl_reason {
    DL_OVERLONG = 0,    /* line longer than max_line (first max_line bytes kept) */
    DL_UNTERMINATED,    /* JSON object never closes (RTT overflow) */
    DL_INVALID_JSON,    /* balanced but not valid JSON */
    DL_RULE_ERROR,      /* rule raised an error or exceeded a budget */
    DL_INFLUX_REJECTED, /* InfluxDB answered 4xx for good */
    DL_REASON_COUNT
};

/* Rotated files kept next to the current one ("<path>.1"). */
#define DEADLETTER_KEEP 1

struct deadletter_stats {
    uint64_t bytes;        /* size of the current file */
    uint64_t rotations;    /* times the file was rotated */
    uint64_t drops;        /* records not written: larger than max_bytes */
    uint64_t write_errors; /* records a write or rotation failure lost from the file */
};

/* Publish hook: called with the record text; may be NULL. */
typedef void (*deadletter_publish_cb)(void *ud, const char *json, size_t len);

struct deadletter;
struct clock;

/*
 * path: JSON-lines file, or NULL/"none" for no file; max_bytes: its size cap (> 0). Returns 0,
 * or a negative errno when the file cannot be opened (err set) — the caller decides whether
 * that is fatal.
 */
int deadletter_open(struct deadletter **out, const char *path, uint64_t max_bytes,
                    deadletter_publish_cb cb, void *ud, char *err, size_t errlen);

/* Record one item. `data` need not be NUL-terminated and may contain any bytes (non-UTF-8 bytes
 * are escaped). Never fails from the caller's point of view: a file error is logged. */
void deadletter_put(struct deadletter *d, enum dl_reason reason, const char *source,
                    uint64_t line_no, const char *error, const char *data, size_t len);

/* Take the records' "time" from `clock` (clock.h; borrowed, must outlive d) instead of the
 * wall clock: under a replay it is the capture's time of the refused line. NULL = wall. */
void deadletter_set_clock(struct deadletter *d, const struct clock *clock);

uint64_t deadletter_count(const struct deadletter *d, enum dl_reason reason);
uint64_t deadletter_total(const struct deadletter *d);
void deadletter_get_stats(const struct deadletter *d, struct deadletter_stats *st);
const char *deadletter_reason_name(enum dl_reason reason);
void deadletter_close(struct deadletter *d);

#endif
