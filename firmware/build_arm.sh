#!/bin/sh
# Build the firmware image for the netduinoplus2 (STM32F405, Cortex-M4F) with arm-none-eabi-gcc.
#
#   firmware/build_arm.sh [OUT_DIR] [--real-flash]
#       (default OUT_DIR: $TMPDIR/twinpass-firmware-arm, /tmp without TMPDIR)
#
# Writes OUT_DIR/twinpass-netduinoplus2.elf, .bin (raw flash image from 0x08000000) and .map,
# prints arm-none-eabi-size and then the path of the .elf on the last line.
# Default: the QEMU build (-DBOARD_FLASH_RAM: flash regions emulated in RAM, as QEMU's flash
# is ROM). --real-flash: the STM32F4 flash controller (real boards; not testable in QEMU).
#
# Environment: CC (default arm-none-eabi-gcc), CFLAGS (default -O2), EXTRA_CFLAGS (appended),
# EXTRA_SOURCES (space-separated .c paths, added), APP (a .c path replacing firmware/app/*.c,
# e.g. APP=firmware/board/netduinoplus2/uart_echo.c for the board bring-up test).
# The warning flags are fixed: strict C99, every warning an error.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
board="$here/board/netduinoplus2"
out=""
flash_def="-DBOARD_FLASH_RAM"
for arg in "$@"; do
    case "$arg" in
        --real-flash) flash_def="" ;;
        -*) echo "build_arm.sh: unknown option $arg" >&2; exit 2 ;;
        *) out=$arg ;;
    esac
done
out=${out:-"${TMPDIR:-/tmp}/twinpass-firmware-arm"}
cc=${CC:-arm-none-eabi-gcc}
cross=${cc%gcc}
cflags=${CFLAGS:--O2}
mkdir -p "$out"

# Sources: every .c in core/ and proto/ (and app/, unless APP replaces it); a folder with no
# .c yet contributes nothing (the unmatched glob is skipped).
srcs=""
add_glob() {
    for f in "$1"/*.c; do
        [ -e "$f" ] && srcs="$srcs $f"
    done
    return 0
}
add_glob "$here/core"
add_glob "$here/proto"
if [ -n "${APP:-}" ]; then
    srcs="$srcs $APP"
else
    add_glob "$here/app"
fi
srcs="$srcs $board/startup.c $board/board.c ${EXTRA_SOURCES:-}"

elf="$out/twinpass-netduinoplus2.elf"
# shellcheck disable=SC2086
"$cc" -std=c99 -pedantic -Wall -Wextra -Werror -Wshadow -Wconversion \
    -Wsign-conversion -Wstrict-prototypes -Wmissing-prototypes \
    -ffreestanding -fno-builtin -nostdlib -nostartfiles \
    -mthumb -mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16 \
    -ffunction-sections -fdata-sections -g \
    $cflags ${EXTRA_CFLAGS:-} $flash_def \
    -I"$board/include" -I"$here/core" -I"$here/proto" -I"$here/board" -I"$here/app" \
    -T "$board/link.ld" -Wl,--gc-sections -Wl,-Map="$out/twinpass-netduinoplus2.map" \
    $srcs -lgcc -o "$elf"
"${cross}objcopy" -O binary "$elf" "$out/twinpass-netduinoplus2.bin"
"${cross}size" "$elf"
echo "$elf"
