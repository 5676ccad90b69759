/*
 * rylr998.c — RYLR998 AT parser, hex payload codec and boot configuration (see rylr998.h).
 */
#include "rylr998.h"

#include <errno.h>
#include <string.h>

#include "fwlog.h"

/* ---- parsing ------------------------------------------------------------------------------ */

/* Parse a signed decimal in [p, end) up to ',' or end; advance *pp past the comma. */
static int parse_int(const char **pp, const char *end, long *out)
{
    const char *p = *pp;
    bool neg = false;
    long v = 0;
    int digits = 0;

    if (p < end && (*p == '-' || *p == '+'))
        neg = *p++ == '-';
    while (p < end && *p >= '0' && *p <= '9' && digits < 9) {
        v = v * 10 + (*p++ - '0');
        digits++;
    }
    if (!digits || (p < end && *p != ','))
        return -EINVAL;
    if (p < end)
        p++; /* comma */
    *pp = p;
    *out = neg ? -v : v;
    return 0;
}

static bool starts_with(const char *line, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(line, prefix, n) == 0;
}

int rylr_parse(const char *line, size_t len, struct rylr_msg *msg)
{
    memset(msg, 0, sizeof(*msg));
    if (len && line[len - 1] == '\r')
        len--;
    const char *end = line + len;

    if (len == 3 && memcmp(line, "+OK", 3) == 0) {
        msg->kind = RYLR_OK;
        return 0;
    }
    if (len == 6 && memcmp(line, "+READY", 6) == 0) {
        msg->kind = RYLR_READY;
        return 0;
    }
    if (starts_with(line, len, "+ERR=")) {
        const char *p = line + 5;
        long v;
        if (parse_int(&p, end, &v) < 0 || p != end)
            return -EINVAL;
        msg->kind = RYLR_ERR;
        msg->err = (int)v;
        return 0;
    }
    if (starts_with(line, len, "+RCV=")) {
        const char *p = line + 5;
        long addr, dlen, rssi, snr;
        if (parse_int(&p, end, &addr) < 0 || parse_int(&p, end, &dlen) < 0)
            return -EINVAL;
        /* The data is exactly <len> characters: use the length, not a comma search, so a
         * payload containing commas would still parse. */
        if (addr < 0 || addr > 65535 || dlen < 0 || dlen > 240 || end - p < dlen + 1 ||
            p[dlen] != ',')
            return -EINVAL;
        const char *data = p;
        p += dlen + 1;
        if (parse_int(&p, end, &rssi) < 0 || parse_int(&p, end, &snr) < 0 || p != end)
            return -EINVAL;
        msg->kind = RYLR_RCV;
        msg->addr = (uint16_t)addr;
        msg->data = data;
        msg->data_len = (size_t)dlen;
        msg->rssi = (int16_t)rssi;
        msg->snr = (int16_t)snr;
        return 0;
    }
    return 0; /* RYLR_UNKNOWN: echo or noise */
}

/* ---- hex payload -------------------------------------------------------------------------- */

static const char hexdig[] = "0123456789ABCDEF";

void rylr_hex_encode(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdig[in[i] >> 4];
        out[2 * i + 1] = hexdig[in[i] & 0x0F];
    }
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int rylr_hex_decode(const char *in, size_t len, uint8_t *out, size_t outlen)
{
    if (len % 2 || len / 2 > outlen)
        return -EINVAL;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = nibble(in[2 * i]), lo = nibble(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(len / 2);
}

/* ---- formatting --------------------------------------------------------------------------- */

/* Append decimal v at buf[pos]; returns the new position (caller checks capacity). */
static size_t put_dec(char *buf, size_t pos, unsigned v)
{
    char tmp[6];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        buf[pos++] = tmp[--n];
    return pos;
}

int rylr_format_send(uint16_t addr, const uint8_t *frame, size_t n, char *buf, size_t len)
{
    /* "AT+SEND=" + 5 + "," + 3 + "," + 2n + "\r\n" */
    if (n > 120 || len < 8 + 5 + 1 + 3 + 1 + 2 * n + 2)
        return -ENOSPC;
    memcpy(buf, "AT+SEND=", 8);
    size_t pos = put_dec(buf, 8, addr);
    buf[pos++] = ',';
    pos = put_dec(buf, pos, (unsigned)(2 * n));
    buf[pos++] = ',';
    rylr_hex_encode(frame, n, buf + pos);
    pos += 2 * n;
    buf[pos++] = '\r';
    buf[pos++] = '\n';
    return (int)pos;
}

/* ---- boot configuration ------------------------------------------------------------------- */

#define RYLR_SETUP_STEPS 4

void rylr_setup_init(struct rylr_setup *s, uint8_t addr)
{
    memset(s, 0, sizeof(*s));
    s->addr = addr;
}

bool rylr_setup_done(const struct rylr_setup *s)
{
    return s->step >= RYLR_SETUP_STEPS;
}

void rylr_setup_poll(struct rylr_setup *s, const struct fw_hal *hal, uint32_t now)
{
    char cmd[32];
    size_t n;

    if (rylr_setup_done(s))
        return;
    if (s->waiting && fw_ms_diff(now, s->deadline) < 0)
        return;
    if (s->waiting)
        s->retries++;
    if (s->step == 0) {
        memcpy(cmd, "AT+ADDRESS=", 11);
        n = put_dec(cmd, 11, s->addr);
        cmd[n++] = '\r';
        cmd[n++] = '\n';
    } else {
        static const char *const fixed[RYLR_SETUP_STEPS] = {
            NULL, "AT+NETWORKID=18\r\n", "AT+BAND=915000000\r\n", "AT+PARAMETER=7,9,1,7\r\n"};
        n = strlen(fixed[s->step]);
        memcpy(cmd, fixed[s->step], n);
    }
    hal->radio_write(hal->ctx, cmd, n);
    s->waiting = true;
    s->deadline = now + RYLR_SETUP_TIMEOUT_MS;
}

bool rylr_setup_on_msg(struct rylr_setup *s, const struct fw_hal *hal, const struct rylr_msg *m)
{
    static const char *const names[RYLR_SETUP_STEPS] = {"ADDRESS", "NETWORKID", "BAND",
                                                        "PARAMETER"};

    if (rylr_setup_done(s) || !s->waiting)
        return false;
    if (m->kind == RYLR_OK) {
        FW_INFO(hal, "AT+%s -> +OK", names[s->step]);
        s->step++;
        s->waiting = false;
        return true;
    }
    if (m->kind == RYLR_ERR) {
        FW_WARN(hal, "AT+%s -> +ERR=%d, retrying", names[s->step], m->err);
        s->deadline = hal->millis(hal->ctx); /* resend at the next poll */
        return true;
    }
    return false;
}
