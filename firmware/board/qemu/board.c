/*
 * board.c — netduinoplus2 (QEMU) board layer (see board.h).
 *
 * Interrupt handlers cannot take arguments, so the board struct the ISRs fill is reached
 * through one file-static pointer set by board_init(), as on the NUCLEO board.
 */
#include "board.h"

#include "regs.h"

#define USART3 ((struct usart_regs *)0x40004800u)

static struct board *isr_board;

/* ---- SysTick ------------------------------------------------------------------------------ */

void SysTick_Handler(void)
{
    isr_board->ms++;
}

static uint32_t qb_millis(void *ctx)
{
    return ((struct board *)ctx)->ms;
}

static void qb_delay(void *ctx, uint32_t ms)
{
    struct board *b = ctx;
    uint32_t start = b->ms;
    while (b->ms - start < ms + 1) /* +1: the first tick may come at once */
        __asm__ volatile("wfi");
}

void board_idle(void)
{
    __asm__ volatile("wfi");
}

/* ---- USART -------------------------------------------------------------------------------- */

static void qb_usart_init(struct usart_regs *u, uint32_t baud, int rx_irq)
{
    /* Ignored by QEMU (bytes move at chardev speed) but correct for a real F405 at 42 MHz APB1. */
    u->BRR = (42000000u + baud / 2) / baud;
    u->CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | (rx_irq ? USART_CR1_RXNEIE : 0);
}

static void qb_usart_write(struct usart_regs *u, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        while (!(u->SR & USART_SR_TXE))
            ;
        u->DR = (uint8_t)buf[i];
    }
}

void UART4_IRQHandler(void)
{
    uint32_t sr = UART4->SR;
    if (sr & (USART_SR_RXNE | USART_SR_ORE)) {
        uint8_t c = (uint8_t)UART4->DR;
        ring_put(&isr_board->radio_rx, c);
    }
}

int board_radio_getc(struct board *b)
{
    uint8_t c;
    return ring_get(&b->radio_rx, &c) ? c : -1;
}

static void qb_radio_write(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    qb_usart_write(UART4, buf, len);
}

static void qb_console_write(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    qb_usart_write(USART2, buf, len);
}

static void qb_data_write(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    qb_usart_write(USART3, buf, len);
}

/* ---- emulated I2C devices ----------------------------------------------------------------- */

static int qb_i2c_write(void *ctx, uint8_t addr, const uint8_t *buf, size_t len)
{
    struct board *b = ctx;
    return emu_sensors_write(&b->sensors, (double)b->ms / 1000.0, addr, buf, len);
}

static int qb_i2c_read(void *ctx, uint8_t addr, uint8_t *buf, size_t len)
{
    struct board *b = ctx;
    return emu_sensors_read(&b->sensors, addr, buf, len);
}

/* ---- bring-up ----------------------------------------------------------------------------- */

void board_init(struct board *b, uint32_t seed, int with_bme)
{
    ring_init(&b->radio_rx);
    b->ms = 0;
    isr_board = b;
    emu_sensors_init(&b->sensors, seed, with_bme != 0);

    /* No clock_init(): QEMU's RCC is an unimplemented region reading as zero, so the HSIRDY /
     * PLLRDY waits of the NUCLEO bring-up would never end. SYSCLK is QEMU's fixed 168 MHz.
     * The enable bits are still written (ignored here, needed on a real F405). */
    RCC->APB1ENR |= RCC_APB1ENR_USART2 | RCC_APB1ENR_UART4 | (1u << 18) /* USART3EN */;

    SYSTICK->LOAD = BOARD_SYSCLK_HZ / 1000u - 1u;
    SYSTICK->VAL = 0;
    SYSTICK->CTRL = SYSTICK_CTRL_CLKSOURCE | SYSTICK_CTRL_TICKINT | SYSTICK_CTRL_ENABLE;

    qb_usart_init(USART2, 115200, 0);
    qb_usart_init(USART3, 115200, 0);
    qb_usart_init(UART4, 115200, 1);
    nvic_enable(IRQ_UART4);

    b->hal = (struct fw_hal){.ctx = b,
                             .millis = qb_millis,
                             .delay_ms = qb_delay,
                             .i2c_write = qb_i2c_write,
                             .i2c_read = qb_i2c_read,
                             .radio_write = qb_radio_write,
                             .console_write = qb_console_write,
                             .data_write = qb_data_write};
}
