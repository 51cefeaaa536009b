"""A file-backed flash image: two model slots and a double-buffered metadata record.

Layout of the file (docs/protocol.md §8): two metadata sectors of ``SECTOR`` bytes, then
slot 0 and slot 1 of ``slot_size`` bytes each. Flash semantics are simulated: erasing sets
a region to 0xFF, programming can only clear bits (programming a byte that is not erased
to a value it cannot reach is a :class:`FlashError`), and ``sync`` is an fsync.

Crash safety, the rule the C firmware follows too:

1. a model is written to the *inactive* slot (erased first) and fsynced;
2. only then is a metadata record written, with a sequence number one higher than the
   current one, into the *other* metadata sector (erase, program, fsync);
3. at boot, the valid record (magic and CRC32 correct) with the highest sequence number
   wins, and the active slot's sha256 is checked against the record.

A torn slot write leaves the old record in force; a torn record write leaves a sector with
a bad CRC, so the other (older) record wins. Either way the old model stays active.
A model committed *pending* that is not confirmed before the next boot reverts to the
fallback slot at that boot. Every boot writes a record with the boot counter incremented:
that counter is the protocol's boot epoch.

For tests, ``crash_after`` (or the environment variable ``TWINPASS_FLASH_CRASH_AFTER``)
cuts the power after that many bytes have been programmed or erased in total: the bytes
before the cut reach the file, then ``on_crash`` runs (default: SIGKILL of this process;
in-process tests pass one that raises).
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from twinpass.core.errors import DeviceError

SECTOR = 4096
DEFAULT_SLOT_SIZE = 256 * 1024
META = struct.Struct("<4sHHIIBBBBI32sI32s")
META_MAGIC = b"TPMD"
META_VERSION = 1
NO_SLOT = 0xFF
STATE_NONE, STATE_CONFIRMED, STATE_PENDING = 0, 1, 2
STATE_NAMES = {STATE_NONE: "none", STATE_CONFIRMED: "confirmed", STATE_PENDING: "pending"}
CRASH_ENV = "TWINPASS_FLASH_CRASH_AFTER"


def _power_cut() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class FlashError(DeviceError):
    """The flash image cannot be read or written as asked (the device's FLASH_FAIL)."""


@dataclass(frozen=True)
class Meta:
    """One metadata record."""

    seq: int = 0
    boot_count: int = 0
    active: int = NO_SLOT
    state: int = STATE_NONE
    fallback: int = NO_SLOT
    lens: tuple[int, int] = (0, 0)
    hashes: tuple[bytes, bytes] = (b"\0" * 32, b"\0" * 32)

    def pack(self) -> bytes:
        body = META.pack(
            META_MAGIC, META_VERSION, 0, self.seq, self.boot_count,
            self.active, self.state, self.fallback, 0,
            self.lens[0], self.hashes[0], self.lens[1], self.hashes[1],
        )  # fmt: skip
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def unpack(cls, raw: bytes) -> Meta | None:
        """The record in ``raw``, or None if it is blank, torn or corrupted."""
        size = META.size + 4
        if len(raw) < size:
            return None
        body, (crc,) = raw[: META.size], struct.unpack_from("<I", raw, META.size)
        if zlib.crc32(body) != crc:
            return None
        (magic, version, _r, seq, boots, active, state, fallback, _r2,
         len0, h0, len1, h1) = META.unpack(body)  # fmt: skip
        if magic != META_MAGIC or version != META_VERSION:
            return None
        if active not in (0, 1, NO_SLOT) or fallback not in (0, 1, NO_SLOT):
            return None
        if state not in STATE_NAMES:
            return None
        return cls(seq, boots, active, state, fallback, (len0, len1), (h0, h1))

    def with_slot(self, slot: int, length: int, digest: bytes) -> Meta:
        lens = list(self.lens)
        hashes = list(self.hashes)
        lens[slot], hashes[slot] = length, digest
        return replace(self, lens=(lens[0], lens[1]), hashes=(hashes[0], hashes[1]))


class Flash:
    """The raw flash file: erase, program, read, sync; metadata sectors and two slots."""

    def __init__(
        self, path: str | os.PathLike[str], *, slot_size: int = DEFAULT_SLOT_SIZE,
        crash_after: int | None = None, on_crash: Callable[[], None] | None = None,
        durable: bool = True,
    ) -> None:  # fmt: skip
        self.path = Path(path)
        self.slot_size = int(slot_size)
        self.size = 2 * SECTOR + 2 * self.slot_size
        env = os.environ.get(CRASH_ENV)
        self.crash_after = crash_after if crash_after is not None else (int(env) if env else None)
        self.on_crash = on_crash if on_crash is not None else _power_cut
        # durable=False skips fsync: for in-process tests, where no power is really lost.
        self.durable = durable
        self.written = 0
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise FlashError(f"cannot open flash image {self.path}: {exc.strerror}") from None
        self._fd = fd
        have = os.fstat(fd).st_size
        if have < self.size:
            # A new (or shorter) image: the missing part is erased flash.
            os.pwrite(fd, b"\xff" * (self.size - have), have)
            if durable:
                os.fsync(fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- raw operations ------------------------------------------------------------------------

    def _write(self, addr: int, data: bytes) -> None:
        """Store bytes; with ``crash_after``, die like a power cut at that byte count:
        the bytes before the cut are on the file, none after."""
        if self.crash_after is not None and self.written + len(data) >= self.crash_after:
            cut = max(self.crash_after - self.written, 0)
            os.pwrite(self._fd, data[:cut], addr)
            self.sync()
            self.on_crash()
        try:
            os.pwrite(self._fd, data, addr)
        except OSError as exc:
            raise FlashError(f"flash write failed: {exc.strerror}") from None
        self.written += len(data)

    def read(self, addr: int, n: int) -> bytes:
        if addr < 0 or addr + n > self.size:
            raise FlashError(f"read of {n} bytes at {addr} is outside the flash")
        try:
            return os.pread(self._fd, n, addr)
        except OSError as exc:
            raise FlashError(f"flash read failed: {exc.strerror}") from None

    def erase(self, addr: int, n: int) -> None:
        """Set [addr, addr+n) to 0xFF (one sector at a time, like a real erase)."""
        if addr < 0 or addr + n > self.size:
            raise FlashError(f"erase of {n} bytes at {addr} is outside the flash")
        for start in range(addr, addr + n, SECTOR):
            k = min(SECTOR, addr + n - start)
            self._write(start, b"\xff" * k)

    def program(self, addr: int, data: bytes) -> None:
        """Write bytes to erased flash (bits can only go from 1 to 0)."""
        if addr < 0 or addr + len(data) > self.size:
            raise FlashError(f"write of {len(data)} bytes at {addr} is outside the flash")
        old = self.read(addr, len(data))
        if any((o & d) != d for o, d in zip(old, data, strict=True)):
            raise FlashError(f"write at {addr} to flash that was not erased")
        self._write(addr, bytes(data))

    def sync(self) -> None:
        if not self.durable:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise FlashError(f"flash sync failed: {exc.strerror}") from None

    # -- slots and metadata ----------------------------------------------------------------------

    def slot_addr(self, slot: int) -> int:
        return 2 * SECTOR + slot * self.slot_size

    def erase_slot(self, slot: int, length: int | None = None) -> None:
        """Erase a slot (its first ``length`` bytes rounded up to sectors, or all of it)."""
        n = self.slot_size if length is None else -(-int(length) // SECTOR) * SECTOR
        self.erase(self.slot_addr(slot), min(n, self.slot_size))

    def program_slot(self, slot: int, off: int, data: bytes) -> None:
        if off < 0 or off + len(data) > self.slot_size:
            raise FlashError(f"{off + len(data)} bytes exceed the slot size {self.slot_size}")
        self.program(self.slot_addr(slot) + off, data)

    def read_slot(self, slot: int, off: int, n: int) -> bytes:
        if off < 0 or off + n > self.slot_size:
            raise FlashError(f"read past the end of slot {slot}")
        return self.read(self.slot_addr(slot) + off, n)

    def read_metas(self) -> list[Meta | None]:
        return [Meta.unpack(self.read(i * SECTOR, META.size + 4)) for i in (0, 1)]

    def current_meta(self) -> tuple[Meta, int]:
        """The valid record with the highest seq and its sector (a blank Meta, -1 if none)."""
        best: tuple[Meta, int] = (Meta(), -1)
        for i, m in enumerate(self.read_metas()):
            if m is not None and (best[1] < 0 or m.seq > best[0].seq):
                best = (m, i)
        return best

    def write_meta(self, meta: Meta) -> Meta:
        """Write ``meta`` with seq = current + 1 into the sector not holding the current."""
        cur, sector = self.current_meta()
        new = replace(meta, seq=(cur.seq + 1) if sector >= 0 else 1)
        target = 1 - sector if sector >= 0 else 0
        self.erase(target * SECTOR, SECTOR)
        self.program(target * SECTOR, new.pack())
        self.sync()
        return new


@dataclass
class BootResult:
    meta: Meta
    image: bytes | None  # the active slot's image (verified by sha256), None without a model
    reverted: bool  # a pending model was reverted at this boot


class Storage:
    """Model storage with the commit protocol above, on a :class:`Flash`."""

    def __init__(self, flash: Flash) -> None:
        self.flash = flash
        self.meta = Meta()

    def _slot_ok(self, meta: Meta, slot: int) -> bytes | None:
        """The slot's image if the record describes it and the bytes match its sha256."""
        if slot not in (0, 1):
            return None
        n = meta.lens[slot]
        if n <= 0 or n > self.flash.slot_size:
            return None
        data = self.flash.read_slot(slot, 0, n)
        return data if hashlib.sha256(data).digest() == meta.hashes[slot] else None

    def boot(self) -> BootResult:
        """Choose the model to run, revert a pending one, count the boot (a new record)."""
        meta, _ = self.flash.current_meta()
        reverted = False
        if meta.state == STATE_PENDING:
            fb = meta.fallback if self._slot_ok(meta, meta.fallback) is not None else NO_SLOT
            meta = replace(
                meta,
                active=fb,
                state=STATE_CONFIRMED if fb != NO_SLOT else STATE_NONE,
                fallback=NO_SLOT,
            )
            reverted = True
        image = self._slot_ok(meta, meta.active) if meta.active != NO_SLOT else None
        if image is None and meta.active != NO_SLOT:
            # The active slot does not verify (should not happen with the commit rule):
            # run the fallback if it does, else nothing.
            fb_image = self._slot_ok(meta, meta.fallback)
            if fb_image is not None:
                meta = replace(meta, active=meta.fallback, fallback=NO_SLOT)
                image = fb_image
            else:
                meta = replace(meta, active=NO_SLOT, state=STATE_NONE, fallback=NO_SLOT)
        self.meta = self.flash.write_meta(replace(meta, boot_count=meta.boot_count + 1))
        return BootResult(self.meta, image, reverted)

    @property
    def boot_count(self) -> int:
        return self.meta.boot_count

    @property
    def active(self) -> int:
        return self.meta.active

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.meta.state]

    def inactive_slot(self) -> int:
        return 1 if self.meta.active == 0 else 0

    def active_hash(self) -> bytes | None:
        if self.meta.active == NO_SLOT:
            return None
        return self.meta.hashes[self.meta.active]

    def read_active(self, off: int, n: int) -> bytes:
        if self.meta.active == NO_SLOT:
            raise FlashError("no model in flash")
        total = self.meta.lens[self.meta.active]
        off = max(0, min(off, total))
        return self.flash.read_slot(self.meta.active, off, max(0, min(n, total - off)))

    def begin(self, length: int) -> int:
        """Erase the inactive slot for an upload of ``length`` bytes; return the slot."""
        if length > self.flash.slot_size:
            raise FlashError(f"{length} bytes exceed the slot size {self.flash.slot_size}")
        slot = self.inactive_slot()
        self.flash.erase_slot(slot, length)
        return slot

    def write(self, slot: int, off: int, data: bytes) -> None:
        self.flash.program_slot(slot, off, data)

    def commit(self, slot: int, length: int, digest: bytes, *, pending: bool) -> Meta:
        """Make the slot active (pending or confirmed) after checking its sha256."""
        self.flash.sync()
        data = self.flash.read_slot(slot, 0, length)
        if hashlib.sha256(data).digest() != digest:
            raise FlashError("the slot's content does not match its sha256 after writing")
        old = self.meta.active
        meta = replace(
            self.meta.with_slot(slot, length, digest),
            active=slot,
            state=STATE_PENDING if pending else STATE_CONFIRMED,
            fallback=old,
        )
        self.meta = self.flash.write_meta(meta)
        return self.meta

    def save(self, image: bytes) -> Meta:
        """Write an image to the inactive slot and commit it confirmed (SAVE_MODEL)."""
        slot = self.begin(len(image))
        self.write(slot, 0, image)
        return self.commit(slot, len(image), hashlib.sha256(image).digest(), pending=False)

    def confirm(self) -> Meta:
        if self.meta.state == STATE_PENDING:
            self.meta = self.flash.write_meta(
                replace(self.meta, state=STATE_CONFIRMED, fallback=NO_SLOT)
            )
        return self.meta

    def revert(self) -> Meta:
        """Drop a pending model now: the fallback becomes active again (DEPLOY_ABORT)."""
        if self.meta.state != STATE_PENDING:
            return self.meta
        fb = self.meta.fallback if self._slot_ok(self.meta, self.meta.fallback) else NO_SLOT
        self.meta = self.flash.write_meta(
            replace(
                self.meta,
                active=fb,
                state=STATE_CONFIRMED if fb != NO_SLOT else STATE_NONE,
                fallback=NO_SLOT,
            )
        )
        return self.meta

    def active_image(self) -> bytes | None:
        return self._slot_ok(self.meta, self.meta.active)
