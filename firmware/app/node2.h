/*
 * node2.h — the receiver node's state machine (portable, board-independent).
 *
 * For every "+RCV=" line from the RYLR998: hex-decode the payload, check the frame's CRC,
 *   - CRC failure: sts.err++, reply NACK (with the sequence number as received, best effort);
 *   - a DATA frame whose sequence number equals the last one accepted: a retransmission whose
 *     ACK was lost — sts.dup++, ACK it again, print nothing;
 *   - otherwise: sts.rx++, ACK, and print the telemetry line (telemetry.h) on the console
 *     (RTT) as "INFO  telemetry {...}" and, bare, on the data port (USART2).
 * Sequence equality is enough for duplicate detection because node 1 only ever retransmits
 * its current frame and never goes back to an older sequence number.
 * sts.rx counts accepted (valid, new) DATA frames, so it grows by exactly one per line printed;
 * sts.err counts CRC failures only (malformed module lines and foreign frames are logged, not
 * counted there — the prototype's mistake was counting every unparsable line).
 *
 * Node 2's own SHT3x is read through a callback every sht_period_ms; a failed word's key is
 * omitted, and "n2":{} is printed until the first read.
 *
 * Ownership: struct node2 is caller-allocated; hal and callback are borrowed.
 */
#ifndef FW_NODE2_H
#define FW_NODE2_H

#include <stdbool.h>
#include <stdint.h>

#include "hal.h"
#include "rylr998.h"
#include "sht3x.h"
#include "telemetry.h"

struct node2_config {
    uint8_t addr;           /* own address (2) */
    uint8_t peer;           /* sensor node address (1) */
    uint32_t sht_first_ms;  /* first own-SHT3x read after boot, default 30000 */
    uint32_t sht_period_ms; /* default 10000 */
};

void node2_config_defaults(struct node2_config *cfg);

struct node2_stats {
    uint32_t rx, err, dup; /* as in the telemetry line */
    uint32_t acks, nacks;  /* replies sent */
    uint32_t bad;          /* malformed lines, bad hex, wrong version, foreign sender */
};

/* Read node 2's own SHT3x; returns 0 or a negative errno (all keys omitted). */
typedef int (*node2_read_fn)(void *ud, struct sht3x_reading *r);

struct node2 {
    struct node2_config cfg;
    const struct fw_hal *hal;
    node2_read_fn read_own;
    void *ud;
    struct rylr_setup setup;
    bool have_last;
    uint16_t last_seq;
    uint32_t next_sht;
    struct telemetry tel;
    struct node2_stats stats;
    char line[TELEMETRY_MAX_LINE];
};

void node2_init(struct node2 *n, const struct node2_config *cfg, const struct fw_hal *hal,
                node2_read_fn read_own, void *ud);
void node2_on_line(struct node2 *n, const char *line, size_t len, uint32_t now);
void node2_poll(struct node2 *n, uint32_t now);
bool node2_ready(const struct node2 *n);

#endif
