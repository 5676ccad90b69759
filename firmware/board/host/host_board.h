/*
 * host_board.h — the simulated board the node applications run on in a Linux process.
 *
 * Provides the fw_hal of hal.h:
 *   millis      simulated milliseconds = real elapsed time × speed (CLOCK_MONOTONIC based),
 *               or the caller-driven manual_ms when manual_clock is set;
 *   delay_ms    sleeps ms / speed of real time (manual clock: advances manual_ms instead);
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

#include <getopt.h>
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
    double sht_error; /* probability a word's CRC is corrupted */
    uint8_t sht_out[6];
    bool sht_ready;
    uint8_t bme_regs[256];
    uint8_t bme_ptr;
    struct sensor_env last_env; /* what the model produced at the last sample */
    /* Manual clock: when set, simulated time is manual_ms, advanced only by the caller and by
     * delay_ms, never read from the real clock, so a run is reproducible (capture_sim). */
    bool manual_clock;
    uint64_t manual_ms;
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

/*
 * The options both simulators take — radio link (--udp-port, --peer-port, --loss, --corrupt,
 * --distance), sensor model (--seed, --start-hour, --sht-error), run (--speed, --count,
 * --duration, -h/--help) — parsed in one place so the two nodes cannot drift apart.
 */
struct host_sim_args {
    const char *prog;                 /* "node1_sim": prefix of error messages */
    struct sensor_model_config model; /* .seed set from seed after parsing */
    struct radio_sim_config radio;    /* .seed set from seed after parsing */
    double speed;                     /* simulated seconds per real second, default 1 */
    double duration;                  /* exit after this many simulated seconds; 0 = never */
    double sht_error;                 /* probability an SHT3x word has a bad CRC */
    uint32_t seed;
    uint32_t count; /* node-specific "done" count; 0 = never */
};

/*
 * Defaults: sensor_model_defaults(), speed 1, distance 30 m, no impairments, the given ports
 * and seed. A node may adjust a->model afterwards (before host_sim_parse).
 */
void host_sim_args_defaults(struct host_sim_args *a, const char *prog, uint16_t udp_port,
                            uint16_t peer_port, uint32_t seed);

/*
 * A node's own option: c is its struct option .val; returns 0, or a negative errno for a bad
 * value (arg is NULL for no_argument options).
 */
typedef int (*host_sim_option_fn)(void *ud, int c, const char *arg);

/*
 * Parse argv with getopt_long: the shared options into a, the node's `own` ones (terminated
 * by a zero entry; their .val must not collide with the shared ones: u p s x l c d H E n T h)
 * through on_own(ud, ...). Prints usage(stdout) for --help; usage(stderr) for an unknown
 * option or a stray argument; "PROG: invalid option value" for a bad value.
 * Returns -1 when the simulation should run, otherwise the exit status for main (0 after
 * --help, 2 on a usage error).
 */
int host_sim_parse(struct host_sim_args *a, int argc, char **argv, const struct option *own,
                   host_sim_option_fn on_own, void *ud, void (*usage)(FILE *out));

#endif
