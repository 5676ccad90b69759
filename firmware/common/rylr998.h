/*
 * rylr998.h — REYAX RYLR998 LoRa module: AT response parser, command formatting, and the
 * boot-time configuration sequence both nodes run.
 *
 * The module's UART protocol is line-based ASCII:
 *   +OK                               command accepted (after AT+SEND: frame transmitted)
 *   +ERR=<n>                          command failed with code n
 *   +RCV=<addr>,<len>,<data>,<rssi>,<snr>   a received payload of <len> characters
 *   +READY                            module (re)booted
 * The payload must be printable: a raw binary frame could contain '\r', '\n' or ',' and break
 * the line protocol. We therefore send each frame byte as two upper-case hex digits
 * (RFRAME_DATA = 16 bytes -> 32 characters; the module allows 240).
 *
 * Pure parsing/formatting: no allocation, no I/O (setup writes through the hal).
 */
#ifndef FW_RYLR998_H
#define FW_RYLR998_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hal.h"

enum rylr_kind { RYLR_UNKNOWN = 0, RYLR_OK, RYLR_ERR, RYLR_RCV, RYLR_READY };

struct rylr_msg {
    enum rylr_kind kind;
    int err;          /* RYLR_ERR: module error code */
    uint16_t addr;    /* RYLR_RCV: sender address */
    const char *data; /* RYLR_RCV: points into the parsed line (not NUL-terminated) */
    size_t data_len;
    int16_t rssi; /* dBm */
    int16_t snr;  /* dB */
};

/*
 * Parse one line (without the line terminator; a trailing '\r' is ignored).
 * Returns 0 with msg filled, or -EINVAL for a malformed +ERR/+RCV line (msg->kind is then
 * RYLR_UNKNOWN). Lines that are not responses (echo, noise) give 0 with RYLR_UNKNOWN.
 */
int rylr_parse(const char *line, size_t len, struct rylr_msg *msg);

/* Hex-encode n bytes into out (2n characters, no NUL). */
void rylr_hex_encode(const uint8_t *in, size_t n, char *out);
/* Decode 2n hex characters into out (at most outlen bytes). Returns byte count or -EINVAL. */
int rylr_hex_decode(const char *in, size_t len, uint8_t *out, size_t outlen);

/*
 * Format "AT+SEND=<addr>,<2n>,<hex>\r\n" into buf. Returns the length or -ENOSPC.
 */
int rylr_format_send(uint16_t addr, const uint8_t *frame, size_t n, char *buf, size_t len);

/* ---- boot configuration -------------------------------------------------------------------
 * AT+ADDRESS=<a>, AT+NETWORKID=18, AT+BAND=915000000, AT+PARAMETER=7,9,1,7
 * (docs/radio-protocol.md), one at a time, each waiting for +OK; a command answered with +ERR or
 * nothing within 1 s is resent.
 */
#define RYLR_SETUP_TIMEOUT_MS 1000

struct rylr_setup {
    uint8_t addr;
    uint8_t step; /* index of the command in flight; RYLR_SETUP_STEPS when done */
    bool waiting;
    uint32_t deadline;
    uint32_t retries;
};

void rylr_setup_init(struct rylr_setup *s, uint8_t addr);
bool rylr_setup_done(const struct rylr_setup *s);
/* Send the next command when due. */
void rylr_setup_poll(struct rylr_setup *s, const struct fw_hal *hal, uint32_t now);
/* Feed a parsed response while not done; returns true if it was consumed. */
bool rylr_setup_on_msg(struct rylr_setup *s, const struct fw_hal *hal, const struct rylr_msg *m);

#endif
