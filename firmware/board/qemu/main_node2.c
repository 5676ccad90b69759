/*
 * main_node2.c — node 2 (receiver) image for QEMU's netduinoplus2.
 *
 * The NUCLEO image's main loop with the emulated board. The console (USART2 here, RTT on the
 * NUCLEO) carries the log lines, one "INFO  telemetry {...}" per accepted packet — what
 * iiotgw reads; the data port (USART3) carries the bare lines. Configuration only: the own
 * SHT3x is first read QEMU_SHT_FIRST_MS after boot (default 3 s, 30 s on the board) and then
 * every QEMU_SHT_PERIOD_MS (default 2 s), scaled to the emulated node 1's 1 s period.
 */
#include "board.h"
#include "fwlog.h"
#include "linebuf.h"
#include "node2.h"
#include "sht3x.h"

#ifndef QEMU_SHT_FIRST_MS
#define QEMU_SHT_FIRST_MS 3000u
#endif
#ifndef QEMU_SHT_PERIOD_MS
#define QEMU_SHT_PERIOD_MS 2000u
#endif
#ifndef QEMU_SENSOR_SEED
#define QEMU_SENSOR_SEED 4u
#endif

static int read_own(void *ud, struct sht3x_reading *r)
{
    return sht3x_measure(ud, r);
}

int main(void)
{
    static struct board board;
    static struct node2 node;
    static struct linebuf lb;
    struct node2_config cfg;
    const struct fw_hal *hal = &board.hal;

    board_init(&board, QEMU_SENSOR_SEED, 0);
    linebuf_init(&lb);
    node2_config_defaults(&cfg);
    cfg.sht_first_ms = QEMU_SHT_FIRST_MS;
    cfg.sht_period_ms = QEMU_SHT_PERIOD_MS;
    node2_init(&node, &cfg, hal, read_own, (void *)hal);
    FW_INFO(hal, "Node 2 receiver starting (QEMU netduinoplus2), RYLR998 on UART4");

    for (;;) {
        int c;
        while ((c = board_radio_getc(&board)) >= 0) {
            if (linebuf_push(&lb, (char)c))
                node2_on_line(&node, lb.buf, lb.len, hal->millis(hal->ctx));
        }
        node2_poll(&node, hal->millis(hal->ctx));
        board_idle();
    }
}
