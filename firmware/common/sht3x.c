/*
 * sht3x.c — SHT3x conversions and single-shot driver (see sht3x.h).
 */
#include "sht3x.h"

#include "crc.h"

/* ---- conversions ------------------------------------------------------------------------ */

int16_t sht3x_temp_x100(uint16_t raw)
{
    /* 17500 * raw / 65535 is never negative, so adding half the divisor rounds correctly. */
    uint32_t scaled = (17500u * raw + 32767u) / 65535u;
    return (int16_t)((int32_t)scaled - 4500);
}

uint16_t sht3x_hum_x100(uint16_t raw)
{
    return (uint16_t)((10000u * raw + 32767u) / 65535u);
}

uint16_t sht3x_raw_from_temp_x100(int32_t t_x100)
{
    int32_t v = t_x100 + 4500;
    if (v < 0)
        v = 0;
    if (v > 17500)
        v = 17500;
    return (uint16_t)(((uint32_t)v * 65535u + 8750u) / 17500u);
}

uint16_t sht3x_raw_from_hum_x100(int32_t h_x100)
{
    if (h_x100 < 0)
        h_x100 = 0;
    if (h_x100 > 10000)
        h_x100 = 10000;
    return (uint16_t)(((uint32_t)h_x100 * 65535u + 5000u) / 10000u);
}

void sht3x_decode(const uint8_t raw[6], struct sht3x_reading *r)
{
    r->has_t = crc8_sht3x(raw, 2) == raw[2];
    r->has_h = crc8_sht3x(raw + 3, 2) == raw[5];
    r->t_x100 = r->has_t ? sht3x_temp_x100((uint16_t)((raw[0] << 8) | raw[1])) : 0;
    r->h_x100 = r->has_h ? sht3x_hum_x100((uint16_t)((raw[3] << 8) | raw[4])) : 0;
}

/* ---- driver ----------------------------------------------------------------------------- */

int sht3x_measure(const struct fw_hal *hal, struct sht3x_reading *r)
{
    const uint8_t cmd[2] = {SHT3X_CMD_SINGLE_HIGH >> 8, SHT3X_CMD_SINGLE_HIGH & 0xFF};
    uint8_t raw[6];
    int rc;

    r->has_t = r->has_h = false;
    rc = hal->i2c_write(hal->ctx, SHT3X_ADDR, cmd, sizeof(cmd));
    if (rc < 0)
        return rc;
    hal->delay_ms(hal->ctx, SHT3X_MEAS_MS);
    rc = hal->i2c_read(hal->ctx, SHT3X_ADDR, raw, sizeof(raw));
    if (rc < 0)
        return rc;
    sht3x_decode(raw, r);
    return 0;
}
