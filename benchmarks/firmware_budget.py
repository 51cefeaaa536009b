"""RAM and flash budget of the C firmware per hidden size, for the netduinoplus2 build.

Builds the netduinoplus2 image (QEMU variant, and ``--real-flash`` for a real STM32F4
board), reads its section sizes with ``arm-none-eabi-size``, and prints per hidden size N
(1 input, 1 output, batch 1, D not stored) the bytes a model takes:

- RAM: what the firmware checks a model against (docs/protocol.md §7.3's ``ram_footprint``,
  an upper bound of the words the C core lays out) and the bytes the C core really lays
  out (``twinpass_core_host check``: its ``tp_model_words``), against the model arena (the
  128 KiB of RAM minus the firmware's 32 KiB: buffers, reply cache, stack);
- flash: the model image (``model_image.image_size``) against a slot (30 KiB emulated in
  RAM under QEMU, 128 KiB sectors on a real STM32F405), and the firmware's own code.

The network is the learner's as a device runs it (``--network learner``, the default:
RLS readout over [xh, u, 1], so B is N + 2 wide, P (N + 2)², and the guard's vector), the
same with the NLMS readout (``--network nlms``: no P) or the paper's (``--network paper``:
B over xh). Also prints the largest N that fits each budget.

    python benchmarks/firmware_budget.py [--sizes 16,32,64,86,128,150] [--network nlms|paper]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from twinpass.firmware_sim import c_firmware, ram
from twinpass.protocol import model_image as mi
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

RAM = 128 * 1024
ARENA = RAM - 32 * 1024  # firmware/app/device.h: TP_FIRMWARE_RESERVED
SLOT_QEMU = 30 * 1024
SLOT_BOARD = 128 * 1024


NETWORKS = {
    "learner": {"readout": "rls", "readout_p0": 10.0},
    "nlms": {"readout": "nlms"},
    "paper": PAPER_NETWORK,
}


def core_bytes(harness: Path, n: int, tmp: str, network: str) -> int:
    """RAM the C core lays out for a 1-N-1 model, batch 1: ``twinpass_core_host check``."""
    config = RuleConfig(**NETWORKS[network])
    path = Path(tmp) / f"model{n}.bin"
    params = Params.init(1, n, 1, seed=0, readout_inputs=config.readout_inputs).arrays()
    path.write_bytes(mi.quantise(params, config.resolve(1, n, 1)))
    out = subprocess.run(
        [str(harness), "check", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return int(re.search(r"ram_bytes batch 1 eval 1: (\d+)", out).group(1))


def sizes(elf: Path) -> tuple[int, int, int]:
    out = (
        subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True, check=True)
        .stdout.splitlines()[1]
        .split()
    )
    return int(out[0]), int(out[1]), int(out[2])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="16,32,64,86,100,128,150")
    ap.add_argument("--network", choices=sorted(NETWORKS), default="learner")
    args = ap.parse_args(argv)
    inputs = bool(RuleConfig(**NETWORKS[args.network]).readout_inputs)
    rls = RuleConfig(**NETWORKS[args.network]).readout == "rls"
    qemu = sizes(c_firmware.build_netduinoplus2())
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            ["sh", str(c_firmware.firmware_dir() / "build_arm.sh"), out, "--real-flash"],
            check=True,
            capture_output=True,
        )
        board = sizes(Path(out) / "twinpass-netduinoplus2.elf")
    cmd = "python benchmarks/firmware_budget.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    lines = [
        f"Command: `{cmd.strip()}`",
        "",
        f"Firmware image (arm-none-eabi-size, -O2): QEMU build text {qemu[0]:,} B, data "
        f"{qemu[1]:,} B, bss {qemu[2]:,} B; real-flash build text {board[0]:,} B, data "
        f"{board[1]:,} B, bss {board[2]:,} B (bss holds the {ARENA // 1024} KiB model arena).",
        "",
        "| N | RAM checked (B) | RAM used by the core (B) | fits the arena | image (B) | "
        "fits a QEMU slot | fits a board slot |",
        "|---|---|---|---|---|---|---|",
    ]
    harness = c_firmware.build_host().parent / "twinpass_core_host"  # build.sh makes both
    tmp = tempfile.mkdtemp(prefix="twinpass-budget-")
    for n in (int(s) for s in args.sizes.split(",")):
        checked = ram.ram_footprint(1, n, 1, readout_inputs=inputs, rls=rls)
        used = core_bytes(harness, n, tmp, args.network)
        image = mi.image_size(1, n, 1, False, inputs)
        yes = {True: "yes", False: "no"}
        lines.append(
            f"| {n} | {checked:,} | {used:,} | {yes[checked <= ARENA]} | {image:,} | "
            f"{yes[image <= SLOT_QEMU]} | {yes[image <= SLOT_BOARD]} |"
        )
    shutil.rmtree(tmp)
    fits_slot = {
        slot: max(n for n in range(1, 400) if mi.image_size(1, n, 1, False, inputs) <= slot)
        for slot in (SLOT_QEMU, SLOT_BOARD)
    }
    arena_n = ram.largest_hidden(ARENA, 1, 1, readout_inputs=inputs, rls=rls)
    lines += [
        "",
        f"Largest N ({args.network} network): RAM arena {arena_n}; QEMU board (arena and "
        f"30 KiB slot) {min(arena_n, fits_slot[SLOT_QEMU])}; STM32F405 (arena and 128 KiB "
        f"sector) {min(arena_n, fits_slot[SLOT_BOARD])}.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
