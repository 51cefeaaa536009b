"""The file-backed flash: commits survive restarts, pending models revert, torn writes never
become active (power cut at every byte boundary, in process and by SIGKILL of a process)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twinpass.firmware_sim.flash import (
    CRASH_ENV,
    NO_SLOT,
    SECTOR,
    STATE_CONFIRMED,
    STATE_PENDING,
    Flash,
    FlashError,
    Storage,
)

SLOT = 2 * SECTOR


class PowerCut(Exception):
    pass


def _cut() -> None:
    raise PowerCut


def boot(path: Path, **kw) -> tuple[Storage, bytes | None, bool]:
    kw.setdefault("durable", False)
    st = Storage(Flash(path, slot_size=SLOT, **kw))
    res = st.boot()
    return st, res.image, res.reverted


def commit(st: Storage, image: bytes, *, pending: bool, chunk: int = 37) -> None:
    slot = st.begin(len(image))
    for off in range(0, len(image), chunk):
        st.write(slot, off, image[off : off + chunk])
    st.commit(slot, len(image), hashlib.sha256(image).digest(), pending=pending)


M1 = bytes(range(150)) + b"model one"
M2 = bytes(reversed(range(190))) + b"model two"


def test_a_committed_model_survives_restart_and_boots_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    st, image, _ = boot(path)
    assert image is None and st.boot_count == 1 and st.active == NO_SLOT
    commit(st, M1, pending=False)
    st.flash.close()
    st, image, reverted = boot(path)
    assert image == M1 and not reverted and st.boot_count == 2
    assert st.meta.state == STATE_CONFIRMED


def test_a_pending_model_reverts_at_the_next_boot_unless_confirmed(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    st, _, _ = boot(path)
    commit(st, M1, pending=False)
    commit(st, M2, pending=True)
    assert st.meta.state == STATE_PENDING and st.active_image() == M2
    st.flash.close()
    st, image, reverted = boot(path)
    assert image == M1 and reverted and st.meta.state == STATE_CONFIRMED
    commit(st, M2, pending=True)
    st.confirm()
    st.flash.close()
    st, image, reverted = boot(path)
    assert image == M2 and not reverted


def test_flash_semantics_erase_before_write(tmp_path: Path) -> None:
    st, _, _ = boot(tmp_path / "flash.bin")
    slot = st.begin(100)
    st.write(slot, 0, b"\x0f" * 10)
    with pytest.raises(FlashError, match="not erased"):
        st.write(slot, 0, b"\xf0" * 10)
    with pytest.raises(FlashError, match="slot size"):
        st.write(slot, SLOT - 1, b"ab")


def _write_calls(path: Path, action) -> list[tuple[int, int]]:
    """(bytes written before, size) of every raw write an action makes (a dry run)."""
    calls: list[tuple[int, int]] = []
    st, _, _ = boot(path)
    orig = st.flash._write

    def spy(addr: int, data: bytes) -> None:
        calls.append((st.flash.written, len(data)))
        orig(addr, data)

    st.flash._write = spy  # type: ignore[method-assign]
    action(st)
    st.flash.close()
    return calls


def _crash_points(calls: list[tuple[int, int]]) -> list[int]:
    """Every byte boundary of programming; a few points inside each sector erase."""
    points = set()
    for start, size in calls:
        if size >= SECTOR:
            points.update(start + k for k in (0, 1, size // 2, size - 1))
        else:
            points.update(range(start, start + size))
    return sorted(points)


def _crash_sweep(tmp_path: Path, base_action, action, allowed) -> int:
    base = tmp_path / "base.bin"
    st, _, _ = boot(base)
    base_action(st)
    st.flash.close()
    dry = tmp_path / "dry.bin"
    shutil.copy(base, dry)
    calls = _write_calls(dry, action)
    boot_bytes = calls[0][0] if calls else 0  # the boot's own record comes first
    for k in _crash_points(calls):
        work = tmp_path / "work.bin"
        shutil.copy(base, work)
        st = Storage(Flash(work, slot_size=SLOT, crash_after=k + 1, on_crash=_cut, durable=False))
        try:
            st.boot()
            action(st)
        except PowerCut:
            pass
        st.flash.close()
        st, image, _ = boot(work)
        assert image in allowed, f"power cut after {k + 1 - boot_bytes} bytes: {image!r:.40}"
        # The winning record describes the active slot exactly (sha256 checked at boot).
        if image is not None:
            assert hashlib.sha256(image).digest() == st.active_hash()
        st.flash.close()
    return len(calls)


def test_a_power_cut_at_any_byte_of_a_deploy_never_activates_a_torn_model(
    tmp_path: Path,
) -> None:
    def base(st: Storage) -> None:
        commit(st, M1, pending=False)

    # Committed pending: after any cut, the next boot runs M1 (M2 was pending or torn).
    _crash_sweep(tmp_path, base, lambda st: commit(st, M2, pending=True), {M1})
    # Committed confirmed (SAVE_MODEL): M1, or M2 once its record is complete; never torn.
    _crash_sweep(tmp_path, base, lambda st: commit(st, M2, pending=False), {M1, M2})


def test_a_power_cut_while_confirming_keeps_a_verified_model(tmp_path: Path) -> None:
    def base(st: Storage) -> None:
        commit(st, M1, pending=False)
        commit(st, M2, pending=True)

    # The base's boot reverted M2 already... so base keeps M2 pending only in RAM: redo it.
    def action(st: Storage) -> None:
        commit(st, M2, pending=True)
        st.confirm()

    _crash_sweep(tmp_path, base, action, {M1, M2})


def test_direct_corruption_of_the_newest_record_or_the_slot_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    st, _, _ = boot(path)
    commit(st, M1, pending=False)
    commit(st, M2, pending=False)
    _, sector = st.flash.current_meta()
    st.flash.close()
    raw = path.read_bytes()
    for i in range(0, 96):
        bad = bytearray(raw)
        bad[sector * SECTOR + i] ^= 0x04
        path.write_bytes(bytes(bad))
        st, image, _ = boot(path)
        # The older record (M1 active) wins; never a corrupted description of M2.
        assert image == M1, i
        st.flash.close()
    # A corrupted byte in the active slot: its sha256 fails, the model is not run.
    bad = bytearray(raw)
    st, _, _ = boot(tmp_path / "probe.bin")
    addr = st.flash.slot_addr(1) + 5
    st.flash.close()
    bad[addr] ^= 0xFF
    path.write_bytes(bytes(bad))
    st, image, _ = boot(path)
    assert image in (None, M1) and image != M2
    st.flash.close()


def _sigkill_during_commit(tmp_path: Path, after: int) -> tuple[bytes | None, int]:
    """A subprocess commits M2 (confirmed) over M1 and is SIGKILLed after `after` bytes."""
    path = tmp_path / "flash.bin"
    if path.exists():
        path.unlink()
    st, _, _ = boot(path)
    commit(st, M1, pending=False)
    st.flash.close()
    script = (
        "import sys, hashlib\n"
        "from twinpass.firmware_sim.flash import Flash, Storage\n"
        f"st = Storage(Flash(sys.argv[1], slot_size={SLOT}))\n"
        "st.boot()\n"
        f"img = {M2!r}\n"
        "slot = st.begin(len(img))\n"
        "for off in range(0, len(img), 64):\n"
        "    st.write(slot, off, img[off:off + 64])\n"
        "st.commit(slot, len(img), hashlib.sha256(img).digest(), pending=False)\n"
    )
    env = {**os.environ, CRASH_ENV: str(after)}
    proc = subprocess.run([sys.executable, "-c", script, str(path)], env=env, timeout=60)
    st, image, _ = boot(path)
    st.flash.close()
    return image, proc.returncode


BOOT_RECORD = SECTOR + 96  # each boot erases a metadata sector and programs a record
SLOT_ERASE = SECTOR  # M2 fits one sector


@pytest.mark.parametrize(
    "after",
    [
        BOOT_RECORD + 1,  # inside the slot erase
        BOOT_RECORD + SLOT_ERASE + 300,  # mid slot write
        BOOT_RECORD + SLOT_ERASE + len(M2) + SECTOR + 40,  # mid record write
    ],
    ids=["erase", "slot", "record"],
)
def test_sigkill_mid_write_never_activates_a_torn_model(tmp_path: Path, after: int) -> None:
    image, rc = _sigkill_during_commit(tmp_path, after)
    assert rc == -9  # it really died mid-write
    assert image == M1  # the record naming M2 was never completed


@pytest.mark.slow
def test_sigkill_at_many_points_of_a_commit(tmp_path: Path) -> None:
    total = BOOT_RECORD + SLOT_ERASE + len(M2) + BOOT_RECORD
    seen = set()
    for after in [*range(BOOT_RECORD + 1, total + 1, 97), total - 1, total, total + 1]:
        image, rc = _sigkill_during_commit(tmp_path, after)
        assert image in (M1, M2), after
        # Until the record's last byte is written, M1; then M2 (committed confirmed).
        assert image == (M2 if after >= total else M1), (after, rc)
        seen.add(image)
    assert seen == {M1, M2}
