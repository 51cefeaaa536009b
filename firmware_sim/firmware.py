"""The firmware's request handling, independent of any I/O: frames in, encoded replies out.

:class:`Firmware` is the device: it boots from a :class:`~.flash.Flash`, holds the model
(a :class:`~.fixed_point.FixedNet`), the upload in progress, the reply cache and the
counters, and answers each decoded request frame with the bytes to send
(docs/protocol.md §2–§4). :mod:`.server` puts it on a pseudo-terminal; tests may drive it
directly.
"""

from __future__ import annotations

import hashlib
import sys
import time
import traceback
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError, ShapeError
from twinpass.protocol import model_image as mi
from twinpass.protocol.frame import (
    PROTO_MAJOR,
    PROTO_MINOR,
    REPLY,
    Flags,
    Frame,
    ReaderStats,
    encode_frame,
)
from twinpass.protocol.hyper import READOUT_ANP, READOUT_RLS, READOUTS, Hyper
from twinpass.protocol.messages import ErrorCode, MsgType, encode_payload, error_payload, pack_array
from twinpass.protocol.qformat import MAX_BATCH

from . import guard, ram
from .fixed_point import U64_MAX, FixedNet
from .flash import NO_SLOT, STATE_PENDING, Flash, FlashError, Storage

FW_VERSION = "0.1.0"
BOARD = "twinpass-sim (Cortex-M4 model)"
DTYPES = ["q16.16/q7.24"]
MAX_FRAME = 2048
RX_WINDOW = 4
MAX_STEPS = 32
#: STEP's t and the device's t_next are u32 and wrap (docs/protocol.md §2, STEP order).
T_MASK = 0xFFFFFFFF
# Room for the header, CRC, COBS overhead and the msgpack keys around a bin payload.
FRAME_OVERHEAD = 64


class Refuse(Exception):
    """A request the firmware answers with an ERROR reply.

    ``cache=False``: the refusal is not kept in the reply cache, so the same request (same
    seq, same bytes) sent again is handled anew — for a STEP that arrived before the one it
    follows: sent again once that one has arrived, it must run, not get its old refusal.
    """

    def __init__(self, code: ErrorCode, msg: str, *, cache: bool = True, **extra: Any) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.cache = cache
        self.extra = extra


@dataclass
class Upload:
    length: int
    digest: bytes
    slot: int
    shape: tuple[int, int, int]
    received: int = 0


@dataclass
class Counters:
    steps: int = 0
    updates: int = 0
    rewards: int = 0
    missed_rewards: int = 0
    duplicates: int = 0
    bad_version: int = 0
    rx_frames: int = 0
    tx_frames: int = 0
    step_ns: int = 0
    extra: dict[str, int] = field(default_factory=dict)


# -- payload accessors --------------------------------------------------------------------------


def _int(p: dict[str, Any], key: str, lo: int = 0, hi: int = (1 << 64) - 1, **kw: Any) -> int:
    if key not in p:
        if "default" in kw:
            return kw["default"]
        raise Refuse(ErrorCode.BAD_ARGS, f"missing key {key!r}")
    v = p[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise Refuse(ErrorCode.BAD_ARGS, f"{key} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _bool(p: dict[str, Any], key: str, default: bool) -> bool:
    v = p.get(key, default)
    if not isinstance(v, bool):
        raise Refuse(ErrorCode.BAD_ARGS, f"{key} must be true or false, got {v!r}")
    return v


def _bin(p: dict[str, Any], key: str, n_values: int, itemsize: int = 4) -> np.ndarray:
    v = p.get(key)
    if not isinstance(v, bytes | bytearray):
        raise Refuse(ErrorCode.BAD_ARGS, f"{key} must be packed bytes (msgpack bin)")
    if len(v) != n_values * itemsize:
        raise Refuse(
            ErrorCode.BAD_ARGS,
            f"{key} has {len(v)} bytes, expected {n_values} values of {itemsize} bytes",
        )
    return np.frombuffer(bytes(v), f"<i{itemsize}").astype(np.int64)


class Firmware:
    """The simulated device's logic (one instance per boot is not needed: see :meth:`boot`)."""

    def __init__(
        self,
        flash: Flash,
        *,
        ram_kib: int = 128,
        step_us: float = 0.0,
        seed: int = 0,
        log: Any = None,
    ) -> None:
        self.flash = flash
        self.storage = Storage(flash)
        self.ram_total = int(ram_kib) * 1024
        self.step_us = float(step_us)
        self.seed = int(seed) & 0xFFFFFFFF
        self.log = log if log is not None else sys.stderr
        self.reader_stats = ReaderStats()
        self.t_start = time.monotonic()
        self.announcement = self.boot()

    # -- boot ---------------------------------------------------------------------------------

    def boot(self) -> bytes:
        """(Re)boot: choose the model from flash, count the boot, clear RAM state.

        Returns the unsolicited boot announcement to send.
        """
        res = self.storage.boot()
        self.epoch = res.meta.boot_count & 0xFF
        # seq -> (request key, reply bytes, request type), oldest first.
        self.cache: OrderedDict[int, tuple[int, bytes, int]] = OrderedDict()
        self.upload: Upload | None = None
        self.counters = Counters()
        self.learn = True
        self.batch = 1
        # STEP order (docs/protocol.md §2): checked only in a session whose HELLO announced
        # protocol 1.1 or later (a 1.0 host restarts t at 0 for every block it sends).
        self.ordered = False
        self.t_next = 0
        self.net: FixedNet | None = None
        self.live_image: tuple[int, bytes] | None = None
        if res.image is not None:
            try:
                self._load(mi.parse(res.image))
            except (mi.ModelImageError, ConfigError, ShapeError) as exc:
                print(f"firmware: stored model not loaded: {exc}", file=self.log)
        return encode_frame(
            Frame(
                MsgType.HELLO | REPLY,
                0,
                self._hello_payload(),
                Flags.REPLY | Flags.UNSOLICITED,
                self.epoch,
            )
        )

    def _load(self, img: mi.ModelImage) -> None:
        self.net = FixedNet(img.A, img.R, img.B, img.D, img.hyper, batch=self.batch, seed=self.seed)
        self._start_sequence(0)  # a new (or reloaded) model starts a new step sequence

    def _start_sequence(self, t_next: int) -> None:
        """A new step sequence (the learning state was zeroed or replaced): STEP replies
        cached from the old one are dropped, so a STEP of the new one is never answered
        with an old reply (docs/protocol.md §2: they are kept across HELLO)."""
        self.t_next = t_next
        for seq in [k for k, v in self.cache.items() if v[2] == MsgType.STEP]:
            del self.cache[seq]

    @property
    def ram_budget(self) -> int:
        """RAM available to a model: the total minus the firmware's own reservation."""
        return self.ram_total - ram.FIRMWARE_RESERVED

    def _footprint(
        self,
        shape: tuple[int, int, int],
        d_present: bool,
        batch: int,
        readout_inputs: bool,
        eval_batch: int | None = None,
        decorrelation: bool | None = None,
        rls: bool | None = None,
    ) -> int:
        """RAM the model of ``shape`` needs; the evaluation batch, decorrelation and the RLS
        readout are the loaded model's unless given (DEPLOY_BEGIN, which knows neither,
        checks without them; DEPLOY_COMMIT checks the image's)."""
        net = self.net
        if eval_batch is None:
            eval_batch = net.xh_eval.shape[0] if net is not None else 1
        if decorrelation is None:
            decorrelation = bool(net is not None and net.hyper.decorrelation)
        if rls is None:
            rls = net is not None and net.P is not None
        return ram.ram_footprint(
            *shape, batch=batch, eval_batch=eval_batch, d_present=d_present,
            decorrelation=decorrelation, readout_inputs=readout_inputs, rls=rls,
        )  # fmt: skip

    def _net_footprint(self, net: FixedNet, **changes: Any) -> int:
        """RAM the loaded model needs, with its batch, evaluation batch, D or decorrelation
        replaced by ``changes``."""
        return self._footprint(
            (net.n_in, net.n, net.n_out),
            changes.get("d_present", net.D is not None),
            changes.get("batch", net.batch),
            net.hyper.readout_inputs,
            changes.get("eval_batch", net.xh_eval.shape[0]),
            changes.get("decorrelation", net.hyper.decorrelation),
            net.P is not None,
        )

    def ram_free(self) -> int:
        if self.net is None:
            return self.ram_budget
        return self.ram_budget - self._net_footprint(self.net)

    # -- frames in, bytes out -------------------------------------------------------------------

    def handle(self, frame: Frame) -> tuple[bytes, bool]:
        """The bytes to send for one decoded frame, and whether to reboot after sending."""
        self.counters.rx_frames += 1
        if frame.flags & Flags.NOREPLY:
            if frame.version == PROTO_MAJOR and frame.type == MsgType.REWARD:
                self._reward(frame.payload)
            return b"", False
        key = zlib.crc32(bytes([frame.type]) + encode_payload(frame.payload))
        if frame.type != MsgType.HELLO and frame.seq in self.cache:
            crc, data, _ = self.cache[frame.seq]
            if crc == key:
                self.counters.duplicates += 1
                self.counters.tx_frames += 1
                return data, False
        reboot = False
        cache = True
        try:
            payload, reboot = self._dispatch(frame)
            out = Frame(frame.type | REPLY, frame.seq, payload, Flags.REPLY, self.epoch)
        except Refuse as exc:
            out = self._error(frame, exc.code, exc.msg, **exc.extra)
            cache = exc.cache
        except FlashError as exc:
            out = self._error(frame, ErrorCode.FLASH_FAIL, str(exc))
        except (ConfigError, ShapeError, mi.ModelImageError) as exc:
            out = self._error(frame, ErrorCode.BAD_ARGS, str(exc))
        except Exception as exc:  # a firmware bug: answer, keep serving, and say so
            traceback.print_exc(file=self.log)
            out = self._error(frame, ErrorCode.BAD_STATE, f"internal error: {exc!r}")
        data = encode_frame(out)
        if frame.type == MsgType.HELLO:
            # A new session may restart seq anywhere: its requests must not meet old replies.
            # In a 1.1 session STEP replies stay: they belong to the step sequence, which a
            # resync's HELLO continues, and no STEP of it can run twice anyway (its t is
            # past t_next), so a STEP that ran before the resync gets its reply, not a refusal.
            for seq in [
                k for k, v in self.cache.items() if not (self.ordered and v[2] == MsgType.STEP)
            ]:
                del self.cache[seq]
        elif cache:
            self.cache[frame.seq] = (key, data, frame.type)
            self.cache.move_to_end(frame.seq)
            while len(self.cache) > RX_WINDOW:
                self.cache.popitem(last=False)
        self.counters.tx_frames += 1
        return data, reboot

    def _error(self, frame: Frame, code: ErrorCode, msg: str, **extra: Any) -> Frame:
        body = {**error_payload(code, msg), **extra}
        return Frame(
            (frame.type | REPLY) & 0xFF, frame.seq, body, Flags.REPLY | Flags.ERR, self.epoch
        )

    def _dispatch(self, frame: Frame) -> tuple[dict[str, Any], bool]:
        if frame.version != PROTO_MAJOR:
            self.counters.bad_version += 1
            raise Refuse(
                ErrorCode.BAD_VERSION,
                f"protocol major version {frame.version} is not supported: this device "
                f"speaks {PROTO_MAJOR}.{PROTO_MINOR}",
            )
        if frame.flags & Flags.REPLY or frame.is_reply:
            raise Refuse(ErrorCode.BAD_FRAME, "the device takes requests, not replies")
        handlers = {
            MsgType.HELLO: self._hello,
            MsgType.PING: lambda p: {},
            MsgType.DEPLOY_BEGIN: self._deploy_begin,
            MsgType.DEPLOY_CHUNK: self._deploy_chunk,
            MsgType.DEPLOY_COMMIT: self._deploy_commit,
            MsgType.DEPLOY_CONFIRM: self._deploy_confirm,
            MsgType.DEPLOY_ABORT: self._deploy_abort,
            MsgType.STEP: self._step,
            MsgType.SET_MODE: self._set_mode,
            MsgType.GET_MODEL: self._get_model,
            MsgType.SAVE_MODEL: self._save_model,
            MsgType.STATS: self._stats,
            MsgType.STATE_GET: self._state_get,
            MsgType.STATE_SET: self._state_set,
            MsgType.PREDICT: self._predict,
        }
        if frame.type == MsgType.RESET:
            return self._reset(frame.payload)
        if frame.type == MsgType.REWARD:
            raise Refuse(ErrorCode.BAD_ARGS, "REWARD is sent with the NOREPLY flag")
        handler = handlers.get(frame.type)  # type: ignore[call-overload]
        if handler is None:
            raise Refuse(ErrorCode.UNKNOWN_TYPE, f"unknown message type 0x{frame.type:02x}")
        return handler(frame.payload), False

    # -- messages -------------------------------------------------------------------------------

    def _hello_payload(self) -> dict[str, Any]:
        largest = ram.largest_hidden(self.ram_budget, 1, 1)
        net = self.net
        step_us = self.step_us + (self.counters.step_ns / max(self.counters.steps, 1)) / 1000
        return {
            "proto": [PROTO_MAJOR, PROTO_MINOR],
            "fw": FW_VERSION,
            "board": BOARD,
            "boot_id": self.storage.boot_count,
            "caps": {
                "max_frame": MAX_FRAME,
                "rx_window": RX_WINDOW,
                "max_hidden": largest,
                "max_batch": MAX_BATCH,
                "max_steps": MAX_STEPS,
                "ram_total": self.ram_total,
                "ram_free": self.ram_free(),
                "dtypes": DTYPES,
                "readouts": list(READOUTS),
                "slots": 2,
                "step_us": round(step_us),
            },
            "active_slot": None if self.storage.active == NO_SLOT else self.storage.active,
            "model_hash": self.storage.active_hash() if net is not None else None,
            "model_state": self.storage.state_name if net is not None else "none",
            "shape": None if net is None else [net.n_in, net.n, net.n_out],
        }

    def _hello(self, p: dict[str, Any]) -> dict[str, Any]:
        proto = p.get("proto")
        if (
            not isinstance(proto, list)
            or len(proto) < 1
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in proto)
        ):
            raise Refuse(ErrorCode.BAD_ARGS, "HELLO needs proto: [major, minor]")
        if proto[0] != PROTO_MAJOR:
            self.counters.bad_version += 1
            raise Refuse(
                ErrorCode.BAD_VERSION,
                f"host speaks protocol {'.'.join(map(str, proto))}, this device "
                f"{PROTO_MAJOR}.{PROTO_MINOR}: the major versions must match",
            )
        # A new session: its host's minor version decides whether STEP order is checked.
        # t_next itself is learning state and survives HELLO (a resync must not let a
        # retransmitted STEP run twice).
        self.ordered = len(proto) >= 2 and proto[1] >= 1
        return self._hello_payload()

    def _need_model(self) -> FixedNet:
        if self.net is None:
            raise Refuse(ErrorCode.NO_MODEL, "no model on the device: deploy one first")
        return self.net

    def _deploy_begin(self, p: dict[str, Any]) -> dict[str, Any]:
        length = _int(p, "len", 1, 1 << 32)
        digest = p.get("sha256")
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise Refuse(ErrorCode.BAD_ARGS, "sha256 must be 32 bytes (msgpack bin)")
        shape = p.get("shape")
        if (
            not isinstance(shape, list)
            or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
        ):
            raise Refuse(ErrorCode.BAD_ARGS, "shape must be [n_in, N, n_out] of positive integers")
        n_in, n, n_out = shape
        up = self.upload
        if up is not None and up.length == length and up.digest == digest:
            return {"slot": up.slot, "off_next": up.received}  # resume
        self.upload = None
        if self.storage.meta.state == STATE_PENDING:
            raise Refuse(
                ErrorCode.BAD_STATE,
                "the active model is pending: confirm it (DEPLOY_CONFIRM) or revert it "
                "(DEPLOY_ABORT) before deploying another",
            )
        # BEGIN does not know the image's flags: D stored or not, the readout over [xh, u, 1]
        # or xh. Any layout of this length is possible; the largest decides.
        layouts = [(d, ri) for d in (False, True) for ri in (False, True)]
        sizes = {mi.image_size(n_in, n, n_out, d, ri) for d, ri in layouts}
        fitting = [(d, ri) for d, ri in layouts if mi.image_size(n_in, n, n_out, d, ri) == length]
        if not fitting:
            raise Refuse(
                ErrorCode.BAD_ARGS,
                f"len {length} does not match a {n_in}-{n}-{n_out} image "
                f"({' or '.join(map(str, sorted(sizes)))} bytes)",
            )
        d_present = any(d for d, _ in fitting)
        need = max(
            self._footprint((n_in, n, n_out), d, self.batch, ri, rls=False) for d, ri in fitting
        )
        if need > self.ram_budget or length > self.flash.slot_size:
            fits = ram.largest_hidden(self.ram_budget, n_in, n_out, batch=self.batch)
            raise Refuse(
                ErrorCode.TOO_LARGE,
                f"model {n_in}-{n}-{n_out} needs {need} bytes of RAM (image {length} bytes); "
                f"this device has {self.ram_budget} bytes for a model and {self.flash.slot_size} "
                f"per flash slot: N <= {fits} fits with batch {self.batch}"
                + (" and D the identity" if d_present else ""),
                max_hidden=fits,
            )
        slot = self.storage.begin(length)
        self.upload = Upload(length, digest, slot, (n_in, n, n_out))
        return {"slot": slot, "off_next": 0}

    def _deploy_chunk(self, p: dict[str, Any]) -> dict[str, Any]:
        up = self.upload
        if up is None:
            raise Refuse(ErrorCode.BAD_STATE, "no upload in progress: send DEPLOY_BEGIN first")
        off = _int(p, "off", 0, 1 << 32)
        data = p.get("data")
        if not isinstance(data, bytes):
            raise Refuse(ErrorCode.BAD_ARGS, "data must be bytes (msgpack bin)")
        end = off + len(data)
        if end > up.length:
            raise Refuse(
                ErrorCode.BAD_ARGS, f"chunk [{off}, {end}) runs past the image's {up.length} bytes"
            )
        if off > up.received:
            raise Refuse(
                ErrorCode.BAD_STATE,
                f"chunk at {off} leaves a gap: the next expected offset is {up.received}",
                off_next=up.received,
            )
        if end > up.received:
            new = data[up.received - off :]
            self.storage.write(up.slot, up.received, new)
            up.received = end
        return {"off_next": up.received}

    def _deploy_commit(self, p: dict[str, Any]) -> dict[str, Any]:
        up = self.upload
        if up is None:
            raise Refuse(ErrorCode.BAD_STATE, "no upload in progress: send DEPLOY_BEGIN first")
        digest = p.get("sha256")
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise Refuse(ErrorCode.BAD_ARGS, "sha256 must be 32 bytes (msgpack bin)")
        if up.received < up.length:
            raise Refuse(
                ErrorCode.BAD_STATE,
                f"upload incomplete: {up.received} of {up.length} bytes received",
                off_next=up.received,
            )
        data = self.flash.read_slot(up.slot, 0, up.length)
        actual = hashlib.sha256(data).digest()
        if digest != up.digest or actual != up.digest:
            self.upload = None
            raise Refuse(
                ErrorCode.HASH_MISMATCH,
                f"received image has sha256 {actual.hex()[:16]}…, expected "
                f"{up.digest.hex()[:16]}…: upload again",
            )
        try:
            img = mi.parse(data)
        except mi.ModelImageError as exc:
            self.upload = None
            raise Refuse(ErrorCode.BAD_ARGS, f"image rejected: {exc}") from None
        if img.shape != up.shape:
            self.upload = None
            raise Refuse(ErrorCode.BAD_ARGS, f"image is {img.shape}, DEPLOY_BEGIN said {up.shape}")
        # BEGIN could not know the image's flags: a learned D (decorrelation) needs more RAM.
        need = self._footprint(
            img.shape, img.D is not None, self.batch, img.hyper.readout_inputs,
            eval_batch=1, decorrelation=img.hyper.decorrelation,
            rls=img.hyper.readout == READOUT_RLS,
        )  # fmt: skip
        if need > self.ram_budget:
            self.upload = None
            raise Refuse(
                ErrorCode.TOO_LARGE,
                f"model {img.shape} with its flags needs {need} bytes of RAM, "
                f"{self.ram_budget} available",
            )
        self.storage.commit(up.slot, up.length, up.digest, pending=True)
        self.upload = None
        self._load(img)
        self.live_image = None
        return {"slot": up.slot, "model_hash": up.digest, "model_state": "pending"}

    def _deploy_confirm(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.storage.active == NO_SLOT:
            raise Refuse(ErrorCode.NO_MODEL, "no model to confirm")
        self.storage.confirm()
        return {"active_slot": self.storage.active, "model_state": self.storage.state_name}

    def _deploy_abort(self, p: dict[str, Any]) -> dict[str, Any]:
        self.upload = None
        if self.storage.meta.state == STATE_PENDING:
            self.storage.revert()
            image = self.storage.active_image()
            self.net = None
            if image is not None:
                self._load(mi.parse(image))
        active = self.storage.active
        return {
            "active_slot": None if active == NO_SLOT else active,
            "model_hash": self.storage.active_hash(),
            "model_state": self.storage.state_name,
        }

    def _check_reply_size(self, n_bytes: int, what: str) -> None:
        if n_bytes + FRAME_OVERHEAD > MAX_FRAME:
            raise Refuse(
                ErrorCode.TOO_LARGE,
                f"{what} of {n_bytes} bytes does not fit a {MAX_FRAME}-byte frame: send fewer "
                "steps per request",
            )

    def _step(self, p: dict[str, Any]) -> dict[str, Any]:
        net = self._need_model()
        t = _int(p, "t", 0)
        if self.ordered and t != self.t_next:
            # A STEP that is not the next one: an earlier one was lost on the way (pipelined
            # requests) or this one is late. A repeat of an executed STEP never gets here:
            # the reply cache answers it. Not cached, so that it runs when sent again in order.
            raise Refuse(
                ErrorCode.BAD_STATE,
                f"STEP t={t} is out of order: the next step is t={self.t_next}; send the "
                "STEPs from there again, in order",
                cache=False,
                t_next=self.t_next,
            )
        steps = _int(p, "steps", 1, MAX_STEPS, default=1)
        learn = _bool(p, "learn", True) and self.learn
        nb = net.batch
        self._check_reply_size(steps * (nb * net.n_out * 4 * 2 + 16), "the STEP reply")
        x = _bin(p, "x", steps * nb * net.n_in).reshape(steps, nb, net.n_in)
        y_raw = p.get("y")
        y = None if y_raw is None else _bin(p, "y", steps * nb * net.n_out)
        if y is None and learn and steps > 1:
            raise Refuse(ErrorCode.BAD_STATE, "the reward variant (y: nil) runs one step at a time")
        if y is None and learn and net.hyper.readout != READOUT_ANP:
            raise Refuse(
                ErrorCode.BAD_STATE,
                f"the reward variant (y: nil) needs readout anp; this model's readout is "
                f"{net.hyper.readout_name}, which learns from the targets: send y",
            )
        y = None if y is None else y.reshape(steps, nb, net.n_out)
        y1 = np.zeros((steps, nb, net.n_out), np.int64)
        y2 = np.zeros_like(y1)
        l1 = np.zeros(steps, np.int64)
        l2 = np.zeros(steps, np.int64)
        applied = 0
        if net.pending is not None:
            self.counters.missed_rewards += 1
        t0 = time.perf_counter_ns()
        for s in range(steps):
            out = net.step(x[s], None if y is None else y[s], learn, t + s)
            y1[s], y2[s], l1[s], l2[s] = out.y1, out.y2, out.loss1, out.loss2
            applied += out.applied
        self.counters.step_ns += time.perf_counter_ns() - t0
        self.counters.steps += steps
        self.t_next = (t + steps) & T_MASK
        self.counters.updates += applied
        if applied:
            self.live_image = None
        if self.step_us > 0:
            time.sleep(self.step_us * steps / 1e6)
        reply: dict[str, Any] = {
            "t": t,
            "y_hat": pack_array(y1.reshape(-1), "int32"),
            "loss_1": pack_array(l1, "int64"),
            "loss_2": pack_array(l2, "int64"),
            "applied": applied,
        }
        if y is None:
            reply["y_hat_2"] = pack_array(y2.reshape(-1), "int32")
        return reply

    def _reward(self, p: dict[str, Any]) -> None:
        net = self.net
        t, dl = p.get("t"), p.get("dl")
        if net is None or not isinstance(t, int) or isinstance(t, bool):
            self.counters.missed_rewards += 1
            return
        if isinstance(dl, int) and not isinstance(dl, bool) and net.batch == 1:
            dls = np.array([dl], np.int64)
        elif isinstance(dl, bytes) and len(dl) == 8 * net.batch:
            dls = np.frombuffer(dl, "<i8").astype(np.int64)
        else:
            self.counters.missed_rewards += 1
            return
        if net.reward(t, dls):
            self.counters.rewards += 1
            self.counters.updates += 1
            self.live_image = None
        else:
            self.counters.missed_rewards += 1

    def mode(self) -> dict[str, Any]:
        h = self.net.hyper if self.net is not None else Hyper()
        return {"learn": self.learn, "seed": self.seed, "batch": self.batch, **h.to_dict()}

    def _set_mode(self, p: dict[str, Any]) -> dict[str, Any]:
        learn = _bool(p, "learn", self.learn)
        seed = _int(p, "seed", 0, 0xFFFFFFFF, default=self.seed)
        batch = _int(p, "batch", 1, MAX_BATCH, default=self.batch)
        net = self.net
        hyper = None
        if net is not None:
            changes = {k: v for k, v in p.items() if k in Hyper.__dataclass_fields__}
            if changes.get("readout_inputs", net.hyper.readout_inputs) != net.hyper.readout_inputs:
                raise Refuse(
                    ErrorCode.BAD_ARGS,
                    "readout_inputs is the model image's (it sets B's width): deploy a model "
                    "with the readout you want",
                )
            rls = changes.get("readout", net.hyper.readout) == READOUT_RLS
            if rls != (net.P is not None):
                raise Refuse(
                    ErrorCode.BAD_ARGS,
                    "readout: switching to or from rls changes the model's RAM layout (P): "
                    "deploy a model with the readout you want",
                )
            try:
                hyper = net.hyper.update(changes)
            except ConfigError as exc:
                raise Refuse(ErrorCode.BAD_ARGS, str(exc)) from None
            need = self._net_footprint(
                net,
                batch=batch,
                d_present=net.D is not None or hyper.decorrelation,
                decorrelation=hyper.decorrelation,
            )
            if need > self.ram_budget:
                raise Refuse(
                    ErrorCode.TOO_LARGE,
                    f"batch {batch} needs {need} bytes of RAM, {self.ram_budget} available",
                )
        self.learn = learn
        if net is not None and hyper is not None:
            net.hyper = hyper
            if hyper.decorrelation and net.D is None:
                net.D = np.eye(net.n, dtype=np.int64) << 24
            if batch != self.batch:
                net.set_batch(batch)
            if seed != self.seed or batch != self.batch:
                net.reseed(seed)
                net.reset_state()
                self._start_sequence(0)  # the learning state starts over
        self.batch, self.seed = batch, seed
        return self.mode()

    def _live_image(self) -> bytes:
        net = self._need_model()
        if self.live_image is None or self.live_image[0] != self.counters.updates:
            image = mi.build(net.A, net.R, net.B, net.D, net.hyper)
            self.live_image = (self.counters.updates, image)
        return self.live_image[1]

    def _get_model(self, p: dict[str, Any]) -> dict[str, Any]:
        self._need_model()
        off = _int(p, "off", 0, 1 << 32)
        n = _int(p, "len", 0, MAX_FRAME - FRAME_OVERHEAD)
        source = p.get("source", "live")
        if source == "live":
            image = self._live_image()
            data = image[off : off + n]
            total = len(image)
        elif source == "flash":
            if self.storage.active == NO_SLOT:
                raise Refuse(ErrorCode.NO_MODEL, "no model in flash")
            total = self.storage.meta.lens[self.storage.active]
            data = self.storage.read_active(off, n)
        else:
            raise Refuse(ErrorCode.BAD_ARGS, f"source must be 'live' or 'flash', not {source!r}")
        return {"data": data, "total": total, "updates": self.counters.updates}

    def _save_model(self, p: dict[str, Any]) -> dict[str, Any]:
        self._need_model()
        if self.upload is not None:
            raise Refuse(ErrorCode.BUSY, "an upload is using the inactive slot: finish or abort it")
        if self.storage.meta.state == STATE_PENDING:
            raise Refuse(
                ErrorCode.BAD_STATE,
                "the active model is pending: confirm or abort it before saving over it",
            )
        image = self._live_image()
        meta = self.storage.save(image)
        return {"slot": meta.active, "model_hash": mi.sha256(image), "model_state": "confirmed"}

    def _reset(self, p: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        what = p.get("what")
        if what not in ("state", "model", "device"):
            raise Refuse(ErrorCode.BAD_ARGS, "what must be 'state', 'model' or 'device'")
        if what == "state":
            if self.net is not None:
                self.net.reset_state()
            self._start_sequence(0)  # a sequence start: the step count starts over too
        elif what == "model":
            image = self.storage.active_image()
            self.net = None
            self.live_image = None
            if image is not None:
                self._load(mi.parse(image))
        return {"what": what}, what == "device"

    def _stats(self, p: dict[str, Any]) -> dict[str, Any]:
        c, r = self.counters, self.reader_stats
        return {
            "steps": c.steps,
            "updates": c.updates,
            "rewards": c.rewards,
            "missed_rewards": c.missed_rewards,
            "duplicates": c.duplicates,
            "crc_errors": r.crc_errors,
            "cobs_errors": r.cobs_errors,
            "overflows": r.overflows,
            "short": r.short,
            "payload_errors": r.payload_errors,
            "bad_version": c.bad_version,
            "saturations": self.net.stats["saturations"] if self.net is not None else 0,
            "guard_projections": self.net.stats["guard_projections"] if self.net else 0,
            "rls_resets": self.net.stats["rls_resets"] if self.net else 0,
            "nans": 0,
            "step_us": round(self.step_us + c.step_ns / max(c.steps, 1) / 1000),
            "uptime_ms": int((time.monotonic() - self.t_start) * 1000),
            "ram_free": self.ram_free(),
            "boot_id": self.storage.boot_count,
            "rx_frames": c.rx_frames,
            "tx_frames": c.tx_frames,
        }

    def _state_get(self, p: dict[str, Any]) -> dict[str, Any]:
        net = self._need_model()
        if "p_row" in p:
            row, rows = self._p_rows(net, p, _int(p, "p_rows", 1, net.n_features))
            self._check_reply_size(4 * rows * net.n_features + 64, "the rows of P")
            assert net.P is not None
            return {"p_row": row, "p": pack_array(net.P[row : row + rows].reshape(-1), "int32")}
        st = net.export_state()
        n_bytes = 4 * (st["xh1"].size + st["xh2"].size + st["xh_eval"].size + st["gv"].size)
        self._check_reply_size(n_bytes + 64, "the state")
        return {
            **st,
            "t_next": self.t_next,
            "xh1": pack_array(st["xh1"].reshape(-1), "int32"),
            "xh2": pack_array(st["xh2"].reshape(-1), "int32"),
            "xh_eval": pack_array(st["xh_eval"].reshape(-1), "int32"),
            "gv": pack_array(st["gv"].reshape(-1), "int32"),
        }

    def _p_rows(self, net: FixedNet, p: dict[str, Any], rows: int) -> tuple[int, int]:
        """The block of P's rows a STATE_GET/STATE_SET names (§6.8): (first row, count)."""
        if net.P is None:
            raise Refuse(
                ErrorCode.BAD_ARGS,
                f"p_row: the model's readout is {net.hyper.readout_name}, which keeps no P "
                "(only the rls readout does)",
            )
        f = net.n_features
        row = _int(p, "p_row", 0, f - 1)
        if row + rows > f:
            raise Refuse(ErrorCode.BAD_ARGS, f"rows {row}..{row + rows - 1} are beyond P's {f}")
        return row, rows

    def _state_set(self, p: dict[str, Any]) -> dict[str, Any]:
        net = self._need_model()
        if "p_row" in p:
            data = p.get("p")
            f = net.n_features
            if not isinstance(data, bytes) or not data or len(data) % (4 * f):
                raise Refuse(
                    ErrorCode.BAD_ARGS, f"p must be packed int32, whole rows of F = {f} values"
                )
            row, rows = self._p_rows(net, p, len(data) // (4 * f))
            assert net.P is not None
            net.P[row : row + rows] = _bin(p, "p", rows * f).reshape(rows, f)
            return {}
        batch = _int(p, "batch", 1, MAX_BATCH)
        eb = _int(p, "eval_batch", 1, MAX_BATCH)
        state = {
            "batch": batch,
            "eval_batch": eb,
            "xh1": _bin(p, "xh1", batch * net.n),
            "xh2": _bin(p, "xh2", batch * net.n),
            "xh_eval": _bin(p, "xh_eval", eb * net.n),
            "counter": _int(p, "counter", 0, U64_MAX),  # u64 (§6.1), refused beyond
            "rng_seed": _int(p, "rng_seed", 0, 0xFFFFFFFF),
            "rng_counter": _int(p, "rng_counter", 0, U64_MAX),
            # 1.3: the guard's state; a host of an earlier minor version sends neither,
            # and the guard starts afresh (a count of 0, the initial vector).
            "total": _int(p, "total", 0, U64_MAX, default=0),
            "gv": _bin(p, "gv", net.n) if "gv" in p else guard.initial_vector(net.n),
        }
        t_next = _int(p, "t_next", 0, T_MASK, default=0)  # new in 1.1; a 1.0 host: 0
        need = self._net_footprint(net, batch=batch, eval_batch=eb)
        if need > self.ram_budget:
            raise Refuse(
                ErrorCode.TOO_LARGE, f"batch {batch} / evaluation batch {eb} do not fit in RAM"
            )
        net.import_state(state)
        self.batch, self.seed = batch, state["rng_seed"]
        self._start_sequence(t_next)
        return {}

    def _predict(self, p: dict[str, Any]) -> dict[str, Any]:
        net = self._need_model()
        b = _int(p, "batch", 1, MAX_BATCH)
        reset = _bool(p, "reset", False)
        x = p.get("x")
        per_step = b * net.n_in * 4
        if not isinstance(x, bytes) or len(x) == 0 or len(x) % per_step:
            raise Refuse(
                ErrorCode.BAD_ARGS,
                f"x must be packed int32, a multiple of batch·n_in = {per_step // 4} values",
            )
        steps = len(x) // per_step
        self._check_reply_size(steps * b * net.n_out * 4, "the PREDICT reply")
        if b != net.xh_eval.shape[0]:
            need = self._net_footprint(net, eval_batch=b)
            if need > self.ram_budget:
                raise Refuse(ErrorCode.TOO_LARGE, f"evaluation batch {b} does not fit in RAM")
        u = _bin(p, "x", steps * b * net.n_in)
        y = net.predict(u, b, reset)
        return {"y_hat": pack_array(y.reshape(-1), "int32")}
