/*
 * startup_m4.c - Cortex-M4F start-up for QEMU's mps2-an386 (and any Cortex-M4F
 * with the same layout): the vector table (initial stack pointer, reset
 * handler, fault handlers), the reset handler that enables the FPU
 * (CPACR CP10/CP11 full access, ARMv7-M ARM B3.2.20), copies .data from flash,
 * zeroes .bss and calls main. Symbols come from mps2_an386.ld.
 */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

#define CPACR (*(volatile uint32_t *)0xE000ED88u)

void Reset_Handler(void);
void Default_Handler(void);

__attribute__((naked, noreturn)) void Reset_Handler(void)
{
    __asm volatile(
        "ldr r0, =0xE000ED88\n"  /* CPACR: enable CP10, CP11 before any floating-point instruction */
        "ldr r1, [r0]\n"
        "orr r1, r1, #(0xF << 20)\n"
        "str r1, [r0]\n"
        "dsb\n"
        "isb\n"
        "b reset_c\n");
}

__attribute__((noreturn, used)) void reset_c(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;
    main();
    for (;;)
        ;
}

void Default_Handler(void)
{
    for (;;)
        ;
}

__attribute__((section(".isr_vector"), used)) void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack),
    Reset_Handler,
    Default_Handler, /* NMI */
    Default_Handler, /* HardFault */
    Default_Handler, /* MemManage */
    Default_Handler, /* BusFault */
    Default_Handler, /* UsageFault */
    0, 0, 0, 0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMonitor */
    0,
    Default_Handler, /* PendSV */
    Default_Handler, /* SysTick */
};
