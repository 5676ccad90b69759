/*
 * test_sensors.c — host unit tests: SHT3x conversions/CRC, BME680 gas compensation and heater
 * settings, telemetry line writer.
 *
 * BME680 worked numbers (integer formula, datasheet 3.4.1), derived by hand/with a script and
 * cross-checked against the datasheet float formula (docs/firmware.md shows the derivation):
 *   adc=512, range=5, sw_err=0: var1 = 1340*2126008810>>16 = 43470028, var2 = 512<<15 - 2^24
 *     + var1 = 43470028, var3 = 127110228*var1>>9 = 10791963223137,
 *     R = (var3 + var2/2)/var2 = 248262 Ω   (float formula: 248262.16 Ω)
 *   adc=600, range=4, sw_err=0  -> 468719 Ω   (float 468718.96)
 *   adc=420, range=6, sw_err=-1 -> 134252 Ω   (float 134251.81)
 *   adc=1000, range=3, sw_err=2 -> 734494 Ω   (float 734494.02)
 *   adc=256, range=8, sw_err=0  -> 38669 Ω    (float 38668.74)
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bme680.h"
#include "crc.h"
#include "sht3x.h"
#include "telemetry.h"

/* ---- SHT3x -------------------------------------------------------------------------------- */

static void test_sht3x_conversions(void **state)
{
    (void)state;
    assert_int_equal(sht3x_temp_x100(0), -4500);
    assert_int_equal(sht3x_temp_x100(0xFFFF), 13000);
    /* 0x6666 = 26214: -45 + 175*26214/65535 = 24.99996 -> 2500 */
    assert_int_equal(sht3x_temp_x100(0x6666), 2500);
    /* 0x8000: -45 + 175*32768/65535 = 42.5013 -> 4250 */
    assert_int_equal(sht3x_temp_x100(0x8000), 4250);
    assert_int_equal(sht3x_hum_x100(0), 0);
    assert_int_equal(sht3x_hum_x100(0xFFFF), 10000);
    /* 0x8000: 100*32768/65535 = 50.00076 -> 5000 */
    assert_int_equal(sht3x_hum_x100(0x8000), 5000);
    /* round trip through the host model's inverse stays within 0.01 */
    for (int32_t t = -4000; t <= 12000; t += 37)
        assert_true(abs(sht3x_temp_x100(sht3x_raw_from_temp_x100(t)) - t) <= 1);
    for (int32_t h = 0; h <= 10000; h += 29)
        assert_true(abs((int)sht3x_hum_x100(sht3x_raw_from_hum_x100(h)) - h) <= 1);
}

static void test_sht3x_decode_crc(void **state)
{
    (void)state;
    uint8_t raw[6] = {0x66, 0x66, 0, 0x80, 0x00, 0};
    struct sht3x_reading r;
    raw[2] = crc8_sht3x(raw, 2);
    raw[5] = crc8_sht3x(raw + 3, 2);
    sht3x_decode(raw, &r);
    assert_true(r.has_t && r.has_h);
    assert_int_equal(r.t_x100, 2500);
    assert_int_equal(r.h_x100, 5000);
    raw[5] ^= 1; /* humidity word corrupted: only humidity goes missing */
    sht3x_decode(raw, &r);
    assert_true(r.has_t);
    assert_false(r.has_h);
    raw[0] ^= 0x10;
    sht3x_decode(raw, &r);
    assert_false(r.has_t);
}

/* ---- BME680 ------------------------------------------------------------------------------- */

static void test_bme680_gas_worked_numbers(void **state)
{
    (void)state;
    static const struct {
        uint16_t adc;
        uint8_t range;
        int8_t err;
        uint32_t ohms;
    } v[] = {{512, 5, 0, 248262},
             {600, 4, 0, 468719},
             {420, 6, -1, 134252},
             {1000, 3, 2, 734494},
             {256, 8, 0, 38669}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint32_t r = bme680_gas_resistance(v[i].adc, v[i].range, v[i].err);
        float rf = bme680_gas_resistance_f(v[i].adc, v[i].range, v[i].err);
        assert_int_equal(r, v[i].ohms);
        assert_true(fabsf(rf - (float)v[i].ohms) / (float)v[i].ohms < 1e-4f);
    }
    /* across the whole table the integer and float formulas agree to 0.1 % */
    for (uint8_t range = 0; range < 16; range++)
        for (uint16_t adc = 100; adc < 1024; adc += 61) {
            float rf = bme680_gas_resistance_f(adc, range, 0);
            uint32_t ri = bme680_gas_resistance(adc, range, 0);
            assert_true(fabsf(rf - (float)ri) <= fmaxf(1.0f, 1e-3f * rf)); /* integer rounding */
        }
}

static void test_bme680_heater(void **state)
{
    (void)state;
    /* par_g1=-26, par_g2=-10291, par_g3=18, res_heat_range=1, res_heat_val=44, 25 °C:
     * var1 = 0, var2 = 758*((((143718*300*5)/100)+3276800)/10) = 411788806, var3 = 205894403,
     * var4 = 41178880, var5 = 71300, res_x100 = (577-250)*34 = 11118 -> 111 */
    struct bme680_calib c = {
        .par_g1 = -26, .par_g2 = -10291, .par_g3 = 18, .res_heat_range = 1, .res_heat_val = 44};
    assert_int_equal(bme680_heater_res(300, 25, &c), 111);
    /* 150 ms: 150/4 = 37, factor 1 -> 37 + 64 = 0x65 (148 ms) */
    assert_int_equal(bme680_heater_dur(150), 0x65);
    assert_int_equal(bme680_heater_dur(63), 63);
    assert_int_equal(bme680_heater_dur(5000), 0xFF);
}

/* ---- telemetry line ----------------------------------------------------------------------- */

static void test_telemetry_brief_line(void **state)
{
    (void)state;
    struct telemetry t = {.ts_ms = 12000,
                          .n1_has_t = true,
                          .n1_has_h = true,
                          .n1_has_g = true,
                          .n1_t_x100 = 2764,
                          .n1_h_x100 = 5410,
                          .n1_g = 84190,
                          .n2_has_t = true,
                          .n2_has_h = true,
                          .n2_t_x100 = 2680,
                          .n2_h_x100 = 4875,
                          .rssi = -39,
                          .snr = 13,
                          .rx = 1};
    char buf[TELEMETRY_MAX_LINE];
    const char *want = "{\"ts\":12000,\"id\":\"N2\",\"n1\":{\"t\":27.6,\"h\":54.1,\"g\":84190},"
                       "\"n2\":{\"t\":26.8,\"h\":48.8},\"sig\":{\"rssi\":-39,\"snr\":13},"
                       "\"sts\":{\"rx\":1,\"err\":0,\"dup\":0}}\n";
    assert_int_equal(telemetry_format(&t, buf, sizeof(buf)), (int)strlen(want));
    assert_string_equal(buf, want);
}

static void test_telemetry_missing_and_negative(void **state)
{
    (void)state;
    struct telemetry t = {.ts_ms = 500,
                          .n1_has_t = true,
                          .n1_t_x100 = -5,
                          .n1_has_g = true,
                          .n1_g = 0,
                          .rssi = -120,
                          .snr = -7,
                          .rx = 4294967295u,
                          .err = 3,
                          .dup = 2};
    char buf[TELEMETRY_MAX_LINE];
    telemetry_format(&t, buf, sizeof(buf));
    assert_string_equal(buf, "{\"ts\":500,\"id\":\"N2\",\"n1\":{\"t\":-0.1,\"g\":0},\"n2\":{},"
                             "\"sig\":{\"rssi\":-120,\"snr\":-7},"
                             "\"sts\":{\"rx\":4294967295,\"err\":3,\"dup\":2}}\n");
    t.n1_t_x100 = -4;
    t.n1_has_g = false;
    t.n2_has_h = true;
    t.n2_h_x100 = 9999;
    telemetry_format(&t, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"n1\":{\"t\":0.0},\"n2\":{\"h\":100.0}"));
    assert_int_equal(telemetry_round_tenths(2765), 277);
    assert_int_equal(telemetry_round_tenths(-2765), -277);
    assert_int_equal(telemetry_round_tenths(2764), 276);
}

static void test_telemetry_worst_case_fits(void **state)
{
    (void)state;
    struct telemetry t = {.ts_ms = UINT32_MAX,
                          .n1_has_t = true,
                          .n1_has_h = true,
                          .n1_has_g = true,
                          .n1_t_x100 = INT16_MIN,
                          .n1_h_x100 = UINT16_MAX,
                          .n1_g = UINT32_MAX,
                          .n2_has_t = true,
                          .n2_has_h = true,
                          .n2_t_x100 = INT16_MIN,
                          .n2_h_x100 = UINT16_MAX,
                          .rssi = INT16_MIN,
                          .snr = INT16_MIN,
                          .rx = UINT32_MAX,
                          .err = UINT32_MAX,
                          .dup = UINT32_MAX};
    char buf[TELEMETRY_MAX_LINE];
    int n = telemetry_format(&t, buf, sizeof(buf));
    assert_true(n > 0 && n < TELEMETRY_MAX_LINE);
    assert_int_equal(telemetry_format(&t, buf, (size_t)n), -ENOSPC);
    assert_int_equal(telemetry_format(&t, buf, (size_t)n + 1), n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sht3x_conversions),
        cmocka_unit_test(test_sht3x_decode_crc),
        cmocka_unit_test(test_bme680_gas_worked_numbers),
        cmocka_unit_test(test_bme680_heater),
        cmocka_unit_test(test_telemetry_brief_line),
        cmocka_unit_test(test_telemetry_missing_and_negative),
        cmocka_unit_test(test_telemetry_worst_case_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
