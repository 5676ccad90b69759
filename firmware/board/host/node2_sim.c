/*
 * node2_sim.c — node 2 (receiver) firmware running on the simulated host board.
 *
 * The same node2.c state machine and SHT3x driver as the STM32 image. Its RTT output — log
 * lines in the probe-rs/defmt layout ("INFO  message" + "└─ function @ file:line") and the
 * telemetry lines ("INFO  telemetry {...}") — goes to stdout, line-buffered, so the gateway
 * consumes it exactly like probe-rs:   iiotgw -s 'exec:node2_sim --speed 60'   or
 *   node2_sim --count 10 --speed 100 | iiotgw -s stdin ...
 * --data-out FILE receives the bare JSON lines the board prints on USART2.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwlog.h"
#include "host_board.h"
#include "linebuf.h"
#include "node2.h"
#include "sht3x.h"

static int read_own(void *ud, struct sht3x_reading *r)
{
    return sht3x_measure(ud, r);
}

static void usage(FILE *out)
{
    fputs("usage: node2_sim [options]\n"
          "Node 2 (receiver) firmware on a simulated board: RYLR998 over loopback UDP from\n"
          "node1_sim, its own SHT3x from a seeded model; RTT output on stdout (probe-rs style).\n\n"
          "  --udp-port N      this node's radio port on 127.0.0.1 (default 47002)\n"
          "  --peer-port N     node 1's radio port (default 47001)\n"
          "  --seed N          sensor model / impairment seed (default 2)\n"
          "  --speed X         simulated seconds per real second (default 1)\n"
          "  --loss P          probability an ACK/NACK transmission is lost (default 0)\n"
          "  --corrupt P       probability an ACK/NACK gets one bit flipped (default 0)\n"
          "  --distance M      metres to node 1, drives RSSI/SNR (default 30)\n"
          "  --start-hour H    time of day at start (default 12)\n"
          "  --sht-first-ms N  first own SHT3x read after boot (default 30000)\n"
          "  --sht-error P     probability each own SHT3x word has a bad CRC (default 0)\n"
          "  --no-sht          simulate a missing own SHT3x (n2 stays {})\n"
          "  --data-out FILE   write the USART2 output (bare telemetry lines) to FILE\n"
          "  --count N         exit after N telemetry lines\n"
          "  --duration S      exit after S simulated seconds\n"
          "  --idle-exit S     exit S simulated seconds after the last radio packet\n"
          "                    (once at least one was received)\n"
          "  -h, --help        this text\n\n"
          "Exits 0 on --count/--duration/--idle-exit, SIGTERM/SIGINT, or when stdout closes.\n",
          out);
}

/* node 2's own options (the shared ones are host_sim_parse's) */
struct node2_args {
    struct host_sim_args sim;
    struct node2_config nc;
    const char *data_path;
    double idle_exit;
    bool no_sht;
};

static int node2_option(void *ud, int c, const char *arg)
{
    struct node2_args *a = ud;

    switch (c) {
    case 'S':
        return host_parse_u32(arg, &a->nc.sht_first_ms);
    case 'N':
        a->no_sht = true;
        return 0;
    case 'o':
        a->data_path = arg;
        return 0;
    case 'I':
        return host_parse_double(arg, 0, 1e9, &a->idle_exit);
    default:
        return -EINVAL;
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"sht-first-ms", required_argument, NULL, 'S'},
                                         {"no-sht", no_argument, NULL, 'N'},
                                         {"data-out", required_argument, NULL, 'o'},
                                         {"idle-exit", required_argument, NULL, 'I'},
                                         {NULL, 0, NULL, 0}};
    struct node2_args args = {.data_path = NULL};

    host_sim_args_defaults(&args.sim, "node2_sim", 47002, 47001, 2);
    /* node 2 sits indoors: a little cooler and drier, smaller daily swing */
    args.sim.model.t_mean = 23.2;
    args.sim.model.t_amp = 1.0;
    args.sim.model.h_mean = 49.5;
    args.sim.model.h_amp = 2.0;
    node2_config_defaults(&args.nc);
    int rc = host_sim_parse(&args.sim, argc, argv, opts, node2_option, &args, usage);
    if (rc >= 0)
        return rc;
    const struct host_sim_args *a = &args.sim;
    const char *data_path = args.data_path;

    FILE *data = NULL;
    if (data_path && !(data = fopen(data_path, "w"))) {
        fprintf(stderr, "node2_sim: %s: %s\n", data_path, strerror(errno));
        return 1;
    }
    static struct host_board board; /* large (ring buffers): keep it off the stack */
    setvbuf(stdout, NULL, _IOLBF, 0);
    int err = host_board_init(&board, a->speed, &a->model, &a->radio, stdout, data);
    if (err < 0) {
        fprintf(stderr, "node2_sim: cannot bind udp port %u: %s\n", a->radio.udp_port,
                strerror(-err));
        if (data)
            fclose(data);
        return 1;
    }
    board.sht_present = !args.no_sht;
    board.sht_error = a->sht_error;

    static struct node2 node;
    struct linebuf lb;
    const struct fw_hal *hal = &board.hal;
    double last_rx = -1;
    linebuf_init(&lb);
    node2_init(&node, &args.nc, hal, read_own, (void *)hal);
    FW_INFO(hal, "Node 2 receiver starting (simulated), RYLR998 on UART4");

    while (!board.stop) {
        char ch;
        while (radio_sim_uart_getc(&board.radio, &ch)) {
            if (!linebuf_push(&lb, ch))
                continue;
            if (strncmp(lb.buf, "+RCV=", 5) == 0)
                last_rx = host_board_seconds(&board);
            node2_on_line(&node, lb.buf, lb.len, hal->millis(hal->ctx));
        }
        node2_poll(&node, hal->millis(hal->ctx));
        double now_s = host_board_seconds(&board);
        if (a->count && node.stats.rx >= a->count)
            break;
        if (a->duration > 0 && now_s >= a->duration)
            break;
        if (args.idle_exit > 0 && last_rx >= 0 && now_s - last_rx >= args.idle_exit)
            break;
        host_board_wait(&board);
    }
    FW_INFO(hal, "node 2 stopping: rx=%u err=%u dup=%u acks=%u nacks=%u bad=%u", node.stats.rx,
            node.stats.err, node.stats.dup, node.stats.acks, node.stats.nacks, node.stats.bad);
    fflush(stdout);
    host_board_close(&board);
    if (data)
        fclose(data);
    return 0;
}
