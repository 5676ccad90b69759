/*
 * rframe.c — radio frame codec (see rframe.h for the layout).
 */
#include "rframe.h"

#include <errno.h>

#include "crc.h"

/* ---- big-endian helpers ---------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)get16(p) << 16) | get16(p + 2);
}

/* ---- codec ------------------------------------------------------------------------------ */

int rframe_encode(const struct rframe *f, uint8_t *buf, size_t len)
{
    size_t n;
    if (f->type == RFRAME_DATA)
        n = RFRAME_DATA_LEN;
    else if (f->type == RFRAME_ACK || f->type == RFRAME_NACK)
        n = RFRAME_ACK_LEN;
    else
        return -EINVAL;
    if (len < n)
        return -ENOSPC;
    buf[0] = RFRAME_VERSION;
    buf[1] = f->type;
    buf[2] = f->src;
    put16(buf + 3, f->seq);
    if (f->type == RFRAME_DATA) {
        buf[5] = f->flags;
        put16(buf + 6, (uint16_t)f->t_x100);
        put16(buf + 8, f->h_x100);
        put32(buf + 10, f->gas);
    }
    put16(buf + n - 2, crc16_ccitt_false(buf, n - 2));
    return (int)n;
}

int rframe_decode(const uint8_t *buf, size_t len, struct rframe *f)
{
    *f = (struct rframe){0};
    if (len < RFRAME_ACK_LEN)
        return -EPROTO;
    f->type = buf[1];
    f->src = buf[2];
    f->seq = get16(buf + 3);
    /* CRC first: a corrupted version/type byte is a CRC error, not a protocol error. */
    if (crc16_ccitt_false(buf, len - 2) != get16(buf + len - 2))
        return -EBADMSG;
    if (buf[0] != RFRAME_VERSION)
        return -EPROTO;
    if (f->type == RFRAME_DATA) {
        if (len != RFRAME_DATA_LEN)
            return -EPROTO;
        f->flags = buf[5];
        f->t_x100 = (int16_t)get16(buf + 6);
        f->h_x100 = get16(buf + 8);
        f->gas = get32(buf + 10);
        return 0;
    }
    if ((f->type == RFRAME_ACK || f->type == RFRAME_NACK) && len == RFRAME_ACK_LEN)
        return 0;
    return -EPROTO;
}
