"""The fixed-point network and ANP learner: exactness, determinism, and agreement with a
float64 NumPy reference of the same rule within quantisation error."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from twinpass.core.errors import ConfigError
from twinpass.firmware_sim import fixed_point as fp
from twinpass.firmware_sim import tanh_table
from twinpass.firmware_sim.fixed_point import FixedNet, gaussian_q16, noise_words, tanh_q16
from twinpass.protocol.hyper import hyper_from_rule
from twinpass.protocol.qformat import A_FRAC, I32_MAX, I32_MIN, ONE_A, ONE_W, W_FRAC, quantise_array
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK


def make_net(n=8, n_in=2, n_out=1, seed=0, batch=1, **hyper) -> FixedNet:
    p = Params.init(n_in, n, n_out, seed=seed)
    h = hyper_from_rule(RuleConfig(**PAPER_NETWORK, **hyper).resolve(n_in, n, n_out))
    q = [quantise_array(m, W_FRAC) for m in (p.A, p.R, p.B)]
    return FixedNet(*q, None, h, batch=batch, seed=seed)


def stream(T=60, n_in=2, n_out=1, batch=1, seed=1):
    g = np.random.default_rng(seed)
    U = quantise_array(0.5 * g.standard_normal((T, batch, n_in)), A_FRAC)
    Y = quantise_array(0.3 * g.standard_normal((T, batch, n_out)), A_FRAC)
    return U, Y


# -- tanh ---------------------------------------------------------------------------------------


def test_tanh_table_is_the_documented_one() -> None:
    assert zlib.crc32(tanh_table.TANH_TABLE.astype("<i4").tobytes()) == 0x4616D492
    assert tanh_table.TANH_TABLE_CRC32 == 0x4616D492


def test_tanh_is_within_two_lsb_odd_and_saturates() -> None:
    a = np.arange(-9 * ONE_A, 9 * ONE_A, 97, dtype=np.int64)
    y = tanh_q16(a)
    ref = np.tanh(a / ONE_A) * ONE_A
    assert np.max(np.abs(y - ref)) <= 2
    assert np.array_equal(tanh_q16(-a), -y)
    ext = np.array([I32_MIN, I32_MAX, 8 * ONE_A, -8 * ONE_A], np.int64)
    assert tanh_q16(ext).tolist() == [-ONE_A, ONE_A, ONE_A, -ONE_A]


# -- noise ----------------------------------------------------------------------------------------


def test_noise_words_are_pinned_for_the_c_port() -> None:
    # lowbias32 of lowbias32(p ^ key) ^ hi; these values are the reference for firmware/C.
    words = noise_words(0, 0, 4).tolist()
    assert words == noise_words(0, 0, 4).tolist()
    assert int(fp.lowbias32(np.array([1], np.uint32))[0]) == _lowbias32_py(1)
    key = _lowbias32_py(0x9E3779B9)
    assert words == [_lowbias32_py(_lowbias32_py(p ^ key) ^ 0) for p in range(4)]
    hi = noise_words(7, (5 << 32) + 3, 1)[0]
    assert hi == _lowbias32_py(_lowbias32_py(3 ^ _lowbias32_py(7 ^ 0x9E3779B9)) ^ 5)


def _lowbias32_py(x: int) -> int:
    m = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    x ^= x >> 16
    return x


def test_noise_has_the_requested_sd_and_is_chunking_independent() -> None:
    sigma_q = ONE_A // 4
    g = gaussian_q16(3, 0, 40000, sigma_q)
    assert abs(g.mean()) < 0.02 * sigma_q
    assert abs(g.std() / sigma_q - 1) < 0.02
    assert np.abs(g).max() <= 3.47 * sigma_q
    parts = np.concatenate([gaussian_q16(3, 0, 100, sigma_q), gaussian_q16(3, 200, 50, sigma_q)])
    assert np.array_equal(parts, g[:150])
    assert not np.array_equal(gaussian_q16(4, 0, 100, sigma_q), g[:100])


# -- determinism ----------------------------------------------------------------------------------


def run(net: FixedNet, U, Y, learn=True):
    outs = [net.step(U[t], Y[t], learn) for t in range(U.shape[0])]
    return np.array([o.y1 for o in outs]), np.array([(o.loss1, o.loss2) for o in outs])


def test_same_seed_same_bits_other_seed_other_bits() -> None:
    U, Y = stream(T=80, batch=2)
    a, b, c = (make_net(batch=2, seed=s) for s in (0, 0, 0))
    c.reseed(9)
    ra, rb = run(a, U, Y), run(b, U, Y)
    run(c, U, Y)
    assert np.array_equal(ra[0], rb[0]) and np.array_equal(ra[1], rb[1])
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in "ARB")
    assert not np.array_equal(a.R, c.R)


def test_export_import_continues_bit_identically() -> None:
    U, Y = stream(T=50, batch=2)
    a = make_net(batch=2)
    run(a, U[:23], Y[:23])
    weights = {k: getattr(a, k).copy() for k in "ARB"}
    state = a.export_state()
    rest = run(a, U[23:], Y[23:])
    b = make_net(batch=2)
    b.A, b.R, b.B = weights["A"], weights["R"], weights["B"]
    b.import_state(state)
    again = run(b, U[23:], Y[23:])
    assert np.array_equal(rest[0], again[0]) and np.array_equal(rest[1], again[1])
    assert np.array_equal(a.R, b.R)


@pytest.mark.parametrize(
    ("decorrelation", "bound"), [(False, ONE_A), (True, fp.XH_LIMIT)], ids=["no_d", "d_stored"]
)
def test_import_state_refuses_hidden_states_beyond_the_step_bound(
    decorrelation: bool, bound: int
) -> None:
    """STATE_SET's rule (docs/protocol.md §6.1): |xh| <= 2**16 (tanh's range) without D,
    <= 2**20 (the ±16 clamp) with D stored; beyond it refused, naming key and bound, and
    nothing changed (not even the batch)."""
    net = make_net(decorrelation=decorrelation)
    assert net.xh_bound == bound and (net.D is not None) == decorrelation
    good = net.export_state()
    for key in ("xh1", "xh2", "xh_eval"):
        edge = {**good, key: np.full_like(good[key], bound)}
        edge[key][0, 0] = -bound
        net.import_state(edge)  # the bound itself is a state the step can produce
        assert np.abs(getattr(net, key)).max() == bound
    net.import_state(good)
    for key in ("xh1", "xh2", "xh_eval"):
        for v in (bound + 1, -bound - 1, I32_MAX):
            zeros = np.zeros((2, net.n), np.int64)
            bad = {**good, "batch": 2, "xh1": zeros, "xh2": zeros.copy(), "xh_eval": zeros[:1]}
            bad[key] = bad[key].copy()
            bad[key][-1, -1] = v
            with pytest.raises(ConfigError, match=rf"state {key} holds {v}.*±{bound} "):
                net.import_state(bad)
            assert net.batch == 1 and net.xh1.shape == (1, net.n)
            assert all(np.array_equal(good[k], net.export_state()[k]) for k in good if k != "xh1")


def test_counters_are_u64_refused_beyond_and_wrapping() -> None:
    """``counter`` and ``rng_counter`` are u64 (docs/protocol.md §6.1): STATE_SET refuses
    values outside [0, 2**64 - 1]; stepping past 2**64 - 1 wraps to 0 as the C core's
    uint64 does."""
    net = make_net(resync_every=3)
    good = net.export_state()
    for key in ("counter", "rng_counter"):
        for v in (1 << 64, -1):
            with pytest.raises(ConfigError, match=rf"state {key} must be a u64"):
                net.import_state({**good, key: v})
    assert net.counter == 0 and net.rng_counter == 0
    U, Y = stream(T=2)
    net.import_state({**good, "counter": fp.U64_MAX, "rng_counter": fp.U64_MAX - 1})
    net.step(U[0], Y[0], True)
    assert net.counter == 0  # not 2**64: the resync schedule follows the u64
    assert net.rng_counter == 2 * (net.n + net.n_out) - 2


def test_reward_variant_equals_learning_with_targets() -> None:
    U, Y = stream(T=40)
    a, b = make_net(), make_net()
    run(a, U, Y)
    for t in range(U.shape[0]):
        out = b.step(U[t], None, True, t)
        dl = fp.reward_dl(out.y1, out.y2, Y[t], b.n_out)
        assert not b.reward(t + 1, dl)  # wrong t: ignored
        assert b.reward(t, dl)
        assert not b.reward(t, dl)  # idempotent per t
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in "ARB")


def test_learning_off_changes_no_weight_and_zero_sigma_is_guarded() -> None:
    U, Y = stream(T=20)
    a = make_net()
    before = {k: getattr(a, k).copy() for k in "ARB"}
    run(a, U, Y, learn=False)
    assert all(np.array_equal(getattr(a, k), before[k]) for k in "ARB")
    # sigma 0: the replicas agree, da = db = 0, both 0/0 guards give no update.
    z = make_net(sigma=1e-9)
    z.hyper = z.hyper.update({"sigma_q": 0})
    before = {k: getattr(z, k).copy() for k in "ARB"}
    run(z, U, Y)
    assert all(np.array_equal(getattr(z, k), before[k]) for k in "ARB")


def test_decorrelation_learns_d() -> None:
    U, Y = stream(T=30)
    net = make_net(decorrelation=True, eps=1e-2)
    assert net.D is not None
    d0 = net.D.copy()
    run(net, U, Y)
    assert not np.array_equal(net.D, d0)
    # diagonal untouched by the off-diagonal rule to first order, off-diagonal moved
    off = ~np.eye(net.n, dtype=bool)
    assert np.abs(net.D - d0)[off].max() > 0


# -- against a float64 reference of the same rule ----------------------------------------------


def float_reference(net: FixedNet, U, Y, xi2, zeta2):
    """docs/design.md §3.1's ANP with resync and cap (and decorrelation), float64, fed the fixed
    net's own noise."""
    h = net.hyper
    A, R, B = (getattr(net, k) / ONE_W for k in "ARB")
    D = np.eye(R.shape[0]) if net.D is None else net.D / ONE_W
    eps = h.eps_q / 2**32
    lr, gain = h.lr_q / 2**32, h.gain_q / 2**16
    n = R.shape[0]
    xh1 = np.zeros(n)
    xh2 = np.zeros(n)
    preds = []
    for t in range(U.shape[0]):
        u, y = U[t, 0] / ONE_A, Y[t, 0] / ONE_A
        if h.resync_every and t % h.resync_every == 0:
            xh2 = xh1.copy()
        a1 = A @ u + R @ xh1
        a2 = A @ u + R @ xh2 + xi2[t]
        x1, x2 = D @ np.tanh(a1), D @ np.tanh(a2)
        b1, b2 = B @ x1, B @ x2 + zeta2[t]
        preds.append(b1)
        dl = np.mean((b2 - y) ** 2) - np.mean((b1 - y) ** 2)
        da, db = a2 - a1, b2 - b1
        kh = gain * dl / (da @ da) if da @ da > 0 else 0.0
        ko = gain * dl / (db @ db) if db @ db > 0 else 0.0
        lro = min(lr, 0.5 / (gain * (x1 @ x1))) if h.output_cap else lr
        A -= lr * kh * np.outer(da, u)
        R -= lr * kh * np.outer(da, xh1)
        B -= lro * ko * np.outer(db, x1)
        xh1, xh2 = x1, x2
        if h.decorrelation:
            D -= eps * (np.outer(x1, x1 @ D) - (x1 * x1)[:, None] * D)
    return np.array(preds), A, R, B, D


@pytest.mark.parametrize("decorrelation", [False, True], ids=["plain", "decorrelated"])
def test_matches_a_float64_reference_within_quantisation_error(decorrelation: bool) -> None:
    T = 60
    U, Y = stream(T=T)
    net = make_net(n=8, lr=1e-2, sigma=2e-2, decorrelation=decorrelation, eps=1e-2)
    # The noise the fixed net will draw, step by step (xi2 then zeta2 per step).
    n, n_out = net.n, net.n_out
    per = 2 * (n + n_out)
    xi2, zeta2 = [], []
    for t in range(T):
        g = gaussian_q16(net.seed, t * per, n + n_out, net.hyper.sigma_q) / ONE_A
        xi2.append(g[:n])
        zeta2.append(g[n:])
    W0 = {k: getattr(net, k) / ONE_W for k in "ARBD" if getattr(net, k) is not None}
    pred_ref, A, R, B, D = float_reference(net, U, Y, xi2, zeta2)
    preds, _ = run(net, U, Y)
    assert np.max(np.abs(preds[:, 0] / ONE_A - pred_ref)) < 2e-4
    # The weight changes agree to a few percent of their size: what differs is the
    # quantisation of da, db (1 LSB of Q16 against sigma = 1300 LSB), dl, tanh and weights.
    for name, ref in (("A", A), ("R", R), ("B", B), ("D", D)):
        if name not in W0:
            continue
        want = ref - W0[name]
        got = getattr(net, name) / ONE_W - W0[name]
        assert np.abs(want).max() > 1e-3, name
        assert np.max(np.abs(got - want)) < 0.01 * np.abs(want).max(), name
