"""The real-board build (``build_arm.sh --real-flash``) under QEMU, as far as QEMU can show.

QEMU models no flash controller and its flash is ROM, so the STM32F4 flash driver cannot
succeed there: what can be checked is that the image a real board gets boots (startup,
clock detection, UART), answers HELLO with the budget of a real board's 128 KiB slots,
serves requests that need no flash, and answers a request that must write flash with
FLASH_FAIL instead of hanging or writing garbage.
"""

from __future__ import annotations

import hashlib
import os

from qemu_process import build_arm, start_qemu
from sim_process import SimLink, needs_qemu

from twinpass.firmware_sim.process import hold_pty_open
from twinpass.protocol import model_image as mi
from twinpass.protocol.messages import MsgType
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

pytestmark = needs_qemu


def test_the_real_board_image_boots_and_refuses_flash_writes_cleanly(tmp_path) -> None:
    elf = build_arm(tmp_path, real_flash=True)
    with start_qemu(elf) as qemu:
        held = hold_pty_open(qemu.path)
        try:
            with SimLink(qemu.path) as lk:
                hello = lk.hello().payload
                assert hello["board"].startswith("netduinoplus2")
                # 149: the RAM bound (150 before protocol 1.3 added the guard's vector and
                # the features' scratch), not the 30 KiB slots of the QEMU build (86).
                assert hello["caps"]["max_hidden"] == 149 and hello["model_state"] == "none"
                assert lk.ok(MsgType.PING, {}) == {}
                img = mi.quantise(
                    Params.init(1, 8, 1, seed=0).arrays(),
                    RuleConfig(**PAPER_NETWORK).resolve(1, 8, 1),
                )
                begin = {
                    "len": len(img),
                    "sha256": hashlib.sha256(img).digest(),
                    "shape": [1, 8, 1],
                }
                refused = lk.request(MsgType.DEPLOY_BEGIN, begin)
                assert refused.is_error and refused.payload["code"] == "FLASH_FAIL"
                assert lk.ok(MsgType.STATS, {})["rx_frames"] >= 3  # and it still serves
        finally:
            os.close(held)
