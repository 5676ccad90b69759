/*
 * main_node2.c — node 2 (receiver) image for the NUCLEO-F446RE.
 *
 * Main loop: RYLR998 lines -> node 2 state machine (CRC, ACK/NACK, duplicates, telemetry line
 * on RTT up-channel 0 and USART2), own SHT3x read on its timer, sleep until the next interrupt.
 */
#include "board.h"
#include "fwlog.h"
#include "linebuf.h"
#include "node2.h"
#include "sht3x.h"

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

    board_init(&board);
    linebuf_init(&lb);
    node2_config_defaults(&cfg);
    node2_init(&node, &cfg, hal, read_own, (void *)hal);
    FW_INFO(hal, "Node 2 receiver starting, RYLR998 on UART4");

    for (;;) {
        int c;
        while ((c = board_radio_getc(&board)) >= 0) {
            if (linebuf_push(&lb, (char)c)) {
                board_led_toggle();
                node2_on_line(&node, lb.buf, lb.len, hal->millis(hal->ctx));
            }
        }
        node2_poll(&node, hal->millis(hal->ctx));
        board_idle();
    }
}
