/*
 * board.h — board layer for QEMU's netduinoplus2 machine (an STM32F405, Cortex-M4F), the
 * emulated build of the node images.
 *
 * The STM32F405's USARTs sit at the F446's addresses with the same register layout and IRQ
 * numbers, so the UART code is the NUCLEO board's; what differs:
 *   clock   QEMU does not model RCC (reads as zero, so waiting for HSIRDY/PLLRDY would spin
 *           forever); the bring-up is skipped. The emulated core runs from QEMU's fixed
 *           168 MHz SYSCLK, which is also the SysTick processor clock.
 *   SysTick 1 kHz from 168 MHz; QEMU's virtual clock follows the host clock (no -icount), so
 *           one firmware millisecond is one real millisecond and the ACK timeouts, backoff and
 *           sampling period hold against the radio bridge running on the host.
 *   sensors QEMU has no I2C on this machine: the fw_hal I2C calls go to an emulated SHT3x at
 *           0x44 and BME680 at 0x76 inside the image (emu_sensors.h), fed by the host
 *           simulator's sensor model compiled for ARM; the firmware's drivers run unchanged on top.
 *   UARTs   UART4 = RYLR998 AT port (interrupt-driven receive into a ring, as on the board),
 *           USART2 = console: the log lines the real board prints on RTT up-channel 0
 *           ("INFO  telemetry {...}"), USART3 = data port (the bare telemetry lines USART2
 *           carries on the NUCLEO). QEMU maps -serial in order USART1, USART2, USART3, UART4.
 */
#ifndef FW_QEMU_BOARD_H
#define FW_QEMU_BOARD_H

#include <stdint.h>

#include "emu_sensors.h"
#include "hal.h"
#include "ring.h"

#define BOARD_SYSCLK_HZ 168000000u /* QEMU netduinoplus2 SYSCLK */

struct board {
    struct ring radio_rx; /* UART4 RX ISR -> main loop */
    volatile uint32_t ms; /* SysTick ISR */
    struct emu_sensors sensors;
    struct fw_hal hal;
};

/* Start SysTick, UARTs and the emulated sensors (model seed, SHT3x only or with BME680). */
void board_init(struct board *b, uint32_t seed, int with_bme);
/* Next byte from the RYLR998, or -1. */
int board_radio_getc(struct board *b);
/* Sleep until the next interrupt (SysTick at the latest, 1 ms). */
void board_idle(void);

#endif
