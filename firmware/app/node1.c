/*
 * node1.c — sensor node state machine: sample, send, wait for ACK, retransmit; and the node 1
 * board's sensor sampling shared by the STM32 image and the simulator (see node1.h).
 */
#include "node1.h"

#include <string.h>

#include "fwlog.h"
#include "sht3x.h"

/* ---- helpers ------------------------------------------------------------------------------ */

void node1_config_defaults(struct node1_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->addr = 1;
    cfg->peer = 2;
    cfg->period_ms = 10000;
    cfg->first_ms = 1000;
    cfg->ack_timeout_ms = 1000;
    cfg->backoff_ms = 250;
    cfg->max_retries = 3;
    cfg->seed = 0x1EE7u;
}

/* xorshift32: tiny, deterministic for a given seed (the simulator and tests rely on that). */
static uint32_t rng_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void transmit(struct node1 *n, uint32_t now)
{
    char cmd[64];
    int len = rylr_format_send(n->cfg.peer, n->frame, (size_t)n->frame_len, cmd, sizeof(cmd));
    if (len < 0)
        return; /* cannot happen: a DATA frame always fits */
    n->hal->radio_write(n->hal->ctx, cmd, (size_t)len);
    n->sends++;
    n->stats.transmissions++;
    if (n->sends > 1) {
        n->stats.retransmissions++;
        FW_INFO(n->hal, "retransmit seq=%u attempt=%u", n->cur.seq, n->sends);
    }
    n->state = NODE1_WAIT_ACK;
    n->deadline = now + n->cfg.ack_timeout_ms;
}

static void resolve(struct node1 *n, bool acked)
{
    if (acked)
        n->stats.acked++;
    else {
        n->stats.failed++;
        FW_WARN(n->hal, "seq=%u not acknowledged after %u transmissions", n->cur.seq, n->sends);
    }
    if (n->result)
        n->result(n->ud, &n->cur, acked, n->sends);
    n->state = NODE1_IDLE;
}

/* This transmission is lost (timeout, NACK, +ERR): back off and retry, or give up. */
static void attempt_failed(struct node1 *n, uint32_t now)
{
    if (n->sends > n->cfg.max_retries) {
        resolve(n, false);
        return;
    }
    uint32_t wait = n->cfg.backoff_ms << (n->sends - 1);
    if (n->cfg.backoff_ms)
        wait += rng_next(&n->rng) % n->cfg.backoff_ms;
    n->state = NODE1_BACKOFF;
    n->deadline = now + wait;
}

static void start_frame(struct node1 *n)
{
    memset(&n->cur, 0, sizeof(n->cur));
    n->sample(n->ud, &n->cur);
    n->cur.type = RFRAME_DATA;
    n->cur.src = n->cfg.addr;
    n->cur.seq = n->next_seq++;
    n->frame_len = rframe_encode(&n->cur, n->frame, sizeof(n->frame));
    n->sends = 0;
    n->stats.frames++;
}

/* ---- public API --------------------------------------------------------------------------- */

void node1_init(struct node1 *n, const struct node1_config *cfg, const struct fw_hal *hal,
                node1_sample_fn sample, node1_result_fn result, void *ud)
{
    memset(n, 0, sizeof(*n));
    n->cfg = *cfg;
    n->hal = hal;
    n->sample = sample;
    n->result = result;
    n->ud = ud;
    n->rng = cfg->seed ? cfg->seed : 1;
    n->next_seq = (uint16_t)rng_next(&n->rng);
    rylr_setup_init(&n->setup, cfg->addr);
    n->state = NODE1_SETUP;
}

void node1_on_line(struct node1 *n, const char *line, size_t len, uint32_t now)
{
    struct rylr_msg m;
    struct rframe f;
    uint8_t raw[RFRAME_MAX_LEN];
    int rc;

    if (rylr_parse(line, len, &m) < 0) {
        FW_WARN(n->hal, "malformed module line (%u bytes)", (unsigned)len);
        return;
    }
    if (n->state == NODE1_SETUP) {
        rylr_setup_on_msg(&n->setup, n->hal, &m);
        return;
    }
    if (m.kind == RYLR_ERR && n->state == NODE1_WAIT_ACK) {
        n->stats.at_errors++;
        FW_WARN(n->hal, "AT+SEND seq=%u -> +ERR=%d", n->cur.seq, m.err);
        attempt_failed(n, now);
        return;
    }
    if (m.kind != RYLR_RCV)
        return; /* +OK after AT+SEND: the module transmitted; the ACK is what counts */
    rc = rylr_hex_decode(m.data, m.data_len, raw, sizeof(raw));
    if (rc < 0 || rframe_decode(raw, (size_t)rc, &f) < 0 || f.src != n->cfg.peer ||
        (f.type != RFRAME_ACK && f.type != RFRAME_NACK)) {
        n->stats.bad_rx++;
        return;
    }
    if (n->state != NODE1_WAIT_ACK || f.seq != n->cur.seq)
        return; /* a late ACK for an attempt we already gave up on */
    if (f.type == RFRAME_ACK) {
        resolve(n, true);
    } else {
        n->stats.nacks++;
        FW_WARN(n->hal, "NACK for seq=%u", f.seq);
        attempt_failed(n, now);
    }
}

void node1_poll(struct node1 *n, uint32_t now)
{
    switch (n->state) {
    case NODE1_SETUP:
        rylr_setup_poll(&n->setup, n->hal, now);
        if (rylr_setup_done(&n->setup)) {
            FW_INFO(n->hal, "node 1 ready, first seq=%u", n->next_seq);
            n->state = NODE1_IDLE;
            n->next_sample = now + n->cfg.first_ms;
        }
        break;
    case NODE1_IDLE:
        if (fw_ms_diff(now, n->next_sample) < 0)
            break;
        n->next_sample += n->cfg.period_ms;
        if (fw_ms_diff(now, n->next_sample) >= 0) /* fell behind: resynchronise */
            n->next_sample = now + n->cfg.period_ms;
        start_frame(n);
        /* Sampling may take ~170 ms on hardware (SHT3x + BME680 heater); re-read the clock. */
        transmit(n, n->hal->millis(n->hal->ctx));
        break;
    case NODE1_WAIT_ACK:
        if (fw_ms_diff(now, n->deadline) >= 0) {
            n->stats.timeouts++;
            attempt_failed(n, now);
        }
        break;
    case NODE1_BACKOFF:
        if (fw_ms_diff(now, n->deadline) >= 0)
            transmit(n, now);
        break;
    }
}

/* ---- the node 1 board's sensors ------------------------------------------------------------ */

void node1_sensors_init(struct node1_sensors *s, const struct fw_hal *hal)
{
    memset(s, 0, sizeof(*s));
    s->hal = hal;
}

void node1_sensors_sample(void *ud, struct rframe *f)
{
    struct node1_sensors *s = ud;
    struct sht3x_reading r;
    uint32_t ohms = 0;

    if (sht3x_measure(s->hal, &r) < 0)
        r.has_t = r.has_h = false;
    f->flags = (uint8_t)((r.has_t ? 0 : RFRAME_NO_TEMP) | (r.has_h ? 0 : RFRAME_NO_HUM));
    f->t_x100 = r.t_x100;
    f->h_x100 = r.h_x100;
    if (!s->bme_ok)
        s->bme_ok = bme680_init(s->hal, &s->calib) == 0; /* retried until the sensor answers */
    if (!s->bme_ok ||
        bme680_measure_gas(s->hal, &s->calib, r.has_t ? r.t_x100 / 100 : 25, &ohms) < 0)
        f->flags |= RFRAME_NO_GAS;
    f->gas = ohms;
}
