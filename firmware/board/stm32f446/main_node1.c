/*
 * main_node1.c — node 1 (sensor node) image for the NUCLEO-F446RE.
 *
 * Main loop: feed RYLR998 bytes (from the UART4 ISR ring) to the line assembler and the node 1
 * state machine, run its timers, sleep until the next interrupt. The sampling callback reads
 * the SHT3x (single shot, high repeatability) and the BME680 (forced mode, 300 °C / 150 ms).
 */
#include "board.h"
#include "bme680.h"
#include "fwlog.h"
#include "linebuf.h"
#include "node1.h"
#include "sht3x.h"

struct app1 {
    struct board board;
    struct bme680_calib calib;
    int bme_ok;
};

static void sample(void *ud, struct rframe *f)
{
    struct app1 *a = ud;
    const struct fw_hal *hal = &a->board.hal;
    struct sht3x_reading r;
    uint32_t ohms = 0;

    if (sht3x_measure(hal, &r) < 0)
        r.has_t = r.has_h = false;
    f->flags = (uint8_t)((r.has_t ? 0 : RFRAME_NO_TEMP) | (r.has_h ? 0 : RFRAME_NO_HUM));
    f->t_x100 = r.t_x100;
    f->h_x100 = r.h_x100;
    if (!a->bme_ok)
        a->bme_ok = bme680_init(hal, &a->calib) == 0;   /* retried until the sensor answers */
    if (!a->bme_ok || bme680_measure_gas(hal, &a->calib, r.has_t ? r.t_x100 / 100 : 25, &ohms) < 0)
        f->flags |= RFRAME_NO_GAS;
    f->gas = ohms;
}

int main(void)
{
    static struct app1 app;
    static struct node1 node;
    static struct linebuf lb;
    struct node1_config cfg;
    const struct fw_hal *hal = &app.board.hal;

    board_init(&app.board);
    linebuf_init(&lb);
    node1_config_defaults(&cfg);
    node1_init(&node, &cfg, hal, sample, NULL, &app);
    FW_INFO(hal, "Node 1 sensor node starting, RYLR998 on UART4");

    for (;;) {
        int c;
        while ((c = board_radio_getc(&app.board)) >= 0) {
            if (linebuf_push(&lb, (char)c)) {
                board_led_toggle();
                node1_on_line(&node, lb.buf, lb.len, hal->millis(hal->ctx));
            }
        }
        node1_poll(&node, hal->millis(hal->ctx));
        board_idle();
    }
}
