/*
 * test_codec.c — host unit tests: CRCs, radio frame codec, hex payload, AT parser, line
 * assembler. Vectors are documented in docs/radio-protocol.md.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crc.h"
#include "linebuf.h"
#include "rframe.h"
#include "rylr998.h"

/* ---- CRCs --------------------------------------------------------------------------------- */

static void test_crc16_check_value(void **state)
{
    (void)state;
    assert_int_equal(crc16_ccitt_false((const uint8_t *)"123456789", 9), 0x29B1);
    assert_int_equal(crc16_ccitt_false(NULL, 0), 0xFFFF);
}

static void test_crc8_sht3x_datasheet(void **state)
{
    (void)state;
    const uint8_t beef[2] = {0xBE, 0xEF};
    assert_int_equal(crc8_sht3x(beef, 2), 0x92);
}

/* ---- frame codec -------------------------------------------------------------------------- */

static void hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
    assert_int_equal(rylr_hex_decode(hex, strlen(hex), out, n), (int)strlen(hex) / 2);
}

static void test_frame_data_vector(void **state)
{
    (void)state;
    struct rframe f = {.type = RFRAME_DATA,
                       .src = 1,
                       .seq = 0x1234,
                       .flags = 0,
                       .t_x100 = 2764,
                       .h_x100 = 5410,
                       .gas = 84190};
    uint8_t buf[RFRAME_MAX_LEN], want[RFRAME_MAX_LEN];
    assert_int_equal(rframe_encode(&f, buf, sizeof(buf)), 16);
    hex_to_bytes("0101011234000ACC1522000148DE586B", want, sizeof(want));
    assert_memory_equal(buf, want, 16);

    struct rframe g;
    assert_int_equal(rframe_decode(buf, 16, &g), 0);
    assert_int_equal(g.type, RFRAME_DATA);
    assert_int_equal(g.seq, 0x1234);
    assert_int_equal(g.t_x100, 2764);
    assert_int_equal(g.h_x100, 5410);
    assert_int_equal(g.gas, 84190);
}

static void test_frame_negative_and_flags(void **state)
{
    (void)state;
    uint8_t buf[RFRAME_MAX_LEN], want[RFRAME_MAX_LEN];
    struct rframe f = {
        .type = RFRAME_DATA, .src = 1, .seq = 0xFFFF, .t_x100 = -1234, .h_x100 = 10000, .gas = 0};
    assert_int_equal(rframe_encode(&f, buf, sizeof(buf)), 16);
    hex_to_bytes("010101FFFF00FB2E2710000000007E5D", want, sizeof(want));
    assert_memory_equal(buf, want, 16);
    struct rframe g;
    assert_int_equal(rframe_decode(buf, 16, &g), 0);
    assert_int_equal(g.t_x100, -1234);

    struct rframe m = {.type = RFRAME_DATA,
                       .src = 1,
                       .seq = 7,
                       .flags = RFRAME_NO_TEMP | RFRAME_NO_HUM,
                       .gas = 123456};
    assert_int_equal(rframe_encode(&m, buf, sizeof(buf)), 16);
    hex_to_bytes("010101000703000000000001E240AC87", want, sizeof(want));
    assert_memory_equal(buf, want, 16);
}

static void test_frame_ack_nack_vectors(void **state)
{
    (void)state;
    uint8_t buf[RFRAME_MAX_LEN], want[RFRAME_ACK_LEN];
    struct rframe a = {.type = RFRAME_ACK, .src = 2, .seq = 0x1234};
    assert_int_equal(rframe_encode(&a, buf, sizeof(buf)), 7);
    hex_to_bytes("01020212342B93", want, sizeof(want));
    assert_memory_equal(buf, want, 7);
    a.type = RFRAME_NACK;
    assert_int_equal(rframe_encode(&a, buf, sizeof(buf)), 7);
    hex_to_bytes("01030212345D27", want, sizeof(want));
    assert_memory_equal(buf, want, 7);
    assert_int_equal(rframe_encode(&a, buf, 6), -ENOSPC);
    a.type = 9;
    assert_int_equal(rframe_encode(&a, buf, sizeof(buf)), -EINVAL);
}

static void test_frame_every_bit_flip_detected(void **state)
{
    (void)state;
    struct rframe f = {
        .type = RFRAME_DATA, .src = 1, .seq = 42, .t_x100 = 2100, .h_x100 = 4000, .gas = 99999};
    uint8_t buf[RFRAME_MAX_LEN];
    struct rframe g;
    assert_int_equal(rframe_encode(&f, buf, sizeof(buf)), 16);
    for (int bit = 0; bit < 16 * 8; bit++) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(rframe_decode(buf, 16, &g), -EBADMSG);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(rframe_decode(buf, 16, &g), 0);
}

static void test_frame_protocol_errors(void **state)
{
    (void)state;
    struct rframe f = {.type = RFRAME_ACK, .src = 2, .seq = 1};
    uint8_t buf[RFRAME_MAX_LEN];
    struct rframe g;
    assert_int_equal(rframe_encode(&f, buf, sizeof(buf)), 7);
    assert_int_equal(rframe_decode(buf, 3, &g), -EPROTO);
    /* version 2 with a valid CRC: a protocol error, not a CRC error */
    buf[0] = 2;
    uint16_t crc = crc16_ccitt_false(buf, 5);
    buf[5] = (uint8_t)(crc >> 8);
    buf[6] = (uint8_t)crc;
    assert_int_equal(rframe_decode(buf, 7, &g), -EPROTO);
}

/* ---- AT parser ---------------------------------------------------------------------------- */

static void test_at_ok_err_ready(void **state)
{
    (void)state;
    struct rylr_msg m;
    assert_int_equal(rylr_parse("+OK", 3, &m), 0);
    assert_int_equal(m.kind, RYLR_OK);
    assert_int_equal(rylr_parse("+OK\r", 4, &m), 0);
    assert_int_equal(m.kind, RYLR_OK);
    assert_int_equal(rylr_parse("+ERR=12", 7, &m), 0);
    assert_int_equal(m.kind, RYLR_ERR);
    assert_int_equal(m.err, 12);
    assert_int_equal(rylr_parse("+READY", 6, &m), 0);
    assert_int_equal(m.kind, RYLR_READY);
    assert_int_equal(rylr_parse("+ERR=", 5, &m), -EINVAL);
    assert_int_equal(rylr_parse("+ERR=1x", 7, &m), -EINVAL);
    assert_int_equal(rylr_parse("hello", 5, &m), 0);
    assert_int_equal(m.kind, RYLR_UNKNOWN);
}

static void test_at_rcv(void **state)
{
    (void)state;
    struct rylr_msg m;
    const char *l = "+RCV=1,32,0101011234000ACC1522000148DE586B,-47,11";
    assert_int_equal(rylr_parse(l, strlen(l), &m), 0);
    assert_int_equal(m.kind, RYLR_RCV);
    assert_int_equal(m.addr, 1);
    assert_int_equal(m.data_len, 32);
    assert_memory_equal(m.data, "0101011234000ACC1522000148DE586B", 32);
    assert_int_equal(m.rssi, -47);
    assert_int_equal(m.snr, 11);

    /* data may contain commas: the length field decides */
    const char *c = "+RCV=5,3,a,b,-100,-3";
    assert_int_equal(rylr_parse(c, strlen(c), &m), 0);
    assert_int_equal(m.data_len, 3);
    assert_memory_equal(m.data, "a,b", 3);
    assert_int_equal(m.rssi, -100);
    assert_int_equal(m.snr, -3);

    const char *bad[] = {"+RCV=1,32,0101,-47,11", "+RCV=1,4,ABCD,-47", "+RCV=,4,ABCD,-1,2",
                         "+RCV=1,4,ABCD,-47,11,9", "+RCV=1,999,AB,-1,1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rylr_parse(bad[i], strlen(bad[i]), &m), -EINVAL);
        assert_int_equal(m.kind, RYLR_UNKNOWN);
    }
}

static void test_hex_and_send_format(void **state)
{
    (void)state;
    uint8_t out[4];
    char cmd[64];
    const uint8_t ack[7] = {0x01, 0x02, 0x02, 0x12, 0x34, 0x2B, 0x93};
    assert_int_equal(rylr_hex_decode("0aFf", 4, out, sizeof(out)), 2);
    assert_int_equal(out[0], 0x0A);
    assert_int_equal(out[1], 0xFF);
    assert_int_equal(rylr_hex_decode("0G", 2, out, sizeof(out)), -EINVAL);
    assert_int_equal(rylr_hex_decode("012", 3, out, sizeof(out)), -EINVAL);
    assert_int_equal(rylr_hex_decode("0102030405", 10, out, sizeof(out)), -EINVAL);
    int n = rylr_format_send(1, ack, 7, cmd, sizeof(cmd));
    assert_int_equal(n, (int)strlen("AT+SEND=1,14,01020212342B93\r\n"));
    assert_memory_equal(cmd, "AT+SEND=1,14,01020212342B93\r\n", (size_t)n);
    assert_int_equal(rylr_format_send(1, ack, 7, cmd, 20), -ENOSPC);
}

static void test_linebuf(void **state)
{
    (void)state;
    struct linebuf lb;
    const char *in = "+OK\r\n+ERR=4\n";
    int lines = 0;
    linebuf_init(&lb);
    for (const char *p = in; *p; p++) {
        if (linebuf_push(&lb, *p)) {
            lines++;
            assert_string_equal(lb.buf, lines == 1 ? "+OK" : "+ERR=4");
        }
    }
    assert_int_equal(lines, 2);
    /* an overlong line is dropped up to its newline; the next line is intact */
    for (int i = 0; i < LINEBUF_MAX + 10; i++)
        assert_false(linebuf_push(&lb, 'x'));
    assert_false(linebuf_push(&lb, '\n'));
    assert_false(linebuf_push(&lb, 'A'));
    assert_true(linebuf_push(&lb, '\n'));
    assert_string_equal(lb.buf, "A");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_check_value),
        cmocka_unit_test(test_crc8_sht3x_datasheet),
        cmocka_unit_test(test_frame_data_vector),
        cmocka_unit_test(test_frame_negative_and_flags),
        cmocka_unit_test(test_frame_ack_nack_vectors),
        cmocka_unit_test(test_frame_every_bit_flip_detected),
        cmocka_unit_test(test_frame_protocol_errors),
        cmocka_unit_test(test_at_ok_err_ready),
        cmocka_unit_test(test_at_rcv),
        cmocka_unit_test(test_hex_and_send_format),
        cmocka_unit_test(test_linebuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
