/*
 * main_m4.c - the firmware's main loop on the Cortex-M4: bytes from CMSDK
 * APB UART0 (0x40004000; ARM CMSDK technical reference, "APB UART": DATA 0x0,
 * STATE 0x4 bit0 TX full / bit1 RX full, CTRL 0x8 bit0 TX enable / bit1 RX
 * enable, BAUDDIV 0x10) go to the device; responses go back the same way.
 * Polling, no interrupts: the host sends one request and waits for its answer.
 */
#include <stdint.h>

#include "device.h"

#define UART0 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0 + 0x0))
#define UART_STATE (*(volatile uint32_t *)(UART0 + 0x4))
#define UART_CTRL (*(volatile uint32_t *)(UART0 + 0x8))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0 + 0x10))
#define TX_FULL 1u
#define RX_FULL 2u

static void uart_send(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while (UART_STATE & TX_FULL)
            ;
        UART_DATA = data[i];
    }
}

int main(void)
{
    UART_BAUDDIV = 25000000u / 115200u; /* 25 MHz APB clock on MPS2 */
    UART_CTRL = 3u;
    ez_device_init(1);
    for (;;) {
        while (!(UART_STATE & RX_FULL))
            ;
        uint8_t c = (uint8_t)UART_DATA;
        ez_device_feed(&c, 1, uart_send);
    }
}
