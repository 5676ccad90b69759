/*
 * clock.c — wall and virtual clocks, and the replay's time arithmetic. See clock.h.
 *
 * Kept free of libev and of the gateway: the virtual clock is moved by its owner (gateway.c
 * in a replay, a rule test harness), and the replay helpers are pure functions, so the same
 * code stamps a replay and a test that steps time by hand.
 */
#include "clock.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define NS_PER_S 1000000000LL

void clock_init_wall(struct clock *c)
{
    c->kind = CLOCK_KIND_WALL;
    c->now_ns = 0;
}

void clock_init_virtual(struct clock *c, int64_t start_ns)
{
    c->kind = CLOCK_KIND_VIRTUAL;
    c->now_ns = start_ns;
}

int64_t clock_now_ns(const struct clock *c)
{
    if (!c || c->kind != CLOCK_KIND_VIRTUAL)
        return util_now_ns();
    return c->now_ns;
}

bool clock_is_virtual(const struct clock *c)
{
    return c && c->kind == CLOCK_KIND_VIRTUAL;
}

int64_t clock_advance(struct clock *c, int64_t t_ns)
{
    if (!clock_is_virtual(c))
        return util_now_ns();
    if (t_ns > c->now_ns)
        c->now_ns = t_ns;
    return c->now_ns;
}

int clock_set(struct clock *c, int64_t t_ns)
{
    if (!clock_is_virtual(c))
        return -EINVAL;
    c->now_ns = t_ns;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * ISO-8601
 * ---------------------------------------------------------------------------------------- */

/* n decimal digits at *p -> *v; advances *p. */
static bool clock_digits(const char **p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        x = x * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *v = x;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (no timegm: it is not ISO C and
 * mktime depends on TZ). */
static int64_t clock_days(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The fraction after a '.' at *p (at most 9 digits count) -> ns; advances *p. */
static int64_t clock_fraction(const char **p)
{
    int64_t ns = 0, scale = NS_PER_S / 10;
    if (!isdigit((unsigned char)**p))
        return -1;
    while (isdigit((unsigned char)**p)) {
        ns += (**p - '0') * scale;
        scale /= 10;
        (*p)++;
    }
    return ns;
}

int clock_parse_time(const char *s, int64_t *out_ns)
{
    if (!s)
        return -EINVAL;
    if (s[0] == '@') {
        char *end;
        double v = strtod(s + 1, &end);
        if (end == s + 1 || *end || !isfinite(v) || v < 0 || v * 1e9 > (double)CLOCK_MAX_NS)
            return -EINVAL;
        *out_ns = (int64_t)llround(v * 1e9);
        return 0;
    }
    const char *p = s;
    int y, mo, d, h, mi, sec;
    if (!clock_digits(&p, 4, &y) || *p++ != '-' || !clock_digits(&p, 2, &mo) || *p++ != '-' ||
        !clock_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return -EINVAL;
    p++;
    if (!clock_digits(&p, 2, &h) || *p++ != ':' || !clock_digits(&p, 2, &mi) || *p++ != ':' ||
        !clock_digits(&p, 2, &sec))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -EINVAL;
    int64_t frac = 0;
    if (*p == '.' || *p == ',') {
        p++;
        if ((frac = clock_fraction(&p)) < 0)
            return -EINVAL;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (!clock_digits(&p, 2, &oh))
            return -EINVAL;
        if (*p == ':')
            p++;
        if (!clock_digits(&p, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
        off = sign * ((int64_t)oh * 3600 + om * 60);
    } else {
        return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    int64_t secs = clock_days(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + sec - off;
    if (secs < 0 || secs > CLOCK_MAX_NS / NS_PER_S - 1)
        return -EINVAL;
    *out_ns = secs * NS_PER_S + frac;
    return 0;
}

void clock_format(int64_t t_ns, char *out, size_t n)
{
    int64_t s = t_ns / NS_PER_S, ns = t_ns % NS_PER_S;
    if (ns < 0) {
        ns += NS_PER_S;
        s--;
    }
    time_t tt = (time_t)s;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(out, n, "@%lld", (long long)s);
        return;
    }
    char d[24];
    strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03dZ", d, (int)(ns / 1000000));
}

/* ------------------------------------------------------------------------------------------
 * Replay clocks
 * ---------------------------------------------------------------------------------------- */

int clock_mode_parse(const char *s)
{
    if (!s || !strcmp(s, "receive"))
        return CLOCK_MODE_RECEIVE;
    if (!strcmp(s, "packet"))
        return CLOCK_MODE_PACKET;
    if (!strcmp(s, "log"))
        return CLOCK_MODE_LOG;
    return -EINVAL;
}

const char *clock_mode_name(enum clock_mode m)
{
    switch (m) {
    case CLOCK_MODE_PACKET:
        return "packet";
    case CLOCK_MODE_LOG:
        return "log";
    default:
        return "receive";
    }
}

int64_t clock_unit_parse(const char *s)
{
    if (!s)
        return -EINVAL;
    if (!strcmp(s, "ns"))
        return 1;
    if (!strcmp(s, "us"))
        return 1000;
    if (!strcmp(s, "ms"))
        return 1000000;
    if (!strcmp(s, "s"))
        return NS_PER_S;
    return -EINVAL;
}

static size_t clock_skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* s[i] is '"': the index just past the closing quote, or n when it never closes. */
static size_t clock_skip_string(const char *s, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return n;
}

/* Skip one JSON value starting at s[i]: the index past it (n when it runs off the end).
 * Nesting is a counter, not recursion, like extract.c. */
static size_t clock_skip_value(const char *s, size_t i, size_t n)
{
    if (i >= n)
        return n;
    if (s[i] == '"')
        return clock_skip_string(s, i, n);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            if (s[i] == '"') {
                i = clock_skip_string(s, i, n);
                continue;
            }
            if (s[i] == '{' || s[i] == '[')
                depth++;
            else if ((s[i] == '}' || s[i] == ']') && --depth == 0)
                return i + 1;
            i++;
        }
        return n;
    }
    while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']')
        i++;
    return i;
}

/*
 * In the object starting at s[i] ('{'), find key[0..klen): the index of its value, or n.
 */
static size_t clock_find_key(const char *s, size_t i, size_t n, const char *key, size_t klen)
{
    if (i >= n || s[i] != '{')
        return n;
    i++;
    for (;;) {
        i = clock_skip_ws(s, i, n);
        if (i >= n || s[i] != '"')
            return n;
        size_t kstart = i + 1, kend = clock_skip_string(s, i, n);
        if (kend >= n)
            return n;
        bool match = kend - 1 - kstart == klen && !memcmp(s + kstart, key, klen);
        i = clock_skip_ws(s, kend, n);
        if (i >= n || s[i] != ':')
            return n;
        i = clock_skip_ws(s, i + 1, n);
        if (match)
            return i;
        i = clock_skip_ws(s, clock_skip_value(s, i, n), n);
        if (i >= n || s[i] != ',')
            return n;
        i++;
    }
}

int clock_field_ns(const char *json, size_t len, const char *path, int64_t unit_ns, int64_t *out_ns)
{
    size_t i = clock_skip_ws(json, 0, len);
    if (i >= len || json[i] != '{' || !path || !*path || unit_ns <= 0)
        return -EINVAL;
    for (const char *k = path;;) {
        const char *dot = strchr(k, '.');
        size_t klen = dot ? (size_t)(dot - k) : strlen(k);
        i = clock_find_key(json, i, len, k, klen);
        if (i >= len)
            return -ENOENT;
        if (!dot)
            break;
        if (json[i] != '{')
            return -ENOENT;
        k = dot + 1;
    }
    /* strtod needs a terminated string: copy the number (JSON numbers are short). */
    char num[64];
    size_t j = 0;
    while (i + j < len && j < sizeof num - 1 && strchr("0123456789+-.eE", json[i + j]))
        j++;
    if (j == 0 || j == sizeof num - 1)
        return -EINVAL;
    memcpy(num, json + i, j);
    num[j] = '\0';
    char *end;
    double v = strtod(num, &end);
    if (*end || !isfinite(v) || v < 0)
        return -EINVAL;
    double ns = v * (double)unit_ns;
    if (ns >= (double)CLOCK_MAX_NS)
        return -EINVAL;
    /* Integers in ms stay exact: only a fraction is rounded. */
    int64_t r = v == floor(v) ? (int64_t)v * unit_ns : (int64_t)llround(ns);
    if (r < 0 || r >= CLOCK_MAX_NS)
        return -EINVAL;
    *out_ns = r;
    return 0;
}

int clock_log_stamp_ns(const char *line, size_t len, int64_t *out_ns)
{
    size_t i = 0;
    int64_t secs = 0;
    while (i < len && isdigit((unsigned char)line[i])) {
        secs = secs * 10 + (line[i] - '0');
        /* not an uptime stamp: a number this long is something else */
        if (++i > 10 || secs >= CLOCK_MAX_NS / NS_PER_S)
            return -ENOENT;
    }
    if (i == 0 || i >= len || line[i] != '.')
        return -ENOENT;
    i++;
    int64_t ns = 0, scale = NS_PER_S / 10;
    size_t f = i;
    while (i < len && isdigit((unsigned char)line[i])) {
        ns += (line[i] - '0') * scale;
        scale /= 10;
        i++;
    }
    if (i == f || i >= len || (line[i] != ' ' && line[i] != '\t'))
        return -ENOENT;
    *out_ns = secs * NS_PER_S + ns;
    return 0;
}

int64_t clock_track_map(struct clock_track *t, int64_t start_ns, int64_t u_ns)
{
    bool first = !t->started;
    if (first) {
        t->started = true;
        t->base_v = start_ns - u_ns;
    } else if (u_ns < t->last_u && t->last_u - u_ns <= t->tolerance_ns) {
        u_ns = t->last_u; /* jitter, not a reboot */
    } else if (u_ns < t->last_u) {
        /* Reboot: the new uptime counts from a reboot right after the last reading. */
        t->reboots++;
        t->base_v = t->last_v;
    }
    /* base_v is in [-CLOCK_MAX_NS, CLOCK_MAX_NS] and u_ns in [0, CLOCK_MAX_NS): no overflow. */
    int64_t v = t->base_v + u_ns;
    if (v > CLOCK_MAX_NS)
        v = CLOCK_MAX_NS;
    if (!first && v < t->last_v)
        v = t->last_v;
    t->last_u = u_ns;
    t->last_v = v;
    return v;
}
