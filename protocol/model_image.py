"""The model image: the blob deployed to a device, stored in a flash slot, read back.

Layout (docs/protocol.md §7), all little-endian:

- a 96-byte header: magic ``TPMI``, format version, header size, n_in, N, n_out, flags,
  the Q formats, the readout, the fixed-point hyperparameters, the payload length, RLS's
  im1_q and p0_q (1.4; the bytes were reserved zero before), and a CRC32 of the header's
  first 92 bytes;
- the payload: int32 arrays A (N×n_in), R (N×N), B (n_out×F, F = N + n_in + 1 with the
  READOUT_INPUTS flag, else N), then D (N×N) only when the D_PRESENT flag is set (D =
  identity otherwise), row-major;
- a CRC32 of the payload.

The image identifies a model by its sha256 (:func:`sha256`). :func:`quantise` (host side:
floats in) and :func:`build` (device side: integers in) make images; :func:`parse` checks
one and returns a :class:`ModelImage`. The RAM a model needs on a device is the device's
business (``twinpass.firmware_sim.ram`` for the simulator).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinpass.core.errors import CheckpointError
from twinpass.core.rule_spec import RuleSpec

from .hyper import Hyper, hyper_from_rule
from .qformat import A_FRAC, I32_MAX, MAX_HIDDEN, MAX_IO, ONE_W, W_FRAC, quantise_array

MAGIC = b"TPMI"
#: 2: the readout (NLMS over [xh, u, 1]), leaky units, the hidden step and the stability
#: guard (docs/protocol.md §7). A device reads one format and refuses the others by name.
FORMAT_VERSION = 2
#: What every format has at its start: magic, version (read before anything else, so that
#: an image of another format is refused as such, not as a corrupted one).
PREFIX = struct.Struct("<4sH")
HEADER = struct.Struct("<4sHHHHHHBBBBIIIIIIIIIIIII20xI")
assert HEADER.size == 96
TRAILER = struct.Struct("<I")
WEIGHT_BYTES = 4

FLAG_D_PRESENT = 0x01
FLAG_OUTPUT_CAP = 0x02
FLAG_TWO_NOISY = 0x04
FLAG_DECORRELATION = 0x08
FLAG_READOUT_INPUTS = 0x10
KNOWN_FLAGS = (
    FLAG_D_PRESENT | FLAG_OUTPUT_CAP | FLAG_TWO_NOISY | FLAG_DECORRELATION | FLAG_READOUT_INPUTS
)


class ModelImageError(CheckpointError):
    """A model image is malformed, corrupted, of another format, or cannot be built."""


@dataclass
class ModelImage:
    """A parsed image: shape, hyperparameters and the integer arrays (int64 holding int32)."""

    n_in: int
    n_hidden: int
    n_out: int
    hyper: Hyper
    A: np.ndarray
    R: np.ndarray
    B: np.ndarray
    D: np.ndarray | None  # None: identity

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_in, self.n_hidden, self.n_out)


def n_features(n_in: int, n_hidden: int, readout_inputs: bool) -> int:
    """F, the width of B: the readout's features [xh, u, 1] or xh alone."""
    return n_hidden + (n_in + 1 if readout_inputs else 0)


def image_size(
    n_in: int, n_hidden: int, n_out: int, d_present: bool, readout_inputs: bool = False
) -> int:
    """Bytes of an image of this shape."""
    n = n_hidden
    f = n_features(n_in, n, readout_inputs)
    values = n * n_in + n * n + n_out * f + (n * n if d_present else 0)
    return HEADER.size + WEIGHT_BYTES * values + TRAILER.size


def sha256(image: bytes) -> bytes:
    """The image's identity: its sha256 digest (32 bytes)."""
    return hashlib.sha256(image).digest()


def _check_dims(n_in: int, n: int, n_out: int) -> None:
    if not (1 <= n_in <= MAX_IO and 1 <= n <= MAX_HIDDEN and 1 <= n_out <= MAX_IO):
        raise ModelImageError(
            f"model {n_in}-{n}-{n_out} is outside the format's limits "
            f"(n_in, n_out in 1..{MAX_IO}, N in 1..{MAX_HIDDEN})"
        )


def build(A: np.ndarray, R: np.ndarray, B: np.ndarray, D: np.ndarray | None, hyper: Hyper) -> bytes:
    """An image from integer arrays (Q24 values in int32 range); D None for identity."""
    A, R, B = (np.asarray(m, np.int64) for m in (A, R, B))
    n, n_in = A.shape
    n_out = B.shape[0]
    _check_dims(n_in, n, n_out)
    f = n_features(n_in, n, hyper.readout_inputs)
    if R.shape != (n, n) or B.shape != (n_out, f) or (D is not None and D.shape != (n, n)):
        raise ModelImageError(
            f"inconsistent shapes A {A.shape}, R {R.shape}, B {B.shape}"
            + ("" if D is None else f", D {np.shape(D)}")
            + f": B must be {n_out} x {f} (readout over "
            + ("[xh, u, 1])" if hyper.readout_inputs else "xh)")
        )
    arrays = [A, R, B] + ([] if D is None else [np.asarray(D, np.int64)])
    for name, m in zip("ARBD", arrays, strict=False):
        if m.size and (m.max() > I32_MAX or m.min() < -I32_MAX - 1):
            raise ModelImageError(f"{name} holds values outside int32")
    payload = b"".join(m.astype("<i4").tobytes() for m in arrays)
    flags = (
        (FLAG_D_PRESENT if D is not None else 0)
        | (FLAG_OUTPUT_CAP if hyper.output_cap else 0)
        | (FLAG_TWO_NOISY if hyper.two_noisy else 0)
        | (FLAG_DECORRELATION if hyper.decorrelation else 0)
        | (FLAG_READOUT_INPUTS if hyper.readout_inputs else 0)
    )
    head = HEADER.pack(
        MAGIC, FORMAT_VERSION, HEADER.size, n_in, n, n_out, flags,
        A_FRAC, W_FRAC, WEIGHT_BYTES, hyper.readout,
        hyper.lr_q, hyper.sigma_q, hyper.eps_q, hyper.gain_q, hyper.resync_every,
        hyper.lrh_q, hyper.mu_q, hyper.leak_q, hyper.bound_q, hyper.guard_every,
        len(payload), hyper.im1_q, hyper.p0_q, 0,
    )  # fmt: skip
    head = head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))
    return head + payload + TRAILER.pack(zlib.crc32(payload))


def quantise(params: Mapping[str, Any], hyper: Hyper | RuleSpec) -> bytes:
    """An image from float arrays A, R, B, D and a Hyper or a resolved rule.

    Weights are rounded to Q7.24 (half away from zero). D is omitted (identity) when it is
    exactly the identity and decorrelation is off. Weights must be finite and below 128
    in magnitude.
    """
    missing = [k for k in "ARBD" if k not in params]
    if missing:
        raise ModelImageError(f"model lacks parameter(s) {', '.join(missing)}")
    arrs = {k: np.asarray(params[k], np.float64) for k in "ARBD"}
    for k, m in arrs.items():
        if m.ndim != 2:
            raise ModelImageError(f"{k} must be a matrix, got shape {m.shape}")
        if not np.isfinite(m).all():
            raise ModelImageError(f"{k} holds non-finite values: it cannot be quantised")
        big = float(np.abs(m).max()) if m.size else 0.0
        if big >= 128.0:
            raise ModelImageError(f"{k} has a weight of magnitude {big:g}: Q7.24 holds < 128")
    n = arrs["A"].shape[0]
    if not isinstance(hyper, Hyper):
        hyper = hyper_from_rule(hyper)
    identity = arrs["D"].shape == (n, n) and np.array_equal(arrs["D"], np.eye(n))
    D = None if identity and not hyper.decorrelation else quantise_array(arrs["D"], W_FRAC)
    return build(*(quantise_array(arrs[k], W_FRAC) for k in "ARB"), D, hyper)


def parse(image: bytes) -> ModelImage:
    """Check and decode an image; :class:`ModelImageError` names what is wrong (an image of
    another format by both format versions)."""
    data = bytes(image)
    if len(data) < PREFIX.size:
        raise ModelImageError(f"model image of {len(data)} bytes is shorter than its header")
    magic, version = PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise ModelImageError(f"not a twinpass model image (magic {magic!r}, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise ModelImageError(
            f"model image format {version} is not supported (this firmware reads format "
            f"{FORMAT_VERSION}): quantise the model again with this version of twinpass"
        )
    if len(data) < HEADER.size + TRAILER.size:
        raise ModelImageError(f"model image of {len(data)} bytes is shorter than its header")
    (magic, version, hsize, n_in, n, n_out, flags, a_frac, w_frac, wbytes, readout,
     lr_q, sigma_q, eps_q, gain_q, resync, lrh_q, mu_q, leak_q, bound_q, guard_every,
     plen, im1_q, p0_q, hcrc) = HEADER.unpack_from(data)  # fmt: skip
    if zlib.crc32(data[: HEADER.size - 4]) != hcrc:
        raise ModelImageError("model image header CRC mismatch: the header is corrupted")
    if hsize != HEADER.size or (a_frac, w_frac, wbytes) != (A_FRAC, W_FRAC, WEIGHT_BYTES):
        raise ModelImageError(
            f"model image uses Q{a_frac} activities / Q{w_frac} weights in {wbytes} bytes; "
            f"this firmware runs Q{A_FRAC} / Q{W_FRAC} in {WEIGHT_BYTES}"
        )
    if flags & ~KNOWN_FLAGS:
        raise ModelImageError(f"model image has unknown flags 0x{flags:04x}")
    _check_dims(n_in, n, n_out)
    d_present = bool(flags & FLAG_D_PRESENT)
    inputs = bool(flags & FLAG_READOUT_INPUTS)
    expected = image_size(n_in, n, n_out, d_present, inputs)
    if len(data) != expected or plen != expected - HEADER.size - TRAILER.size:
        raise ModelImageError(
            f"model image of {len(data)} bytes does not match its header "
            f"({n_in}-{n}-{n_out} needs {expected}): truncated or padded"
        )
    payload = data[HEADER.size : -TRAILER.size]
    if zlib.crc32(payload) != TRAILER.unpack_from(data, len(data) - TRAILER.size)[0]:
        raise ModelImageError("model image payload CRC mismatch: the weights are corrupted")
    try:
        hyper = Hyper(
            lr_q=lr_q,
            sigma_q=sigma_q,
            eps_q=eps_q,
            gain_q=gain_q,
            resync_every=resync,
            output_cap=bool(flags & FLAG_OUTPUT_CAP),
            two_noisy=bool(flags & FLAG_TWO_NOISY),
            decorrelation=bool(flags & FLAG_DECORRELATION),
            lrh_q=lrh_q,
            readout=readout,
            readout_inputs=inputs,
            mu_q=mu_q,
            leak_q=leak_q,
            bound_q=bound_q,
            guard_every=guard_every,
            im1_q=im1_q,
            p0_q=p0_q,
        )
    except Exception as exc:
        raise ModelImageError(f"model image hyperparameters are invalid: {exc}") from None
    vals = np.frombuffer(payload, "<i4").astype(np.int64)
    f = n_features(n_in, n, inputs)
    sizes = [n * n_in, n * n, n_out * f]
    A = vals[: sizes[0]].reshape(n, n_in)
    R = vals[sizes[0] : sizes[0] + sizes[1]].reshape(n, n)
    B = vals[sizes[0] + sizes[1] : sum(sizes)].reshape(n_out, f)
    D = vals[sum(sizes) :].reshape(n, n) if d_present else None
    return ModelImage(n_in, n, n_out, hyper, A.copy(), R.copy(), B.copy(), D)


def dequantise(model: ModelImage | bytes, dtype: str = "float32") -> dict[str, np.ndarray]:
    """Float arrays A, R, B, D of an image (D the identity when the image omits it)."""
    m = parse(model) if isinstance(model, bytes | bytearray) else model
    scale = 1.0 / ONE_W
    D = np.eye(m.n_hidden) if m.D is None else m.D * scale
    out = {"A": m.A * scale, "R": m.R * scale, "B": m.B * scale, "D": D}
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in out.items()}


def image_hyper_dict(hyper: Hyper) -> dict[str, Any]:
    """The hyperparameters as plain data (for DEPLOY_BEGIN's informative ``hyper``)."""
    return hyper.to_dict()
