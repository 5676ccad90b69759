/*
 * lineproto.c — InfluxDB line protocol encoder. See lineproto.h for the contract.
 *
 * Why it looks the way it does: this runs once per point on the hot path (9 points per
 * packet, 200k packets/s target), so it never mallocs beyond growing the caller's buf,
 * escapes with a lookup table straight into reserved buf space, and formats the common
 * doubles ("27.6", "84190") without going through snprintf/strtod.
 *
 * Ownership: pure module, no state; the caller owns every input and the output buf.
 */
#include "lineproto.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* Escape classes                                                                       */
/* ------------------------------------------------------------------------------------ */

/*
 * One table, one bit per element kind, so escaping is a single lookup per byte.
 * ESC_MEAS: measurement (',' ' '), ESC_KEY: tag key/value and field key (',' '=' ' '),
 * ESC_STR: string field value ('"' '\\'), BAD: never in a name (control characters),
 * BADSTR: never in a string value either (CR/LF: VictoriaMetrics splits a body on newlines
 * before it parses, so a quoted newline would let a device string start a line of its own),
 * BSL: the backslash, which needs a look at the next byte in a name (see name_ok), HI: a byte
 * >= 0x80, checked as UTF-8.
 */
#define ESC_MEAS 0x1u
#define ESC_KEY  0x2u
#define ESC_STR  0x4u
#define BAD      0x8u
#define BADSTR   0x10u
#define BSL      0x20u
#define HI       0x40u

#define C8(x) x, x, x, x, x, x, x, x
static const unsigned char esc_class[256] = {
    /* 0x00..0x1f: control characters; LF (0x0a) and CR (0x0d) not even in strings */
    C8(BAD),
    BAD,
    BAD,
    BAD | BADSTR,
    BAD,
    BAD,
    BAD | BADSTR,
    BAD,
    BAD,
    C8(BAD),
    C8(BAD),
    [','] = ESC_MEAS | ESC_KEY,
    [' '] = ESC_MEAS | ESC_KEY,
    ['='] = ESC_KEY,
    ['"'] = ESC_STR,
    ['\\'] = ESC_STR | BSL,
    [0x7f] = BAD,
    /* 0x80..0xff */
    [0x80] = C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
    C8(HI),
};
#undef C8

/* The bytes a backslash may not precede in a name: the escapes of either server's readers
 * (InfluxDB 1.x unescapes '\,' '\ ' '\=' '\"', VictoriaMetrics also '\\'). A backslash
 * before anything else is read back literally by both. */
static int bsl_ambiguous(unsigned char next)
{
    return next == '\\' || next == ',' || next == '=' || next == ' ' || next == '"';
}

const char *lp_name_problem(const char *s, size_t n, enum lp_name kind)
{
    if (!s || n == 0)
        return "is empty";
    if (kind == LP_MEASUREMENT && s[0] == '#')
        return "starts with '#' (read as a comment)";
    if (kind == LP_KEY && n == 4 && memcmp(s, "time", 4) == 0)
        return "is \"time\" (reserved by InfluxDB)";
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        unsigned cls = esc_class[u[i]];
        if (cls & BAD)
            return "contains a control character";
        if (cls & BSL) {
            if (i + 1 == n)
                return "ends with a backslash";
            if (bsl_ambiguous(u[i + 1]))
                return "has a backslash before '\\', ',', '=', ' ' or '\"'";
        } else if (cls & HI) {
            size_t l = util_utf8_decode(u + i, n - i, NULL);
            if (!l)
                return "is not valid UTF-8";
            i += l - 1;
        }
    }
    return NULL;
}

const char *lp_string_problem(const char *s, size_t n)
{
    if (!s && n)
        return "is NULL";
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        unsigned cls = esc_class[u[i]];
        if (cls & BADSTR)
            return "contains a newline or carriage return";
        if (u[i] == 0)
            return "contains a NUL byte";
        if (cls & HI) {
            size_t l = util_utf8_decode(u + i, n - i, NULL);
            if (!l)
                return "is not valid UTF-8";
            i += l - 1;
        }
    }
    return NULL;
}

/*
 * Append s[0..n) to b, backslash-escaping bytes whose class has `mask`. Names/keys (any mask
 * but ESC_STR) must pass lp_name_problem (checked inline on the bytes that need it: plain
 * ASCII costs one lookup); string values lp_string_problem. The caller rolls b back on error.
 */
static int put_escaped(struct buf *b, const char *s, size_t n, unsigned mask)
{
    if (mask != ESC_STR && n == 0)
        return -EINVAL;
    if (mask == ESC_MEAS && s[0] == '#')
        return -EINVAL;
    int rc = buf_reserve(b, 2 * n); /* worst case: every byte escaped */
    if (rc)
        return rc;
    char *w = b->p + b->len;
    unsigned bad = mask == ESC_STR ? BADSTR : BAD;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = u[i];
        unsigned cls = esc_class[c];
        if (cls) {
            if (cls & bad)
                return -EINVAL;
            if (cls & HI) {
                size_t l = util_utf8_decode(u + i, n - i, NULL);
                if (!l)
                    return -EINVAL;
                memcpy(w, u + i, l);
                w += l;
                i += l - 1;
                continue;
            }
            if (mask == ESC_STR && c == 0)
                return -EINVAL;
            if ((cls & BSL) && mask != ESC_STR && (i + 1 == n || bsl_ambiguous(u[i + 1])))
                return -EINVAL;
            if (cls & mask)
                *w++ = '\\';
        }
        *w++ = (char)c;
    }
    b->len = (size_t)(w - b->p);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Number formatting                                                                    */
/* ------------------------------------------------------------------------------------ */

/* "00".."99": two digits per division halves the divide chain of a 19-digit timestamp. */
static const char digit_pairs[201] = "0001020304050607080910111213141516171819"
                                     "2021222324252627282930313233343536373839"
                                     "4041424344454647484950515253545556575859"
                                     "6061626364656667686970717273747576777879"
                                     "8081828384858687888990919293949596979899";

/* Decimal digits of v written backwards ending at `end`; returns the start (<= 20 bytes). */
static char *u64_digits(char *end, uint64_t v)
{
    char *p = end;
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100) * 2;
        v /= 100;
        *--p = digit_pairs[d + 1];
        *--p = digit_pairs[d];
    }
    if (v >= 10) {
        unsigned d = (unsigned)v * 2;
        *--p = digit_pairs[d + 1];
        *--p = digit_pairs[d];
    } else {
        *--p = (char)('0' + v);
    }
    return p;
}

int lp_format_int(char *dst, int64_t v)
{
    char tmp[24];
    char *end = tmp + sizeof tmp;
    /* Negate in unsigned space so INT64_MIN does not overflow. */
    char *p = u64_digits(end, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
    if (v < 0)
        *--p = '-';
    size_t n = (size_t)(end - p);
    memcpy(dst, p, n);
    dst[n] = '\0';
    return (int)n;
}

static int put_u64(struct buf *b, uint64_t v, int neg, char suffix)
{
    char tmp[24];
    char *end = tmp + sizeof tmp;
    if (suffix)
        *--end = suffix;
    char *p = u64_digits(end, v);
    if (neg)
        *--p = '-';
    return buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

static int put_i64(struct buf *b, int64_t v, char suffix)
{
    /* Negate in unsigned space so INT64_MIN does not overflow. */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return put_u64(b, mag, v < 0, suffix);
}

/* Powers of ten that are exact doubles (10^22 is the largest). */
static const double pow10_exact[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/*
 * Fast path for the values telemetry actually carries: a magnitude in [1e-4, 1e15) whose
 * shortest decimal has at most 15 significant digits. For d = 0, 1, 2, ... take the integer
 * k nearest to a*10^d and accept it when k / 10^d == a. Both k (< 2^53) and 10^d (d <= 22)
 * are exact doubles, so IEEE division gives the correctly rounded value of the decimal
 * k/10^d, i.e. exactly what strtod() would read back: the text round-trips. The smallest d
 * that works gives the shortest text, and in this range it is also exactly what "%.15g"
 * prints (the value lies within half an ulp of k/10^d, far less than half a 15-digit step,
 * and %g uses fixed notation for exponents -4..14). Returns 0 when the slow path must decide.
 */
static int format_fast(char *out, double v)
{
    double a = fabs(v);
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (size_t d = 0; d < sizeof pow10_exact / sizeof pow10_exact[0]; d++) {
        double scaled = a * pow10_exact[d];
        if (scaled >= 1e15)
            return 0; /* would need more than 15 significant digits */
        /* round to nearest; exact because scaled < 1e15 < 2^52 (nearbyint is a libm call) */
        double k = (double)(uint64_t)(scaled + 0.5);
        if (k / pow10_exact[d] != a)
            continue;
        uint64_t ki = (uint64_t)k;
        char tmp[40];
        char *end = tmp + sizeof tmp;
        char *p = end;
        /* fractional digits (exactly d of them, zero-padded), then the integer part */
        for (size_t i = 0; i < d; i++) {
            *--p = (char)('0' + ki % 10);
            ki /= 10;
        }
        if (d)
            *--p = '.';
        p = u64_digits(p, ki);
        if (signbit(v))
            *--p = '-';
        size_t n = (size_t)(end - p);
        memcpy(out, p, n);
        out[n] = '\0';
        return (int)n;
    }
    return 0;
}

/* The reference algorithm: the first of %.15g/%.16g/%.17g that strtod's back to v. */
static int format_slow(char *out, size_t outlen, double v)
{
    static const char *const fmts[] = {"%.15g", "%.16g"};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        int n = snprintf(out, outlen, fmts[i], v);
        if (n > 0 && (size_t)n < outlen && strtod(out, NULL) == v)
            return n;
    }
    return snprintf(out, outlen, "%.17g", v); /* always round-trips for finite v */
}

int lp_format_double(char *dst, size_t dstlen, double v)
{
    char tmp[40];
    int n;
    if (v == 0) {
        n = signbit(v) ? 2 : 1;
        memcpy(tmp, signbit(v) ? "-0" : "0", (size_t)n + 1);
    } else {
        n = format_fast(tmp, v);
        if (n == 0)
            n = format_slow(tmp, sizeof tmp, v);
    }
    if (dstlen) {
        size_t c = (size_t)n < dstlen ? (size_t)n : dstlen - 1;
        memcpy(dst, tmp, c);
        dst[c] = '\0';
    }
    return n;
}

/* ------------------------------------------------------------------------------------ */
/* Encoder                                                                              */
/* ------------------------------------------------------------------------------------ */

/* Insertion sort by key: points carry a handful of tags, and this needs no allocation. */
static void sort_tags(struct lp_tag *tags, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct lp_tag t = tags[i];
        size_t j = i;
        while (j > 0 && strcmp(tags[j - 1].key, t.key) > 0) {
            tags[j] = tags[j - 1];
            j--;
        }
        tags[j] = t;
    }
}

static int put_field_value(struct buf *b, const struct lp_field *f)
{
    switch (f->type) {
    case LP_FLOAT: {
        if (!isfinite(f->v.f))
            return -EINVAL;
        int rc = buf_reserve(b, 40);
        if (rc)
            return rc;
        b->len += (size_t)lp_format_double(b->p + b->len, b->cap - b->len, f->v.f);
        return 0;
    }
    case LP_INT:
        return put_i64(b, f->v.i, 'i');
    case LP_UINT:
        return put_u64(b, f->v.u, 0, 'u');
    case LP_BOOL:
        return buf_append_str(b, f->v.b ? "true" : "false");
    case LP_STRING: {
        if (!f->v.s.s && f->v.s.len)
            return -EINVAL;
        int rc = buf_append_char(b, '"');
        if (!rc)
            rc = put_escaped(b, f->v.s.s, f->v.s.len, ESC_STR);
        if (!rc)
            rc = buf_append_char(b, '"');
        return rc;
    }
    }
    return -EINVAL;
}

/* Reject NULL keys/values up front so the encoders below only see valid pointers. */
static int check_tags(const struct lp_tag *tags, size_t ntags)
{
    if (ntags && !tags)
        return -EINVAL;
    for (size_t i = 0; i < ntags; i++)
        if (!tags[i].key || !tags[i].value)
            return -EINVAL;
    return 0;
}

static int check_fields(const struct lp_field *fields, size_t nfields)
{
    if (!fields || nfields == 0)
        return -EINVAL;
    for (size_t i = 0; i < nfields; i++)
        if (!fields[i].key)
            return -EINVAL;
    return 0;
}

/* InfluxDB refuses "time" as a tag or field key (it is the timestamp's column name). */
static int is_time(const char *k)
{
    return strcmp(k, "time") == 0;
}

/* Escaped "measurement,tag=v,..." (tags sorted in place). No rollback: the callers do it. */
static int put_series(struct buf *out, const char *measurement, struct lp_tag *tags, size_t ntags)
{
    int rc = put_escaped(out, measurement, strlen(measurement), ESC_MEAS);
    if (rc)
        return rc;
    sort_tags(tags, ntags);
    for (size_t i = 0; i < ntags; i++) {
        if (is_time(tags[i].key) || (i && strcmp(tags[i - 1].key, tags[i].key) == 0))
            return -EINVAL;
        if ((rc = buf_append_char(out, ',')) ||
            (rc = put_escaped(out, tags[i].key, strlen(tags[i].key), ESC_KEY)) ||
            (rc = buf_append_char(out, '=')) ||
            (rc = put_escaped(out, tags[i].value, strlen(tags[i].value), ESC_KEY)))
            return rc;
    }
    return 0;
}

/* " field=v,field=v ts" */
static int put_fields_ts(struct buf *out, const struct lp_field *fields, size_t nfields,
                         int64_t ts_ns)
{
    int rc;
    for (size_t i = 0; i < nfields; i++) {
        if (is_time(fields[i].key))
            return -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(fields[j].key, fields[i].key) == 0)
                return -EINVAL; /* a duplicate key: the servers keep one or refuse the line */
        if ((rc = buf_append_char(out, i ? ',' : ' ')) ||
            (rc = put_escaped(out, fields[i].key, strlen(fields[i].key), ESC_KEY)) ||
            (rc = buf_append_char(out, '=')) || (rc = put_field_value(out, &fields[i])))
            return rc;
    }
    if ((rc = buf_append_char(out, ' ')) || (rc = put_i64(out, ts_ns, 0)))
        return rc;
    return 0;
}

/* Undo a failed append: length and terminator exactly as before the call. */
static int roll_back(struct buf *out, size_t mark, int rc)
{
    out->len = mark;
    if (out->p)
        out->p[mark] = '\0';
    return rc;
}

int lp_encode(struct buf *out, const char *measurement, struct lp_tag *tags, size_t ntags,
              const struct lp_field *fields, size_t nfields, int64_t ts_ns)
{
    if (!out || !measurement || check_tags(tags, ntags) || check_fields(fields, nfields))
        return -EINVAL;
    size_t mark = out->len; /* roll back to here on any error */
    int rc = put_series(out, measurement, tags, ntags);
    if (!rc)
        rc = put_fields_ts(out, fields, nfields, ts_ns);
    if (rc)
        return roll_back(out, mark, rc);
    out->p[out->len] = '\0';
    return 0;
}

int lp_append_key(struct buf *out, const char *key, size_t len)
{
    if (!out || !key)
        return -EINVAL;
    size_t mark = out->len;
    int rc = put_escaped(out, key, len, ESC_KEY);
    if (!rc)
        rc = buf_reserve(out, 1);
    if (rc)
        return roll_back(out, mark, rc);
    out->p[out->len] = '\0';
    return 0;
}

int lp_series(struct buf *out, const char *measurement, struct lp_tag *tags, size_t ntags)
{
    if (!out || !measurement || check_tags(tags, ntags))
        return -EINVAL;
    size_t mark = out->len;
    int rc = put_series(out, measurement, tags, ntags);
    if (!rc)
        rc = buf_reserve(out, 1); /* room for the terminator even when ntags == 0 */
    if (rc)
        return roll_back(out, mark, rc);
    out->p[out->len] = '\0';
    return 0;
}

int lp_encode_series(struct buf *out, const char *series, size_t series_len,
                     const struct lp_field *fields, size_t nfields, int64_t ts_ns)
{
    if (!out || !series || series_len == 0 || check_fields(fields, nfields))
        return -EINVAL;
    size_t mark = out->len;
    int rc = buf_append(out, series, series_len);
    if (!rc)
        rc = put_fields_ts(out, fields, nfields, ts_ns);
    if (rc)
        return roll_back(out, mark, rc);
    out->p[out->len] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Strict reader                                                                        */
/* ------------------------------------------------------------------------------------ */

/* Reader state: the line, a cursor, and where unescaped text goes (reserved up front). */
struct lp_rd {
    const unsigned char *s;
    size_t n, i;
    char *w; /* next free byte of the scratch block */
};

/*
 * Read one name up to an unescaped separator of `stops` (the escapes `esc` may carry) and
 * write it unescaped and NUL-terminated at rd->w. Applies lp_name_problem's rules to the
 * result. Returns the start of the text, or NULL.
 */
static const char *rd_name(struct lp_rd *rd, const char *esc, const char *stops, enum lp_name kind)
{
    char *start = rd->w;
    while (rd->i < rd->n) {
        unsigned char c = rd->s[rd->i];
        if (c == '\\') {
            if (rd->i + 1 < rd->n && strchr(esc, rd->s[rd->i + 1]) && rd->s[rd->i + 1]) {
                *rd->w++ = (char)rd->s[rd->i + 1];
                rd->i += 2;
                continue;
            }
            /* a literal backslash: only before a byte no reader unescapes */
            if (rd->i + 1 >= rd->n || bsl_ambiguous(rd->s[rd->i + 1]))
                return NULL;
        } else if (c && strchr(stops, c)) {
            break;
        }
        *rd->w++ = (char)c;
        rd->i++;
    }
    *rd->w = '\0';
    if (lp_name_problem(start, (size_t)(rd->w - start), kind))
        return NULL;
    rd->w++;
    return start;
}

/* Signed decimal integer s[0..n) into *v (no sign other than a leading '-', no leading '+'). */
static int rd_int(const unsigned char *s, size_t n, int64_t *v, uint64_t *u, int allow_neg)
{
    int neg = 0;
    if (n && s[0] == '-' && allow_neg) {
        neg = 1;
        s++;
        n--;
    }
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
        return -EINVAL;
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        unsigned d = s[i] - '0';
        if (acc > (UINT64_MAX - d) / 10)
            return -EINVAL;
        acc = acc * 10 + d;
    }
    if (u) {
        *u = acc;
        return 0;
    }
    if (neg ? acc > (uint64_t)INT64_MAX + 1 : acc > (uint64_t)INT64_MAX)
        return -EINVAL;
    *v = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}

/* A float as lp_format_double writes it: [-]digits[.digits][e(+|-)digits], finite. */
static int rd_float(const unsigned char *s, size_t n, double *v)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    size_t d0 = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == d0 || (s[d0] == '0' && i - d0 > 1))
        return -EINVAL; /* no digits, or a leading zero */
    if (i < n && s[i] == '.') {
        size_t f0 = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f0)
            return -EINVAL;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t e0 = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == e0)
            return -EINVAL;
    }
    if (i != n || n >= 64)
        return -EINVAL;
    char tmp[64];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    *v = strtod(tmp, NULL);
    return isfinite(*v) ? 0 : -EINVAL;
}

/* One field value starting at rd->i, up to ',' or ' ' (outside a string). */
static int rd_value(struct lp_rd *rd, struct lp_field *f)
{
    const unsigned char *s = rd->s;
    if (rd->i < rd->n && s[rd->i] == '"') {
        rd->i++;
        char *start = rd->w;
        for (;;) {
            if (rd->i >= rd->n)
                return -EINVAL; /* unterminated */
            unsigned char c = s[rd->i];
            if (c == '"')
                break;
            if (c == '\\') {
                if (rd->i + 1 >= rd->n || (s[rd->i + 1] != '"' && s[rd->i + 1] != '\\'))
                    return -EINVAL;
                c = s[rd->i + 1];
                rd->i++;
            }
            *rd->w++ = (char)c;
            rd->i++;
        }
        rd->i++; /* closing quote */
        f->type = LP_STRING;
        f->v.s.s = start;
        f->v.s.len = (size_t)(rd->w - start);
        *rd->w++ = '\0';
        return lp_string_problem(start, f->v.s.len) ? -EINVAL : 0;
    }
    size_t from = rd->i;
    while (rd->i < rd->n && s[rd->i] != ',' && s[rd->i] != ' ')
        rd->i++;
    const unsigned char *t = s + from;
    size_t n = rd->i - from;
    if (n == 4 && memcmp(t, "true", 4) == 0) {
        f->type = LP_BOOL;
        f->v.b = true;
        return 0;
    }
    if (n == 5 && memcmp(t, "false", 5) == 0) {
        f->type = LP_BOOL;
        f->v.b = false;
        return 0;
    }
    if (n && t[n - 1] == 'i') {
        f->type = LP_INT;
        return rd_int(t, n - 1, &f->v.i, NULL, 1);
    }
    if (n && t[n - 1] == 'u') {
        f->type = LP_UINT;
        return rd_int(t, n - 1, NULL, &f->v.u, 0);
    }
    f->type = LP_FLOAT;
    return rd_float(t, n, &f->v.f);
}

int lp_parse(const char *line, size_t len, struct lp_point *pt, struct buf *scratch)
{
    if (!line || !pt || !scratch)
        return -EINVAL;
    /* Unescaped text is never longer than the line; each element adds one NUL. */
    buf_clear(scratch);
    int rc = buf_reserve(scratch, len + 2 * (LP_PARSE_MAX_TAGS + LP_PARSE_MAX_FIELDS) + 2);
    if (rc)
        return rc;
    struct lp_rd rd = {.s = (const unsigned char *)line, .n = len, .i = 0, .w = scratch->p};
    memset(pt, 0, sizeof *pt);
    pt->measurement = rd_name(&rd, ", ", ", ", LP_MEASUREMENT);
    if (!pt->measurement)
        return -EINVAL;
    while (rd.i < rd.n && rd.s[rd.i] == ',') {
        rd.i++;
        if (pt->ntags == LP_PARSE_MAX_TAGS)
            return -E2BIG;
        struct lp_tag *t = &pt->tags[pt->ntags];
        t->key = rd_name(&rd, ",= ", ",= ", LP_KEY);
        if (!t->key || rd.i >= rd.n || rd.s[rd.i] != '=')
            return -EINVAL;
        rd.i++;
        t->value = rd_name(&rd, ",= ", ",= ", LP_TAG_VALUE);
        if (!t->value)
            return -EINVAL;
        /* strictly ascending keys: sorted, no duplicates (what lp_encode writes) */
        if (pt->ntags && strcmp(pt->tags[pt->ntags - 1].key, t->key) >= 0)
            return -EINVAL;
        pt->ntags++;
    }
    if (rd.i >= rd.n || rd.s[rd.i] != ' ')
        return -EINVAL;
    do {
        rd.i++;
        if (pt->nfields == LP_PARSE_MAX_FIELDS)
            return -E2BIG;
        struct lp_field *f = &pt->fields[pt->nfields];
        f->key = rd_name(&rd, ",= ", ",= ", LP_KEY);
        if (!f->key || rd.i >= rd.n || rd.s[rd.i] != '=')
            return -EINVAL;
        rd.i++;
        if ((rc = rd_value(&rd, f)) < 0)
            return -EINVAL;
        for (size_t j = 0; j < pt->nfields; j++)
            if (strcmp(pt->fields[j].key, f->key) == 0)
                return -EINVAL;
        pt->nfields++;
    } while (rd.i < rd.n && rd.s[rd.i] == ',');
    if (rd.i >= rd.n || rd.s[rd.i] != ' ')
        return -EINVAL; /* the timestamp is always written */
    rd.i++;
    if (rd_int(rd.s + rd.i, rd.n - rd.i, &pt->ts_ns, NULL, 1) < 0)
        return -EINVAL;
    scratch->len = (size_t)(rd.w - scratch->p);
    return 0;
}
