/*
 * node2.c — receiver state machine: CRC check, ACK/NACK, duplicate drop, telemetry line
 * (see node2.h).
 */
#include "node2.h"

#include <errno.h>
#include <string.h>

#include "fwlog.h"
#include "rframe.h"

/* ---- helpers ------------------------------------------------------------------------------ */

void node2_config_defaults(struct node2_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->addr = 2;
    cfg->peer = 1;
    cfg->sht_first_ms = 30000;
    cfg->sht_period_ms = 10000;
}

static void reply(struct node2 *n, uint8_t type, uint16_t seq)
{
    struct rframe f = {.type = type, .src = n->cfg.addr, .seq = seq};
    uint8_t raw[RFRAME_ACK_LEN];
    char cmd[40];
    int len = rframe_encode(&f, raw, sizeof(raw));
    if (len < 0)
        return;
    len = rylr_format_send(n->cfg.peer, raw, (size_t)len, cmd, sizeof(cmd));
    if (len < 0)
        return;
    n->hal->radio_write(n->hal->ctx, cmd, (size_t)len);
    if (type == RFRAME_ACK)
        n->stats.acks++;
    else
        n->stats.nacks++;
}

static void emit(struct node2 *n, uint32_t now)
{
    struct telemetry *t = &n->tel;
    t->ts_ms = now - now % 500;
    t->rx = n->stats.rx;
    t->err = n->stats.err;
    t->dup = n->stats.dup;
    int len = telemetry_format(t, n->line, sizeof(n->line));
    if (len < 0) {
        FW_ERROR(n->hal, "telemetry line overflow");
        return;
    }
    FW_INFO(n->hal, "telemetry %s", n->line);
    if (n->hal->data_write)
        n->hal->data_write(n->hal->ctx, n->line, (size_t)len);
}

static void on_rcv(struct node2 *n, const struct rylr_msg *m, uint32_t now)
{
    uint8_t raw[RFRAME_MAX_LEN];
    struct rframe f;
    int len, rc;

    len = rylr_hex_decode(m->data, m->data_len, raw, sizeof(raw));
    if (len < 0) {
        n->stats.bad++;
        FW_WARN(n->hal, "+RCV payload is not a hex frame (%u chars)", (unsigned)m->data_len);
        return;
    }
    rc = rframe_decode(raw, (size_t)len, &f);
    if (rc == -EBADMSG) {
        n->stats.err++;
        FW_WARN(n->hal, "CRC error from addr=%u (seq=%u as received), NACK", m->addr, f.seq);
        reply(n, RFRAME_NACK, f.seq);
        return;
    }
    if (rc < 0 || f.type != RFRAME_DATA || m->addr != n->cfg.peer || f.src != n->cfg.peer) {
        n->stats.bad++;
        FW_WARN(n->hal, "ignored frame from addr=%u type=%u", m->addr, f.type);
        return;
    }
    if (n->have_last && f.seq == n->last_seq) {
        n->stats.dup++;
        FW_INFO(n->hal, "duplicate seq=%u dropped, re-ACK", f.seq);
        reply(n, RFRAME_ACK, f.seq);
        return;
    }
    n->have_last = true;
    n->last_seq = f.seq;
    n->stats.rx++;
    reply(n, RFRAME_ACK, f.seq); /* first: node 1 is waiting, the print can wait */

    struct telemetry *t = &n->tel;
    t->n1_has_t = !(f.flags & RFRAME_NO_TEMP);
    t->n1_has_h = !(f.flags & RFRAME_NO_HUM);
    t->n1_has_g = !(f.flags & RFRAME_NO_GAS);
    t->n1_t_x100 = f.t_x100;
    t->n1_h_x100 = f.h_x100;
    t->n1_g = f.gas;
    t->rssi = m->rssi;
    t->snr = m->snr;
    emit(n, now);
}

/* ---- public API --------------------------------------------------------------------------- */

void node2_init(struct node2 *n, const struct node2_config *cfg, const struct fw_hal *hal,
                node2_read_fn read_own, void *ud)
{
    memset(n, 0, sizeof(*n));
    n->cfg = *cfg;
    n->hal = hal;
    n->read_own = read_own;
    n->ud = ud;
    n->next_sht = cfg->sht_first_ms;
    rylr_setup_init(&n->setup, cfg->addr);
}

bool node2_ready(const struct node2 *n)
{
    return rylr_setup_done(&n->setup);
}

void node2_on_line(struct node2 *n, const char *line, size_t len, uint32_t now)
{
    struct rylr_msg m;

    if (rylr_parse(line, len, &m) < 0) {
        n->stats.bad++;
        FW_WARN(n->hal, "malformed module line (%u bytes)", (unsigned)len);
        return;
    }
    if (!rylr_setup_done(&n->setup)) {
        rylr_setup_on_msg(&n->setup, n->hal, &m);
        return;
    }
    if (m.kind == RYLR_RCV)
        on_rcv(n, &m, now);
    else if (m.kind == RYLR_ERR)
        FW_WARN(n->hal, "module +ERR=%d (ACK/NACK not sent)", m.err);
}

void node2_poll(struct node2 *n, uint32_t now)
{
    if (!rylr_setup_done(&n->setup)) {
        rylr_setup_poll(&n->setup, n->hal, now);
        if (rylr_setup_done(&n->setup))
            FW_INFO(n->hal, "node 2 ready, listening");
    }
    if (n->read_own && fw_ms_diff(now, n->next_sht) >= 0) {
        struct sht3x_reading r = {0};
        if (n->read_own(n->ud, &r) < 0)
            r.has_t = r.has_h = false;
        n->tel.n2_has_t = r.has_t;
        n->tel.n2_has_h = r.has_h;
        n->tel.n2_t_x100 = r.t_x100;
        n->tel.n2_h_x100 = r.h_x100;
        if (!r.has_t || !r.has_h)
            FW_WARN(n->hal, "own SHT3x read incomplete (t=%d h=%d)", r.has_t, r.has_h);
        n->next_sht += n->cfg.sht_period_ms;
        if (fw_ms_diff(now, n->next_sht) >= 0)
            n->next_sht = now + n->cfg.sht_period_ms;
    }
}
