/* Startup for the netduinoplus2 (STM32F405, Cortex-M4F): the vector table, Reset_Handler,
 * the fault handlers, and the four <string.h> functions GCC and the firmware call (the
 * build links with -nostdlib -lgcc: no C library).
 *
 * The vector table lives in its own section .isr_vector, which link.ld KEEPs at the start
 * of flash (0x08000000, aliased at 0 where the core fetches it on reset). If the section
 * were misplaced or dropped by --gc-sections, the CPU would load a garbage stack pointer
 * and reset vector and lock up without a word on the UART. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "board.h"

/* Linker script symbols (link.ld). Only their addresses are meaningful. */
extern uint32_t _estack;          /* top of the 128 KB SRAM: initial stack pointer */
extern uint32_t _sidata;          /* load address of .data in flash */
extern uint32_t _sdata, _edata;   /* .data in RAM */
extern uint32_t _sbss, _ebss;     /* .bss in RAM */

/* Handlers: Reset_Handler and the fault handlers are here; SysTick_Handler and
 * USART1_IRQHandler are in board.c (declared here and there, for -Wmissing-prototypes). */
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void);
void USART1_IRQHandler(void);
int main(void);

typedef void (*tp_handler)(void);

#define TP_N_IRQ 82 /* STM32F405/407: IRQ 0 (WWDG) .. IRQ 81 (FPU) */

/* Word 0 is the initial stack pointer, then exceptions 1..15, then IRQ 0..81. */
struct tp_vector_table {
    uint32_t *initial_sp;
    tp_handler exceptions[15];
    tp_handler irq[TP_N_IRQ];
};

#define D Default_Handler
#define D8 D, D, D, D, D, D, D, D

__attribute__((section(".isr_vector"), used)) const struct tp_vector_table tp_vectors = {
    &_estack,
    {
        Reset_Handler,     /*  1 Reset */
        Default_Handler,   /*  2 NMI */
        HardFault_Handler, /*  3 HardFault */
        HardFault_Handler, /*  4 MemManage (escalates to HardFault unless enabled) */
        HardFault_Handler, /*  5 BusFault */
        HardFault_Handler, /*  6 UsageFault */
        0, 0, 0, 0,        /*  7-10 reserved */
        Default_Handler,   /* 11 SVCall */
        Default_Handler,   /* 12 DebugMonitor */
        0,                 /* 13 reserved */
        Default_Handler,   /* 14 PendSV */
        SysTick_Handler,   /* 15 SysTick */
    },
    {
        D8, D8, D8, D8,    /* IRQ 0-31 */
        D, D, D, D, D,     /* IRQ 32-36 */
        USART1_IRQHandler, /* IRQ 37 USART1 */
        D, D,              /* IRQ 38-39 */
        D8, D8, D8, D8, D8, /* IRQ 40-79 */
        D, D,              /* IRQ 80-81 */
    },
};

#undef D
#undef D8

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)
#define SCB_AIRCR (*(volatile uint32_t *)0xE000ED0Cu)

void Reset_Handler(void)
{
    uint32_t *src, *dst;

    /* FPU: full access to CP10 and CP11, before anything could use a float register
     * (the firmware uses no float; -mfloat-abi=hard would still let GCC use s-registers). */
    SCB_CPACR |= 0xFu << 20;
    /* The table's own address (0x08000000): the reset value 0 reaches it only through the
     * boot alias, which a bootloader or BOOT pins may change. */
    SCB_VTOR = (uint32_t)(uintptr_t)&tp_vectors;
    __asm__ volatile("dsb\n\tisb" ::: "memory");

    for (src = &_sidata, dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
    (void)main();
    for (;;) {
        __asm__ volatile("wfi");
    }
}

/* board_init, then the firmware (which does not return). */
int main(void)
{
    board_init(0, NULL);
    tp_firmware_main();
    return 0;
}

/* An unexpected interrupt or exception: there is no one to report it to, so reset the
 * device (the host sees a reboot: HELLO's boot epoch changes) rather than hang. */
void Default_Handler(void)
{
    HardFault_Handler();
}

/* HardFault (and the escalated MemManage/BusFault/UsageFault): system reset. A fault
 * during boot therefore resets in a loop; attach gdb (qemu -s -S) to see where. */
void HardFault_Handler(void)
{
    __asm__ volatile("dsb" ::: "memory");
    SCB_AIRCR = 0x05FA0004u; /* VECTKEY | SYSRESETREQ */
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
    }
}

/* The C library functions GCC emits calls to (struct copies, zero-initialised locals,
 * loops it recognises) and the firmware calls, written plainly byte by byte: correct for
 * any alignment and overlap rule, small, and fast enough (the firmware copies kilobytes,
 * not megabytes). "no-tree-loop-distribute-patterns" stops GCC from recognising these
 * very loops as memcpy/memset and compiling them into calls to themselves. */
#define TP_NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))

TP_NO_LIBCALL void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n-- > 0) {
        *d++ = *s++;
    }
    return dst;
}

/* Overlap-safe: copies forwards when dst is below src, else backwards. */
TP_NO_LIBCALL void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if ((uintptr_t)d < (uintptr_t)s) {
        while (n-- > 0) {
            *d++ = *s++;
        }
    } else if ((uintptr_t)d > (uintptr_t)s) {
        while (n-- > 0) {
            d[n] = s[n];
        }
    }
    return dst;
}

TP_NO_LIBCALL void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    unsigned char v = (unsigned char)c;
    while (n-- > 0) {
        *d++ = v;
    }
    return dst;
}

/* Compares as unsigned char, as the C standard says. */
TP_NO_LIBCALL int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a, *q = b;
    for (; n > 0; n--, p++, q++) {
        if (*p != *q) {
            return *p < *q ? -1 : 1;
        }
    }
    return 0;
}
