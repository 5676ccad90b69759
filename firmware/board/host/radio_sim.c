/*
 * radio_sim.c — simulated RYLR998 over loopback UDP (see radio_sim.h).
 */
#include "radio_sim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rframe.h"
#include "rylr998.h"
#include "sensor_model.h"

/* ---- module -> node ----------------------------------------------------------------------- */

static void to_node(struct radio_sim *r, const char *s)
{
    while (*s)
        ring_put(&r->to_node, (uint8_t)*s++);
}

/* ---- transmit ------------------------------------------------------------------------------ */

static void corrupt_payload(struct radio_sim *r, char *data, size_t len)
{
    uint8_t raw[120];
    int n = rylr_hex_decode(data, len, raw, sizeof(raw));
    if (n <= 0) {
        data[(size_t)(sensor_model_uniform(&r->rng) * (double)len)] ^= 0x01;
        return;
    }
    unsigned bit = (unsigned)(sensor_model_uniform(&r->rng) * n * 8);
    raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    rylr_hex_encode(raw, (size_t)n, data);
}

static void transmit(struct radio_sim *r, unsigned dst, char *data, size_t len)
{
    char dgram[300];
    struct sockaddr_in peer = {.sin_family = AF_INET,
                               .sin_port = htons(r->cfg.peer_port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

    r->stats.sent++;
    if (sensor_model_uniform(&r->rng) < r->cfg.loss) {
        r->stats.lost++;
        return;
    }
    if (sensor_model_uniform(&r->rng) < r->cfg.corrupt) {
        r->stats.corrupted++;
        corrupt_payload(r, data, len);
    }
    int n = snprintf(dgram, sizeof(dgram), "%u,%u,%.*s", r->address, dst, (int)len, data);
    /* Nobody listening (peer not started yet) is just a packet nobody heard. */
    (void)sendto(r->fd, dgram, (size_t)n, 0, (struct sockaddr *)&peer, sizeof(peer));
}

/* One complete AT command from the node. */
static void at_command(struct radio_sim *r, char *cmd)
{
    if (strncmp(cmd, "AT+ADDRESS=", 11) == 0) {
        r->address = (uint16_t)atoi(cmd + 11);
        to_node(r, "+OK\r\n");
    } else if (strncmp(cmd, "AT+SEND=", 8) == 0) {
        char *p = cmd + 8, *end;
        long dst = strtol(p, &end, 10);
        if (*end != ',')
            goto bad;
        long len = strtol(end + 1, &end, 10);
        if (*end != ',' || len <= 0 || len > 240 || (long)strlen(end + 1) != len || dst < 0)
            goto bad;
        to_node(r, "+OK\r\n");
        transmit(r, (unsigned)dst, end + 1, (size_t)len);
    } else if (strncmp(cmd, "AT+", 3) == 0 || strcmp(cmd, "AT") == 0) {
        to_node(r, "+OK\r\n"); /* NETWORKID, BAND, PARAMETER: accepted */
    } else {
        goto bad;
    }
    return;
bad:
    to_node(r, "+ERR=4\r\n");
}

/* ---- public API ---------------------------------------------------------------------------- */

int radio_sim_open(struct radio_sim *r, const struct radio_sim_config *cfg)
{
    struct sockaddr_in me = {.sin_family = AF_INET,
                             .sin_port = htons(cfg->udp_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(r, 0, sizeof(*r));
    r->cfg = *cfg;
    r->rng = cfg->seed * 2246822519u + 0x51ED270Bu;
    ring_init(&r->to_node);
    r->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->fd < 0)
        return -errno;
    if (bind(r->fd, (struct sockaddr *)&me, sizeof(me)) < 0) {
        int e = -errno;
        close(r->fd);
        r->fd = -1;
        return e;
    }
    to_node(r, "+READY\r\n");
    return 0;
}

void radio_sim_close(struct radio_sim *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

void radio_sim_uart_write(struct radio_sim *r, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (c == '\r')
            continue;
        if (c == '\n') {
            r->cmd[r->cmd_len] = '\0';
            if (r->cmd_len)
                at_command(r, r->cmd);
            r->cmd_len = 0;
        } else if (r->cmd_len + 1 < sizeof(r->cmd)) {
            r->cmd[r->cmd_len++] = c;
        }
    }
}

void radio_sim_poll(struct radio_sim *r)
{
    char dgram[300], line[340];
    for (;;) {
        ssize_t n = recv(r->fd, dgram, sizeof(dgram) - 1, 0);
        if (n <= 0)
            return;
        dgram[n] = '\0';
        char *end;
        unsigned long src = strtoul(dgram, &end, 10);
        if (*end != ',')
            continue;
        unsigned long dst = strtoul(end + 1, &end, 10);
        if (*end != ',')
            continue;
        const char *data = end + 1;
        if (dst != 0 && dst != r->address) {
            r->stats.filtered++;
            continue;
        }
        double d = r->cfg.distance_m > 0.1 ? r->cfg.distance_m : 0.1;
        double rssi = 22.0 - 31.7 - 27.0 * log10(d) + 1.5 * sensor_model_gauss(&r->rng);
        double snr = (rssi + 111.0) / 5.0 + sensor_model_gauss(&r->rng);
        if (snr > 13.0)
            snr = 13.0;
        if (snr < -20.0)
            snr = -20.0;
        if (snr < -7.5) { /* below the SF7 demodulation floor: not heard */
            r->stats.lost++;
            continue;
        }
        r->stats.received++;
        snprintf(line, sizeof(line), "+RCV=%lu,%zu,%s,%ld,%ld\r\n", src, strlen(data), data,
                 lround(rssi), lround(snr));
        to_node(r, line);
    }
}

bool radio_sim_uart_getc(struct radio_sim *r, char *c)
{
    uint8_t b;
    if (!ring_get(&r->to_node, &b))
        return false;
    *c = (char)b;
    return true;
}
