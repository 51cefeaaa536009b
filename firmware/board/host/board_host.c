/* The host board: the portable firmware as a POSIX process, for tests and for trying the
 * firmware without a microcontroller. Its UART is a pseudo-terminal whose path it prints
 * on the first line of stdout (as the Python simulator does), its flash a file with the
 * simulator's layout (docs/protocol.md section 8: two 4 KiB metadata sectors, then two
 * slots), so both can boot from the same flash file.
 *
 *   twinpass_fw_host [--flash FILE] [--slot-size BYTES]
 *
 * Without --flash the flash is a temporary file, removed at exit. SIGTERM or SIGINT end
 * it with status 0. TWINPASS_FLASH_CRASH_AFTER=n (tests only) SIGKILLs the process after
 * n bytes of flash were erased or programmed, the bytes before the cut written: a power
 * cut at an exact byte, as in the simulator. RESET device restarts the firmware from its
 * entry point on the same pty (the flash file keeps what was written). */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "board.h"

#define SECTOR 4096u

static int master = -1;
static uint8_t *flash;
static size_t flash_size;
static uint32_t slot_size = 256u * 1024u;
static long long crash_after = -1, written;
static struct timespec t_boot;
static jmp_buf reboot;
static char tmp_path[64];
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void die(const char *what)
{
    fprintf(stderr, "twinpass_fw_host: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void open_pty(void)
{
    struct termios tio;
    const char *name;
    int slave;
    master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 ||
        (name = ptsname(master)) == NULL) {
        die("cannot open a pseudo-terminal");
    }
    /* Keep a slave descriptor open for good: without one, the master reads EIO whenever
     * no host has the port open. Raw mode: the protocol is binary. */
    slave = open(name, O_RDWR | O_NOCTTY);
    if (slave < 0 || tcgetattr(slave, &tio) != 0) {
        die("cannot open the pty's slave side");
    }
    tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    tio.c_oflag &= ~(tcflag_t)OPOST;
    tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    tio.c_cflag |= CS8;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (tcsetattr(slave, TCSANOW, &tio) != 0) {
        die("cannot set the pty to raw mode");
    }
    if (fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK) != 0) {
        die("cannot make the pty non-blocking");
    }
    printf("%s\n", name);
    fflush(stdout);
}

static void open_flash(const char *path)
{
    struct stat st;
    int fd;
    flash_size = 2u * SECTOR + 2u * (size_t)slot_size;
    if (path == NULL) {
        snprintf(tmp_path, sizeof tmp_path, "/tmp/twinpass-fw-flash-XXXXXX");
        fd = mkstemp(tmp_path);
    } else {
        fd = open(path, O_RDWR | O_CREAT, 0644);
    }
    if (fd < 0 || fstat(fd, &st) != 0) {
        die("cannot open the flash file");
    }
    if ((size_t)st.st_size < flash_size) {
        /* A new (or shorter) image: the missing part is erased flash. */
        uint8_t blank[SECTOR];
        size_t at = (size_t)st.st_size;
        memset(blank, 0xFF, sizeof blank);
        while (at < flash_size) {
            size_t k = flash_size - at < SECTOR ? flash_size - at : SECTOR;
            if (pwrite(fd, blank, k, (off_t)at) != (ssize_t)k) {
                die("cannot extend the flash file");
            }
            at += k;
        }
        fsync(fd);
    }
    flash = mmap(NULL, flash_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (flash == MAP_FAILED) {
        die("cannot map the flash file");
    }
    close(fd);
}

static void cleanup(void)
{
    if (tmp_path[0] != '\0') {
        unlink(tmp_path);
    }
}

int main(int argc, char **argv)
{
    board_init(argc, argv);
    setjmp(reboot); /* board_reset comes back here */
    clock_gettime(CLOCK_MONOTONIC, &t_boot);
    tp_firmware_main();
    return 0;
}

void board_init(int argc, char **argv)
{
    const char *flash_path = NULL, *env;
    struct sigaction sa;
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--flash") == 0 && i + 1 < argc) {
            flash_path = argv[++i];
        } else if (strcmp(argv[i], "--slot-size") == 0 && i + 1 < argc) {
            long v = strtol(argv[++i], NULL, 10);
            if (v < 4096 || v > (64L << 20) || v % SECTOR != 0) {
                fprintf(stderr, "twinpass_fw_host: --slot-size must be a multiple of 4096 "
                                "in [4096, 64 MiB]\n");
                exit(2);
            }
            slot_size = (uint32_t)v;
        } else {
            fprintf(stderr, "usage: twinpass_fw_host [--flash FILE] [--slot-size BYTES]\n");
            exit(2);
        }
    }
    env = getenv("TWINPASS_FLASH_CRASH_AFTER");
    if (env != NULL && *env != '\0') {
        crash_after = atoll(env);
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    atexit(cleanup);
    open_flash(flash_path);
    open_pty();
}

size_t board_uart_read(uint8_t *buf, size_t max)
{
    ssize_t n = read(master, buf, max);
    if (stop) {
        exit(0);
    }
    return n > 0 ? (size_t)n : 0;
}

void board_uart_write(const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(master, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return; /* the line is gone: drop the bytes, as a UART would */
        } else {
            struct pollfd p = {master, POLLOUT, 0};
            poll(&p, 1, 100);
            if (stop) {
                exit(0);
            }
        }
    }
}

void board_wait(void)
{
    struct pollfd p = {master, POLLIN, 0};
    poll(&p, 1, 200);
    if (stop) {
        exit(0);
    }
}

static uint64_t micros_since_boot(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)(now.tv_sec - t_boot.tv_sec) * 1000000u +
           (uint64_t)((now.tv_nsec - t_boot.tv_nsec) / 1000);
}

uint32_t board_millis(void)
{
    return (uint32_t)(micros_since_boot() / 1000u);
}

uint32_t board_micros(void)
{
    return (uint32_t)micros_since_boot();
}

void board_reset(void)
{
    tcdrain(master);
    longjmp(reboot, 1);
}

const char *board_name(void)
{
    return "host (POSIX process on a pty)";
}

uint32_t board_ram_total(void)
{
    return 128u * 1024u; /* the target's RAM: the host build keeps the device's budget */
}

static size_t region_off(int region)
{
    switch (region) {
    case BOARD_FLASH_META0: return 0;
    case BOARD_FLASH_META1: return SECTOR;
    case BOARD_FLASH_SLOT0: return 2u * SECTOR;
    default: return 2u * SECTOR + slot_size;
    }
}

uint32_t board_flash_size(int region)
{
    if (region < BOARD_FLASH_META0 || region > BOARD_FLASH_SLOT1) {
        return 0;
    }
    return region <= BOARD_FLASH_META1 ? SECTOR : slot_size;
}

const uint8_t *board_flash_ptr(int region)
{
    return board_flash_size(region) ? flash + region_off(region) : NULL;
}

/* Store bytes (erase: 0xFF; program: AND) with the power-cut injection of the tests. */
static int store(size_t at, const uint8_t *data, size_t len, int erase)
{
    size_t k, n = len;
    if (crash_after >= 0 && written + (long long)len >= crash_after) {
        n = crash_after > written ? (size_t)(crash_after - written) : 0;
    }
    for (k = 0; k < n; k++) {
        flash[at + k] = erase ? 0xFFu : (uint8_t)(flash[at + k] & data[k]);
    }
    {   /* durable before the next operation, as the simulator's fsync */
        size_t page = (size_t)sysconf(_SC_PAGESIZE), first = at / page * page;
        if (msync(flash + first, at + len - first, MS_SYNC) != 0) {
            return -1;
        }
    }
    if (n < len || (crash_after >= 0 && written + (long long)len >= crash_after)) {
        kill(getpid(), SIGKILL);
    }
    written += (long long)len;
    return 0;
}

int board_flash_erase(int region)
{
    uint32_t size = board_flash_size(region), at;
    if (size == 0) {
        return -1;
    }
    for (at = 0; at < size; at += SECTOR) { /* a sector at a time, like a real erase */
        if (store(region_off(region) + at, NULL, SECTOR, 1) != 0) {
            return -1;
        }
    }
    return 0;
}

int board_flash_program(int region, uint32_t off, const uint8_t *data, uint32_t len)
{
    uint32_t size = board_flash_size(region);
    if (size == 0 || off > size || len > size - off) {
        return -1;
    }
    return store(region_off(region) + off, data, len, 0);
}
