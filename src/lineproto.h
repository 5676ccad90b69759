/*
 * lineproto.h — InfluxDB line protocol encoder with correct escaping.
 *
 *   measurement,tag1=v1,tag2=v2 field1=1.5,field2=3i,field3="text",field4=true 1732480290000000000
 *
 * Escaping (InfluxDB docs, "Line protocol / special characters"):
 *   measurement                        : ',' and ' ' are backslash-escaped
 *   tag keys, tag values, field keys   : ',', '=' and ' ' are backslash-escaped
 *   string field values                : '"' and '\' are backslash-escaped, value double-quoted
 *
 * What line protocol cannot carry unambiguously is refused (-EINVAL), never mangled, so that
 * every line written reads back — with lp_parse() below, and with InfluxDB 1.x and
 * VictoriaMetrics alike — to exactly the values given. The names (measurement, tag keys, tag
 * values, field keys) must pass lp_name_problem():
 *   - non-empty, valid UTF-8, no control character (0x00-0x1f, 0x7f: newlines end a line,
 *     and the rest is invisible in every tool that shows the data);
 *   - no backslash at the end, or before '\', ',', '=', ' ' or '"': the readers unescape
 *     those pairs (InfluxDB 1.x '\,' '\ ' '\=' '\"', VictoriaMetrics also '\\'), so
 *     `node=evil\` would escape the next separator and swallow the next tag. A backslash
 *     before any other byte is read back literally by both;
 *   - a measurement does not start with '#' (a comment line); a tag or field key is not
 *     "time" (InfluxDB refuses it); tag keys and field keys are unique within a line.
 * String field values must pass lp_string_problem(): valid UTF-8, no NUL, no CR/LF
 * (VictoriaMetrics splits a request body on newlines before it parses quotes, so a quoted
 * newline would let a device string inject a line of its own).
 * Tags are written sorted by key (what InfluxDB recommends for write performance). Float
 * fields are written in the shortest form that reads back to the same double; NaN/Inf are
 * rejected. Integer fields get the 'i' suffix, unsigned the 'u' suffix.
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

/* The kinds of name lp_name_problem() checks. */
enum lp_name { LP_MEASUREMENT, LP_KEY /* tag or field key */, LP_TAG_VALUE };

/*
 * Why s[0..n) cannot be written as a name of this kind (the rules above), as a phrase for an
 * error message ("ends with a backslash"), or NULL when it can. Pure; the result is static.
 * lp_string_problem() is the same for a string field value.
 */
const char *lp_name_problem(const char *s, size_t n, enum lp_name kind);
const char *lp_string_problem(const char *s, size_t n);

/*
 * Append one line (no trailing '\n') to `out`. `tags` may be reordered (sorted in place,
 * by strcmp of the unescaped keys). A string field is length-delimited (v.s.len bytes; a
 * NULL v.s.s is allowed only with len 0). Never allocates except to grow `out`.
 * ts_ns is the timestamp in nanoseconds (always written).
 * Returns 0; -EINVAL for a NULL measurement, no fields, a NULL key or value, a name or string
 * value the rules above refuse, a duplicate tag or field key, an unknown field type, or a
 * non-finite float; -ENOMEM. On any error
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
 * Returns 0; -EINVAL for a key lp_name_problem(key, len, LP_TAG_VALUE) refuses; -ENOMEM.
 * On error `out` is unchanged.
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

/*
 * The strict reader: parse one line (no '\n'; len bytes, need not be NUL-terminated) of
 * exactly the grammar lp_encode() writes, into *pt:
 *   measurement[,tagkey=tagvalue...] fieldkey=value[,fieldkey=value...] timestamp
 * with the escapes above, tags in strictly ascending key order, unique field keys, values
 * float ([-]digits[.digits][e[+|-]digits], finite), integer ([-]digits "i", int64), unsigned
 * (digits "u", uint64), true/false, or a double-quoted string ('\"' and '\\' the only
 * escapes), and a signed int64 timestamp, with nothing after it. Every name and string must
 * pass lp_name_problem()/lp_string_problem(). Anything else is refused, including what
 * InfluxDB would accept leniently (a missing timestamp, "t"/"True" booleans, unsorted tags).
 *
 * The unescaped names and strings (NUL-terminated) are written to `scratch` (cleared first,
 * grown as needed); pt's pointers point into it and stay valid until scratch is next changed.
 * lp_parse(lp_encode(x)) gives back x (tags sorted) for every x lp_encode() accepts.
 * Returns 0; -EINVAL (not a strict line; *pt is then unspecified); -E2BIG (more than
 * LP_PARSE_MAX_TAGS tags or LP_PARSE_MAX_FIELDS fields); -ENOMEM. Pure, re-entrant.
 */
#define LP_PARSE_MAX_TAGS   64
#define LP_PARSE_MAX_FIELDS 64

struct lp_point {
    const char *measurement;
    struct lp_tag tags[LP_PARSE_MAX_TAGS];
    size_t ntags;
    struct lp_field fields[LP_PARSE_MAX_FIELDS];
    size_t nfields;
    int64_t ts_ns;
};

int lp_parse(const char *line, size_t len, struct lp_point *pt, struct buf *scratch);

#endif
