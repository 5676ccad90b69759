/*
 * capture_sim.c — node 1 and node 2 on one simulated timeline, for reproducible captures.
 *
 * node1_sim and node2_sim run on a scaled real clock and talk over UDP, so no two runs give
 * the same bytes. This program runs the same two applications — node1.c and node2.c, the
 * SHT3x/BME680 drivers over the emulated I2C sensors, the simulated RYLR998s with their loss,
 * corruption and path-loss model — in one process on a manual millisecond clock, stepping both
 * boards 1 ms at a time. The radio datagrams still travel over loopback UDP (delivered before
 * the sender's next instruction, so the order is fixed). Same options, same output, byte for
 * byte: tests/data/gen_capture.py turns it into the sample probe-rs session under tests/data/.
 *
 * Node 2 boots at t = 0, node 1 --node1-delay-ms later; node 1 is carried around, its distance
 * to node 2 following  d(t) = distance · (1 + swing · sin(2π t / 1500 s)).
 *
 * stdout, one record per line, fields separated by one tab:
 *   C <ms> <text>   a line node 2 wrote on its RTT console (ms = node 2's uptime)
 *   D <ms> <json>   a telemetry line node 2 wrote on USART2 (the same JSON as the console's)
 *   S <json>        last: node 1, node 2 and both radios' counters (a radio counts its own
 *                   transmissions and corruptions, and as lost both its dropped transmissions
 *                   and the received packets below the demodulation floor)
 * Node 1's console is not recorded (no probe is attached to it).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fwlog.h"
#include "host_board.h"
#include "linebuf.h"
#include "node1.h"
#include "node2.h"
#include "sht3x.h"

#define CAPSIM_LINE_MAX 1024

struct capsim_out {
    struct host_board *board;
    char tag;
    char buf[CAPSIM_LINE_MAX];
    size_t len;
};

struct capsim {
    struct host_board b1, b2;
    struct node1_sensors sensors;
    struct capsim_out console, data;
};

/* Console/data bytes of node 2: one record per complete line, stamped with its uptime. */
static void capsim_emit(struct capsim_out *o, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n') {
            if (o->len < sizeof(o->buf) - 1)
                o->buf[o->len++] = buf[i];
            continue;
        }
        o->buf[o->len] = '\0';
        printf("%c\t%" PRIu64 "\t%s\n", o->tag, o->board->manual_ms, o->buf);
        o->len = 0;
    }
}

static struct capsim capsim_state; /* large (ring buffers): off the stack */

static void capsim_console(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    capsim_emit(&capsim_state.console, buf, len);
}

static void capsim_data(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    capsim_emit(&capsim_state.data, buf, len);
}

static void capsim_sample(void *ud, struct rframe *f)
{
    node1_sensors_sample(ud, f);
}

static int capsim_read_own(void *ud, struct sht3x_reading *r)
{
    return sht3x_measure(ud, r);
}

static uint16_t capsim_port(const struct host_board *b)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    if (getsockname(b->radio.fd, (struct sockaddr *)&a, &alen) < 0)
        return 0;
    return ntohs(a.sin_port);
}

static void capsim_usage(FILE *out)
{
    fputs("usage: capture_sim [options]\n"
          "Node 1 and node 2 firmware on one manual clock: a reproducible session.\n\n"
          "  --seed N            sensor models, radio impairments, node 1 jitter (default 1)\n"
          "  --duration S        simulated seconds (default 2100)\n"
          "  --loss P            probability a node 1 transmission is lost (default 0)\n"
          "  --corrupt P         probability a node 1 transmission gets a bit flip (default 0)\n"
          "  --ack-loss P        probability a node 2 ACK/NACK is lost (default 0)\n"
          "  --distance M        mean distance node 1 - node 2 in metres (default 60)\n"
          "  --swing F           relative distance swing, 0..0.95 (default 0)\n"
          "  --start-hour H      time of day at t = 0 (default 12)\n"
          "  --sht-error P       probability a node 2 SHT3x word has a bad CRC (default 0)\n"
          "  --node1-delay-ms N  node 1 boots this long after node 2 (default 0)\n"
          "  -h, --help          this text\n",
          out);
}

struct capsim_args {
    uint32_t seed, node1_delay_ms;
    double duration, loss, corrupt, ack_loss, distance, swing, start_hour, sht_error;
};

static int capsim_parse(struct capsim_args *a, int argc, char **argv)
{
    static const struct option opts[] = {{"seed", required_argument, NULL, 's'},
                                         {"duration", required_argument, NULL, 'T'},
                                         {"loss", required_argument, NULL, 'l'},
                                         {"corrupt", required_argument, NULL, 'c'},
                                         {"ack-loss", required_argument, NULL, 'a'},
                                         {"distance", required_argument, NULL, 'd'},
                                         {"swing", required_argument, NULL, 'w'},
                                         {"start-hour", required_argument, NULL, 'H'},
                                         {"sht-error", required_argument, NULL, 'E'},
                                         {"node1-delay-ms", required_argument, NULL, 'D'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;

    *a = (struct capsim_args){.seed = 1, .duration = 2100, .distance = 60, .start_hour = 12};
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad;
        switch (c) {
        case 's':
            bad = host_parse_u32(optarg, &a->seed);
            break;
        case 'T':
            bad = host_parse_double(optarg, 1, 1e6, &a->duration);
            break;
        case 'l':
            bad = host_parse_double(optarg, 0, 1, &a->loss);
            break;
        case 'c':
            bad = host_parse_double(optarg, 0, 1, &a->corrupt);
            break;
        case 'a':
            bad = host_parse_double(optarg, 0, 1, &a->ack_loss);
            break;
        case 'd':
            bad = host_parse_double(optarg, 0.1, 1e5, &a->distance);
            break;
        case 'w':
            bad = host_parse_double(optarg, 0, 0.95, &a->swing);
            break;
        case 'H':
            bad = host_parse_double(optarg, 0, 24, &a->start_hour);
            break;
        case 'E':
            bad = host_parse_double(optarg, 0, 1, &a->sht_error);
            break;
        case 'D':
            bad = host_parse_u32(optarg, &a->node1_delay_ms);
            break;
        case 'h':
            capsim_usage(stdout);
            return 0;
        default:
            capsim_usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "capture_sim: invalid option value '%s' (see --help)\n", optarg);
            return 2;
        }
    }
    if (optind != argc) {
        capsim_usage(stderr);
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct capsim_args a;
    int rc = capsim_parse(&a, argc, argv);
    if (rc >= 0)
        return rc;

    struct capsim *s = &capsim_state;
    struct sensor_model_config m1, m2;
    sensor_model_defaults(&m1);
    m1.seed = a.seed;
    m1.start_hour = a.start_hour;
    /* node 2 sits indoors, as in node2_sim: cooler, drier, a smaller daily swing */
    m2 = m1;
    m2.seed = a.seed * 31u + 7;
    m2.t_mean = 23.2;
    m2.t_amp = 1.0;
    m2.h_mean = 49.5;
    m2.h_amp = 2.0;
    struct radio_sim_config r1 = {.loss = a.loss,
                                  .corrupt = a.corrupt,
                                  .distance_m = a.distance,
                                  .seed = a.seed * 2654435761u + 1};
    struct radio_sim_config r2 = {
        .loss = a.ack_loss, .distance_m = a.distance, .seed = a.seed * 2654435761u + 2};

    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    if ((rc = host_board_init(&s->b1, 1, &m1, &r1, NULL, NULL)) < 0 ||
        (rc = host_board_init(&s->b2, 1, &m2, &r2, NULL, NULL)) < 0) {
        fprintf(stderr, "capture_sim: radio setup: %s\n", strerror(-rc));
        return 1;
    }
    s->b1.manual_clock = s->b2.manual_clock = true;
    s->b1.radio.cfg.peer_port = capsim_port(&s->b2);
    s->b2.radio.cfg.peer_port = capsim_port(&s->b1);
    s->b2.sht_error = a.sht_error;
    s->console = (struct capsim_out){.board = &s->b2, .tag = 'C'};
    s->data = (struct capsim_out){.board = &s->b2, .tag = 'D'};
    s->b2.hal.console_write = capsim_console;
    s->b2.hal.data_write = capsim_data;

    static struct node1 n1;
    static struct node2 n2;
    struct node1_config c1;
    struct node2_config c2;
    struct linebuf lb1, lb2;
    const struct fw_hal *h1 = &s->b1.hal, *h2 = &s->b2.hal;
    node1_config_defaults(&c1);
    c1.seed = a.seed * 7919u + 1;
    node2_config_defaults(&c2);
    linebuf_init(&lb1);
    linebuf_init(&lb2);
    node2_init(&n2, &c2, h2, capsim_read_own, (void *)h2);
    FW_INFO(h2, "Node 2 receiver starting (simulated), RYLR998 on UART4");

    uint64_t end = (uint64_t)(a.duration * 1000.0);
    bool n1_up = false;
    for (uint64_t t = 0; t <= end; t++) {
        char ch;
        double d = a.distance * (1.0 + a.swing * sin(2.0 * M_PI * (double)t / 1.5e6));
        s->b1.radio.cfg.distance_m = s->b2.radio.cfg.distance_m = d;

        if (s->b2.manual_ms < t)
            s->b2.manual_ms = t;
        radio_sim_poll(&s->b2.radio);
        while (radio_sim_uart_getc(&s->b2.radio, &ch))
            if (linebuf_push(&lb2, ch))
                node2_on_line(&n2, lb2.buf, lb2.len, h2->millis(h2->ctx));
        node2_poll(&n2, h2->millis(h2->ctx));

        if (t < a.node1_delay_ms)
            continue;
        if (!n1_up) {
            node1_sensors_init(&s->sensors, h1);
            node1_init(&n1, &c1, h1, capsim_sample, NULL, &s->sensors);
            n1_up = true;
        }
        if (s->b1.manual_ms < t - a.node1_delay_ms)
            s->b1.manual_ms = t - a.node1_delay_ms;
        radio_sim_poll(&s->b1.radio);
        while (radio_sim_uart_getc(&s->b1.radio, &ch))
            if (linebuf_push(&lb1, ch))
                node1_on_line(&n1, lb1.buf, lb1.len, h1->millis(h1->ctx));
        node1_poll(&n1, h1->millis(h1->ctx));
    }

    const struct node1_stats *st = &n1.stats;
    const struct radio_sim_stats *q1 = &s->b1.radio.stats, *q2 = &s->b2.radio.stats;
    printf("S\t{\"node1\":{\"frames\":%u,\"transmissions\":%u,\"retransmissions\":%u,"
           "\"acked\":%u,\"failed\":%u,\"nacks\":%u,\"timeouts\":%u},"
           "\"node2\":{\"rx\":%u,\"err\":%u,\"dup\":%u,\"acks\":%u,\"nacks\":%u,\"bad\":%u},"
           "\"radio1\":{\"sent\":%u,\"lost\":%u,\"corrupted\":%u,\"received\":%u},"
           "\"radio2\":{\"sent\":%u,\"lost\":%u,\"corrupted\":%u,\"received\":%u}}\n",
           st->frames, st->transmissions, st->retransmissions, st->acked, st->failed, st->nacks,
           st->timeouts, n2.stats.rx, n2.stats.err, n2.stats.dup, n2.stats.acks, n2.stats.nacks,
           n2.stats.bad, q1->sent, q1->lost, q1->corrupted, q1->received, q2->sent, q2->lost,
           q2->corrupted, q2->received);
    host_board_close(&s->b1);
    host_board_close(&s->b2);
    return fflush(stdout) == 0 ? 0 : 1;
}
