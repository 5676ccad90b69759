/*
 * startup.c — reset handler and vector table for the STM32F446 (no vendor startup code).
 *
 * Reset: enable the FPU (the code is built with -mfloat-abi=hard, so any FP instruction before
 * this would fault), copy .data from flash, zero .bss, run static constructors' C equivalent
 * (none), call main(). Unused interrupts go to a handler that parks the CPU so a debugger shows
 * where it is. Handlers the board uses are weak aliases overridden in board.c.
 */
#include <stdint.h>

#include "regs.h"

/* Linker script symbols (stm32f446.ld). */
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;

int main(void);
void Reset_Handler(void);

void Default_Handler(void)
{
    for (;;)
        __asm__ volatile("bkpt #0");
}

#define WEAK_ALIAS __attribute__((weak, alias("Default_Handler")))
void NMI_Handler(void) WEAK_ALIAS;
void HardFault_Handler(void) WEAK_ALIAS;
void MemManage_Handler(void) WEAK_ALIAS;
void BusFault_Handler(void) WEAK_ALIAS;
void UsageFault_Handler(void) WEAK_ALIAS;
void SVC_Handler(void) WEAK_ALIAS;
void DebugMon_Handler(void) WEAK_ALIAS;
void PendSV_Handler(void) WEAK_ALIAS;
void SysTick_Handler(void) WEAK_ALIAS;
void USART2_IRQHandler(void) WEAK_ALIAS;
void UART4_IRQHandler(void) WEAK_ALIAS;

typedef void (*vector_fn)(void);

/* Cortex-M vector table: initial SP, 15 system exceptions, then the STM32F446 IRQs. */
__attribute__((section(".isr_vector"), used)) static const vector_fn vectors[16 + IRQ_COUNT] = {
    [0] = (vector_fn)(uintptr_t)&_estack,
    [1] = Reset_Handler,
    [2] = NMI_Handler,
    [3] = HardFault_Handler,
    [4] = MemManage_Handler,
    [5] = BusFault_Handler,
    [6] = UsageFault_Handler,
    [11] = SVC_Handler,
    [12] = DebugMon_Handler,
    [14] = PendSV_Handler,
    [15] = SysTick_Handler,
    /* (GNU range designators; ranges must not overlap under -Werror=override-init) */
    [16 ... 16 + IRQ_USART2 - 1] = Default_Handler,
    [16 + IRQ_USART2] = USART2_IRQHandler,
    [16 + IRQ_USART2 + 1 ... 16 + IRQ_UART4 - 1] = Default_Handler,
    [16 + IRQ_UART4] = UART4_IRQHandler,
    [16 + IRQ_UART4 + 1 ... 16 + IRQ_COUNT - 1] = Default_Handler,
};

void Reset_Handler(void)
{
    SCB_CPACR |= 0xFu << 20; /* CP10 + CP11 full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");

    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;)
        *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;

    main();
    for (;;)
        ;
}
