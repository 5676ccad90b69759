/*
 * bme680.c — BME680 gas resistance compensation and forced-mode gas driver (see bme680.h).
 */
#include "bme680.h"

#include <errno.h>

/* ---- compensation (datasheet section 3.4.1) ------------------------------------------ */

/* Integer formula range constants ("const_array1_int" / "const_array2_int"). */
static const uint32_t gas_range_c1[16] = {2147483647u, 2147483647u, 2147483647u, 2147483647u,
                                          2147483647u, 2126008810u, 2147483647u, 2130303777u,
                                          2147483647u, 2147483647u, 2143188679u, 2136746228u,
                                          2147483647u, 2126008810u, 2147483647u, 2147483647u};
static const uint32_t gas_range_c2[16] = {
    4096000000u, 2048000000u, 1024000000u, 512000000u, 255744255u, 127110228u, 64000000u, 32258064u,
    16016016u,   8000000u,    4000000u,    2000000u,   1000000u,   500000u,    250000u,   125000u};

/* Float formula range constants (percent corrections k1, k2). */
static const float gas_range_k1[16] = {0.0f, 0.0f, 0.0f,  0.0f,  0.0f, -1.0f, 0.0f, -0.8f,
                                       0.0f, 0.0f, -0.2f, -0.5f, 0.0f, -1.0f, 0.0f, 0.0f};
static const float gas_range_k2[16] = {0.0f,  0.0f, 0.0f, 0.0f, 0.1f, 0.7f, 0.0f, -0.8f,
                                       -0.1f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};

uint32_t bme680_gas_resistance(uint16_t adc, uint8_t range, int8_t range_sw_err)
{
    range &= 0x0F;
    int64_t var1 =
        ((int64_t)(1340 + 5 * (int64_t)range_sw_err) * (int64_t)gas_range_c1[range]) >> 16;
    int64_t var2 = ((int64_t)adc << 15) - 16777216 + var1;
    int64_t var3 = ((int64_t)gas_range_c2[range] * var1) >> 9;
    if (var2 <= 0)
        return UINT32_MAX; /* adc far below 512 on range 0: off the scale, avoid dividing by 0 */
    return (uint32_t)((var3 + (var2 >> 1)) / var2);
}

float bme680_gas_resistance_f(uint16_t adc, uint8_t range, int8_t range_sw_err)
{
    range &= 0x0F;
    float var1 = 1340.0f + 5.0f * (float)range_sw_err;
    float var2 = var1 * (1.0f + gas_range_k1[range] / 100.0f);
    float var3 = 1.0f + gas_range_k2[range] / 100.0f;
    return 1.0f /
           (var3 * 0.000000125f * (float)(1u << range) * ((((float)adc - 512.0f) / var2) + 1.0f));
}

uint8_t bme680_heater_res(uint16_t target_c, int32_t amb_c, const struct bme680_calib *c)
{
    if (target_c < 200)
        target_c = 200;
    if (target_c > 400)
        target_c = 400;
    int32_t var1 = ((amb_c * c->par_g3) / 1000) * 256;
    int32_t var2 = (c->par_g1 + 784) *
                   (((((c->par_g2 + 154009) * (int32_t)target_c * 5) / 100) + 3276800) / 10);
    int32_t var3 = var1 + (var2 / 2);
    int32_t var4 = var3 / (c->res_heat_range + 4);
    int32_t var5 = (131 * c->res_heat_val) + 65536;
    int32_t res_x100 = ((var4 / var5) - 250) * 34;
    return (uint8_t)((res_x100 + 50) / 100);
}

uint8_t bme680_heater_dur(uint16_t ms)
{
    uint8_t factor = 0;
    if (ms >= 0xFC0)
        return 0xFF;
    while (ms > 0x3F) {
        ms /= 4;
        factor++;
    }
    return (uint8_t)(ms + factor * 64);
}

/* ---- driver ----------------------------------------------------------------------------- */

static int reg_read(const struct fw_hal *hal, uint8_t reg, uint8_t *buf, size_t len)
{
    int rc = hal->i2c_write(hal->ctx, BME680_ADDR, &reg, 1);
    return rc < 0 ? rc : hal->i2c_read(hal->ctx, BME680_ADDR, buf, len);
}

static int reg_write(const struct fw_hal *hal, uint8_t reg, uint8_t val)
{
    const uint8_t b[2] = {reg, val};
    return hal->i2c_write(hal->ctx, BME680_ADDR, b, 2);
}

int bme680_init(const struct fw_hal *hal, struct bme680_calib *c)
{
    uint8_t id, g[4], v;
    int rc;

    if ((rc = reg_read(hal, BME680_REG_CHIP_ID, &id, 1)) < 0)
        return rc;
    if (id != BME680_CHIP_ID)
        return -ENODEV;
    if ((rc = reg_read(hal, BME680_REG_PAR_G2, g, 4)) < 0) /* 0xEB..0xEE */
        return rc;
    c->par_g2 = (int16_t)((g[1] << 8) | g[0]);
    c->par_g1 = (int8_t)g[2];
    c->par_g3 = (int8_t)g[3];
    if ((rc = reg_read(hal, BME680_REG_RES_HEAT_VAL, &v, 1)) < 0)
        return rc;
    c->res_heat_val = (int8_t)v;
    if ((rc = reg_read(hal, BME680_REG_RES_HEAT_RANGE, &v, 1)) < 0)
        return rc;
    c->res_heat_range = (uint8_t)((v >> 4) & 0x03);
    if ((rc = reg_read(hal, BME680_REG_RANGE_SW_ERR, &v, 1)) < 0)
        return rc;
    c->range_sw_err = (int8_t)((int8_t)v / 16); /* signed upper nibble */
    return 0;
}

int bme680_measure_gas(const struct fw_hal *hal, const struct bme680_calib *c, int32_t amb_c,
                       uint32_t *ohms)
{
    uint8_t st = 0, gr[2];
    int rc;

    if ((rc = reg_write(hal, BME680_REG_RES_HEAT_0,
                        bme680_heater_res(BME680_HEAT_TEMP_C, amb_c, c))) < 0 ||
        (rc = reg_write(hal, BME680_REG_GAS_WAIT_0, bme680_heater_dur(BME680_HEAT_MS))) < 0 ||
        (rc = reg_write(hal, BME680_REG_CTRL_GAS_1, BME680_RUN_GAS)) < 0 ||  /* nb_conv = 0 */
        (rc = reg_write(hal, BME680_REG_CTRL_MEAS, BME680_MODE_FORCED)) < 0) /* TPH skipped */
        return rc;
    hal->delay_ms(hal->ctx, BME680_HEAT_MS);
    /* The conversion finishes a few ms after the heating phase; poll up to ~50 ms more. */
    for (int i = 0; i < 10; i++) {
        if ((rc = reg_read(hal, BME680_REG_MEAS_STATUS, &st, 1)) < 0)
            return rc;
        if (st & BME680_NEW_DATA)
            break;
        hal->delay_ms(hal->ctx, 5);
    }
    if (!(st & BME680_NEW_DATA))
        return -ETIMEDOUT;
    if ((rc = reg_read(hal, BME680_REG_GAS_R_MSB, gr, 2)) < 0)
        return rc;
    if ((gr[1] & (BME680_GAS_VALID | BME680_HEAT_STAB)) != (BME680_GAS_VALID | BME680_HEAT_STAB))
        return -EAGAIN;
    *ohms = bme680_gas_resistance((uint16_t)((gr[0] << 2) | (gr[1] >> 6)), gr[1] & 0x0F,
                                  c->range_sw_err);
    return 0;
}
