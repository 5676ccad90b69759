/*
 * main_node1.c — node 1 (sensor node) image for QEMU's netduinoplus2.
 *
 * The NUCLEO image's main loop with the emulated board: RYLR998 bytes from the UART4 ISR ring
 * -> line assembler -> node 1 state machine, timers, wfi. Two differences, both configuration:
 * the sampling period is QEMU_PERIOD_MS (default 1 s instead of 10 s, so a bounded test sees
 * many frames; ACK timeout and backoff keep their defaults), and every resolved frame is
 * logged on the console ("INFO  frame seq=... t=... h=... g=... flags=... acked=... sends=...")
 * so a test can compare what node 1 measured with what arrives downstream.
 */
#include "board.h"
#include "fwlog.h"
#include "linebuf.h"
#include "node1.h"

#ifndef QEMU_PERIOD_MS
#define QEMU_PERIOD_MS 1000u
#endif
#ifndef QEMU_SENSOR_SEED
#define QEMU_SENSOR_SEED 3u
#endif

static void on_result(void *ud, const struct rframe *f, bool acked, unsigned transmissions)
{
    const struct fw_hal *hal = ((const struct node1_sensors *)ud)->hal; /* ud: the sampler's */
    FW_INFO(hal, "frame seq=%u t=%d h=%d g=%lu flags=%u acked=%u sends=%u", f->seq, (int)f->t_x100,
            (int)f->h_x100, (unsigned long)f->gas, f->flags, acked ? 1u : 0u, transmissions);
}

int main(void)
{
    static struct board board;
    static struct node1_sensors sensors;
    static struct node1 node;
    static struct linebuf lb;
    struct node1_config cfg;
    const struct fw_hal *hal = &board.hal;

    board_init(&board, QEMU_SENSOR_SEED, 1);
    linebuf_init(&lb);
    node1_sensors_init(&sensors, hal);
    node1_config_defaults(&cfg);
    cfg.period_ms = QEMU_PERIOD_MS;
    node1_init(&node, &cfg, hal, node1_sensors_sample, on_result, &sensors);
    FW_INFO(hal, "Node 1 sensor node starting (QEMU netduinoplus2), RYLR998 on UART4");

    for (;;) {
        int c;
        while ((c = board_radio_getc(&board)) >= 0) {
            if (linebuf_push(&lb, (char)c))
                node1_on_line(&node, lb.buf, lb.len, hal->millis(hal->ctx));
        }
        node1_poll(&node, hal->millis(hal->ctx));
        board_idle();
    }
}
