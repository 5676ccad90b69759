/*
 * test_nodes.c — host unit tests of the node 1 / node 2 state machines: retransmission with the
 * same sequence number, backoff timing, giving up, NACK handling, duplicate detection, CRC error
 * counting, and the two machines wired together through a lossy fake radio.
 *
 * These are pure logic tests: the "radio" is the RYLR998 line protocol captured in memory and
 * the clock is a variable. (The real UDP radio and processes are exercised by tests/e2e_sim.)
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node1.h"
#include "node2.h"
#include "rframe.h"
#include "rylr998.h"

/* ---- fake board ----------------------------------------------------------------------------- */

#define MAX_SENT 64

struct fake {
    uint32_t now;
    char sent[MAX_SENT][80]; /* radio_write calls, "\r\n" stripped */
    int nsent;
    char data[MAX_SENT][TELEMETRY_MAX_LINE]; /* data_write calls */
    int ndata;
    int results_acked, results_failed;
    unsigned last_sends;
    int16_t t_x100;
    int sht_fail;
};

static uint32_t f_millis(void *ctx)
{
    return ((struct fake *)ctx)->now;
}
static void f_delay(void *ctx, uint32_t ms)
{
    ((struct fake *)ctx)->now += ms;
}
static void f_radio(void *ctx, const char *b, size_t n)
{
    struct fake *f = ctx;
    assert_true(f->nsent < MAX_SENT);
    assert_true(n >= 2 && b[n - 2] == '\r' && b[n - 1] == '\n');
    memcpy(f->sent[f->nsent], b, n - 2);
    f->sent[f->nsent++][n - 2] = '\0';
}
static void f_console(void *ctx, const char *b, size_t n)
{
    (void)ctx;
    (void)b;
    (void)n;
}
static void f_data(void *ctx, const char *b, size_t n)
{
    struct fake *f = ctx;
    assert_true(f->ndata < MAX_SENT && n < TELEMETRY_MAX_LINE);
    memcpy(f->data[f->ndata], b, n);
    f->data[f->ndata++][n] = '\0';
}

static void sample(void *ud, struct rframe *fr)
{
    struct fake *f = ud;
    fr->t_x100 = f->t_x100;
    f->t_x100 += 10; /* distinct after rounding to tenths */
    fr->h_x100 = 5000;
    fr->gas = 100000;
}

static void result(void *ud, const struct rframe *fr, bool acked, unsigned sends)
{
    struct fake *f = ud;
    (void)fr;
    if (acked)
        f->results_acked++;
    else
        f->results_failed++;
    f->last_sends = sends;
}

static int read_own(void *ud, struct sht3x_reading *r)
{
    struct fake *f = ud;
    if (f->sht_fail)
        return -EIO;
    r->has_t = r->has_h = true;
    r->t_x100 = 2345;
    r->h_x100 = 4567;
    return 0;
}

static struct fw_hal fake_hal(struct fake *f)
{
    return (struct fw_hal){.ctx = f,
                           .millis = f_millis,
                           .delay_ms = f_delay,
                           .radio_write = f_radio,
                           .console_write = f_console,
                           .data_write = f_data};
}

/* Answer the 4 setup commands with +OK. */
static void n1_setup(struct node1 *n, struct fake *f)
{
    for (int i = 0; i < 4; i++) {
        node1_poll(n, f->now);
        assert_int_equal(f->nsent, i + 1);
        node1_on_line(n, "+OK", 3, f->now);
    }
    node1_poll(n, f->now);
    assert_int_equal(n->state, NODE1_IDLE);
    assert_string_equal(f->sent[0], "AT+ADDRESS=1");
    assert_string_equal(f->sent[1], "AT+NETWORKID=18");
    assert_string_equal(f->sent[2], "AT+BAND=915000000");
    assert_string_equal(f->sent[3], "AT+PARAMETER=7,9,1,7");
    f->nsent = 0;
}

static void n2_setup(struct node2 *n, struct fake *f)
{
    for (int i = 0; i < 4; i++) {
        node2_poll(n, f->now);
        node2_on_line(n, "+OK", 3, f->now);
    }
    node2_poll(n, f->now);
    assert_true(node2_ready(n));
    assert_string_equal(f->sent[0], "AT+ADDRESS=2");
    f->nsent = 0;
}

/* Build the "+RCV=" line a module would deliver for a frame. */
static void rcv_line(char *out, size_t outlen, int addr, const struct rframe *fr, int flip_bit)
{
    uint8_t raw[RFRAME_MAX_LEN];
    char hex[2 * RFRAME_MAX_LEN + 1];
    int n = rframe_encode(fr, raw, sizeof(raw));
    assert_true(n > 0);
    if (flip_bit >= 0)
        raw[flip_bit / 8] ^= (uint8_t)(1u << (flip_bit % 8));
    rylr_hex_encode(raw, (size_t)n, hex);
    hex[2 * n] = '\0';
    snprintf(out, outlen, "+RCV=%d,%d,%s,-50,9", addr, 2 * n, hex);
}

/* Decode the frame inside an "AT+SEND=a,n,HEX" command. */
static void sent_frame(const char *cmd, struct rframe *fr)
{
    const char *hex = strrchr(cmd, ',');
    uint8_t raw[RFRAME_MAX_LEN];
    assert_non_null(hex);
    hex++;
    int n = rylr_hex_decode(hex, strlen(hex), raw, sizeof(raw));
    assert_true(n > 0);
    assert_int_equal(rframe_decode(raw, (size_t)n, fr), 0);
}

/* ---- node 1 ------------------------------------------------------------------------------- */

static void test_node1_setup_retries_on_err_and_timeout(void **state)
{
    (void)state;
    struct fake f = {0};
    struct fw_hal hal = fake_hal(&f);
    struct node1_config cfg;
    struct node1 n;
    node1_config_defaults(&cfg);
    node1_init(&n, &cfg, &hal, sample, result, &f);
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 1);
    node1_on_line(&n, "+ERR=4", 6, f.now); /* rejected: resent at the next poll */
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 2);
    assert_string_equal(f.sent[1], "AT+ADDRESS=1");
    f.now += RYLR_SETUP_TIMEOUT_MS - 1; /* no answer: resent after the timeout only */
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 2);
    f.now += 1;
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 3);
    assert_string_equal(f.sent[2], "AT+ADDRESS=1");
    assert_int_equal(n.state, NODE1_SETUP);
}

static void test_node1_ack_resolves(void **state)
{
    (void)state;
    struct fake f = {.t_x100 = 2100};
    struct fw_hal hal = fake_hal(&f);
    struct node1_config cfg;
    struct node1 n;
    struct rframe sent;
    char line[128];

    node1_config_defaults(&cfg);
    node1_init(&n, &cfg, &hal, sample, result, &f);
    n1_setup(&n, &f);
    f.now += cfg.first_ms - 1;
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 0);
    f.now += 1;
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 1);
    assert_memory_equal(f.sent[0], "AT+SEND=2,32,", 13);
    sent_frame(f.sent[0], &sent);
    assert_int_equal(sent.t_x100, 2100);
    node1_on_line(&n, "+OK", 3, f.now);

    /* an ACK for another sequence number does not resolve the frame */
    struct rframe ack = {.type = RFRAME_ACK, .src = 2, .seq = (uint16_t)(sent.seq + 1)};
    rcv_line(line, sizeof(line), 2, &ack, -1);
    node1_on_line(&n, line, strlen(line), f.now + 10);
    assert_int_equal(n.state, NODE1_WAIT_ACK);
    ack.seq = sent.seq;
    rcv_line(line, sizeof(line), 2, &ack, -1);
    node1_on_line(&n, line, strlen(line), f.now + 20);
    assert_int_equal(n.state, NODE1_IDLE);
    assert_int_equal(f.results_acked, 1);
    assert_int_equal(f.last_sends, 1);
    assert_int_equal(n.stats.retransmissions, 0);

    /* the next frame comes one period after the first, with the next sequence number */
    f.now += cfg.period_ms - 1;
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 1);
    f.now += 1;
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 2);
    struct rframe second;
    sent_frame(f.sent[1], &second);
    assert_int_equal(second.seq, (uint16_t)(sent.seq + 1));
}

static void test_node1_retransmits_same_frame_with_backoff_then_gives_up(void **state)
{
    (void)state;
    struct fake f = {.t_x100 = 1500};
    struct fw_hal hal = fake_hal(&f);
    struct node1_config cfg;
    struct node1 n;

    node1_config_defaults(&cfg);
    node1_init(&n, &cfg, &hal, sample, result, &f);
    n1_setup(&n, &f);
    f.now += cfg.first_ms;
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 1);

    uint32_t sent_at = f.now;
    for (int k = 1; k <= cfg.max_retries; k++) {
        /* wait out the ACK timeout ms by ms; then the backoff must be within its window */
        while (f.nsent == k) {
            f.now++;
            node1_poll(&n, f.now);
            assert_true(f.now - sent_at <= cfg.ack_timeout_ms + (cfg.backoff_ms << k));
        }
        uint32_t gap = f.now - sent_at;
        uint32_t min = cfg.ack_timeout_ms + (cfg.backoff_ms << (k - 1));
        assert_true(gap >= min && gap < min + cfg.backoff_ms);
        /* byte-identical retransmission: same sequence number, same payload */
        assert_string_equal(f.sent[k], f.sent[0]);
        sent_at = f.now;
    }
    assert_int_equal(n.stats.retransmissions, 3);
    assert_int_equal(f.results_failed, 0);
    f.now += cfg.ack_timeout_ms;
    node1_poll(&n, f.now);
    assert_int_equal(f.results_failed, 1);
    assert_int_equal(f.last_sends, 4);
    assert_int_equal(n.stats.failed, 1);
    assert_int_equal(n.stats.timeouts, 4);
    assert_int_equal(f.nsent, 4); /* nothing more for this frame */
    assert_int_equal(n.state, NODE1_IDLE);
}

static void test_node1_nack_and_at_error_retry(void **state)
{
    (void)state;
    struct fake f = {0};
    struct fw_hal hal = fake_hal(&f);
    struct node1_config cfg;
    struct node1 n;
    struct rframe sent;
    char line[128];

    node1_config_defaults(&cfg);
    node1_init(&n, &cfg, &hal, sample, result, &f);
    n1_setup(&n, &f);
    f.now += cfg.first_ms;
    node1_poll(&n, f.now);
    sent_frame(f.sent[0], &sent);

    struct rframe nack = {.type = RFRAME_NACK, .src = 2, .seq = sent.seq};
    rcv_line(line, sizeof(line), 2, &nack, -1);
    node1_on_line(&n, line, strlen(line), f.now);
    assert_int_equal(n.state, NODE1_BACKOFF);
    assert_int_equal(n.stats.nacks, 1);
    f.now += 2 * cfg.backoff_ms;
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 2);
    assert_string_equal(f.sent[1], f.sent[0]);

    node1_on_line(&n, "+ERR=5", 6, f.now);
    assert_int_equal(n.state, NODE1_BACKOFF);
    assert_int_equal(n.stats.at_errors, 1);

    /* a corrupted ACK is not an ACK */
    f.now += 4 * cfg.backoff_ms;
    node1_poll(&n, f.now);
    assert_int_equal(f.nsent, 3);
    struct rframe ack = {.type = RFRAME_ACK, .src = 2, .seq = sent.seq};
    rcv_line(line, sizeof(line), 2, &ack, 20);
    node1_on_line(&n, line, strlen(line), f.now);
    assert_int_equal(n.state, NODE1_WAIT_ACK);
    assert_int_equal(n.stats.bad_rx, 1);
    rcv_line(line, sizeof(line), 2, &ack, -1);
    node1_on_line(&n, line, strlen(line), f.now);
    assert_int_equal(f.results_acked, 1);
    assert_int_equal(f.last_sends, 3);
}

/* ---- node 2 ------------------------------------------------------------------------------- */

static void test_node2_accept_dup_crc(void **state)
{
    (void)state;
    struct fake f = {0};
    struct fw_hal hal = fake_hal(&f);
    struct node2_config cfg;
    struct node2 n;
    char line[128];
    struct rframe reply;

    node2_config_defaults(&cfg);
    node2_init(&n, &cfg, &hal, read_own, &f);
    n2_setup(&n, &f);

    struct rframe d = {
        .type = RFRAME_DATA, .src = 1, .seq = 77, .t_x100 = 2764, .h_x100 = 5410, .gas = 84190};
    f.now = 12345;
    rcv_line(line, sizeof(line), 1, &d, -1);
    node2_on_line(&n, line, strlen(line), f.now);
    assert_int_equal(f.nsent, 1);
    sent_frame(f.sent[0], &reply);
    assert_int_equal(reply.type, RFRAME_ACK);
    assert_int_equal(reply.seq, 77);
    assert_memory_equal(f.sent[0], "AT+SEND=1,14,", 13);
    assert_int_equal(f.ndata, 1);
    assert_string_equal(f.data[0],
                        "{\"ts\":12000,\"id\":\"N2\",\"n1\":{\"t\":27.6,\"h\":54.1,\"g\":84190},"
                        "\"n2\":{},\"sig\":{\"rssi\":-50,\"snr\":9},"
                        "\"sts\":{\"rx\":1,\"err\":0,\"dup\":0}}\n");

    /* retransmission of the same sequence number: re-ACKed, counted, not printed */
    node2_on_line(&n, line, strlen(line), f.now + 1000);
    assert_int_equal(f.nsent, 2);
    sent_frame(f.sent[1], &reply);
    assert_int_equal(reply.type, RFRAME_ACK);
    assert_int_equal(f.ndata, 1);
    assert_int_equal(n.stats.dup, 1);

    /* a corrupted frame: NACK, err++, nothing printed */
    d.seq = 78;
    rcv_line(line, sizeof(line), 1, &d, 100);
    node2_on_line(&n, line, strlen(line), f.now + 2000);
    assert_int_equal(n.stats.err, 1);
    sent_frame(f.sent[2], &reply);
    assert_int_equal(reply.type, RFRAME_NACK);
    assert_int_equal(reply.seq, 78);
    assert_int_equal(f.ndata, 1);

    /* not hex / malformed: neither a CRC error nor a packet */
    node2_on_line(&n, "+RCV=1,4,ZZZZ,-50,9", 19, f.now);
    node2_on_line(&n, "+RCV=1,4", 8, f.now);
    assert_int_equal(n.stats.err, 1);
    assert_int_equal(n.stats.bad, 2);

    /* the good retransmission of 78, after the own SHT3x was read */
    f.now = 30000;
    node2_poll(&n, f.now);
    rcv_line(line, sizeof(line), 1, &d, -1);
    node2_on_line(&n, line, strlen(line), 30499);
    assert_int_equal(f.ndata, 2);
    assert_string_equal(f.data[1],
                        "{\"ts\":30000,\"id\":\"N2\",\"n1\":{\"t\":27.6,\"h\":54.1,\"g\":84190},"
                        "\"n2\":{\"t\":23.5,\"h\":45.7},\"sig\":{\"rssi\":-50,\"snr\":9},"
                        "\"sts\":{\"rx\":2,\"err\":1,\"dup\":1}}\n");

    /* a failed own read omits both keys again */
    f.sht_fail = 1;
    f.now = 40000;
    node2_poll(&n, f.now);
    d.seq = 79;
    d.flags = RFRAME_NO_GAS;
    rcv_line(line, sizeof(line), 1, &d, -1);
    node2_on_line(&n, line, strlen(line), f.now);
    assert_non_null(strstr(f.data[2], "\"n1\":{\"t\":27.6,\"h\":54.1},\"n2\":{},"));
}

/* ---- both machines over a lossy in-memory link ------------------------------------------- */

static void test_nodes_end_to_end_lossy(void **state)
{
    (void)state;
    struct fake f1 = {.t_x100 = 1000}, f2 = {0};
    struct fw_hal h1 = fake_hal(&f1), h2 = fake_hal(&f2);
    struct node1_config c1;
    struct node2_config c2;
    struct node1 n1;
    struct node2 n2;
    uint32_t drop = 1;

    node1_config_defaults(&c1);
    node2_config_defaults(&c2);
    node1_init(&n1, &c1, &h1, sample, result, &f1);
    node2_init(&n2, &c2, &h2, read_own, &f2);
    n1_setup(&n1, &f1);
    n2_setup(&n2, &f2);

    /* 300 simulated seconds, 1 ms steps; a third of the radio messages (either direction,
     * chosen by a fixed LCG so the run is reproducible) is lost */
    for (uint32_t t = 0; t < 300000; t++) {
        f1.now = f2.now = t;
        node1_poll(&n1, t);
        node2_poll(&n2, t);
        for (int i = 0; i < f1.nsent; i++) {
            node1_on_line(&n1, "+OK", 3, t);
            if (((drop = drop * 1103515245u + 12345u) >> 16) % 3 == 0)
                continue;
            char line[128];
            const char *p = f1.sent[i] + 8; /* "AT+SEND=" */
            snprintf(line, sizeof(line), "+RCV=1,%s,-60,7", strchr(p, ',') + 1);
            node2_on_line(&n2, line, strlen(line), t);
        }
        f1.nsent = 0;
        for (int i = 0; i < f2.nsent; i++) {
            if (((drop = drop * 1103515245u + 12345u) >> 16) % 3 == 0)
                continue;
            char line[128];
            snprintf(line, sizeof(line), "+RCV=2,%s,-60,7", strchr(f2.sent[i] + 8, ',') + 1);
            node1_on_line(&n1, line, strlen(line), t);
        }
        f2.nsent = 0;
    }
    /* every frame node 1 created is either acked or failed; node 2 printed each new one once */
    assert_int_equal(n1.stats.frames, 30);
    assert_true(n1.stats.retransmissions > 0);
    assert_true(n2.stats.dup > 0);
    assert_int_equal(n2.stats.err, 0);
    assert_int_equal((uint32_t)f2.ndata, n2.stats.rx);
    assert_true(n1.stats.acked <= n2.stats.rx);
    assert_true(n2.stats.rx <= n1.stats.frames);
    /* no two printed lines carry the same node 1 temperature (each frame has a unique one) */
    for (int i = 0; i < f2.ndata; i++) {
        const char *a = strstr(f2.data[i], "\"n1\"");
        size_t alen = (size_t)(strstr(a, "\"n2\"") - a);
        for (int j = i + 1; j < f2.ndata; j++) {
            const char *b = strstr(f2.data[j], "\"n1\"");
            assert_false(alen == (size_t)(strstr(b, "\"n2\"") - b) && memcmp(a, b, alen) == 0);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node1_setup_retries_on_err_and_timeout),
        cmocka_unit_test(test_node1_ack_resolves),
        cmocka_unit_test(test_node1_retransmits_same_frame_with_backoff_then_gives_up),
        cmocka_unit_test(test_node1_nack_and_at_error_retry),
        cmocka_unit_test(test_node2_accept_dup_crc),
        cmocka_unit_test(test_nodes_end_to_end_lossy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
