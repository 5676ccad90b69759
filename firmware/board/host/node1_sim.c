/*
 * node1_sim.c — node 1 (sensor node) firmware running on the simulated host board.
 *
 * The same node1.c state machine and sensor sampling (node1_sensors_sample), SHT3x and BME680
 * drivers as the STM32 image, over emulated I2C sensors (seeded environment model) and a
 * simulated RYLR998 on loopback UDP.
 *
 * stdout: one JSON line per resolved frame — what node 1 "measured" and whether it was
 *   acknowledged — then a final {"summary":...} line; tests compare these with what arrives
 *   downstream. stderr: the firmware's debug console (log lines).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwlog.h"
#include "host_board.h"
#include "linebuf.h"
#include "node1.h"

struct sim1 {
    struct host_board board;
    struct node1_sensors sensors;
    uint32_t resolved;
};

/* ---- callbacks from the state machine ------------------------------------------------------ */

static void sample(void *ud, struct rframe *f)
{
    struct sim1 *s = ud;
    node1_sensors_sample(&s->sensors, f);
}

static void result(void *ud, const struct rframe *f, bool acked, unsigned sends)
{
    struct sim1 *s = ud;
    s->resolved++;
    printf("{\"seq\":%u,\"sim_s\":%.1f,\"flags\":%u,\"t_x100\":%d,\"h_x100\":%u,\"g\":%u,"
           "\"acked\":%s,\"sends\":%u}\n",
           f->seq, host_board_seconds(&s->board), f->flags, f->t_x100, f->h_x100, f->gas,
           acked ? "true" : "false", sends);
}

/* ---- CLI ----------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fputs(
        "usage: node1_sim [options]\n"
        "Node 1 (sensor node) firmware on a simulated board: SHT3x + BME680 from a seeded\n"
        "environment model, RYLR998 over loopback UDP to node2_sim.\n\n"
        "  --udp-port N      this node's radio port on 127.0.0.1 (default 47001)\n"
        "  --peer-port N     node 2's radio port (default 47002)\n"
        "  --seed N          sensor model / radio impairment / jitter seed (default 1)\n"
        "  --speed X         simulated seconds per real second (default 1; 360 = an hour in 10 s)\n"
        "  --loss P          probability a transmission is lost (0..1, default 0)\n"
        "  --corrupt P       probability a transmission gets one bit flipped (default 0)\n"
        "  --distance M      metres to node 2, drives RSSI/SNR (default 30)\n"
        "  --heat-at S       start a heat excursion S simulated seconds after start\n"
        "  --heat-for S      ... lasting S seconds (default 0 = none)\n"
        "  --heat-delta C    ... of C degrees (default 15)\n"
        "  --start-hour H    time of day at start, 0..24 (default 12)\n"
        "  --period-ms N     transmit period (default 10000)\n"
        "  --count N         exit after N frames were resolved (acked or given up)\n"
        "  --duration S      exit after S simulated seconds\n"
        "  --no-bme          simulate a missing BME680 (gas flagged missing)\n"
        "  --sht-error P     probability each SHT3x word has a bad CRC (default 0)\n"
        "  -h, --help        this text\n\n"
        "stdout: one JSON line per resolved frame, then a {\"summary\":...} line.\n"
        "stderr: the firmware's console (log lines). Exits 0 on --count/--duration/SIGTERM.\n",
        out);
}

/* node 1's own options (the shared ones are host_sim_parse's) */
struct node1_args {
    struct host_sim_args sim;
    struct node1_config nc;
    bool no_bme;
};

static int node1_option(void *ud, int c, const char *arg)
{
    struct node1_args *a = ud;

    switch (c) {
    case 'A':
        return host_parse_double(arg, 0, 1e9, &a->sim.model.heat_at);
    case 'F':
        return host_parse_double(arg, 0, 1e9, &a->sim.model.heat_for);
    case 'D':
        return host_parse_double(arg, -100, 100, &a->sim.model.heat_delta);
    case 'P':
        return host_parse_u32(arg, &a->nc.period_ms) || a->nc.period_ms < 100 ? -EINVAL : 0;
    case 'B':
        a->no_bme = true;
        return 0;
    default:
        return -EINVAL;
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"heat-at", required_argument, NULL, 'A'},    {"heat-for", required_argument, NULL, 'F'},
        {"heat-delta", required_argument, NULL, 'D'}, {"period-ms", required_argument, NULL, 'P'},
        {"no-bme", no_argument, NULL, 'B'},           {NULL, 0, NULL, 0}};
    struct node1_args args;

    host_sim_args_defaults(&args.sim, "node1_sim", 47001, 47002, 1);
    node1_config_defaults(&args.nc);
    args.no_bme = false;
    int rc = host_sim_parse(&args.sim, argc, argv, opts, node1_option, &args, usage);
    if (rc >= 0)
        return rc;
    const struct host_sim_args *a = &args.sim;
    args.nc.seed = a->seed * 7919u + 1;

    static struct sim1 sim; /* large (ring buffers): keep it off the stack */
    setvbuf(stdout, NULL, _IOLBF, 0);
    int err = host_board_init(&sim.board, a->speed, &a->model, &a->radio, stderr, NULL);
    if (err < 0) {
        fprintf(stderr, "node1_sim: cannot bind udp port %u: %s\n", a->radio.udp_port,
                strerror(-err));
        return 1;
    }
    sim.board.bme_present = !args.no_bme;
    sim.board.sht_error = a->sht_error;

    struct node1 node;
    struct linebuf lb;
    const struct fw_hal *hal = &sim.board.hal;
    linebuf_init(&lb);
    node1_sensors_init(&sim.sensors, hal);
    node1_init(&node, &args.nc, hal, sample, result, &sim);
    FW_INFO(hal, "Node 1 sensor node starting (simulated, seed=%u speed=%g)", a->seed, a->speed);

    while (!sim.board.stop) {
        uint32_t now = hal->millis(hal->ctx);
        char ch;
        while (radio_sim_uart_getc(&sim.board.radio, &ch))
            if (linebuf_push(&lb, ch))
                node1_on_line(&node, lb.buf, lb.len, hal->millis(hal->ctx));
        node1_poll(&node, now);
        if (a->count && sim.resolved >= a->count)
            break;
        if (a->duration > 0 && host_board_seconds(&sim.board) >= a->duration)
            break;
        host_board_wait(&sim.board);
    }
    const struct node1_stats *st = &node.stats;
    printf("{\"summary\":{\"frames\":%u,\"transmissions\":%u,\"retransmissions\":%u,\"acked\":%u,"
           "\"failed\":%u,\"nacks\":%u,\"timeouts\":%u,\"at_errors\":%u,\"bad_rx\":%u,"
           "\"radio_sent\":%u,\"radio_lost\":%u,\"radio_corrupted\":%u}}\n",
           st->frames, st->transmissions, st->retransmissions, st->acked, st->failed, st->nacks,
           st->timeouts, st->at_errors, st->bad_rx, sim.board.radio.stats.sent,
           sim.board.radio.stats.lost, sim.board.radio.stats.corrupted);
    FW_INFO(hal, "node 1 stopping: frames=%u acked=%u failed=%u retransmissions=%u", st->frames,
            st->acked, st->failed, st->retransmissions);
    host_board_close(&sim.board);
    return 0;
}
