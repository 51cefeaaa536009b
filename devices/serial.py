"""The ``serial`` backend: a microcontroller (or its simulator) that learns in fixed point.

:class:`SerialDevice` implements the :class:`~twinpass.devices.base.Device` protocol over a
:class:`~twinpass.devices.serial_link.SerialLink` speaking the twinpass protocol
(``docs/protocol.md``). The device holds the model and both replicas and applies the ANP
update itself; the host only converts numbers at the boundary:

- ``load`` quantises the float parameters into a model image
  (:mod:`twinpass.protocol.model_image`), deploys it (BEGIN / CHUNK / COMMIT, hash
  checked, CONFIRM), then sets the batch and seed and an all-zero state with STATE_SET;
- ``step`` sends the block as STEP messages of as many steps as fit a frame (Q16.16
  inputs and targets), and converts the Q16.16 predictions and Q32 losses back;
- ``predict`` runs on the device's evaluation state (PREDICT), which is separate from the
  learning state, so it does not disturb learning;
- ``export_state``/``import_state`` are STATE_GET/STATE_SET; ``read_model`` reads the live
  weights' image with GET_MODEL and dequantises it to float32.

Arithmetic is the device's (Q16.16 activities, Q7.24 weights), so results match the host's
float learner only approximately (``exact=False``). A float32 read-back of a weight of
magnitude >= 1 can lose its lowest bits (Q7.24 holds 31 significant bits, float32 24).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError, DeviceError, RemoteError, ShapeError
from twinpass.core.rule_spec import RuleSpec, check_rule_spec
from twinpass.protocol import model_image as mi
from twinpass.protocol.hyper import P0_MAX, READOUTS, hyper_from_rule
from twinpass.protocol.messages import MsgType, pack_array, unpack_array
from twinpass.protocol.qformat import decode_activities, decode_loss, encode_activities

from .base import (
    PARAM_NAMES,
    DeviceInfo,
    StepResult,
    check_batch,
    check_label_delay,
    check_params,
    check_rule,
)
from .serial_link import T_MASK, DeviceResetError, SerialLink

RULES = ("anp",)
#: Bytes of a frame that are not bulk data (header, CRC, msgpack keys and small values).
FRAME_MARGIN = 64

DEFAULT_RETRIES = 5
"""Resends of a request before a resync, and again after it (the retry budget): a
serial device allows more than the link's bare default (RETRIES), because a noisy line
(a flipped bit every ~1,500 bytes) loses a small frame in three now and then, and an
aborted run loses everything since its last checkpoint."""

MIN_CHUNK = 64
"""The smallest deploy chunk a noisy line shrinks chunks to (bytes)."""
STATE_INTS = ("batch", "counter", "rng_seed", "rng_counter", "eval_batch")
STATE_ARRAYS = ("xh1", "xh2", "xh_eval")

#: Flash erase/program time allowed per image byte in the timeouts of BEGIN and COMMIT.
FLASH_S_PER_BYTE = 1.0 / (128 * 1024)

#: ``progress(bytes_done, bytes_total)`` during an upload.
Progress = Callable[[int, int], None]


class SerialDevice:
    """A twinpass device on a serial port (a pyserial URL or device path).

    port: where the device is; None builds a device that only describes itself (the
    registry lists backends that way) and refuses everything else. The port is opened on
    first use, not here. window: STEP messages in flight; 1 is lockstep, more is faster.
    Either way the weights are exactly those of a fault-free run whatever the line does:
    STEPs carry a step number ``t`` that the device checks (protocol 1.1), so a lost
    request overtaken by later ones is refused and sent again in order, never run out of
    order. (A protocol 1.0 device does not check: there a window > 1 can let it run later
    steps first after a lost request; ``link.stats.order_unknown`` counts such events.)
    base_timeout: the fixed part of a request's timeout (seconds). retries: resends of a
    request before the link resynchronises (and as many after it) before giving up.

    Frames adapt to the line: a STEP carries one step at first and one more after each
    frame that needed no resend, up to what fits a frame; a resend halves the steps of the
    next STEPs and the bytes of the next deploy chunks. On a noisy line (a bit
    flip every few thousand bytes) a large frame is rarely delivered whole, and resending
    it unchanged until the retries run out aborted long runs; small frames get through.
    """

    name = "serial"

    def __init__(
        self,
        port: str | None = None,
        *,
        baudrate: int = 115200,
        window: int = 1,
        base_timeout: float = 0.2,
        first_timeout: float = 2.5,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        if port is not None and (not isinstance(port, str) or not port.strip()):
            raise ConfigError(f"serial device needs a port URL or device path, got {port!r}")
        if int(window) < 1:
            raise ConfigError(f"window must be >= 1, got {window}")
        if isinstance(retries, bool) or int(retries) < 0:
            raise ConfigError(f"retries must be a whole number >= 0, got {retries!r}")
        self.port = port
        self.window = int(window)
        self._link_options = {
            "baudrate": int(baudrate),
            "base_timeout": float(base_timeout),
            "first_timeout": float(first_timeout),
            "retries": int(retries),
        }
        # Steps per STEP frame and bytes per deploy chunk, adapted to the line (see above).
        self._frame_steps = 1
        self._chunk: int | None = None
        self._link: SerialLink | None = None
        self._closed = False
        self._shape: tuple[int, int, int] | None = None  # (n_in, N, n_out) once loaded
        self._lost: str | None = None  # why the learning state is gone (a device reset)
        # The device's next step number (docs/protocol.md §2, STEP order), mirrored: what
        # sets the device's t_next (load, RESET state, STATE_SET) sets this one too.
        self._t = 0
        self.batch = 1

    # -- the link -------------------------------------------------------------------------

    @property
    def link(self) -> SerialLink:
        """The open link (opened on first use)."""
        self._check_open()
        if self.port is None:
            raise DeviceError(
                "the serial device has no port: choose one with --device serial:URL "
                "(a device path, a pty, or socket://host:port)"
            )
        if self._link is None:
            link = SerialLink(self.port, **self._link_options)  # type: ignore[arg-type]
            link.open()
            self._link = link
        return self._link

    def _request(self, msg_type: int, payload: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        try:
            return self.link.request(msg_type, payload, **kw)
        except DeviceResetError as exc:
            self._lost = str(exc)
            raise

    # -- what it is -------------------------------------------------------------------------

    def offer(self) -> DeviceInfo:
        """What this kind of device runs, without asking the device: a rule it cannot run
        is refused before a port is opened or a firmware started."""
        return DeviceInfo(
            name=self.name,
            description="a microcontroller (or firmware-sim) on a serial port, learning "
            "in fixed point (Q16.16 activities, Q7.24 weights): ANP for the hidden layer, the "
            "readout by ANP, NLMS or RLS",
            rules=RULES,
            dtypes=("float32",),
            exact=False,
            readouts=READOUTS,
            readout_p0_max=P0_MAX,
        )

    def info(self) -> DeviceInfo:
        extra: dict[str, Any] = {"port": "none" if self.port is None else "given"}
        max_hidden = None
        if self.port is not None and not self._closed:
            hello = self.link.hello_info
            assert hello is not None
            caps = hello.caps
            max_hidden = caps.max_hidden
            # Only what is the same for every device of a kind: info() is compared across
            # devices and must not change when a model is loaded.
            extra = {
                "fw": hello.fw,
                "board": hello.board,
                "proto": list(hello.proto),
                "arithmetic": list(caps.dtypes),
                "max_frame": caps.max_frame,
                "rx_window": caps.rx_window,
                "max_steps": caps.extra.get("max_steps"),
                "max_batch": caps.extra.get("max_batch"),
                "ram_total": caps.extra.get("ram_total"),
            }
        return replace(self.offer(), max_hidden=max_hidden, extra=extra)

    # -- the model --------------------------------------------------------------------------

    def load(
        self,
        params: Mapping[str, np.ndarray],
        rule: RuleSpec,
        *,
        batch: int = 1,
        seed: int = 0,
        label_delay: int = 0,
    ) -> None:
        self._check_open()
        check_params(params)
        arrays = {k: np.asarray(params[k]) for k in PARAM_NAMES}
        shape = _network_shape(arrays)
        check_batch(batch)
        spec = check_rule(rule, self.offer(), shape)
        check_label_delay(label_delay, 0, "serial")
        if not 0 <= int(seed) <= 0xFFFFFFFF:
            raise ConfigError(f"the device's noise seed is a u32, got {seed}")
        image = quantise_model(arrays, spec)
        caps = self.link.caps
        # A device before protocol 1.3 lists no readouts: it runs the rule's own only.
        offered = tuple(caps.extra.get("readouts") or ("anp",))
        if spec.readout not in offered:
            raise ConfigError(
                f"readout {spec.readout!r} is not one this device runs: it offers "
                f"{', '.join(offered)} (choose it with --readout)"
            )
        if caps.max_hidden is not None and shape[1] > caps.max_hidden:
            raise ConfigError(
                f"N={shape[1]} hidden units do not fit the device's RAM: at most "
                f"{caps.max_hidden} (with one input and output)"
            )
        max_batch = caps.extra.get("max_batch")
        if max_batch is not None and int(batch) > int(max_batch):
            raise ConfigError(f"batch {batch} exceeds the device's max_batch of {max_batch}")
        self._shape = None
        digest = mi.sha256(image)
        try:
            hello = self.link.hello()  # what is active now (another host may have changed it)
        except DeviceResetError:
            hello = self.link.hello_info  # a reboot before a load loses nothing of ours
        assert hello is not None
        if hello.model_hash == digest and hello.payload.get("model_state") == "confirmed":
            # The same image is already active: reloading it from flash drops learned,
            # unsaved changes, which is what a load means, without rewriting flash.
            self._request(MsgType.RESET, {"what": "model"})
        else:
            self.deploy_image(image)
        mode = self._request(
            MsgType.SET_MODE, {"batch": int(batch), "seed": int(seed), "learn": True}
        )
        self._check_mode(mode, spec)
        n = shape[1]
        zeros = pack_array(np.zeros(int(batch) * n), "int32")
        self._request(
            MsgType.STATE_SET,
            {
                "batch": int(batch),
                "xh1": zeros,
                "xh2": zeros,
                "counter": 0,
                "rng_seed": int(seed),
                "rng_counter": 0,
                "eval_batch": 1,
                "xh_eval": pack_array(np.zeros(n), "int32"),
                "t_next": 0,
            },
        )
        self._t = 0
        self.batch = int(batch)
        self._shape = shape
        self._rule = spec
        self._lost = None

    def rule_spec(self) -> RuleSpec:
        """The rule loaded, once the device's own report of what it runs (SET_MODE's reply,
        in fixed point) is checked against it."""
        self._loaded()
        self._check_mode(self._request(MsgType.SET_MODE, {}), self._rule)
        return self._rule

    def _check_mode(self, mode: Mapping[str, Any], spec: RuleSpec) -> None:
        """DeviceError unless the device's mode holds the fixed-point form of ``spec``."""
        want = hyper_from_rule(spec).to_dict()
        got = {k: mode.get(k) for k in want}
        if got != want:
            differ = ", ".join(
                f"{k} {got[k]!r} (rule: {want[k]!r})" for k in want if got[k] != want[k]
            )
            raise DeviceError(f"the device does not run the rule it was given: {differ}")

    def deploy_image(
        self, image: bytes, *, progress: Progress | None = None, verify: bool = False
    ) -> dict[str, Any]:
        """Upload a model image and make it the confirmed active model; resumable.

        BEGIN (resumes at the device's ``off_next`` if the same image was being uploaded),
        CHUNKs in order, COMMIT (the device checks the sha256), a check of the hash the
        device reports (``verify`` also reads the flash slot back and hashes it), CONFIRM.
        Returns the COMMIT reply.
        """
        link = self.link
        digest = mi.sha256(image)
        parsed = mi.parse(image)  # refuse a broken image before touching the device
        # docs/protocol.md §5: BEGIN erases a slot, COMMIT hashes the image and writes
        # flash; real flash erases ~128 KB per second (the simulator: at once).
        flash_s = FLASH_S_PER_BYTE * len(image)
        begin = self._request(
            MsgType.DEPLOY_BEGIN,
            {
                "len": len(image),
                "sha256": digest,
                "shape": list(parsed.shape),
                "dtype": "q16.16/q7.24",
                "hyper": mi.image_hyper_dict(parsed.hyper),
            },
            extra_s=flash_s,
        )
        off = int(begin.get("off_next", 0))
        most = link.caps.max_frame - FRAME_MARGIN
        if progress is not None:
            progress(off, len(image))
        while off < len(image):
            chunk = min(self._chunk or most, most)
            resent = link.stats.retries
            reply = self._request(
                MsgType.DEPLOY_CHUNK,
                {"off": off, "data": image[off : off + chunk]},
                reply_bytes=32,
            )
            # A resend halves the next chunks (not below MIN_CHUNK); a clean one doubles.
            if link.stats.retries > resent:
                self._chunk = max(MIN_CHUNK, chunk // 2)
            elif self._chunk is not None:
                self._chunk = None if 2 * chunk >= most else 2 * chunk
            off = int(reply["off_next"])
            if progress is not None:
                progress(off, len(image))
        commit = self._request(MsgType.DEPLOY_COMMIT, {"sha256": digest}, extra_s=flash_s)
        if bytes(commit.get("model_hash", b"")) != digest:
            raise DeviceError(
                "the device committed a model whose hash differs from the upload: "
                f"{bytes(commit.get('model_hash', b'')).hex()[:16]} != {digest.hex()[:16]}"
            )
        if verify:
            back = self.read_image(source="flash")
            if mi.sha256(back) != digest:
                self._request(MsgType.DEPLOY_ABORT)
                raise DeviceError(
                    "the model read back from the device's flash differs from the upload; "
                    "the pending model was aborted (the previous one stays active)"
                )
        self._request(MsgType.DEPLOY_CONFIRM)
        self._shape = None  # a new model: whatever was loaded before is gone
        return commit

    def read_image(self, *, source: str = "live") -> bytes:
        """The bytes of the device's model image: ``live`` weights or the ``flash`` slot."""
        link = self.link
        chunk = link.caps.max_frame - FRAME_MARGIN
        parts: list[bytes] = []
        off, total, updates = 0, None, None
        while total is None or off < total:
            reply = self._request(
                MsgType.GET_MODEL,
                {"off": off, "len": chunk, "source": source},
                reply_bytes=chunk + FRAME_MARGIN,
            )
            if updates is not None and reply.get("updates") != updates:
                raise DeviceError("the device's weights changed while they were being read")
            updates, total = reply.get("updates"), int(reply["total"])
            data = bytes(reply["data"])
            if not data and off < total:
                raise DeviceError(f"the device returned no model bytes at offset {off}/{total}")
            parts.append(data)
            off += len(data)
        return b"".join(parts)

    def read_model(self) -> dict[str, np.ndarray]:
        self._loaded()
        try:
            return mi.dequantise(self.read_image(source="live"), "float32")
        except mi.ModelImageError as exc:
            raise DeviceError(f"the device sent a malformed model image: {exc}") from exc

    def max_abs_weight(self) -> float:
        return max(float(np.max(np.abs(m))) for m in self.read_model().values())

    def reset_state(self) -> None:
        self._loaded()
        self._request(MsgType.RESET, {"what": "state"})
        self._t = 0  # RESET state starts the device's step numbering over

    # -- learning ------------------------------------------------------------------------

    def step(self, inputs: np.ndarray, targets: np.ndarray) -> StepResult:
        n_in, _, n_out = self._loaded()
        U = _as_block("inputs", inputs, self.batch, n_in)
        Y = _as_block("targets", targets, self.batch, n_out)
        if U.shape[0] != Y.shape[0]:
            raise ShapeError(f"inputs have {U.shape[0]} steps but targets have {Y.shape[0]}")
        T, nb = U.shape[0], self.batch
        # docs/protocol.md §6.1: Q16.16, rounded half away from zero, saturated at ±128.
        qx = encode_activities(U)
        qy = encode_activities(Y)
        S = self._steps_per_frame(nb * (n_in + n_out) * 4, nb * n_out * 8 + 16)
        link = self.link
        # (first step, steps) of each STEP sent, in order: frames vary in size.
        frames: deque[tuple[int, int]] = deque()

        t_base = self._t

        def requests() -> Iterator[tuple[int, dict[str, Any]]]:
            t0 = 0
            resent = link.stats.retries
            while t0 < T:
                # Halve the steps of a frame after a resend, add one after a clean frame
                # (TCP's rule: on a noisy line, frames stay small enough to get through).
                if link.stats.retries > resent:
                    self._frame_steps = max(1, self._frame_steps // 2)
                elif t0 > 0:
                    self._frame_steps = min(S, self._frame_steps + 1)
                resent = link.stats.retries
                s = min(self._frame_steps, S, T - t0)
                frames.append((t0, s))
                yield (
                    MsgType.STEP,
                    {
                        # The device runs only the STEP numbered its t_next: pipelined
                        # STEPs run in this order even when the line loses some of them.
                        "t": (t_base + t0) & T_MASK,
                        "steps": s,
                        "x": pack_array(qx[t0 : t0 + s].reshape(-1), "int32"),
                        "y": pack_array(qy[t0 : t0 + s].reshape(-1), "int32"),
                        "learn": True,
                    },
                )
                t0 += s

        pred = np.zeros((T, nb, n_out), np.float32)
        loss1 = np.zeros(T)
        loss2 = np.zeros(T)
        applied = 0
        stop = False
        replies = self.link.pipeline(
            requests(),
            window=min(self.window, self.link.caps.rx_window),
            reply_bytes=S * (nb * n_out * 8 + 16),
            steps=S,
        )
        try:
            for reply in replies:
                t0, s = frames.popleft()
                y_hat = unpack_array(reply["y_hat"], "int32", (s, nb, n_out))
                pred[t0 : t0 + s] = decode_activities(y_hat)
                loss1[t0 : t0 + s] = decode_loss(unpack_array(reply["loss_1"], "int64", s))
                loss2[t0 : t0 + s] = decode_loss(unpack_array(reply["loss_2"], "int64", s))
                self._t = (t_base + t0 + s) & T_MASK  # the device has run these steps
                if not stop:
                    done = int(reply.get("applied", s))
                    applied += done
                    stop = done < s
        except DeviceResetError as exc:
            self._lost = str(exc)
            raise
        finally:
            replies.close()  # releases the link at once, also when a reply was bad
        return StepResult(pred, loss1, loss2, applied)

    def predict(self, inputs: np.ndarray, *, reset: bool = True) -> np.ndarray:
        n_in, _, n_out = self._loaded()
        nb = inputs.shape[1] if isinstance(inputs, np.ndarray) and inputs.ndim == 3 else -1
        U = _as_block("inputs", inputs, nb, n_in)
        T = U.shape[0]
        qx = encode_activities(U)
        S = self._steps_per_frame(nb * n_in * 4, nb * n_out * 4)
        out = np.zeros((T, nb, n_out), np.float32)
        requests = (
            (
                MsgType.PREDICT,
                {
                    "x": pack_array(qx[t0 : t0 + S].reshape(-1), "int32"),
                    "batch": nb,
                    "reset": bool(reset) and t0 == 0,
                },
            )
            for t0 in range(0, T, S)
        )
        # Lockstep: a PREDICT carries the evaluation state on, so order matters.
        replies = self.link.pipeline(requests, window=1)
        try:
            for t0, reply in zip(range(0, T, S), replies, strict=True):
                s = min(S, T - t0)
                y_hat = unpack_array(reply["y_hat"], "int32", (s, nb, n_out))
                out[t0 : t0 + s] = decode_activities(y_hat)
        except RemoteError as exc:
            if exc.code == "TOO_LARGE":
                raise ConfigError(f"the device cannot predict a batch of {nb}: {exc}") from exc
            raise
        except DeviceResetError as exc:
            self._lost = str(exc)
            raise
        finally:
            replies.close()
        return out

    # -- state for checkpoints -------------------------------------------------------------

    def export_state(self) -> dict[str, np.ndarray]:
        _, n, _ = self._loaded()
        st = self._request(MsgType.STATE_GET, reply_bytes=1024)
        out: dict[str, np.ndarray] = {}
        for key in STATE_INTS:
            out[key] = np.array([int(st[key])], np.uint64 if key == "rng_counter" else np.int64)
        for key, rows in (
            ("xh1", st["batch"]),
            ("xh2", st["batch"]),
            ("xh_eval", st["eval_batch"]),
        ):
            out[key] = unpack_array(st[key], "int32", (int(rows), n))
        if "gv" in st:  # protocol 1.3: the guard's life count and vector
            out["total"] = np.array([int(st["total"])], np.uint64)
            out["gv"] = unpack_array(st["gv"], "int32", (1, n))
        if self._rule.readout == "rls":  # protocol 1.4: RLS's P, row block by row block
            f = self._n_features()
            P = np.empty((f, f), np.int64)
            for row, rows in self._p_blocks(f):
                rep = self._request(
                    MsgType.STATE_GET, {"p_row": row, "p_rows": rows}, reply_bytes=4 * rows * f
                )
                P[row : row + rows] = unpack_array(rep["p"], "int32", (rows, f))
            out["P"] = P
        return out

    def _n_features(self) -> int:
        n_in, n, _ = self._loaded()
        return mi.n_features(n_in, n, self._rule.readout_inputs)

    def _p_blocks(self, f: int) -> list[tuple[int, int]]:
        """(first row, rows) of P's blocks: as many rows as fit one frame."""
        per = max(1, (self.link.caps.max_frame - FRAME_MARGIN) // (4 * f))
        return [(r, min(per, f - r)) for r in range(0, f, per)]

    def import_state(self, state: Mapping[str, np.ndarray]) -> None:
        _, n, _ = self._loaded()
        missing = [k for k in (*STATE_INTS, *STATE_ARRAYS) if k not in state]
        if missing:
            raise ShapeError(
                f"device state lacks {', '.join(missing)}: it was not saved by a serial device"
            )
        payload: dict[str, Any] = {}
        for key in STATE_INTS:
            arr = np.asarray(state[key])
            if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise ShapeError(f"device state {key!r} must be one integer, got {arr!r}")
            payload[key] = int(arr.reshape(-1)[0])
        for key, rows in (("xh1", "batch"), ("xh2", "batch"), ("xh_eval", "eval_batch")):
            arr = np.asarray(state[key])
            if arr.shape != (payload[rows], n):
                raise ShapeError(
                    f"device state {key!r} has shape {arr.shape}, expected {(payload[rows], n)}"
                )
            payload[key] = pack_array(arr.reshape(-1), "int32")
        if "gv" in state:
            gv, total = np.asarray(state["gv"]), np.asarray(state.get("total", 0))
            if gv.shape != (1, n) or total.size != 1:
                raise ShapeError(f"device state 'gv' has shape {gv.shape}, expected {(1, n)}")
            payload["gv"] = pack_array(gv.reshape(-1), "int32")
            payload["total"] = int(total.reshape(-1)[0])
        if payload["batch"] != self.batch:
            raise ShapeError(
                f"device state is for a batch of {payload['batch']}, the device learns "
                f"{self.batch} streams: load with that batch first"
            )
        P = None
        if self._rule.readout == "rls":
            f = self._n_features()
            if "P" not in state:
                raise ShapeError(
                    "device state lacks P, RLS's inverse covariance: it was not saved by a "
                    "device learning with the rls readout"
                )
            P = np.asarray(state["P"])
            if P.shape != (f, f) or not np.issubdtype(P.dtype, np.integer):
                raise ShapeError(f"device state 'P' has shape {P.shape}, expected {(f, f)}")
        # The step numbering goes on where this host is (it is not part of the checkpoint:
        # only the order within one host's session matters).
        payload["t_next"] = self._t
        self._request(MsgType.STATE_SET, payload)
        if P is not None:
            for row, rows in self._p_blocks(P.shape[0]):
                self._request(
                    MsgType.STATE_SET,
                    {"p_row": row, "p": pack_array(P[row : row + rows].reshape(-1), "int32")},
                )

    def close(self) -> None:
        self._closed = True
        self._shape = None
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def __del__(self) -> None:
        # The commands close their devices themselves (twinpass train/stream/hil/deploy):
        # this is only the safety net for library code that drops a device without close()
        # (a notebook, a script), whose open port and reader thread would otherwise live to
        # the end of the process and share the port's bytes with a later opener. Not relied
        # upon: finalisers may run late or, at interpreter exit, not at all.
        try:
            self.close()
        except Exception:  # never raise from a finaliser
            pass

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError("serial device is closed")

    def _loaded(self) -> tuple[int, int, int]:
        self._check_open()
        if self._lost is not None:
            raise DeviceError(f"{self._lost}")
        if self._shape is None:
            raise DeviceError("no model loaded on the serial device: call load() first")
        return self._shape

    def _steps_per_frame(self, request_bytes: int, reply_bytes: int) -> int:
        """Steps per message: as many as fit a frame each way, at most the device's limit."""
        caps = self.link.caps
        room = caps.max_frame - FRAME_MARGIN
        limit = int(caps.extra.get("max_steps") or 1)
        s = min(limit, room // max(request_bytes, 1), room // max(reply_bytes, 1))
        if s < 1:
            raise ConfigError(
                f"one step of this model ({max(request_bytes, reply_bytes)} bytes) does not "
                f"fit the device's {caps.max_frame}-byte frames: use a smaller batch"
            )
        return s


def quantise_model(params: Mapping[str, np.ndarray], rule: RuleSpec) -> bytes:
    """The model image of float parameters and a resolved rule (ConfigError if impossible)."""
    try:
        return mi.quantise(params, check_rule_spec(rule))
    except mi.ModelImageError as exc:
        raise ConfigError(f"the model cannot be put on the device: {exc}") from exc


def _network_shape(arrays: Mapping[str, np.ndarray]) -> tuple[int, int, int]:
    A, R, B, D = (arrays[k] for k in PARAM_NAMES)
    if any(m.ndim != 2 for m in (A, R, B, D)):
        raise ShapeError("parameters A, R, B, D must be matrices")
    n, n_in = A.shape
    n_out = B.shape[0]
    # B reads the hidden state, or [xh, u, 1] (readout_inputs; the image checks which).
    if R.shape != (n, n) or B.shape[1] not in (n, n + n_in + 1) or D.shape != (n, n):
        raise ShapeError(
            f"inconsistent parameter shapes A {A.shape}, R {R.shape}, B {B.shape}, D {D.shape}"
        )
    return n_in, n, n_out


def _as_block(name: str, arr: Any, nb: int, width: int) -> np.ndarray:
    """A float (T, nb, width) block as float64 (never modified); ShapeError otherwise."""
    if not isinstance(arr, np.ndarray) or arr.ndim != 3:
        raise ShapeError(f"{name} must be a 3-d array shaped (T, batch, {width})")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ShapeError(f"{name} must hold floats, got dtype {arr.dtype}")
    if arr.shape[1:] != (nb if nb > 0 else arr.shape[1], width) or arr.shape[1] < 1:
        raise ShapeError(f"{name} has shape {arr.shape}, expected (T, {nb}, {width})")
    return np.asarray(arr, dtype=np.float64)
