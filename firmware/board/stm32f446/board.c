/*
 * board.c — NUCLEO-F446RE board layer (see board.h).
 *
 * Interrupt handlers cannot take arguments, so the board struct the ISRs fill is reached
 * through one file-static pointer set by board_init(); it is the only such pointer and nothing
 * outside this file can see it.
 */
#include "board.h"

#include <errno.h>

#include "regs.h"
#include "rtt.h"

static struct board *isr_board;

/* ---- clock ----------------------------------------------------------------------------- */

static void clock_init(void)
{
    RCC->CR |= RCC_CR_HSION;
    while (!(RCC->CR & RCC_CR_HSIRDY))
        ;
    /* 84 MHz needs 2 wait states at 2.7-3.6 V (RM0390 table 5); enable prefetch and caches. */
    FLASH->ACR = 2u | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN;
    /* PLL from HSI: VCO in = 16/16 = 1 MHz, VCO = 336 MHz, P = 4 -> 84 MHz, Q = 7 (48 MHz),
     * R = 2 (unused). PLLSRC (bit 22) = 0: HSI. */
    RCC->PLLCFGR = 16u | (336u << 6) | (1u << 16) | (7u << 24) | (2u << 28);
    RCC->CR |= RCC_CR_PLLON;
    while (!(RCC->CR & RCC_CR_PLLRDY))
        ;
    RCC->CFGR = RCC_CFGR_PPRE1_DIV2 | RCC_CFGR_SW_PLL; /* AHB /1, APB1 /2, APB2 /1 */
    while ((RCC->CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL)
        ;
}

/* ---- GPIO ------------------------------------------------------------------------------ */

static void pin_af(struct gpio_regs *port, unsigned pin, unsigned af, int open_drain)
{
    port->MODER = (port->MODER & ~(3u << (2 * pin))) | (2u << (2 * pin));
    port->OSPEEDR |= 2u << (2 * pin);
    if (open_drain) {
        port->OTYPER |= 1u << pin;
        port->PUPDR = (port->PUPDR & ~(3u << (2 * pin))) | (1u << (2 * pin));
    }
    port->AFR[pin / 8] =
        (port->AFR[pin / 8] & ~(0xFu << (4 * (pin % 8)))) | (af << (4 * (pin % 8)));
}

static void gpio_init(void)
{
    RCC->AHB1ENR |= RCC_AHB1ENR_GPIOA | RCC_AHB1ENR_GPIOB;
    pin_af(GPIOA, 2, 7, 0);                                   /* USART2 TX */
    pin_af(GPIOA, 3, 7, 0);                                   /* USART2 RX */
    pin_af(GPIOA, 0, 8, 0);                                   /* UART4 TX */
    pin_af(GPIOA, 1, 8, 0);                                   /* UART4 RX */
    pin_af(GPIOB, 8, 4, 1);                                   /* I2C1 SCL */
    pin_af(GPIOB, 9, 4, 1);                                   /* I2C1 SDA */
    GPIOA->MODER = (GPIOA->MODER & ~(3u << 10)) | (1u << 10); /* PA5 LED output */
}

void board_led_toggle(void)
{
    GPIOA->ODR ^= 1u << 5;
}

/* ---- SysTick ----------------------------------------------------------------------------- */

void SysTick_Handler(void)
{
    isr_board->ms++;
}

static uint32_t b_millis(void *ctx)
{
    return ((struct board *)ctx)->ms;
}

static void b_delay(void *ctx, uint32_t ms)
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

/* ---- USART ------------------------------------------------------------------------------ */

static void usart_init(struct usart_regs *u, uint32_t baud, int rx_irq)
{
    u->BRR = (BOARD_APB1_HZ + baud / 2) / baud; /* oversampling by 16 */
    u->CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | (rx_irq ? USART_CR1_RXNEIE : 0);
}

/* Blocking transmit from the main loop: 115200 baud is ~11.5 bytes/ms, and receive keeps
 * working meanwhile because it is interrupt driven. */
static void usart_write(struct usart_regs *u, const char *buf, size_t len)
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
        uint8_t c = (uint8_t)UART4->DR; /* reading SR then DR also clears ORE */
        ring_put(&isr_board->radio_rx, c);
    }
}

int board_radio_getc(struct board *b)
{
    uint8_t c;
    return ring_get(&b->radio_rx, &c) ? c : -1;
}

static void b_radio_write(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    usart_write(UART4, buf, len);
}

static void b_console_write(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    rtt_write(buf, len);
}

static void b_data_write(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    usart_write(USART2, buf, len);
}

/* ---- I2C1, polled master (RM0390 section 24.3.3) ---------------------------------------- */

#define I2C_SPIN 200000u /* ~10 ms at 84 MHz: far beyond any legal clock stretch */

static int i2c_wait(uint32_t flag)
{
    for (uint32_t n = 0; n < I2C_SPIN; n++) {
        uint32_t sr = I2C1->SR1;
        if (sr & flag)
            return 0;
        if (sr & (I2C_SR1_AF | I2C_SR1_BERR | I2C_SR1_ARLO)) {
            I2C1->SR1 = ~(I2C_SR1_AF | I2C_SR1_BERR | I2C_SR1_ARLO);
            I2C1->CR1 |= I2C_CR1_STOP;
            return -EIO;
        }
    }
    return -ETIMEDOUT;
}

static void i2c_init(void)
{
    RCC->APB1ENR |= RCC_APB1ENR_I2C1;
    I2C1->CR1 = I2C_CR1_SWRST;
    I2C1->CR1 = 0;
    I2C1->CR2 = BOARD_APB1_HZ / 1000000u;        /* FREQ = 42 */
    I2C1->CCR = BOARD_APB1_HZ / (2u * 100000u);  /* standard mode 100 kHz */
    I2C1->TRISE = BOARD_APB1_HZ / 1000000u + 1u; /* 1000 ns max rise time */
    I2C1->CR1 = I2C_CR1_PE;
}

/* START + address; on success ADDR is set but not yet cleared. */
static int i2c_start(uint8_t addr, int read)
{
    int rc;
    I2C1->CR1 |= I2C_CR1_START;
    if ((rc = i2c_wait(I2C_SR1_SB)) < 0)
        return rc;
    I2C1->DR = (uint32_t)(addr << 1) | (read ? 1u : 0u);
    return i2c_wait(I2C_SR1_ADDR);
}

static void i2c_clear_addr(void)
{
    (void)I2C1->SR1;
    (void)I2C1->SR2;
}

static int b_i2c_write(void *ctx, uint8_t addr, const uint8_t *buf, size_t len)
{
    int rc;
    (void)ctx;
    if ((rc = i2c_start(addr, 0)) < 0)
        goto fail;
    i2c_clear_addr();
    for (size_t i = 0; i < len; i++) {
        if ((rc = i2c_wait(I2C_SR1_TXE)) < 0)
            goto fail;
        I2C1->DR = buf[i];
    }
    if ((rc = i2c_wait(I2C_SR1_BTF)) < 0)
        goto fail;
    I2C1->CR1 |= I2C_CR1_STOP;
    return 0;
fail:
    I2C1->CR1 |= I2C_CR1_STOP;
    return rc;
}

/* Reception follows the reference manual's three cases so the NACK lands on the last byte. */
static int b_i2c_read(void *ctx, uint8_t addr, uint8_t *buf, size_t len)
{
    int rc;
    (void)ctx;
    if (len == 0)
        return 0;
    if (len == 2)
        I2C1->CR1 |= I2C_CR1_POS | I2C_CR1_ACK;
    else
        I2C1->CR1 = (I2C1->CR1 & ~I2C_CR1_POS) | (len > 2 ? I2C_CR1_ACK : 0);
    if (len == 1)
        I2C1->CR1 &= ~I2C_CR1_ACK;
    if ((rc = i2c_start(addr, 1)) < 0)
        goto fail;
    if (len == 1) {
        i2c_clear_addr();
        I2C1->CR1 |= I2C_CR1_STOP;
        if ((rc = i2c_wait(I2C_SR1_RXNE)) < 0)
            goto fail;
        buf[0] = (uint8_t)I2C1->DR;
    } else if (len == 2) {
        i2c_clear_addr();
        I2C1->CR1 &= ~I2C_CR1_ACK;
        if ((rc = i2c_wait(I2C_SR1_BTF)) < 0)
            goto fail;
        I2C1->CR1 |= I2C_CR1_STOP;
        buf[0] = (uint8_t)I2C1->DR;
        buf[1] = (uint8_t)I2C1->DR;
    } else {
        i2c_clear_addr();
        size_t i = 0;
        for (; i < len - 3; i++) {
            if ((rc = i2c_wait(I2C_SR1_RXNE)) < 0)
                goto fail;
            buf[i] = (uint8_t)I2C1->DR;
        }
        /* bytes N-3 in DR, N-2 in the shift register: NACK the last one */
        if ((rc = i2c_wait(I2C_SR1_BTF)) < 0)
            goto fail;
        I2C1->CR1 &= ~I2C_CR1_ACK;
        buf[i++] = (uint8_t)I2C1->DR;
        if ((rc = i2c_wait(I2C_SR1_BTF)) < 0)
            goto fail;
        I2C1->CR1 |= I2C_CR1_STOP;
        buf[i++] = (uint8_t)I2C1->DR;
        if ((rc = i2c_wait(I2C_SR1_RXNE)) < 0)
            goto fail;
        buf[i] = (uint8_t)I2C1->DR;
    }
    I2C1->CR1 &= ~I2C_CR1_POS;
    return 0;
fail:
    I2C1->CR1 = (I2C1->CR1 & ~(I2C_CR1_POS | I2C_CR1_ACK)) | I2C_CR1_STOP;
    return rc;
}

/* ---- bring-up --------------------------------------------------------------------------- */

void board_init(struct board *b)
{
    ring_init(&b->radio_rx);
    b->ms = 0;
    isr_board = b;

    clock_init();
    gpio_init();
    rtt_init();

    SYSTICK->LOAD = BOARD_SYSCLK_HZ / 1000u - 1u;
    SYSTICK->VAL = 0;
    SYSTICK->CTRL = SYSTICK_CTRL_CLKSOURCE | SYSTICK_CTRL_TICKINT | SYSTICK_CTRL_ENABLE;

    RCC->APB1ENR |= RCC_APB1ENR_USART2 | RCC_APB1ENR_UART4;
    usart_init(USART2, 115200, 0);
    usart_init(UART4, 115200, 1);
    nvic_enable(IRQ_UART4);
    i2c_init();

    b->hal = (struct fw_hal){.ctx = b,
                             .millis = b_millis,
                             .delay_ms = b_delay,
                             .i2c_write = b_i2c_write,
                             .i2c_read = b_i2c_read,
                             .radio_write = b_radio_write,
                             .console_write = b_console_write,
                             .data_write = b_data_write};
}
