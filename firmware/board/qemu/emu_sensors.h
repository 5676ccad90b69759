/*
 * emu_sensors.h — an SHT3x (0x44) and a BME680 (0x76, gas channel) emulated at the I2C
 * transfer level inside the emulated image, for machines without an I2C model.
 *
 * Readings come from the host simulator's seeded sensor model (board/host/sensor_model.c,
 * built unchanged for ARM) at the board's uptime; the model is inverted to the raw words (with
 * their CRC-8) and to the BME680's ADC code + range, so firmware/common/sht3x.c and bme680.c
 * do the same conversions they do on the real chips. Same device behaviour as the host
 * board's emulation: the SHT3x NACKs a read with no measurement pending, the BME680 measures
 * when CTRL_MEAS selects forced mode and reports heat_stab only with a heater profile set.
 *
 * Not re-entrant; called from the main loop only. Caller-allocated.
 */
#ifndef FW_EMU_SENSORS_H
#define FW_EMU_SENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sensor_model.h"

struct emu_sensors {
    struct sensor_model model;
    bool bme_present;
    uint8_t sht_out[6];
    bool sht_ready;
    uint8_t bme_regs[256];
    uint8_t bme_ptr;
};

void emu_sensors_init(struct emu_sensors *s, uint32_t seed, bool with_bme);
/* I2C transfers at time now_s (seconds since boot): 0, or -EIO for an address/command NACK. */
int emu_sensors_write(struct emu_sensors *s, double now_s, uint8_t addr, const uint8_t *buf,
                      size_t len);
int emu_sensors_read(struct emu_sensors *s, uint8_t addr, uint8_t *buf, size_t len);

#endif
