/* The board layer (board.h) for the netduinoplus2: STM32F405, Cortex-M4F, under
 * qemu-system-arm -M netduinoplus2 (QEMU 7.2 tested) and on real STM32F405/407 boards.
 *
 * Clock: no PLL set-up; the chip runs on its reset clock, the 16 MHz HSI (AHB = APB1 =
 *   APB2 = 16 MHz, flash 0 wait states). QEMU has no RCC model and clocks the CPU (and so
 *   SysTick) at 168 MHz whatever RCC says; board_init tells the two apart by RCC_CR's
 *   HSIRDY bit, which a real chip sets at reset and QEMU's unimplemented RCC reads as 0.
 *   Define BOARD_CPU_HZ to force a value.
 * UART: USART1 (0x40011000, IRQ 37), PA9 TX / PA10 RX (AF7), 115200 8N1 (BRR from
 *   16 MHz: 115108 baud, -0.08 %). RX: RXNE interrupt into a 4 KB ring. TX: straight into
 *   DR while the TX ring is empty and TXE is set, else into a 1 KB ring drained by the TXE
 *   interrupt. QEMU's USART transmits synchronously inside the DR write and always shows
 *   TXE, so under QEMU every byte takes the direct path and the ring stays empty (which
 *   matters: QEMU 7.2's model raises its IRQ for RXNE only, never for TXE; SysTick drains
 *   the ring as a fallback, should a byte ever be queued there).
 * Time: SysTick on the processor clock (CLKSOURCE = 1), 1 kHz interrupt.
 * Flash: -DBOARD_FLASH_RAM (the QEMU build: QEMU's flash is ROM) emulates the four
 *   regions in the 64 KB of SRAM QEMU maps above the chip's 128 KB; otherwise the STM32F4
 *   flash controller programs sectors 5-8 (see the flash section below). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "board.h"

/* Interrupt handlers (vector table in startup.c). */
void SysTick_Handler(void);
void USART1_IRQHandler(void);

#define REG(addr) (*(volatile uint32_t *)(addr))
#define REG8(addr) (*(volatile uint8_t *)(addr))

/* ---- Cortex-M4 core peripherals ---- */
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2) /* 1: processor clock (QEMU needs it, see README) */
#define NVIC_ISER(n) REG(0xE000E100u + 4u * (n))
#define NVIC_IPR8(irq) REG8(0xE000E400u + (irq))
#define SCB_ICSR REG(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SCB_AIRCR REG(0xE000ED0Cu)
#define SCB_SHPR3 REG(0xE000ED20u)

/* ---- STM32F405 peripherals (RM0090) ---- */
#define RCC_BASE 0x40023800u
#define RCC_CR REG(RCC_BASE + 0x00u)
#define RCC_CR_HSIRDY (1u << 1)
#define RCC_AHB1ENR REG(RCC_BASE + 0x30u)
#define RCC_APB2ENR REG(RCC_BASE + 0x44u)
#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_APB2ENR_USART1EN (1u << 4)

#define GPIOA_BASE 0x40020000u
#define GPIOA_MODER REG(GPIOA_BASE + 0x00u)
#define GPIOA_OSPEEDR REG(GPIOA_BASE + 0x08u)
#define GPIOA_PUPDR REG(GPIOA_BASE + 0x0Cu)
#define GPIOA_AFRH REG(GPIOA_BASE + 0x24u)

#define USART1_BASE 0x40011000u
#define USART1_IRQ 37u
#define USART_SR REG(USART1_BASE + 0x00u)
#define USART_DR REG(USART1_BASE + 0x04u)
#define USART_BRR REG(USART1_BASE + 0x08u)
#define USART_CR1 REG(USART1_BASE + 0x0Cu)
#define USART_CR2 REG(USART1_BASE + 0x10u)
#define USART_CR3 REG(USART1_BASE + 0x14u)
#define USART_SR_ERRORS 0x0Fu /* PE, FE, NF, ORE: cleared by reading SR then DR */
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TC (1u << 6)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_CR1_TXEIE (1u << 7)
#define USART_CR1_UE (1u << 13)

#define HSI_HZ 16000000u
#define QEMU_CPU_HZ 168000000u /* QEMU 7.2 netduinoplus2: SYSCLK_FRQ, SysTick's cpuclk */
#define BAUD 115200u

/* ---- interrupt masking ---- */
static uint32_t irq_save(void)
{
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    return primask;
}

static void irq_restore(uint32_t primask)
{
    __asm__ volatile("msr primask, %0" ::"r"(primask) : "memory");
}

/* ---- clock ---- */
static uint32_t cpu_hz = HSI_HZ;
static volatile uint32_t ticks_ms;

static uint32_t detect_cpu_hz(void)
{
#ifdef BOARD_CPU_HZ
    return BOARD_CPU_HZ;
#else
    return (RCC_CR & RCC_CR_HSIRDY) != 0 ? HSI_HZ : QEMU_CPU_HZ;
#endif
}

static void tx_poll(void);

void SysTick_Handler(void)
{
    ticks_ms++;
    tx_poll();
}

uint32_t board_millis(void)
{
    return ticks_ms;
}

uint32_t board_micros(void)
{
    uint32_t primask = irq_save();
    uint32_t ms = ticks_ms;
    uint32_t val = SYST_CVR;
    /* A wrap not yet counted (interrupts off here, or in a higher-priority handler): the
     * value read may be from before or after it, so read it again, now surely after. */
    if ((SCB_ICSR & SCB_ICSR_PENDSTSET) != 0) {
        val = SYST_CVR;
        ms++;
    }
    irq_restore(primask);
    return ms * 1000u + (SYST_RVR - val) / (cpu_hz / 1000000u);
}

/* ---- UART ---- */
#define RX_SIZE 4096u /* powers of two; indexes run freely and wrap */
#define TX_SIZE 1024u

static uint8_t rx_buf[RX_SIZE];
static volatile uint32_t rx_head, rx_tail; /* head: written by the ISR; tail: by readers */
static volatile uint32_t rx_dropped;       /* ring full or overrun (never under QEMU) */
static uint8_t tx_buf[TX_SIZE];
static volatile uint32_t tx_head, tx_tail; /* head: by writers; tail: by the ISR */

/* Move one queued byte into DR; call with interrupts masked (or from the ISR). */
static void tx_pump(void)
{
    if (tx_tail != tx_head) {
        USART_DR = tx_buf[tx_tail % TX_SIZE];
        tx_tail = tx_tail + 1u;
    }
    if (tx_tail == tx_head) {
        USART_CR1 &= ~USART_CR1_TXEIE;
    }
}

/* A fallback for USART models that never raise the TXE interrupt (QEMU 7.2's does not: its
 * IRQ follows RXNE only): every tick, move what the transmitter takes. Real hardware and
 * QEMU 7.2 (always TXE, so the ring stays empty) never need it. */
static void tx_poll(void)
{
    uint32_t primask = irq_save();
    while (tx_head != tx_tail && (USART_SR & USART_SR_TXE) != 0) {
        tx_pump();
    }
    irq_restore(primask);
}

void USART1_IRQHandler(void)
{
    uint32_t sr = USART_SR;
    if ((sr & (USART_SR_RXNE | USART_SR_ERRORS)) != 0) {
        uint8_t byte = (uint8_t)USART_DR; /* also clears ORE/FE/NF/PE */
        if ((sr & USART_SR_ERRORS) != 0) {
            rx_dropped = rx_dropped + 1u;
        }
        if ((sr & USART_SR_RXNE) != 0) {
            if (rx_head - rx_tail < RX_SIZE) {
                rx_buf[rx_head % RX_SIZE] = byte;
                rx_head = rx_head + 1u;
            } else {
                rx_dropped = rx_dropped + 1u;
            }
        }
    }
    if ((USART_CR1 & USART_CR1_TXEIE) != 0 && (sr & USART_SR_TXE) != 0) {
        tx_pump();
    }
}

size_t board_uart_read(uint8_t *buf, size_t max)
{
    size_t n = 0;
    uint32_t tail = rx_tail;
    uint32_t head = rx_head;
    while (n < max && tail != head) {
        buf[n++] = rx_buf[tail % RX_SIZE];
        tail++;
    }
    rx_tail = tail;
    return n;
}

void board_uart_write(const uint8_t *buf, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t primask = irq_save();
        if (tx_head == tx_tail && (USART_SR & USART_SR_TXE) != 0) {
            USART_DR = buf[i++]; /* nothing queued and the transmitter free */
        } else if (tx_head - tx_tail < TX_SIZE) {
            tx_buf[tx_head % TX_SIZE] = buf[i++];
            tx_head = tx_head + 1u;
            USART_CR1 |= USART_CR1_TXEIE;
        } else if ((USART_SR & USART_SR_TXE) != 0) {
            tx_pump(); /* full: drain by hand, so this works with interrupts off too */
        }
        irq_restore(primask);
    }
}

static void uart_drain(void)
{
    uint32_t spins;
    for (;;) {
        uint32_t primask = irq_save();
        int empty = tx_head == tx_tail;
        if (!empty && (USART_SR & USART_SR_TXE) != 0) {
            tx_pump();
        }
        irq_restore(primask);
        if (empty) {
            break;
        }
    }
    /* The last byte out of the shift register (about 87 us at 115200; bounded in case). */
    for (spins = 0; spins < 1000000u && (USART_SR & USART_SR_TC) == 0; spins++) {
    }
}

static void uart_init(void)
{
    /* Clocks and pins (ignored by QEMU, needed by the chip): PA9 TX, PA10 RX, AF7. */
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN;
    RCC_APB2ENR |= RCC_APB2ENR_USART1EN;
    (void)RCC_APB2ENR; /* read back: the clock is on before the first access (errata) */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18);      /* PA9, PA10: AF */
    GPIOA_OSPEEDR = (GPIOA_OSPEEDR & ~(0xFu << 18)) | (0x5u << 18);  /* medium speed */
    GPIOA_PUPDR = (GPIOA_PUPDR & ~(0xFu << 18)) | (0x4u << 18);      /* PA10 pull-up */
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFFu << 4)) | (0x77u << 4);        /* AF7 = USART1 */

    rx_head = rx_tail = 0;
    tx_head = tx_tail = 0;
    USART_CR1 = 0;
    /* USARTDIV = f / (16 * baud) in 12.4 fixed point (oversampling by 16), rounded. The
     * APB2 clock is the CPU clock here (no prescaler); QEMU ignores BRR. */
    USART_BRR = (cpu_hz + BAUD / 2u) / BAUD;
    USART_CR2 = 0; /* 1 stop bit */
    USART_CR3 = 0; /* no flow control, no DMA */
    USART_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;

    NVIC_IPR8(USART1_IRQ) = 0x40; /* above SysTick (0x80): bytes before ticks */
    NVIC_ISER(USART1_IRQ / 32u) = 1u << (USART1_IRQ % 32u);
}

void board_wait(void)
{
    /* Masked, so that a byte arriving between the check and the wfi still wakes it: a
     * pending interrupt ends wfi even with PRIMASK set, and runs once it is cleared. */
    uint32_t primask = irq_save();
    if (rx_head == rx_tail) {
        __asm__ volatile("dsb\n\twfi" ::: "memory");
    }
    irq_restore(primask);
}

void board_reset(void)
{
    uart_drain();
    __asm__ volatile("cpsid i\n\tdsb" ::: "memory");
    SCB_AIRCR = 0x05FA0004u; /* VECTKEY | SYSRESETREQ */
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
    }
}

const char *board_name(void)
{
    return "netduinoplus2 (STM32F405, Cortex-M4F)";
}

uint32_t board_ram_total(void)
{
    return 131072u;
}

/* ---- flash ---- */
#ifdef BOARD_FLASH_RAM

/* The QEMU build: QEMU's flash is ROM, so the regions live in the 64 KB of SRAM QEMU maps
 * above the chip's 128 KB (0x20020000-0x2002FFFF; link.ld keeps the firmware below).
 * RAM is not cleared by a system reset, so the content survives board_reset as real
 * flash would (the boot counter relies on it); it does not survive the QEMU process.
 * A cold boot is told by a magic word in .noinit (zero in QEMU's fresh RAM). */
#define FLASH_AREA 0x20020000u
static const uint32_t region_base[4] = {
    FLASH_AREA,                    /* META0  2 KB */
    FLASH_AREA + 0x0800u,          /* META1  2 KB */
    FLASH_AREA + 0x1000u,          /* SLOT0 30 KB */
    FLASH_AREA + 0x1000u + 0x7800u /* SLOT1 30 KB, to 0x20030000 */
};
static const uint32_t region_size[4] = {0x0800u, 0x0800u, 0x7800u, 0x7800u};

#define FLASH_RAM_MAGIC 0x46524D31u /* "FRM1" */
__attribute__((section(".noinit"))) static volatile uint32_t flash_ram_magic;

static void flash_init(void)
{
    if (flash_ram_magic != FLASH_RAM_MAGIC) {
        memset((void *)FLASH_AREA, 0xFF, 0x10000u);
        flash_ram_magic = FLASH_RAM_MAGIC;
    }
}

int board_flash_erase(int region)
{
    if (region < 0 || region > 3) {
        return -1;
    }
    memset((void *)region_base[region], 0xFF, region_size[region]);
    return 0;
}

int board_flash_program(int region, uint32_t off, const uint8_t *data, uint32_t len)
{
    uint8_t *p;
    uint32_t i;
    if (region < 0 || region > 3 || off > region_size[region] ||
        len > region_size[region] - off) {
        return -1;
    }
    p = (uint8_t *)region_base[region] + off;
    for (i = 0; i < len; i++) {
        p[i] = (uint8_t)(p[i] & data[i]); /* flash clears bits only */
    }
    return 0;
}

#else /* real STM32F405/407 flash */

/* The embedded flash interface (RM0090 section 3): sector erase and 32-bit programming
 * (PSIZE x32: needs VDD 2.7-3.6 V). Regions are whole 128 KB sectors 5-8; the firmware
 * itself must stay in sectors 0-4 (link.ld). The CPU stalls on any flash fetch while an
 * erase (1-2 s for 128 KB, 4 s max) or a program runs, and so do the interrupt handlers
 * (the vector table is in flash): UART bytes arriving meanwhile are lost beyond the one
 * in DR, so the host must wait for the reply to any request that writes flash. */
#define FLASH_IF 0x40023C00u
#define FLASH_ACR REG(FLASH_IF + 0x00u)
#define FLASH_KEYR REG(FLASH_IF + 0x04u)
#define FLASH_SR REG(FLASH_IF + 0x0Cu)
#define FLASH_CR REG(FLASH_IF + 0x10u)
#define FLASH_SR_BSY (1u << 16)
#define FLASH_SR_ERRORS 0xF2u /* PGSERR, PGPERR, PGAERR, WRPERR, OPERR (rc_w1) */
#define FLASH_SR_EOP (1u << 0)
#define FLASH_CR_PG (1u << 0)
#define FLASH_CR_SER (1u << 1)
#define FLASH_CR_MER (1u << 2)
#define FLASH_CR_SNB_SHIFT 3u
#define FLASH_CR_SNB_MASK (0xFu << 3)
#define FLASH_CR_PSIZE_MASK (3u << 8)
#define FLASH_CR_PSIZE_X32 (2u << 8)
#define FLASH_CR_STRT (1u << 16)
#define FLASH_CR_LOCK (1u << 31)
#define FLASH_KEY1 0x45670123u
#define FLASH_KEY2 0xCDEF89ABu
#define SECTOR_SIZE 0x20000u

static const uint32_t region_base[4] = {0x08020000u, 0x08040000u, 0x08060000u, 0x08080000u};
static const uint32_t region_size[4] = {SECTOR_SIZE, SECTOR_SIZE, SECTOR_SIZE, SECTOR_SIZE};
static const uint32_t region_sector[4] = {5u, 6u, 7u, 8u};

static void flash_init(void)
{
    /* Reset state is fine at 16 MHz: 0 wait states, caches off (FLASH_ACR = 0). With the
     * data cache off, reads through board_flash_ptr never see stale data after an erase.
     * Leave the controller locked; clear error flags left from before a reset. */
    FLASH_SR = FLASH_SR_ERRORS | FLASH_SR_EOP;
    FLASH_CR |= FLASH_CR_LOCK;
}

static int flash_wait(void)
{
    while ((FLASH_SR & FLASH_SR_BSY) != 0) {
    }
    return (FLASH_SR & FLASH_SR_ERRORS) != 0 ? -1 : 0;
}

static int flash_unlock(void)
{
    if ((FLASH_CR & FLASH_CR_LOCK) != 0) {
        FLASH_KEYR = FLASH_KEY1;
        FLASH_KEYR = FLASH_KEY2;
    }
    if ((FLASH_CR & FLASH_CR_LOCK) != 0) {
        return -1; /* a wrong key sequence locks it until the next reset */
    }
    (void)flash_wait();
    FLASH_SR = FLASH_SR_ERRORS | FLASH_SR_EOP;
    FLASH_CR = (FLASH_CR & ~(FLASH_CR_PSIZE_MASK | FLASH_CR_SNB_MASK | FLASH_CR_PG |
                             FLASH_CR_SER | FLASH_CR_MER)) |
               FLASH_CR_PSIZE_X32;
    return 0;
}

static void flash_lock(void)
{
    FLASH_CR = (FLASH_CR & ~(FLASH_CR_PG | FLASH_CR_SER | FLASH_CR_SNB_MASK)) | FLASH_CR_LOCK;
}

int board_flash_erase(int region)
{
    uint32_t i;
    int rc;
    const volatile uint32_t *w;
    if (region < 0 || region > 3) {
        return -1;
    }
    if (flash_unlock() != 0) {
        return -1;
    }
    FLASH_CR = (FLASH_CR & ~FLASH_CR_SNB_MASK) | FLASH_CR_SER |
               (region_sector[region] << FLASH_CR_SNB_SHIFT);
    FLASH_CR |= FLASH_CR_STRT;
    __asm__ volatile("dsb" ::: "memory");
    rc = flash_wait();
    flash_lock();
    if (rc != 0) {
        return -1;
    }
    w = (const volatile uint32_t *)region_base[region];
    for (i = 0; i < region_size[region] / 4u; i++) {
        if (w[i] != 0xFFFFFFFFu) {
            return -1;
        }
    }
    return 0;
}

/* Program one aligned word to want (already ANDed with the current content). */
static int flash_word(volatile uint32_t *addr, uint32_t want)
{
    int rc;
    if (*addr == want) {
        return 0; /* nothing to clear: no program cycle */
    }
    FLASH_CR |= FLASH_CR_PG;
    *addr = want;
    __asm__ volatile("dsb" ::: "memory");
    rc = flash_wait();
    FLASH_CR &= ~FLASH_CR_PG;
    if (rc != 0 || *addr != want) {
        return -1;
    }
    return 0;
}

int board_flash_program(int region, uint32_t off, const uint8_t *data, uint32_t len)
{
    uint32_t addr, end;
    int rc = 0;
    if (region < 0 || region > 3 || off > region_size[region] ||
        len > region_size[region] - off) {
        return -1;
    }
    if (len == 0) {
        return 0;
    }
    if (flash_unlock() != 0) {
        return -1;
    }
    addr = region_base[region] + off;
    end = addr + len;
    /* Word by word; a word only partly covered (unaligned start or end) keeps 0xFF (no
     * change) in the bytes outside [addr, end). Little-endian: byte k is bits 8k..8k+7. */
    while (addr < end && rc == 0) {
        uint32_t word_addr = addr & ~3u;
        volatile uint32_t *w = (volatile uint32_t *)word_addr;
        uint32_t mask = 0xFFFFFFFFu;
        uint32_t k;
        for (k = 0; k < 4u; k++) {
            uint32_t a = word_addr + k;
            if (a >= addr && a < end) {
                mask &= ~(0xFFu << (8u * k)) | ((uint32_t)data[a - (region_base[region] + off)]
                                                << (8u * k));
            }
        }
        rc = flash_word(w, *w & mask);
        addr = word_addr + 4u;
    }
    flash_lock();
    return rc;
}

#endif

const uint8_t *board_flash_ptr(int region)
{
    if (region < 0 || region > 3) {
        return NULL;
    }
    return (const uint8_t *)region_base[region];
}

uint32_t board_flash_size(int region)
{
    if (region < 0 || region > 3) {
        return 0;
    }
    return region_size[region];
}

/* ---- init ---- */
void board_init(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cpu_hz = detect_cpu_hz();
    ticks_ms = 0;
    rx_dropped = 0;
    uart_init();

    /* SysTick: 1 kHz on the processor clock. */
    SCB_SHPR3 = (SCB_SHPR3 & 0x00FFFFFFu) | (0x80u << 24);
    SYST_RVR = cpu_hz / 1000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE;

    flash_init();
    __asm__ volatile("cpsie i" ::: "memory");
}
