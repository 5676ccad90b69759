/*
 * regs.h — the few STM32F446 / Cortex-M4 registers this firmware touches.
 *
 * Written from RM0390 (STM32F446 reference manual) and the Cortex-M4 generic user guide, because
 * no vendor SDK is packaged in Debian. Only what board.c uses is here: RCC, FLASH, GPIO, USART,
 * I2C, SysTick, NVIC, SCB. Each peripheral is a struct overlaid on its base address; field
 * offsets are in the comments so they can be checked against the manual at a glance.
 */
#ifndef FW_STM32F446_REGS_H
#define FW_STM32F446_REGS_H

#include <stdint.h>

#define REG volatile uint32_t

/* ---- RCC (0x40023800) ------------------------------------------------------------------ */
struct rcc_regs {
    REG CR;       /* 0x00 */
    REG PLLCFGR;  /* 0x04 */
    REG CFGR;     /* 0x08 */
    REG CIR;      /* 0x0C */
    REG AHB1RSTR; /* 0x10 */
    REG AHB2RSTR; /* 0x14 */
    REG AHB3RSTR; /* 0x18 */
    REG rsv0;     /* 0x1C */
    REG APB1RSTR; /* 0x20 */
    REG APB2RSTR; /* 0x24 */
    REG rsv1[2];  /* 0x28 */
    REG AHB1ENR;  /* 0x30 */
    REG AHB2ENR;  /* 0x34 */
    REG AHB3ENR;  /* 0x38 */
    REG rsv2;     /* 0x3C */
    REG APB1ENR;  /* 0x40 */
    REG APB2ENR;  /* 0x44 */
};
#define RCC                 ((struct rcc_regs *)0x40023800u)
#define RCC_CR_HSION        (1u << 0)
#define RCC_CR_HSIRDY       (1u << 1)
#define RCC_CR_PLLON        (1u << 24)
#define RCC_CR_PLLRDY       (1u << 25)
#define RCC_CFGR_SW_PLL     2u
#define RCC_CFGR_SWS_MASK   (3u << 2)
#define RCC_CFGR_SWS_PLL    (2u << 2)
#define RCC_CFGR_PPRE1_DIV2 (4u << 10)
#define RCC_AHB1ENR_GPIOA   (1u << 0)
#define RCC_AHB1ENR_GPIOB   (1u << 1)
#define RCC_APB1ENR_USART2  (1u << 17)
#define RCC_APB1ENR_UART4   (1u << 19)
#define RCC_APB1ENR_I2C1    (1u << 21)
#define RCC_APB1ENR_PWR     (1u << 28)

/* ---- FLASH interface (0x40023C00) ------------------------------------------------------ */
struct flash_regs {
    REG ACR; /* 0x00 */
};
#define FLASH            ((struct flash_regs *)0x40023C00u)
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN   (1u << 9)
#define FLASH_ACR_DCEN   (1u << 10)

/* ---- GPIO (A: 0x40020000, B: 0x40020400) ----------------------------------------------- */
struct gpio_regs {
    REG MODER;   /* 0x00 2 bits/pin: 00 in, 01 out, 10 AF, 11 analog */
    REG OTYPER;  /* 0x04 1 = open drain */
    REG OSPEEDR; /* 0x08 */
    REG PUPDR;   /* 0x0C 01 pull-up */
    REG IDR;     /* 0x10 */
    REG ODR;     /* 0x14 */
    REG BSRR;    /* 0x18 */
    REG LCKR;    /* 0x1C */
    REG AFR[2];  /* 0x20 AFRL (pins 0-7), 0x24 AFRH (pins 8-15), 4 bits/pin */
};
#define GPIOA ((struct gpio_regs *)0x40020000u)
#define GPIOB ((struct gpio_regs *)0x40020400u)

/* ---- USART (USART2: 0x40004400, UART4: 0x40004C00) ------------------------------------- */
struct usart_regs {
    REG SR;  /* 0x00 */
    REG DR;  /* 0x04 */
    REG BRR; /* 0x08 */
    REG CR1; /* 0x0C */
    REG CR2; /* 0x10 */
    REG CR3; /* 0x14 */
};
#define USART2           ((struct usart_regs *)0x40004400u)
#define UART4            ((struct usart_regs *)0x40004C00u)
#define USART_SR_ORE     (1u << 3)
#define USART_SR_RXNE    (1u << 5)
#define USART_SR_TC      (1u << 6)
#define USART_SR_TXE     (1u << 7)
#define USART_CR1_RE     (1u << 2)
#define USART_CR1_TE     (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_CR1_UE     (1u << 13)

/* ---- I2C (I2C1: 0x40005400) ------------------------------------------------------------- */
struct i2c_regs {
    REG CR1;   /* 0x00 */
    REG CR2;   /* 0x04 FREQ<5:0> = APB1 MHz */
    REG OAR1;  /* 0x08 */
    REG OAR2;  /* 0x0C */
    REG DR;    /* 0x10 */
    REG SR1;   /* 0x14 */
    REG SR2;   /* 0x18 */
    REG CCR;   /* 0x1C */
    REG TRISE; /* 0x20 */
};
#define I2C1          ((struct i2c_regs *)0x40005400u)
#define I2C_CR1_PE    (1u << 0)
#define I2C_CR1_START (1u << 8)
#define I2C_CR1_STOP  (1u << 9)
#define I2C_CR1_ACK   (1u << 10)
#define I2C_CR1_POS   (1u << 11)
#define I2C_CR1_SWRST (1u << 15)
#define I2C_SR1_SB    (1u << 0)
#define I2C_SR1_ADDR  (1u << 1)
#define I2C_SR1_BTF   (1u << 2)
#define I2C_SR1_RXNE  (1u << 6)
#define I2C_SR1_TXE   (1u << 7)
#define I2C_SR1_BERR  (1u << 8)
#define I2C_SR1_ARLO  (1u << 9)
#define I2C_SR1_AF    (1u << 10)
#define I2C_SR2_BUSY  (1u << 1)

/* ---- Cortex-M4 core -------------------------------------------------------------------- */
struct systick_regs {
    REG CTRL; /* 0xE000E010 */
    REG LOAD;
    REG VAL;
    REG CALIB;
};
#define SYSTICK                ((struct systick_regs *)0xE000E010u)
#define SYSTICK_CTRL_ENABLE    (1u << 0)
#define SYSTICK_CTRL_TICKINT   (1u << 1)
#define SYSTICK_CTRL_CLKSOURCE (1u << 2) /* processor clock */

#define NVIC_ISER ((REG *)0xE000E100u)  /* 8 words, 1 bit per IRQ */
#define SCB_CPACR (*(REG *)0xE000ED88u) /* CP10/CP11 full access enables the FPU */

#define IRQ_USART2 38
#define IRQ_UART4  52
#define IRQ_COUNT  97 /* STM32F446: IRQ 0..96 */

static inline void nvic_enable(unsigned irq)
{
    NVIC_ISER[irq / 32] = 1u << (irq % 32);
}

#endif
