"""Power cuts at exact bytes of the C firmware's flash writes never lose the model.

The C firmware's host build (board/host) takes ``TWINPASS_FLASH_CRASH_AFTER=n``, as the
simulator does: it SIGKILLs itself once n bytes of flash have been erased or programmed
since it started, the bytes before the cut written. Each case starts it with a cut inside
one phase of a deploy of a new model over a confirmed old one — the boot record, the slot
erase, the image, the commit record, the confirm record — restarts it without a cut and
checks that it boots with the old model or (only when the cut came after the confirm
record) the new one, confirmed, its flash image intact, and that it still learns.
"""

from __future__ import annotations

import hashlib
import termios

import pytest
import serial
from sim_process import SimLink, SimProcess, needs_cc

from twinpass.protocol import model_image as mi
from twinpass.protocol.messages import MsgType, pack_array
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

pytestmark = needs_cc

SECTOR = 4096
SLOT = 256 * 1024  # board/host's default slot size
RECORD = SECTOR + 96  # a metadata record: its sector erased, then 96 bytes programmed
RULE = RuleConfig(**PAPER_NETWORK, lr=1e-2).resolve(1, 24, 1)


def image(seed: int) -> bytes:
    return mi.quantise(Params.init(1, 24, 1, seed=seed).arrays(), RULE)


OLD, NEW = image(1), image(2)
# Bytes written from a start to the end of each phase of deploying NEW (the boot writes
# one record; BEGIN erases the slot; CHUNKs program the image; COMMIT and CONFIRM write a
# record each).
BOOT = RECORD
ERASED = BOOT + SLOT
PROGRAMMED = ERASED + len(NEW)
COMMITTED = PROGRAMMED + RECORD
CONFIRMED = COMMITTED + RECORD
CUTS = {
    "boot record, mid-erase": 1000,
    "boot record, mid-program": SECTOR + 50,
    "slot erase": BOOT + SLOT // 2,
    "image, first byte": ERASED + 1,
    "image, mid-way": ERASED + len(NEW) // 2,
    "image, last byte": PROGRAMMED - 1,
    "commit record, mid-erase": PROGRAMMED + 10,
    "commit record, mid-program": PROGRAMMED + SECTOR + 48,
    "confirm record, mid-erase": COMMITTED + 10,
    "confirm record, mid-program": COMMITTED + SECTOR + 95,
    "after the confirm record": CONFIRMED,
}


def deploy(lk: SimLink, img: bytes) -> None:
    lk.deploy(img, shape=list(mi.parse(img).shape), chunk=1000)


@pytest.mark.parametrize("cut", list(CUTS), ids=list(CUTS))
def test_a_power_cut_anywhere_in_a_deploy_keeps_a_whole_confirmed_model(tmp_path, cut: str) -> None:
    flash = tmp_path / "flash.bin"
    sim = SimProcess(flash, [], None, "c")
    try:
        with SimLink(sim.path) as lk:
            lk.hello()
            deploy(lk, OLD)
        sim.stop()
        sim.restart({"TWINPASS_FLASH_CRASH_AFTER": str(CUTS[cut])})
        try:
            with SimLink(sim.path, timeout=1.0) as lk:
                lk.hello(retries=3)
                deploy(lk, NEW)
        except (TimeoutError, AssertionError, OSError, termios.error, serial.SerialException):
            pass  # the process died mid-way (a cut in the boot record: before we opened it)
        sim.proc.wait(10)  # it must have cut itself: every cut lies within the deploy
        assert sim.returncode == -9, f"no power cut at {cut}"
        sim.restart({"TWINPASS_FLASH_CRASH_AFTER": ""})
        with SimLink(sim.path) as lk:
            hello = lk.hello().payload
            want = mi.sha256(NEW) if cut == "after the confirm record" else mi.sha256(OLD)
            assert hello["model_hash"] == want and hello["model_state"] == "confirmed", cut
            got = lk.ok(MsgType.GET_MODEL, {"off": 0, "len": 1900, "source": "flash"})
            total, data = got["total"], got["data"]
            while len(data) < total:
                more = lk.ok(MsgType.GET_MODEL, {"off": len(data), "len": 1900, "source": "flash"})
                data += more["data"]
            assert hashlib.sha256(data).digest() == want
            step = {"t": 0, "x": pack_array([1 << 15], "int32"), "y": pack_array([0], "int32")}
            assert lk.ok(MsgType.STEP, step)["applied"] == 1
    finally:
        sim.stop()
