/*
 * node1.h — the sensor node's radio state machine (portable, board-independent).
 *
 * Every period the node samples its sensors (through a callback, so the board decides how),
 * sends one DATA frame with a fresh sequence number through the RYLR998, and waits for node 2's
 * ACK. Without an ACK (timeout, +ERR from the module, or a NACK) it retransmits the *same*
 * frame — same sequence number, same bytes — up to max_retries times, waiting
 * backoff_ms << (k-1) plus a random jitter in [0, backoff_ms) before the k-th retransmission.
 * A frame still unacknowledged after that counts as failed; the node moves on to the next period.
 * With the defaults the worst case (4 × 1 s timeouts + 0.25 + 0.5 + 1 s backoff + jitter) is
 * < 7 s, inside the 10 s period; if a slower configuration overruns, the next sample is simply
 * taken when the current frame is resolved.
 *
 * The machine is driven from the main loop: node1_on_line() for every line from the module,
 * node1_poll() as often as convenient. Time is passed in (milliseconds, wrapping), which lets
 * the unit tests run it against a fake clock and a fake radio.
 *
 * Ownership: struct node1 is caller-allocated; hal and callbacks are borrowed for its lifetime.
 */
#ifndef FW_NODE1_H
#define FW_NODE1_H

#include <stdbool.h>
#include <stdint.h>

#include "bme680.h"
#include "hal.h"
#include "rframe.h"
#include "rylr998.h"

struct node1_config {
    uint8_t addr;            /* own RYLR998 address (1) */
    uint8_t peer;            /* receiver address (2) */
    uint32_t period_ms;      /* 10000 */
    uint32_t first_ms;       /* first sample this long after setup, default 1000 */
    uint32_t ack_timeout_ms; /* 1000 */
    uint32_t backoff_ms;     /* 250 */
    uint8_t max_retries;     /* 3 */
    uint32_t seed;           /* jitter PRNG and first sequence number */
};

/* Defaults of the node design (docs/firmware.md). */
void node1_config_defaults(struct node1_config *cfg);

struct node1_stats {
    uint32_t frames;        /* DATA frames created (distinct sequence numbers) */
    uint32_t transmissions; /* AT+SEND issued, including retransmissions */
    uint32_t retransmissions;
    uint32_t acked;
    uint32_t failed;    /* frames given up after max_retries */
    uint32_t nacks;     /* NACKs received */
    uint32_t timeouts;  /* ACK waits that expired */
    uint32_t at_errors; /* +ERR answers to AT+SEND */
    uint32_t bad_rx;    /* received frames that were corrupt or not for us */
};

/* Fill f->flags/t_x100/h_x100/gas; type/src/seq are set by the machine. */
typedef void (*node1_sample_fn)(void *ud, struct rframe *f);
/* A frame was resolved: acked or given up, after `transmissions` sends. May be NULL. */
typedef void (*node1_result_fn)(void *ud, const struct rframe *f, bool acked,
                                unsigned transmissions);

enum node1_state { NODE1_SETUP, NODE1_IDLE, NODE1_WAIT_ACK, NODE1_BACKOFF };

struct node1 {
    struct node1_config cfg;
    const struct fw_hal *hal;
    node1_sample_fn sample;
    node1_result_fn result;
    void *ud;
    struct rylr_setup setup;
    enum node1_state state;
    uint32_t next_sample;
    uint32_t deadline;
    struct rframe cur;
    uint8_t frame[RFRAME_MAX_LEN];
    int frame_len;
    uint8_t sends; /* transmissions of cur so far */
    uint16_t next_seq;
    uint32_t rng;
    struct node1_stats stats;
};

void node1_init(struct node1 *n, const struct node1_config *cfg, const struct fw_hal *hal,
                node1_sample_fn sample, node1_result_fn result, void *ud);
/* One line from the RYLR998 (terminator stripped). */
void node1_on_line(struct node1 *n, const char *line, size_t len, uint32_t now);
/* Run timers: setup commands, sampling, ACK timeout, backoff. */
void node1_poll(struct node1 *n, uint32_t now);

/* ---- the node 1 board's sensors ------------------------------------------------------------ */

/*
 * SHT3x (temperature, humidity) and BME680 (gas resistance, heater compensated with the SHT3x
 * temperature) on the HAL's I2C bus. Both boards — the STM32 image and the host simulator —
 * sample through this one function, so the simulator exercises exactly what the MCU runs.
 * Caller-allocated; hal is borrowed for its lifetime.
 */
struct node1_sensors {
    const struct fw_hal *hal;
    struct bme680_calib calib;
    bool bme_ok; /* calibration read; until then retried on every sample */
};

void node1_sensors_init(struct node1_sensors *s, const struct fw_hal *hal);

/*
 * A node1_sample_fn (ud = struct node1_sensors *): fills f->flags/t_x100/h_x100/gas; a sensor
 * that does not answer sets its RFRAME_NO_* flag instead of a value.
 */
void node1_sensors_sample(void *ud, struct rframe *f);

#endif
