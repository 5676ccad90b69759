/*
 * telemetry.c — fixed-buffer JSON line writer (see telemetry.h).
 */
#include "telemetry.h"

#include <errno.h>

/* ---- bounded appender ----------------------------------------------------------------- */

struct out {
    char *buf;
    size_t len;
    size_t pos;
    bool overflow;
};

static void put_char(struct out *o, char c)
{
    if (o->pos + 1 < o->len)
        o->buf[o->pos++] = c;
    else
        o->overflow = true;
}

static void put_str(struct out *o, const char *s)
{
    while (*s)
        put_char(o, *s++);
}

static void put_u32(struct out *o, uint32_t v)
{
    char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        put_char(o, tmp[--n]);
}

static void put_i32(struct out *o, int32_t v)
{
    if (v < 0) {
        put_char(o, '-');
        put_u32(o, (uint32_t)0 - (uint32_t)v);
    } else {
        put_u32(o, (uint32_t)v);
    }
}

int32_t telemetry_round_tenths(int32_t x100)
{
    return x100 < 0 ? -((-x100 + 5) / 10) : (x100 + 5) / 10;
}

/* ×100 value printed with one decimal: 2764 -> "27.6", -4 -> "0.0", -5 -> "-0.1". */
static void put_x100(struct out *o, int32_t x100)
{
    int32_t tenths = telemetry_round_tenths(x100);
    uint32_t mag = tenths < 0 ? (uint32_t)-tenths : (uint32_t)tenths;
    if (tenths < 0)
        put_char(o, '-');
    put_u32(o, mag / 10);
    put_char(o, '.');
    put_char(o, (char)('0' + mag % 10));
}

/* "key": with a leading comma unless it is the first member of its object */
static void put_key(struct out *o, const char *key, bool *first)
{
    if (!*first)
        put_char(o, ',');
    *first = false;
    put_char(o, '"');
    put_str(o, key);
    put_str(o, "\":");
}

/* ---- the line ------------------------------------------------------------------------- */

int telemetry_format(const struct telemetry *t, char *buf, size_t len)
{
    struct out o = {buf, len, 0, false};
    bool first;

    if (len == 0)
        return -ENOSPC;
    put_str(&o, "{\"ts\":");
    put_u32(&o, t->ts_ms);
    put_str(&o, ",\"id\":\"N2\",\"n1\":{");
    first = true;
    if (t->n1_has_t) {
        put_key(&o, "t", &first);
        put_x100(&o, t->n1_t_x100);
    }
    if (t->n1_has_h) {
        put_key(&o, "h", &first);
        put_x100(&o, t->n1_h_x100);
    }
    if (t->n1_has_g) {
        put_key(&o, "g", &first);
        put_u32(&o, t->n1_g);
    }
    put_str(&o, "},\"n2\":{");
    first = true;
    if (t->n2_has_t) {
        put_key(&o, "t", &first);
        put_x100(&o, t->n2_t_x100);
    }
    if (t->n2_has_h) {
        put_key(&o, "h", &first);
        put_x100(&o, t->n2_h_x100);
    }
    put_str(&o, "},\"sig\":{\"rssi\":");
    put_i32(&o, t->rssi);
    put_str(&o, ",\"snr\":");
    put_i32(&o, t->snr);
    put_str(&o, "},\"sts\":{\"rx\":");
    put_u32(&o, t->rx);
    put_str(&o, ",\"err\":");
    put_u32(&o, t->err);
    put_str(&o, ",\"dup\":");
    put_u32(&o, t->dup);
    put_str(&o, "}}\n");
    buf[o.pos] = '\0';
    return o.overflow ? -ENOSPC : (int)o.pos;
}
