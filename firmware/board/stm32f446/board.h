/*
 * board.h — NUCLEO-F446RE board layer: clock, SysTick, GPIO, USART2/UART4, I2C1, RTT.
 *
 * Pins (NUCLEO-F446RE):
 *   PA2/PA3  USART2 TX/RX (AF7)  — ST-LINK virtual COM port: the bare telemetry lines
 *   PA0/PA1  UART4 TX/RX (AF8)   — RYLR998 (its TXD -> PA1, RXD <- PA0), 115200 8N1
 *   PB8/PB9  I2C1 SCL/SDA (AF4, open drain) — SHT3x 0x44, BME680 0x76, 100 kHz
 *   PA5      user LED LD2 (toggled per radio line)
 * Clock: HSI 16 MHz -> PLL (M=16, N=336, P=4) = 84 MHz SYSCLK, APB1 42 MHz, APB2 84 MHz.
 *
 * Interrupt handlers only move bytes: UART4 RX -> ring buffer, SysTick -> millisecond counter.
 * Everything else runs in the main loop through the fw_hal table.
 */
#ifndef FW_STM32_BOARD_H
#define FW_STM32_BOARD_H

#include <stdint.h>

#include "hal.h"
#include "ring.h"

#define BOARD_SYSCLK_HZ 84000000u
#define BOARD_APB1_HZ   42000000u

struct board {
    struct ring radio_rx; /* UART4 RX ISR -> main loop */
    volatile uint32_t ms; /* SysTick ISR */
    struct fw_hal hal;
};

/* Bring up clocks, SysTick, pins, UARTs, I2C and RTT; fill b->hal. */
void board_init(struct board *b);
/* Next byte from the RYLR998, or -1. */
int board_radio_getc(struct board *b);
/* Sleep until the next interrupt (SysTick at the latest, 1 ms). */
void board_idle(void);
void board_led_toggle(void);

#endif
