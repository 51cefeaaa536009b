#!/bin/sh
# Build the host harness twinpass_core_host with the system C compiler.
#
#   firmware/build.sh [OUT_DIR]    (default: $TMPDIR/twinpass-firmware-host, /tmp without TMPDIR)
#
# Environment: CC (default cc), CFLAGS (default -O2), EXTRA_CFLAGS (appended, e.g.
# "-fsanitize=undefined,address -fno-sanitize-recover=all -g" for the sanitizer build).
# The warning flags are fixed: strict C99, every warning an error.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"${TMPDIR:-/tmp}/twinpass-firmware-host"}
cc=${CC:-cc}
cflags=${CFLAGS:--O2}
mkdir -p "$out"
# shellcheck disable=SC2086
"$cc" -std=c99 -pedantic -Wall -Wextra -Werror -Wshadow -Wconversion \
    -Wsign-conversion -Wstrict-prototypes -Wmissing-prototypes \
    $cflags ${EXTRA_CFLAGS:-} -I"$here/core" \
    "$here/core/twinpass_core.c" "$here/core/image.c" "$here/core/prng.c" \
    "$here/core/tanh_table.c" "$here/core/crc32.c" "$here/host/twinpass_core_host.c" \
    -o "$out/twinpass_core_host"
echo "$out/twinpass_core_host"
