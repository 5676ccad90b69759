/*
 * bme680.h — Bosch BME680 gas sensor: gas resistance compensation and a forced-mode driver.
 *
 * Only the gas channel is used (temperature/humidity/pressure oversampling are set to "skip"):
 * node 1's temperature and humidity come from its SHT3x.
 *
 * Compensation follows the BME680 datasheet (section 3.4.1, "Calculating gas sensor
 * resistance") — the integer formula with its two 16-entry range constant tables, and the float
 * formula with the k1/k2 range tables, kept for cross-checking in the unit tests. The heater
 * target (section 3.3.5, res_heat_x) and duration encoding (gas_wait_x) are the datasheet's too.
 *
 * Registers used (datasheet table 20): 0x00 res_heat_val, 0x02 res_heat_range<5:4>,
 * 0x04 range_switching_error<7:4>, 0x1D meas_status_0, 0x2A/0x2B gas_r, 0x5A res_heat_0,
 * 0x64 gas_wait_0, 0x71 ctrl_gas_1, 0x74 ctrl_meas, 0xD0 chip id (0x61), 0xEB..0xEE par_g2/g1/g3.
 */
#ifndef FW_BME680_H
#define FW_BME680_H

#include <stdint.h>

#include "hal.h"

#define BME680_ADDR    0x76
#define BME680_CHIP_ID 0x61

#define BME680_REG_RES_HEAT_VAL   0x00
#define BME680_REG_RES_HEAT_RANGE 0x02
#define BME680_REG_RANGE_SW_ERR   0x04
#define BME680_REG_MEAS_STATUS    0x1D
#define BME680_REG_GAS_R_MSB      0x2A
#define BME680_REG_GAS_R_LSB      0x2B
#define BME680_REG_RES_HEAT_0     0x5A
#define BME680_REG_GAS_WAIT_0     0x64
#define BME680_REG_CTRL_GAS_1     0x71
#define BME680_REG_CTRL_MEAS      0x74
#define BME680_REG_PAR_G2         0xEB /* LSB at 0xEB, MSB at 0xEC */
#define BME680_REG_PAR_G1         0xED
#define BME680_REG_PAR_G3         0xEE
#define BME680_REG_CHIP_ID        0xD0

#define BME680_NEW_DATA    0x80 /* meas_status_0 */
#define BME680_GAS_VALID   0x20 /* gas_r_lsb */
#define BME680_HEAT_STAB   0x10 /* gas_r_lsb */
#define BME680_RUN_GAS     0x10 /* ctrl_gas_1 */
#define BME680_MODE_FORCED 0x01 /* ctrl_meas<1:0> */

/* Node 1's heater profile: 300 °C for 150 ms. */
#define BME680_HEAT_TEMP_C 300
#define BME680_HEAT_MS     150

struct bme680_calib {
    int8_t par_g1;
    int16_t par_g2;
    int8_t par_g3;
    uint8_t res_heat_range; /* 0..3 */
    int8_t res_heat_val;
    int8_t range_sw_err; /* signed 4-bit value, -8..7 */
};

/* Datasheet integer formula. range is 0..15, adc 0..1023. Returns ohms. */
uint32_t bme680_gas_resistance(uint16_t adc, uint8_t range, int8_t range_sw_err);
/* Datasheet float formula (same inputs). */
float bme680_gas_resistance_f(uint16_t adc, uint8_t range, int8_t range_sw_err);
/* Heater set-point register value for target_c (200..400 °C) at ambient amb_c (°C). */
uint8_t bme680_heater_res(uint16_t target_c, int32_t amb_c, const struct bme680_calib *c);
/* gas_wait encoding: 6-bit value × multiplier (1, 4, 16, 64); 150 ms -> 0x65 (37 × 4 = 148 ms). */
uint8_t bme680_heater_dur(uint16_t ms);

/*
 * Read the chip id and calibration. Returns 0, -ENODEV (wrong chip id) or an I2C errno.
 */
int bme680_init(const struct fw_hal *hal, struct bme680_calib *c);

/*
 * One forced-mode gas measurement with the node 1 heater profile. amb_c is the ambient
 * temperature for the heater set-point (node 1 passes its SHT3x reading).
 * Returns 0 with *ohms set, -EAGAIN if the reading is not valid or the heater did not reach
 * its target (gas_valid/heat_stab clear), -ETIMEDOUT if no new data appeared, or an I2C errno.
 */
int bme680_measure_gas(const struct fw_hal *hal, const struct bme680_calib *c, int32_t amb_c,
                       uint32_t *ohms);

#endif
