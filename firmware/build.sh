#!/bin/sh
# Build the host programs with the system C compiler:
#   twinpass_core_host  the core's test harness (host/twinpass_core_host.c)
#   twinpass_fw_host    the whole firmware (core, protocol, app) on the host board: a POSIX
#                       process serving the protocol on a pseudo-terminal (board/host)
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
warn="-std=c99 -pedantic -Wall -Wextra -Werror -Wshadow -Wconversion -Wsign-conversion \
-Wstrict-prototypes -Wmissing-prototypes"
core="$here/core/twinpass_core.c $here/core/image.c $here/core/prng.c $here/core/tanh_table.c \
$here/core/crc32.c $here/core/guard.c"
mkdir -p "$out"
# shellcheck disable=SC2086
"$cc" $warn $cflags ${EXTRA_CFLAGS:-} -I"$here/core" $core "$here/host/twinpass_core_host.c" \
    -o "$out/twinpass_core_host"
# shellcheck disable=SC2086
"$cc" $warn $cflags ${EXTRA_CFLAGS:-} -I"$here/core" -I"$here/proto" -I"$here/app" \
    -I"$here/board" $core "$here"/proto/*.c "$here"/app/*.c "$here/board/host/board_host.c" \
    -o "$out/twinpass_fw_host"
echo "$out/twinpass_core_host"
echo "$out/twinpass_fw_host"
