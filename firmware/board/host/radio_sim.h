/*
 * radio_sim.h — a simulated RYLR998 module: the node talks AT commands to it over its "UART",
 * and it carries payloads to the other simulated node over loopback UDP.
 *
 * The module side of the AT protocol: AT+ADDRESS/NETWORKID/BAND/PARAMETER answer +OK;
 * AT+SEND=<addr>,<len>,<data> answers +ERR=4 on a malformed command or +OK after "transmitting"
 * one datagram "<src>,<dst>,<data>" to the peer's UDP port. The receiving module filters on its
 * own address (or 0 = broadcast) and hands the node "+RCV=<src>,<len>,<data>,<rssi>,<snr>".
 *
 * Impairments, applied by the transmitting side, per transmission, from a seeded PRNG:
 *   loss     probability the packet is not heard at all;
 *   corrupt  probability one random bit of the frame is flipped (the hex text is decoded, one
 *            bit flipped in the binary frame, and re-encoded — corruption that LoRa's own PHY
 *            CRC missed, which is exactly what our CRC-16 is for).
 * RSSI/SNR (receiving side) come from a log-distance path-loss model at `distance` metres:
 *   rssi = 22 dBm − 31.7 dB − 27·log10(d) + N(0, 1.5)   (TX power 22 dBm, FSPL 1 m at 915 MHz,
 *                                                        path-loss exponent 2.7)
 *   snr  = clamp((rssi + 111) / 5 + N(0, 1), −20, 13)   (noise floor −111 dBm at 500 kHz)
 * and a packet whose SNR is below −7.5 dB (SF7 demodulation limit) is lost too.
 *
 * Ownership: caller-allocated; radio_sim_close() releases the socket.
 */
#ifndef FW_RADIO_SIM_H
#define FW_RADIO_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"

struct radio_sim_config {
    uint16_t udp_port;  /* this module's port on 127.0.0.1 */
    uint16_t peer_port; /* the other module's port */
    double loss;        /* 0..1 */
    double corrupt;     /* 0..1 */
    double distance_m;  /* > 0 */
    uint32_t seed;
};

struct radio_sim_stats {
    uint32_t sent, lost, corrupted, received, filtered;
};

struct radio_sim {
    struct radio_sim_config cfg;
    int fd;
    uint16_t address;
    uint32_t rng;
    char cmd[320]; /* AT command being assembled from UART bytes */
    size_t cmd_len;
    struct ring to_node; /* module -> node UART bytes */
    struct radio_sim_stats stats;
};

/* Bind 127.0.0.1:udp_port. Returns 0 or a negative errno. */
int radio_sim_open(struct radio_sim *r, const struct radio_sim_config *cfg);
void radio_sim_close(struct radio_sim *r);
/* Node -> module UART bytes. */
void radio_sim_uart_write(struct radio_sim *r, const char *buf, size_t len);
/* Receive pending datagrams (non-blocking) into the module -> node byte stream. */
void radio_sim_poll(struct radio_sim *r);
/* Next module -> node byte, false if none. */
bool radio_sim_uart_getc(struct radio_sim *r, char *c);

#endif
