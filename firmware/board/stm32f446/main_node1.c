/*
 * main_node1.c — node 1 (sensor node) image for the NUCLEO-F446RE.
 *
 * Main loop: feed RYLR998 bytes (from the UART4 ISR ring) to the line assembler and the node 1
 * state machine, run its timers, sleep until the next interrupt. The sampling callback
 * (node1_sensors_sample, app/node1.c, shared with the host simulator) reads the SHT3x (single
 * shot, high repeatability) and the BME680 (forced mode, 300 °C / 150 ms).
 */
#include "board.h"
#include "fwlog.h"
#include "linebuf.h"
#include "node1.h"

int main(void)
{
    static struct board board;
    static struct node1_sensors sensors;
    static struct node1 node;
    static struct linebuf lb;
    struct node1_config cfg;
    const struct fw_hal *hal = &board.hal;

    board_init(&board);
    linebuf_init(&lb);
    node1_sensors_init(&sensors, hal);
    node1_config_defaults(&cfg);
    node1_init(&node, &cfg, hal, node1_sensors_sample, NULL, &sensors);
    FW_INFO(hal, "Node 1 sensor node starting, RYLR998 on UART4");

    for (;;) {
        int c;
        while ((c = board_radio_getc(&board)) >= 0) {
            if (linebuf_push(&lb, (char)c)) {
                board_led_toggle();
                node1_on_line(&node, lb.buf, lb.len, hal->millis(hal->ctx));
            }
        }
        node1_poll(&node, hal->millis(hal->ctx));
        board_idle();
    }
}
