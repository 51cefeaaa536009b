"""The portable C core (firmware/core) equals the Python firmware simulator bit for bit.

The host harness ``twinpass_core_host`` (firmware/build.sh) is compiled once per session
with the system C compiler; each case runs the same model image, seed and step stream
through it and through :class:`twinpass.firmware_sim.fixed_point.FixedNet`, and compares
every prediction (both replicas), both losses per step, the final weights (as the image
bytes the C core writes against ``model_image.build`` of the simulator's weights), both
replicas' states, the evaluation state, the noise counter and the saturation count. The
image parser's refusals are compared with ``model_image.parse``'s, and one run goes through
an UndefinedBehaviorSanitizer/AddressSanitizer build.

The stream and output formats are documented in firmware/README.md.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinpass.firmware_sim import guard, ram
from twinpass.firmware_sim.fixed_point import FixedNet, gaussian_q16, noise_words, reward_dl
from twinpass.protocol import model_image as mi
from twinpass.protocol.hyper import READOUT_RLS, hyper_from_rule
from twinpass.protocol.qformat import (
    A_FRAC,
    I32_MAX,
    I32_MIN,
    W_FRAC,
    encode_activities,
    quantise_array,
)
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK
from twinpass.runtime.tasks.mackey_glass import MackeyGlassStream

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(
    CC is None, reason="no C compiler (cc or gcc) on PATH: the C core cannot be built"
)

OP_STEP, OP_REWARD, OP_PREDICT, OP_RESET = 1, 2, 3, 4
F_LEARN, F_TARGET, F_RESET = 0x100, 0x200, 0x400
SANITIZE = "-fsanitize=undefined,address -fno-sanitize-recover=all -fno-omit-frame-pointer -g"


def build(out: Path, extra: str = "", cflags: str = "-O2") -> Path:
    env = {**os.environ, "CC": str(CC), "CFLAGS": cflags, "EXTRA_CFLAGS": extra}
    subprocess.run(
        ["sh", str(FIRMWARE / "build.sh"), str(out)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    return out / "twinpass_core_host"


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("c_core"))


@pytest.fixture(scope="session")
def sanitized_harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build(tmp_path_factory.mktemp("c_core_san"), SANITIZE, "-O1")
    except subprocess.CalledProcessError as exc:  # e.g. a compiler without libasan/libubsan
        pytest.skip(f"the sanitizer build failed: {exc.stderr.strip()[-300:]}")


# -- the Python side: run the simulator, record the ops and what C must reproduce ---------


@dataclass
class Run:
    """A step stream (what the harness reads) and the simulator's results for it."""

    n_in: int
    n: int
    n_out: int
    batch: int
    seed: int
    eval_cap: int = 1
    stream: bytearray = field(default_factory=bytearray)
    expected: bytearray = field(default_factory=bytearray)

    def header(self) -> bytes:
        return b"TPSS" + struct.pack("<HHIHH", 1, self.batch, self.seed, self.eval_cap, 0)


def i32(a: Any) -> bytes:
    return np.asarray(a, np.int64).astype("<i4").tobytes()


def simulate(image: bytes, ops: list[tuple], batch: int, seed: int, eval_cap: int = 1):
    """Run ops through FixedNet; returns (stream bytes, expected output bytes, net).

    ops: ("step", u, y or None, learn), ("reward", t or None (the last step), y target),
    ("predict", u (b, n_in), reset), ("reset",).
    """
    m = mi.parse(image)
    net = FixedNet(m.A, m.R, m.B, m.D, m.hyper, batch=batch, seed=seed)
    run = Run(m.n_in, m.n_hidden, m.n_out, batch, seed, eval_cap)
    t = 0
    last = None
    for op in ops:
        if op[0] == "step":
            _, u, y, learn = op
            flags = OP_STEP | (F_LEARN if learn else 0) | (F_TARGET if y is not None else 0)
            run.stream += struct.pack("<I", flags) + i32(u)
            if y is not None:
                run.stream += i32(y)
            out = net.step(u, y, learn, t)
            last = (t, out)
            run.expected += i32(out.y1) + i32(out.y2)
            run.expected += struct.pack("<qqII", out.loss1, out.loss2, int(out.applied), t)
            t += 1
        elif op[0] == "reward":
            _, rt, target = op
            assert last is not None
            lt, out = last
            rt = lt if rt is None else rt
            dl = reward_dl(out.y1, out.y2, np.asarray(target, np.int64), m.n_out)
            run.stream += struct.pack("<II", OP_REWARD, rt) + dl.astype("<i8").tobytes()
            run.expected += struct.pack("<I", int(net.reward(rt, dl)))
        elif op[0] == "predict":
            _, u, reset = op
            b = u.shape[0]
            run.stream += struct.pack("<II", OP_PREDICT | (F_RESET if reset else 0), b) + i32(u)
            run.expected += i32(net.predict(u[None], b, reset)[0])
        elif op[0] == "reset":
            run.stream += struct.pack("<I", OP_RESET)
            net.reset_state()
        else:
            raise AssertionError(op)
    final = mi.build(net.A, net.R, net.B, net.D, net.hyper)
    run.expected += b"TPFS" + struct.pack("<I", len(final)) + final
    run.expected += struct.pack(
        "<QQII", net.counter, net.rng_counter, net.stats["saturations"], net.xh_eval.shape[0]
    )
    run.expected += i32(net.xh1) + i32(net.xh2) + i32(net.xh_eval)
    run.expected += struct.pack("<QI", net.total, net.stats["guard_projections"]) + i32(net.gv)
    run.expected += struct.pack("<I", net.stats["rls_resets"])
    if net.P is not None:  # readout rls: P (F x F)
        run.expected += i32(net.P)
    return bytes(run.header() + run.stream), bytes(run.expected), net


def run_c(exe: Path, image: bytes, stream: bytes, tmp: Path, env=None) -> bytes:
    (tmp / "model.tpmi").write_bytes(image)
    (tmp / "steps.bin").write_bytes(stream)
    proc = subprocess.run(
        [str(exe), "run", str(tmp / "model.tpmi"), str(tmp / "steps.bin"), "-"],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stderr == b"", proc.stderr.decode(errors="replace")
    return proc.stdout


def assert_same(c_out: bytes, expected: bytes) -> None:
    """Equal bytes; on a difference, say at which byte (and so which record) it starts."""
    if c_out != expected:
        n = min(len(c_out), len(expected))
        first = next((k for k in range(n) if c_out[k] != expected[k]), n)
        pytest.fail(
            f"C output differs from the simulator at byte {first} "
            f"(lengths {len(c_out)} vs {len(expected)}; final section at "
            f"{expected.find(b'TPFS')})"
        )


# -- models and streams ------------------------------------------------------------------


def make_image(n_in: int, n: int, n_out: int, *, seed: int = 0, rule=None, wscale=1.0, D=None):
    """An image of the paper's network with ``rule``'s changes; with a readout over
    [xh, u, 1], B's input and bias columns are drawn too (Params.init starts them at 0)."""
    config = RuleConfig(**{**PAPER_NETWORK, **(rule or {})})
    p = Params.init(n_in, n, n_out, seed=seed, readout_inputs=config.readout_inputs)
    B = p.B.copy()
    B[:, n:] = 0.3 * np.random.default_rng(seed + 100).standard_normal((n_out, B.shape[1] - n))
    hyper = hyper_from_rule(config.resolve(n_in, n, n_out))
    A, R, Bq = (quantise_array(m * wscale, W_FRAC) for m in (p.A, p.R, B))
    Dq = None if D is None else quantise_array(D, W_FRAC)
    return mi.build(A, R, Bq, Dq, hyper)


def mackey_glass_ops(n_streams: int, T: int, seed: int, learn=lambda t: True, horizon=15):
    """Input s[t], target s[t + horizon] of Mackey-Glass streams (one per batch stream)."""
    series = np.stack(
        [MackeyGlassStream(seed=seed + k).next(T + horizon) for k in range(n_streams)]
    )
    U = encode_activities(series[:, :T].T[..., None])  # (T, nb, 1)
    Y = encode_activities(series[:, horizon:].T[..., None])
    return [("step", U[t], Y[t], learn(t)) for t in range(T)]


def gaussian_ops(nb, n_in, n_out, T, *, seed=5, scale=0.5, learn=lambda t: True):
    g = np.random.default_rng(seed)
    ops = []
    for t in range(T):
        u = quantise_array(scale * g.standard_normal((nb, n_in)), A_FRAC, I32_MAX)
        y = quantise_array(scale * g.standard_normal((nb, n_out)), A_FRAC, I32_MAX)
        ops.append(("step", u, y, learn(t)))
    return ops


def neg32(a: np.ndarray) -> np.ndarray:
    """-a, kept in int32 (-(-2**31) is not an int32)."""
    return np.clip(-np.asarray(a, np.int64), I32_MIN, I32_MAX)


def check(harness: Path, tmp: Path, image: bytes, ops, batch=1, seed=0, eval_cap=1):
    stream, expected, net = simulate(image, ops, batch, seed, eval_cap)
    assert_same(run_c(harness, image, stream, tmp), expected)
    return net


# -- bit-exactness -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "seed", "rule", "learn"),
    [
        (8, 0, {}, "on"),
        (8, 1, {"resync_every": 3}, "on"),
        (8, 2, {"resync_every": 0, "output_cap": False}, "on"),
        (32, 3, {}, "on"),
        (32, 4, {"lr": 0.01, "resync_every": 7}, "toggle"),
        (32, 5, {}, "off"),
        (8, 7, {"lr": 0.5, "gain": 100.0}, "on"),
    ],
    ids=[
        "n8_s0",
        "n8_s1_resync3",
        "n8_s2_noresync_nocap",
        "n32_s3",
        "n32_s4_toggle",
        "n32_off",
        "n8_s7_lg_clamped",
    ],
)
def test_mackey_glass_bit_exact(harness, tmp_path, n, seed, rule, learn) -> None:
    image = make_image(1, n, 1, seed=seed, rule=rule)
    pattern = {"on": lambda t: True, "off": lambda t: False, "toggle": lambda t: t % 7 < 4}
    ops = mackey_glass_ops(1, 300, seed, pattern[learn])
    net = check(harness, tmp_path, image, ops, seed=seed)
    weights_moved = not np.array_equal(net.B, mi.parse(image).B)
    assert weights_moved == (learn != "off")


#: The improved rules (docs/protocol.md §6.4-§6.7): NLMS over [xh, u, 1], leaky units, the
#: hidden step normalised by the readout, and the guard (bounds low enough to scale R).
IMPROVED = {
    "nlms_inputs_leak": dict(
        n=32, batch=1, rule={"readout": "nlms", "readout_inputs": True, "leak": 0.3}
    ),
    "nlms_guard_lr_hidden": dict(
        n=16,
        batch=1,
        rule={"readout": "nlms", "readout_inputs": True, "leak": 0.5, "lr_hidden": 0.05,
              "radius_bound": 0.5, "guard_every": 25},
    ),
    "anp_inputs_leak_guard_batch3_two_noisy": dict(
        n=16,
        batch=3,
        rule={"readout_inputs": True, "leak": 0.6, "radius_bound": 0.4, "guard_every": 10,
              "two_noisy_passes": True, "lr_hidden": 0.01},
    ),
    "nlms_decorrelated_batch2": dict(
        n=12,
        batch=2,
        rule={"readout": "nlms", "readout_inputs": True, "leak": 0.8, "decorrelation": True,
              "eps": 1e-2, "readout_step": 1.5},
    ),
    # The RLS readout (§6.8): P in Q7.24, one triangle mirrored, streams in order.
    "rls_inputs_leak": dict(
        n=32, batch=1, rule={"readout": "rls", "readout_inputs": True, "leak": 0.3,
                             "readout_p0": 10.0},
    ),
    "rls_hidden_only": dict(
        n=16, batch=1, rule={"readout": "rls", "readout_inputs": False, "readout_p0": 1.0,
                             "forgetting": 0.999},
    ),
    "rls_guard_lr_hidden_batch2": dict(
        n=16,
        batch=2,
        rule={"readout": "rls", "readout_inputs": True, "leak": 0.5, "lr_hidden": 0.05,
              "radius_bound": 0.5, "guard_every": 25, "readout_p0": 10.0},
    ),
    "rls_decorrelated_batch3": dict(
        n=12,
        batch=3,
        rule={"readout": "rls", "readout_inputs": True, "leak": 0.8, "decorrelation": True,
              "eps": 1e-2, "readout_p0": 5.0, "forgetting": 0.99},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(IMPROVED))
def test_improved_rules_bit_exact(harness, tmp_path, name: str) -> None:
    case = IMPROVED[name]
    image = make_image(1, case["n"], 1, seed=21, rule=case["rule"])
    net = check(
        harness, tmp_path, image, mackey_glass_ops(case["batch"], 200, 21), batch=case["batch"],
        seed=4,
    )  # fmt: skip
    if "radius_bound" in case["rule"]:
        assert net.stats["guard_projections"] > 0  # the guard's arithmetic was compared
    assert not np.array_equal(net.B, mi.parse(image).B)
    if case["rule"].get("readout") == "rls":
        assert net.P is not None and not np.array_equal(net.P, np.diag(np.diag(net.P)))


@pytest.mark.parametrize(
    ("p0", "forgetting", "scale"),
    [(100.0, 0.9999, 300.0), (100.0, 0.7, 2.0), (0.01, 0.7, 50.0)],
    ids=["p0_100_huge_inputs", "p0_100_fast_forgetting", "tiny_p0_fast_forgetting"],
)
def test_rls_resets_bit_exact(harness, tmp_path, p0, forgetting, scale) -> None:
    """RLS at the edges of Q7.24: inputs at and beyond the clamp, P0 = 100 and λ near 2/3
    drive P out of the format or out of positive definiteness, and P is reset (§6.8)."""
    n_in, n, n_out, nb = 3, 10, 2, 2
    image = make_image(
        n_in, n, n_out, seed=30, wscale=4.0,
        rule={"readout": "rls", "readout_inputs": True, "readout_p0": p0,
              "forgetting": forgetting, "leak": 0.5},
    )  # fmt: skip
    ops = gaussian_ops(nb, n_in, n_out, 60, seed=31, scale=scale)
    ext = np.array([[I32_MAX, I32_MIN, 1 << 23], [-(1 << 23), (1 << 23) + 1, 0]], np.int64)
    yext = np.array([[I32_MIN, I32_MAX], [1 << 23, -(1 << 23) - 1]], np.int64)
    ops[7:7] = [("step", ext, yext, True), ("step", neg32(ext), neg32(yext), True)]
    ops += [("reset",), *gaussian_ops(nb, n_in, n_out, 10, seed=32, scale=scale)]
    net = check(harness, tmp_path, image, ops, batch=nb, seed=5)
    if scale > 10 or forgetting < 0.9:
        assert net.stats["rls_resets"] > 0  # the reset path was compared


def test_mackey_glass_batch_two_noisy_bit_exact(harness, tmp_path) -> None:
    image = make_image(1, 32, 1, seed=6, rule={"two_noisy_passes": True, "resync_every": 4})
    check(harness, tmp_path, image, mackey_glass_ops(3, 150, 6), batch=3, seed=9)


def test_saturation_bit_exact(harness, tmp_path) -> None:
    """Inputs at and far beyond the clamp bounds, weights near ±128, a stored D that drives
    xh into its ±16 clamp, a large learning rate (the weights then hit the int32 clamp)."""
    n_in, n, n_out, nb = 3, 12, 2, 2
    D = 20.0 * np.eye(n) + 0.5
    image = make_image(n_in, n, n_out, seed=7, rule={"lr": 0.2, "sigma": 0.05}, wscale=40.0, D=D)
    ops = gaussian_ops(nb, n_in, n_out, 40, seed=8, scale=300.0)
    ext = np.array([[I32_MAX, I32_MIN, 1 << 23], [-(1 << 23), (1 << 23) + 1, 0]], np.int64)
    yext = np.array([[I32_MIN, I32_MAX], [1 << 23, -(1 << 23) - 1]], np.int64)
    ops[5:5] = [("step", ext, yext, True), ("step", neg32(ext), neg32(yext), True)]
    net = check(harness, tmp_path, image, ops, batch=nb, seed=3)
    assert net.stats["saturations"] > 0
    w = np.concatenate([net.A.ravel(), net.R.ravel(), net.B.ravel()])
    assert ((w == I32_MAX) | (w == I32_MIN)).any()  # weights at the int32 clamp


def test_output_cap_binds_and_is_bit_exact(harness, tmp_path) -> None:
    rule = {"lr": 0.5, "sigma": 0.3, "resync_every": 2}
    capped = make_image(2, 8, 1, seed=9, rule=rule)
    ops = gaussian_ops(1, 2, 1, 50, seed=10)
    net = check(harness, tmp_path, capped, ops, seed=4)
    uncapped = make_image(2, 8, 1, seed=9, rule={**rule, "output_cap": False})
    net2 = check(harness, tmp_path, uncapped, ops, seed=4)
    assert not np.array_equal(net.B, net2.B)  # the cap changed the output step


def test_decorrelation_bit_exact(harness, tmp_path) -> None:
    rule = {"decorrelation": True, "eps": 1e-2}
    image = make_image(2, 16, 2, seed=11, rule=rule, D=np.eye(16) + 0.01)
    assert mi.parse(image).D is not None
    net = check(harness, tmp_path, image, gaussian_ops(2, 2, 2, 40, seed=12), batch=2, seed=5)
    assert not np.array_equal(net.D, mi.parse(image).D)


def test_decorrelation_from_identity_image_bit_exact(harness, tmp_path) -> None:
    """An image without D but with decorrelation on: D starts at the identity and is learned
    (and the final image stores it)."""
    p = Params.init(1, 8, 1, seed=13)
    hyper = hyper_from_rule(
        RuleConfig(**PAPER_NETWORK, decorrelation=True, eps=1e-2).resolve(1, 8, 1)
    )
    image = mi.build(*(quantise_array(m, W_FRAC) for m in (p.A, p.R, p.B)), None, hyper)
    assert mi.parse(image).D is None
    check(harness, tmp_path, image, mackey_glass_ops(1, 60, 13), seed=6)


def test_reward_variant_predict_and_reset_bit_exact(harness, tmp_path) -> None:
    """The reward variant (a matching, a stale and a missed REWARD), PREDICT with batch
    changes and resets, RESET of the state, and decorrelation on the reward path."""
    n_in, n, n_out, nb = 2, 10, 2, 2
    image = make_image(n_in, n, n_out, seed=14, rule={"lr": 0.02, "decorrelation": True})
    g = np.random.default_rng(15)

    def q(*shape):
        return quantise_array(0.5 * g.standard_normal(shape), A_FRAC)

    ops: list[tuple] = []
    for t in range(30):
        y = q(nb, n_out)
        if t % 3 == 0:
            ops += [("step", q(nb, n_in), None, True), ("reward", None, y)]
        elif t % 3 == 1:
            ops += [("step", q(nb, n_in), None, True)]  # missed: dropped by the next step
        else:
            ops += [("step", q(nb, n_in), y, True), ("reward", None, y)]  # nothing pending
        if t == 12:
            ops += [("reward", 3, y)]  # stale t
        if t % 5 == 0:
            b = 1 + t % 3
            ops += [("predict", q(b, n_in), t % 10 == 0), ("predict", q(b, n_in), False)]
        if t == 20:
            ops += [("reset",)]
    net = check(harness, tmp_path, image, ops, batch=nb, seed=7, eval_cap=3)
    assert not np.array_equal(net.A, mi.parse(image).A)


def test_tables_and_noise_words_pinned(harness) -> None:
    out = subprocess.run([str(harness), "selftest"], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "tanh_crc32 0x4616d492"
    words = [int(v) for v in lines[1].split(":")[1].split()]
    assert words == noise_words(0, 0, 4).tolist()
    assert int(lines[2].split(":")[1]) == int(noise_words(7, (5 << 32) + 3, 1)[0])
    samples = [int(v) for v in lines[3].split(":")[1].split()]
    assert samples == gaussian_q16(3, 0, 4, 65536).tolist()
    # The guard's table and its integer logarithm and exponential (§6.7).
    assert lines[4] == f"exp2_crc32 0x{guard.EXP2_TABLE_CRC32:08x}"
    assert lines[5].split(":")[1].split() == [
        str(guard.log2_q16(3)),
        str(guard.log2_q16((1 << 50) - 1)),
    ]
    assert lines[6].split(":")[1].split() == [
        str(guard.exp2_neg_q30(x)) for x in (32768, 114688, 40 << 16)
    ]


# -- image refusals ------------------------------------------------------------------------


def _recrc_header(img: bytearray) -> bytearray:
    img[92:96] = struct.pack("<I", zlib.crc32(bytes(img[:92])))
    return img


def _patch(image: bytes, offset: int, fmt: str, value: int, fix_crc: bool = True) -> bytes:
    img = bytearray(image)
    struct.pack_into(fmt, img, offset, value)
    return bytes(_recrc_header(img) if fix_crc else img)


# What model_image.parse says for each of the C parser's refusals.
PY_MESSAGE = {
    "short": "shorter than its header",
    "bad_magic": "not a twinpass model image",
    "bad_version": "is not supported",
    "bad_header_crc": "header CRC mismatch",
    "bad_format": "activities",
    "bad_flags": "unknown flags",
    "bad_dims": "outside the format's limits",
    "bad_size": "does not match its header",
    "bad_payload_crc": "payload CRC mismatch",
    "bad_hyper": "hyperparameters are invalid",
}


def _refusals() -> dict[str, tuple[bytes, str]]:
    good = make_image(2, 6, 1, seed=16, D=np.eye(6) * 0.5)
    flip_payload = bytearray(good)
    flip_payload[100] ^= 0x10
    flip_header = bytearray(good)
    flip_header[9] ^= 0x01
    return {
        "empty": (b"", "short"),
        "prefix_only": (good[:5], "short"),
        "header_only": (good[:96], "short"),
        "bad_magic": (b"TPMX" + good[4:], "bad_magic"),
        "bad_magic_recrc": (bytes(_recrc_header(bytearray(b"XPMI" + good[4:]))), "bad_magic"),
        "format_1": (_patch(good, 4, "<H", 1), "bad_version"),
        "format_1_header_only": (_patch(good, 4, "<H", 1)[:64], "bad_version"),
        "format_3": (_patch(good, 4, "<H", 3), "bad_version"),
        "header_bit_flip": (bytes(flip_header), "bad_header_crc"),
        "header_crc_wrong": (_patch(good, 92, "<I", 0, fix_crc=False), "bad_header_crc"),
        "header_size": (_patch(good, 6, "<H", 64), "bad_format"),
        "q_format": (_patch(good, 17, "<B", 16), "bad_format"),
        "weight_bytes": (_patch(good, 18, "<B", 2), "bad_format"),
        "unknown_flag": (_patch(good, 14, "<H", 0x21), "bad_flags"),
        "zero_hidden": (_patch(good, 10, "<H", 0), "bad_dims"),
        "too_many_inputs": (_patch(good, 8, "<H", 257), "bad_dims"),
        "truncated": (good[:-4], "bad_size"),
        "truncated_to_100": (good[:100], "bad_size"),
        "padded": (good + b"\0\0\0\0", "bad_size"),
        "payload_len_field": (_patch(good, 60, "<I", 4), "bad_size"),
        "d_flag_without_d": (_patch(good, 14, "<H", 0x02), "bad_size"),
        "inputs_flag_without_columns": (_patch(good, 14, "<H", 0x13), "bad_size"),
        "payload_bit_flip": (bytes(flip_payload), "bad_payload_crc"),
        "payload_crc_wrong": (good[:-4] + b"\0\0\0\0", "bad_payload_crc"),
        "sigma_too_big": (_patch(good, 24, "<I", 65537), "bad_hyper"),
        "lr_zero": (_patch(good, 20, "<I", 0), "bad_hyper"),
        "resync_too_big": (_patch(good, 36, "<I", 0x10000), "bad_hyper"),
        "readout_3": (_patch(good, 19, "<B", 3), "bad_hyper"),
        "readout_rls_p0_zero": (_patch(_patch(good, 19, "<B", 2), 68, "<I", 0), "bad_hyper"),
        "p0_above_100": (_patch(good, 68, "<I", (100 << 24) + 1), "bad_hyper"),
        "rls_p0_above_100": (
            _patch(_patch(good, 19, "<B", 2), 68, "<I", (100 << 24) + 1),
            "bad_hyper",
        ),
        "im1_2_31": (_patch(good, 64, "<I", 1 << 31), "bad_hyper"),
        "lr_hidden_zero": (_patch(good, 40, "<I", 0), "bad_hyper"),
        "mu_two": (_patch(good, 44, "<I", 131072), "bad_hyper"),
        "leak_zero": (_patch(good, 48, "<I", 0), "bad_hyper"),
        "leak_above_one": (_patch(good, 48, "<I", 65537), "bad_hyper"),
        "guard_every_zero": (_patch(good, 56, "<I", 0), "bad_hyper"),
    }


REFUSALS = _refusals()


@pytest.mark.parametrize("name", list(REFUSALS))
def test_image_refusals_agree_with_the_python_parser(harness, tmp_path, name) -> None:
    data, code = REFUSALS[name]
    path = tmp_path / "bad.tpmi"
    path.write_bytes(data)
    out = subprocess.run([str(harness), "check", str(path)], capture_output=True, text=True)
    assert (out.returncode, out.stdout.splitlines()[0]) == (3, code)
    with pytest.raises(mi.ModelImageError, match=PY_MESSAGE[code]):
        mi.parse(data)


def test_valid_images_are_accepted_by_both(harness, tmp_path) -> None:
    for k, image in enumerate(
        [
            make_image(2, 6, 1, D=np.eye(6) * 0.5),
            make_image(1, 1, 1),
            make_image(4, 128, 3),
            make_image(3, 5, 2, rule={"two_noisy_passes": True, "decorrelation": True}),
            make_image(
                3,
                40,
                2,
                rule={
                    "readout": "nlms",
                    "readout_inputs": True,
                    "leak": 0.3,
                    "radius_bound": 1.1,
                    "decorrelation": True,
                },
            ),
            make_image(
                3, 20, 2, rule={"readout": "rls", "readout_inputs": True, "readout_p0": 10.0}
            ),
            make_image(1, 8, 1, rule={"readout": "rls", "readout_p0": 100.0, "forgetting": 0.7}),
            _patch(make_image(1, 8, 1), 68, "<I", 0),  # a 1.3 image: no P0, readout nlms
            _patch(
                make_image(1, 4, 1, rule={"readout": "rls", "readout_p0": 1.0}),
                64,
                "<I",
                (1 << 31) - 1,
            ),
        ]
    ):
        path = tmp_path / f"ok{k}.tpmi"
        path.write_bytes(image)
        out = subprocess.run([str(harness), "check", str(path)], capture_output=True, text=True)
        m = mi.parse(image)
        assert out.returncode == 0, out.stdout
        lines = out.stdout.splitlines()
        assert lines[1].startswith(f"shape {m.n_in} {m.n_hidden} {m.n_out}")
        # The C core needs no more RAM than the simulator's budget (§7.3) grants.
        for line, batch in zip(lines[2:4], (1, 64), strict=True):
            budget = ram.ram_footprint(
                m.n_in, m.n_hidden, m.n_out, batch=batch, eval_batch=batch,
                d_present=m.D is not None, decorrelation=m.hyper.decorrelation,
                readout_inputs=m.hyper.readout_inputs, rls=m.hyper.readout == READOUT_RLS,
            )  # fmt: skip
            assert int(line.split(":")[1]) <= budget, (line, budget)


# -- sanitizers ----------------------------------------------------------------------------


def test_sanitizer_build_is_clean_and_bit_exact(sanitized_harness, tmp_path) -> None:
    """UBSan (every signed overflow, shift and conversion check, fatal) and ASan over the
    saturation, decorrelation, two-noisy, reward and predict paths."""
    env = {**os.environ, "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    n_in, n, n_out, nb = 3, 12, 2, 2
    image = make_image(
        n_in, n, n_out, seed=17, wscale=40.0, D=20.0 * np.eye(n) + 0.5,
        rule={"lr": 0.2, "sigma": 0.05, "decorrelation": True, "eps": 1e-2,
              "two_noisy_passes": True, "resync_every": 3},
    )  # fmt: skip
    ops = gaussian_ops(nb, n_in, n_out, 25, seed=18, scale=300.0)
    ext = np.array([[I32_MAX, I32_MIN, 1 << 23], [I32_MIN, I32_MAX, -1]], np.int64)
    ops += [
        ("step", ext, ext[:, :2], True),
        ("step", ext, None, True),
        ("reward", None, neg32(ext[:, :2])),
    ]
    ops += [("predict", ext, True), ("reset",), ("predict", ext[:1], False)]
    stream, expected, _ = simulate(image, ops, nb, 8, eval_cap=2)
    assert_same(run_c(sanitized_harness, image, stream, tmp_path, env=env), expected)
    mg = make_image(1, 32, 1, seed=19)
    stream, expected, _ = simulate(mg, mackey_glass_ops(1, 60, 19), 1, 2)
    assert_same(run_c(sanitized_harness, mg, stream, tmp_path, env=env), expected)

    def at_the_clamp(image: bytes, ops_seed: int, seed: int) -> FixedNet:
        """Gaussian steps far beyond the clamp, then one at the int32 edge, and a predict."""
        ops = gaussian_ops(nb, n_in, n_out, 25, seed=ops_seed, scale=300.0)
        ops += [("step", ext, ext[:, :2], True), ("predict", ext, True)]
        stream, expected, net = simulate(image, ops, nb, seed, eval_cap=2)
        assert_same(run_c(sanitized_harness, image, stream, tmp_path, env=env), expected)
        return net

    # The improved rules at their extremes: NLMS at μ near 2 over [xh, u, 1] with inputs at
    # the clamp, a stored D, leak, the guard scaling big weights.
    nl = make_image(
        n_in, n, n_out, seed=20, wscale=40.0, D=20.0 * np.eye(n) + 0.5,
        rule={"readout": "nlms", "readout_inputs": True, "readout_step": 1.99, "leak": 0.4,
              "lr_hidden": 0.2, "radius_bound": 0.9, "guard_every": 3},
    )  # fmt: skip
    assert at_the_clamp(nl, 21, 9).stats["guard_projections"] > 0
    # RLS (§6.8) with P0 at its bound, λ near 2/3 and inputs at the clamp: P's resets.
    rls = make_image(
        n_in, n, n_out, seed=22, wscale=4.0,
        rule={"readout": "rls", "readout_inputs": True, "readout_p0": 100.0,
              "forgetting": 0.7, "leak": 0.4, "lr_hidden": 0.1, "decorrelation": True},
    )  # fmt: skip
    assert at_the_clamp(rls, 23, 10).stats["rls_resets"] > 0


def test_core_sources_use_no_heap_io_or_floating_point() -> None:
    """The core is shared by every target: no allocation, no stdio, no float (the device
    path has no floating point, docs/protocol.md §6)."""
    banned = re.compile(
        r"\b(malloc|calloc|realloc|free|printf|fprintf|FILE|float|double)\b"
        r"|#include\s*<(stdio|stdlib|math)\.h>"
    )
    sources = sorted((FIRMWARE / "core").glob("*.[ch]"))
    assert len(sources) >= 10
    for path in sources:
        code = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)  # comments may say so
        hits = sorted({m.group(0) for m in banned.finditer(code)})
        assert not hits, f"{path.name} uses {hits}"
