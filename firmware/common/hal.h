/*
 * hal.h — the board interface the portable firmware code runs on.
 *
 * Why: the same sensor drivers and node state machines build for the STM32F446 board
 * (firmware/board/stm32f446/) and for the host simulator (firmware/board/host/), and unit tests
 * drive them with a fake board. Everything a driver needs from the hardware goes through this
 * table of function pointers; there is no global board state in portable code.
 *
 * Ownership: the board owns the struct and its ctx; portable code only borrows a const pointer.
 */
#ifndef FW_HAL_H
#define FW_HAL_H

#include <stddef.h>
#include <stdint.h>

struct fw_hal {
    void *ctx; /* board state, passed back to every call */
    /* Milliseconds since boot; wraps after ~49 days (compare with (int32_t)(a - b)). */
    uint32_t (*millis)(void *ctx);
    /* Busy/sleep wait; incoming UART bytes keep arriving into the ISR ring buffers meanwhile. */
    void (*delay_ms)(void *ctx, uint32_t ms);
    /* I2C master transfers with a 7-bit address; 0 or a negative errno (-EIO on NACK). */
    int (*i2c_write)(void *ctx, uint8_t addr, const uint8_t *buf, size_t len);
    int (*i2c_read)(void *ctx, uint8_t addr, uint8_t *buf, size_t len);
    /* Bytes to the RYLR998 UART (AT commands). */
    void (*radio_write)(void *ctx, const char *buf, size_t len);
    /* Debug console: SEGGER RTT up-channel 0 on the board, stdout/stderr on the host. */
    void (*console_write)(void *ctx, const char *buf, size_t len);
    /* Data output: the telemetry line only (USART2 on the board); may be NULL. */
    void (*data_write)(void *ctx, const char *buf, size_t len);
};

/* Signed difference a - b of two wrapping millisecond stamps. */
static inline int32_t fw_ms_diff(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b);
}

#endif
