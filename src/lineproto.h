/*
 * lineproto.h — InfluxDB line protocol encoder with correct escaping.
 *
 *   measurement,tag1=v1,tag2=v2 field1=1.5,field2=3i,field3="text",field4=true 1732480290000000000
 *
 * Escaping (InfluxDB docs, "Line protocol / special characters"):
 *   measurement                        : ',' and ' ' are backslash-escaped
 *   tag keys, tag values, field keys   : ',', '=' and ' ' are backslash-escaped
 *   string field values                : '"' and '\' are backslash-escaped, value double-quoted;
 *                                        newlines are kept (allowed inside quoted strings)
 *   '\n' or '\r' in a measurement, tag key/value or field key cannot be represented in line
 *   protocol at all: lp_encode() rejects such a point with -EINVAL instead of mangling it.
 * Tags are written sorted by key (what InfluxDB recommends for write performance); tags with an
 * empty key or value are rejected (-EINVAL), as InfluxDB would reject the line. Float fields are
 * written in the shortest form that reads back to the same double; NaN/Inf are rejected.
 * Integer fields get the 'i' suffix, unsigned the 'u' suffix.
 *
 * Pure module. Ownership: the caller owns every input; output is appended to `out`.
 */
#ifndef IIOTGW_LINEPROTO_H
#define IIOTGW_LINEPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum lp_type { LP_FLOAT, LP_INT, LP_UINT, LP_BOOL, LP_STRING };

struct lp_tag {
    const char *key;
    const char *value;
};

struct lp_field {
    const char *key;
    enum lp_type type;
    union {
        double f;
        int64_t i;
        uint64_t u;
        bool b;
        struct {
            const char *s;
            size_t len;
        } s;
    } v;
};

/*
 * Append one line (no trailing '\n') to `out`. `tags` may be reordered (sorted in place,
 * by strcmp of the unescaped keys). A string field is length-delimited (v.s.len bytes; a
 * NULL v.s.s is allowed only with len 0). Never allocates except to grow `out`.
 * ts_ns is the timestamp in nanoseconds (always written).
 * Returns 0; -EINVAL for a NULL/empty measurement, no fields, a NULL, empty or CR/LF-carrying
 * name/key/tag value, an unknown field type, or a non-finite float; -ENOMEM. On any error
 * out->len and its content are exactly as before the call (capacity may have grown).
 */
int lp_encode(struct buf *out, const char *measurement, struct lp_tag *tags, size_t ntags,
              const struct lp_field *fields, size_t nfields, int64_t ts_ns);

/*
 * Pre-encode a series: append the escaped "measurement,tag1=v1,tag2=v2" (tags sorted in place,
 * same rules and errors as lp_encode) and NUL-terminate. Rules that write the same
 * measurement + tags many times encode this once and then call lp_encode_series(), which
 * produces byte-for-byte the line lp_encode() would.
 * Returns 0, -EINVAL (as lp_encode) or -ENOMEM; on error `out` is unchanged (as lp_encode).
 */
int lp_series(struct buf *out, const char *measurement, struct lp_tag *tags, size_t ntags);

/*
 * Append one line: `series` (series_len bytes produced by lp_series(), copied verbatim, not
 * re-validated), then the fields and the timestamp exactly as lp_encode() writes them.
 * Returns 0; -EINVAL for an empty series, no fields, a NULL/empty/CR-LF field key or a
 * non-finite float; -ENOMEM. On error `out` is unchanged (as lp_encode).
 */
int lp_encode_series(struct buf *out, const char *series, size_t series_len,
                     const struct lp_field *fields, size_t nfields, int64_t ts_ns);

/*
 * Append `key` (len bytes) escaped as a tag key, tag value or field key (',', '=' and ' ' get a
 * backslash) and NUL-terminate. For callers that assemble lines from pre-encoded parts.
 * Returns 0; -EINVAL for an empty key or one with CR/LF; -ENOMEM. On error `out` is unchanged.
 */
int lp_append_key(struct buf *out, const char *key, size_t len);

/* Decimal text of v ("-39", "1732480290000000000"), NUL-terminated; dst >= 21 bytes.
 * Returns the length. The same digits lp_encode writes for timestamps and integer fields. */
int lp_format_int(char *dst, int64_t v);

/*
 * Format a double in the shortest text that round-trips ("27.6", "84190", "-0.5", "1e+300"):
 * exactly the first of "%.15g", "%.16g", "%.17g" that strtod()s back to v (a fast path
 * produces the same text without snprintf for ordinary values). -0.0 gives "-0"; NaN/Inf
 * give printf's "nan"/"inf"/"-inf" (lp_encode rejects them before they get here).
 * Always NUL-terminates when dstlen > 0 (truncating if dstlen is too small) and returns the
 * full length, like snprintf; 32 bytes always suffice. Used for MQTT payloads too.
 */
int lp_format_double(char *dst, size_t dstlen, double v);

#endif
