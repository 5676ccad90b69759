/*
 * host_board.h — the simulated board the node applications run on in a Linux process.
 *
 * Provides the fw_hal of hal.h:
 *   millis      simulated milliseconds = real elapsed time × speed (CLOCK_MONOTONIC based);
 *   delay_ms    sleeps ms / speed of real time;
 *   i2c_*       an emulated SHT3x at 0x44 and BME680 at 0x76 whose readings come from the
 *               seeded sensor model — the firmware's real drivers and conversions run on top,
 *               the model is inverted to the raw words/ADC codes the chips would produce;
 *   radio_write the simulated RYLR998 (radio_sim.h);
 *   console     the RTT up-channel: a FILE (node 2: stdout, line-buffered; node 1: stderr);
 *   data        USART2: an optional FILE for the bare telemetry lines.
 * It also owns a signalfd for SIGTERM/SIGINT so the main loops stop cleanly without a global
 * flag set from a signal handler.
 */
#ifndef FW_HOST_BOARD_H
#define FW_HOST_BOARD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "hal.h"
#include "radio_sim.h"
#include "sensor_model.h"

struct host_board {
    double speed;
    struct timespec t0;
    struct sensor_model model;
    struct radio_sim radio;
    FILE *console;
    FILE *data;
    int sigfd;
    bool stop;
    /* emulated I2C devices */
    bool sht_present, bme_present;
    double sht_error;          /* probability a word's CRC is corrupted */
    uint8_t sht_out[6];
    bool sht_ready;
    uint8_t bme_regs[256];
    uint8_t bme_ptr;
    struct sensor_env last_env;   /* what the model produced at the last sample */
    struct fw_hal hal;
};

/*
 * Set up the board: clock, sensor model, radio (UDP bind), signal handling.
 * Returns 0 or a negative errno (radio bind failure, signalfd).
 */
int host_board_init(struct host_board *b, double speed, const struct sensor_model_config *model,
                    const struct radio_sim_config *radio, FILE *console, FILE *data);
void host_board_close(struct host_board *b);

/* Simulated seconds since start. */
double host_board_seconds(const struct host_board *b);

/*
 * Wait up to ~200 µs (real) for a datagram or a signal, move received radio bytes into the
 * module -> node stream. Sets b->stop on SIGTERM/SIGINT.
 */
void host_board_wait(struct host_board *b);

/* ---- CLI helpers shared by node1_sim and node2_sim ----------------------------------------- */
int host_parse_double(const char *s, double min, double max, double *out);
int host_parse_u32(const char *s, uint32_t *out);

#endif
