/*
 * emu_sensors.c — emulated SHT3x and BME680 on the fw_hal I2C calls (see emu_sensors.h).
 */
#include "emu_sensors.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "bme680.h"
#include "crc.h"
#include "sht3x.h"

/* The calibration the host simulator's BME680 reports (docs/firmware.md worked numbers). */
#define EMU_PAR_G1         (-26)
#define EMU_PAR_G2         (-10291)
#define EMU_PAR_G3         18
#define EMU_RES_HEAT_RANGE 1
#define EMU_RES_HEAT_VAL   44

void emu_sensors_init(struct emu_sensors *s, uint32_t seed, bool with_bme)
{
    struct sensor_model_config cfg;

    memset(s, 0, sizeof(*s));
    sensor_model_defaults(&cfg);
    cfg.seed = seed;
    sensor_model_init(&s->model, &cfg);
    s->bme_present = with_bme;
    s->bme_regs[BME680_REG_CHIP_ID] = BME680_CHIP_ID;
    s->bme_regs[BME680_REG_PAR_G2] = (uint8_t)((uint16_t)EMU_PAR_G2 & 0xFF);
    s->bme_regs[BME680_REG_PAR_G2 + 1] = (uint8_t)((uint16_t)EMU_PAR_G2 >> 8);
    s->bme_regs[BME680_REG_PAR_G1] = (uint8_t)EMU_PAR_G1;
    s->bme_regs[BME680_REG_PAR_G3] = EMU_PAR_G3;
    s->bme_regs[BME680_REG_RES_HEAT_RANGE] = EMU_RES_HEAT_RANGE << 4;
    s->bme_regs[BME680_REG_RES_HEAT_VAL] = EMU_RES_HEAT_VAL;
}

static void emu_sht_measure(struct emu_sensors *s, double now_s)
{
    struct sensor_env env;
    sensor_model_sample(&s->model, now_s, &env);
    uint16_t t = sht3x_raw_from_temp_x100((int32_t)lround(env.t * 100.0));
    uint16_t h = sht3x_raw_from_hum_x100((int32_t)lround(env.h * 100.0));
    s->sht_out[0] = (uint8_t)(t >> 8);
    s->sht_out[1] = (uint8_t)t;
    s->sht_out[2] = crc8_sht3x(s->sht_out, 2);
    s->sht_out[3] = (uint8_t)(h >> 8);
    s->sht_out[4] = (uint8_t)h;
    s->sht_out[5] = crc8_sht3x(s->sht_out + 3, 2);
    s->sht_ready = true;
}

/* Forced mode: the (adc, range) pair the chip would report for the model's resistance. */
static void emu_bme_measure(struct emu_sensors *s, double now_s)
{
    struct sensor_env env;
    sensor_model_sample(&s->model, now_s, &env);
    uint16_t adc = 512;
    uint8_t range = 0;
    double best = 1e9;
    for (uint8_t r = 0; r < 16; r++) {
        double a = 512.0 + 1340.0 * (1.0 / (1.25e-7 * (double)(1u << r) * env.g) - 1.0);
        if (a >= 0.0 && a <= 1023.0 && fabs(a - 512.0) < best) {
            best = fabs(a - 512.0);
            adc = (uint16_t)lround(a);
            range = r;
        }
    }
    bool heated =
        s->bme_regs[BME680_REG_RES_HEAT_0] != 0 && s->bme_regs[BME680_REG_GAS_WAIT_0] != 0;
    s->bme_regs[BME680_REG_GAS_R_MSB] = (uint8_t)(adc >> 2);
    s->bme_regs[BME680_REG_GAS_R_LSB] =
        (uint8_t)(((adc & 3) << 6) | BME680_GAS_VALID | (heated ? BME680_HEAT_STAB : 0) | range);
    s->bme_regs[BME680_REG_MEAS_STATUS] = BME680_NEW_DATA;
}

int emu_sensors_write(struct emu_sensors *s, double now_s, uint8_t addr, const uint8_t *buf,
                      size_t len)
{
    if (addr == SHT3X_ADDR) {
        if (len == 2 && ((buf[0] << 8) | buf[1]) == SHT3X_CMD_SINGLE_HIGH) {
            emu_sht_measure(s, now_s);
            return 0;
        }
        return -EIO;
    }
    if (addr == BME680_ADDR && s->bme_present && len >= 1) {
        s->bme_ptr = buf[0];
        for (size_t i = 0; i + 1 < len; i += 2) { /* burst write: register/value pairs */
            s->bme_regs[buf[i]] = buf[i + 1];
            if (buf[i] == BME680_REG_CTRL_MEAS && (buf[i + 1] & 0x03) == BME680_MODE_FORCED)
                emu_bme_measure(s, now_s);
        }
        return 0;
    }
    return -EIO; /* no device: address NACK */
}

int emu_sensors_read(struct emu_sensors *s, uint8_t addr, uint8_t *buf, size_t len)
{
    if (addr == SHT3X_ADDR) {
        if (!s->sht_ready || len > 6)
            return -EIO; /* the real sensor NACKs a read with no measurement pending */
        memcpy(buf, s->sht_out, len);
        s->sht_ready = false;
        return 0;
    }
    if (addr == BME680_ADDR && s->bme_present) {
        for (size_t i = 0; i < len; i++)
            buf[i] = s->bme_regs[(uint8_t)(s->bme_ptr + i)];
        return 0;
    }
    return -EIO;
}
