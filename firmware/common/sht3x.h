/*
 * sht3x.h — Sensirion SHT3x temperature/humidity sensor: conversions, CRC check, driver.
 *
 * Conversions follow the datasheet (section 4.13), in integer arithmetic scaled by 100 so no
 * float formatting is needed on the MCU:
 *   T  = -45 + 175 * raw / 65535   (°C)
 *   RH = 100 * raw / 65535         (%RH)
 * Each 16-bit word the sensor sends is followed by its CRC-8 (crc8_sht3x); a word whose CRC does
 * not match is reported missing, so node 2 omits exactly that key from its telemetry line.
 */
#ifndef FW_SHT3X_H
#define FW_SHT3X_H

#include <stdbool.h>
#include <stdint.h>

#include "hal.h"

#define SHT3X_ADDR 0x44
/* Single shot, high repeatability, clock stretching disabled (datasheet table 9). */
#define SHT3X_CMD_SINGLE_HIGH 0x2400u
/* Max measurement duration for high repeatability is 15 ms (datasheet table 4). */
#define SHT3X_MEAS_MS 16

struct sht3x_reading {
    bool has_t;
    bool has_h;
    int16_t t_x100;  /* °C × 100 */
    uint16_t h_x100; /* %RH × 100 */
};

/* raw -> °C × 100, rounded to nearest. */
int16_t sht3x_temp_x100(uint16_t raw);
/* raw -> %RH × 100, rounded to nearest. */
uint16_t sht3x_hum_x100(uint16_t raw);
/* Inverse of the conversions (used by the host sensor model to synthesise raw words). */
uint16_t sht3x_raw_from_temp_x100(int32_t t_x100);
uint16_t sht3x_raw_from_hum_x100(int32_t h_x100);

/* Decode the 6 bytes of a measurement (T msb, lsb, crc, RH msb, lsb, crc). */
void sht3x_decode(const uint8_t raw[6], struct sht3x_reading *r);

/*
 * Run one single-shot measurement: write the command, wait SHT3X_MEAS_MS, read 6 bytes.
 * Returns 0 (r filled; individual words may still be missing on CRC errors) or the negative
 * errno of the I2C transfer (r->has_t = r->has_h = false).
 */
int sht3x_measure(const struct fw_hal *hal, struct sht3x_reading *r);

#endif
