"""Both implementations of the simulator's arithmetic (the compiled loops of
``firmware_sim.fast`` and the NumPy expressions) equal a scalar, overflow-checked C-style
transcription of docs/protocol.md §6 (tests/naive/fixed_point.py), bit for bit, including
saturation."""

from __future__ import annotations

import numpy as np
import pytest
from naive.fixed_point import CNet, Overflow

from twinpass.core.errors import ConfigError
from twinpass.firmware_sim.fixed_point import U64_MAX, FixedNet, lr_gain_q
from twinpass.protocol.hyper import Hyper, hyper_from_rule
from twinpass.protocol.qformat import A_FRAC, W_FRAC
from twinpass.protocol.qformat import quantise_array as q
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

CASES = {
    "plain": dict(batch=1, rule={}),
    "batch3_two_noisy": dict(batch=3, rule={"two_noisy_passes": True, "resync_every": 3}),
    "decorrelated_batch2": dict(batch=2, rule={"decorrelation": True, "eps": 1e-2}),
    "no_cap_big_lr": dict(batch=1, rule={"output_cap": False, "lr": 0.5, "sigma": 0.3}),
    "extreme_inputs": dict(batch=2, rule={"lr": 0.05, "sigma": 0.05}, scale=300.0),
    "big_weights_stored_d": dict(batch=1, rule={"lr": 0.2}, wscale=40.0, stored_d=True),
    # The improved rules (§6.4-§6.7): NLMS over [xh, u, 1], leaky units, the hidden step
    # normalised by the readout, the guard (a low bound, so that it scales R often).
    "nlms_inputs_leak_batch2": dict(
        batch=2,
        rule={"readout": "nlms", "readout_inputs": True, "leak": 0.3, "lr_hidden": 1e-2},
    ),
    "nlms_guard_two_noisy": dict(
        batch=1,
        rule={
            "readout": "nlms",
            "readout_inputs": True,
            "leak": 0.5,
            "radius_bound": 0.5,
            "guard_every": 5,
            "two_noisy_passes": True,
            "sigma": 0.05,
        },
    ),
    "anp_inputs_leak_decorrelated_guard": dict(
        batch=3,
        rule={
            "readout_inputs": True,
            "leak": 0.7,
            "decorrelation": True,
            "eps": 1e-2,
            "radius_bound": 0.3,
            "guard_every": 4,
            "lr_hidden": 0.05,
        },
    ),
    "nlms_extreme_inputs_big_weights": dict(
        batch=2,
        rule={"readout": "nlms", "readout_inputs": True, "readout_step": 1.9, "lr_hidden": 0.2},
        scale=300.0,
        wscale=40.0,
        stored_d=True,
    ),
    # The RLS readout (§6.8): P in Q7.24, stream by stream; the last case's inputs and P0
    # reach the format's limit, so that P is reset (and the reset compared).
    "rls_inputs_leak_batch2": dict(
        batch=2,
        rule={
            "readout": "rls",
            "readout_p0": 10.0,
            "readout_inputs": True,
            "leak": 0.3,
            "lr_hidden": 1e-2,
            "forgetting": 0.99,
        },
    ),
    "rls_guard_decorrelated": dict(
        batch=1,
        rule={
            "readout": "rls",
            "readout_p0": 1.0,
            "readout_inputs": True,
            "leak": 0.6,
            "radius_bound": 0.5,
            "guard_every": 5,
            "decorrelation": True,
            "eps": 1e-2,
        },
    ),
    "rls_resets_extreme_inputs": dict(
        batch=2,
        rule={"readout": "rls", "readout_p0": 100.0, "readout_inputs": True, "lr_hidden": 0.2},
        scale=300.0,
        wscale=40.0,
        stored_d=True,
    ),
}


def _network(case: dict, n_in: int, n: int, n_out: int):
    """The case's rule as fixed-point hyperparameters and its quantised weights (the
    readout's input and bias columns, which Params.init starts at 0, drawn too)."""
    config = RuleConfig(**{**PAPER_NETWORK, **case["rule"]})
    p = Params.init(n_in, n, n_out, seed=4, readout_inputs=config.readout_inputs)
    B = p.B.copy()
    B[:, n:] = 0.3 * np.random.default_rng(8).standard_normal((n_out, B.shape[1] - n))
    ws = case.get("wscale", 1.0)
    A, R, Bq = (q(m * ws, W_FRAC) for m in (p.A, p.R, B))
    D = q(np.eye(n) + 0.05, W_FRAC) if case.get("stored_d") else None
    return hyper_from_rule(config.resolve(n_in, n, n_out)), A, R, Bq, D


@pytest.mark.parametrize("compiled", [True, False], ids=["loops", "numpy"])
@pytest.mark.parametrize("name", list(CASES))
def test_simulator_equals_the_c_style_reference(name: str, compiled: bool) -> None:
    case = CASES[name]
    n_in, n, n_out, nb = 3, 6, 2, case["batch"]
    hyper, A, R, B, D = _network(case, n_in, n, n_out)
    fx = FixedNet(A.copy(), R.copy(), B.copy(), None if D is None else D.copy(), hyper,
                  batch=nb, seed=11, compiled=compiled)  # fmt: skip
    cn = CNet(A, R, B, fx.D if D is None else D, hyper, nb, 11)
    g = np.random.default_rng(5)
    scale = case.get("scale", 0.5)
    for t in range(25):
        u = q(scale * g.standard_normal((nb, n_in)), A_FRAC, (1 << 31) - 1)
        y = q(scale * g.standard_normal((nb, n_out)), A_FRAC, (1 << 31) - 1)
        out = fx.step(u, y, True)
        y1, l1, l2 = cn.step(u.tolist(), y.tolist(), True)
        assert out.y1.tolist() == y1, t
        assert (out.loss1, out.loss2) == (l1, l2), t
        assert fx.A.tolist() == cn.A and fx.R.tolist() == cn.R and fx.B.tolist() == cn.B, t
        if fx.D is not None:
            assert fx.D.tolist() == cn.D, t
        assert fx.xh1.tolist() == cn.xh1 and fx.xh2.tolist() == cn.xh2, t
        assert fx.rng_counter == cn.p
        assert fx.gv.tolist() == cn.gv and fx.total == cn.total, t
        if fx.P is not None:
            assert fx.P.tolist() == cn.P, t
    assert fx.stats["guard_projections"] == cn.projections
    if hyper.bound_q:
        assert cn.projections > 0  # the guard did scale R: its arithmetic was compared
    assert fx.stats["rls_resets"] == cn.rls_resets
    if "resets" in name:
        assert cn.rls_resets > 0  # P was reset: the guard's arithmetic was compared
    elif fx.P is not None:
        assert cn.rls_resets == 0 and fx.P[0, 0] != hyper.p0_q  # P learned, never reset


def _pair(hyper: Hyper, batch: int, compiled: bool, wscale: float = 1.0, stored_d=False):
    n_in, n, n_out = 3, 6, 2
    p = Params.init(n_in, n, n_out, seed=4)
    A, R, B = (q(m * wscale, W_FRAC) for m in (p.A, p.R, p.B))
    D = q(np.eye(n) + 0.05, W_FRAC) if stored_d else None
    fx = FixedNet(A.copy(), R.copy(), B.copy(), None if D is None else D.copy(), hyper,
                  batch=batch, seed=11, compiled=compiled)  # fmt: skip
    return fx, CNet(A, R, B, fx.D if D is None else D, hyper, batch, 11)


def _run_both(fx: FixedNet, cn: CNet, steps: int, scale: float = 0.5) -> None:
    g = np.random.default_rng(5)
    for t in range(steps):
        u = q(scale * g.standard_normal((fx.batch, fx.n_in)), A_FRAC, (1 << 31) - 1)
        y = q(scale * g.standard_normal((fx.batch, fx.n_out)), A_FRAC, (1 << 31) - 1)
        out = fx.step(u, y, True)
        y1, l1, l2 = cn.step(u.tolist(), y.tolist(), True)
        assert out.y1.tolist() == y1 and (out.loss1, out.loss2) == (l1, l2), t
        assert fx.A.tolist() == cn.A and fx.R.tolist() == cn.R and fx.B.tolist() == cn.B, t
        assert fx.xh1.tolist() == cn.xh1 and fx.xh2.tolist() == cn.xh2, t
        assert (fx.counter, fx.rng_counter) == (cn.counter, cn.p), t


@pytest.mark.parametrize("compiled", [True, False], ids=["loops", "numpy"])
@pytest.mark.parametrize("output_cap", [True, False], ids=["cap", "no_cap"])
def test_lr_gain_at_the_extreme_follows_the_uint64_rule(compiled: bool, output_cap: bool) -> None:
    """lr_q = gain_q = 2**32 - 1 (valid, §6.6): lr_q·gain_q is ~2**64, past int64; formed in
    uint64 as §6.1/§6.5 say, lg clamps to 2**24 and the reference equals the simulator."""
    top = 0xFFFFFFFF
    assert top * top + (1 << 23) < 1 << 64 <= 2 * (top * top)  # uint64 holds it, int64 not
    hyper = Hyper(lr_q=top, gain_q=top, sigma_q=3000, output_cap=output_cap, resync_every=2)
    assert lr_gain_q(hyper) == 1 << 24
    fx, cn = _pair(hyper, batch=2, compiled=compiled)
    _run_both(fx, cn, 12)


def test_a_hidden_state_beyond_the_bound_overflows_int64() -> None:
    """Why STATE_SET refuses states beyond the bound (§6.1): with extreme weights, a state at
    the bound keeps every int64 in range (the reference equals the simulator), an int32
    state beyond it overflows even at N = 6."""
    hyper = Hyper(lr_q=1 << 28, sigma_q=3000, decorrelation=False)
    for stored_d, bound in ((True, 1 << 20), (False, 1 << 16)):
        fx, cn = _pair(hyper, batch=1, compiled=True, stored_d=stored_d)
        top = np.full_like(fx.R, (1 << 31) - 1)
        fx.A, fx.R, fx.B = top[:, : fx.n_in].copy(), top.copy(), top[: fx.n_out].copy()
        cn.A, cn.R, cn.B = fx.A.tolist(), fx.R.tolist(), fx.B.tolist()
        state = fx.export_state()
        xh = np.full((1, fx.n), bound, np.int64)
        fx.import_state({**state, "xh1": xh, "xh2": -xh, "xh_eval": xh})
        cn.xh1, cn.xh2 = xh.tolist(), (-xh).tolist()
        _run_both(fx, cn, 3, scale=200.0)
        with pytest.raises(ConfigError, match="state xh1 holds"):
            fx.import_state({**state, "xh1": xh * 0 + (1 << 31) - 1})
        cn.xh1 = [[(1 << 31) - 1] * fx.n]
        with pytest.raises(Overflow, match="int64 overflow"):
            cn.step([[0] * fx.n_in], [[0] * fx.n_out], True)


def test_counters_wrap_at_2_64_like_the_reference() -> None:
    """counter and rng_counter are u64 and wrap (§6.1, §6.3), in a sample's second word too."""
    fx, cn = _pair(Hyper(sigma_q=3000, resync_every=3), batch=1, compiled=True)
    fx.import_state({**fx.export_state(), "counter": U64_MAX - 1, "rng_counter": U64_MAX - 8})
    cn.counter, cn.p = U64_MAX - 1, U64_MAX - 8
    _run_both(fx, cn, 5)
    assert fx.counter == 3


@pytest.mark.parametrize("sign", [1, -1])
def test_rls_gain_saturation_resets_p_alike_everywhere(sign: int) -> None:
    # An indefinite P with a positive diagonal (which STATE_SET accepts) and features that
    # make c = λ + fᵀPf one or two Q24 units: the unsaturated gain k is ~2^46, k·e would
    # pass int64. §6.8 saturates k to int32, updates B with it and resets P. The C-style
    # reference raises Overflow on any int64 overflow; the simulator (NumPy and compiled)
    # must agree with it bit for bit.
    from twinpass.firmware_sim import fast
    from twinpass.firmware_sim.fixed_point import rls_lambda_q24, rls_stream

    F, n_out = 4, 2
    hyper = hyper_from_rule(
        RuleConfig(readout="rls", readout_p0=10.0, readout_inputs=True).resolve(1, F - 2, n_out)
    )
    lam24 = rls_lambda_q24(hyper)
    p = 1 << 24
    qq = p + (lam24 - 1) // 2
    P = np.diag([hyper.p0_q] * F).astype(np.int64)
    P[0, 0] = P[1, 1] = p
    P[0, 1] = P[1, 0] = qq
    f = np.array([sign << 16, -sign << 16, 0, 0], np.int64)
    B = q(0.3 * np.random.default_rng(1).standard_normal((n_out, F)), W_FRAC)
    ystar = np.array([100 << 16, -(100 << 16)], np.int64)  # |e| saturates at 128
    g = P @ f >> 16
    c = lam24 + int((f * g).sum() >> 16)
    assert 0 < c <= 2 and abs(int(g[0]) << 24) // c > 2**45  # the regime the test is about

    P_np, B_np = P.copy(), B.copy()
    resets_np = rls_stream(P_np, B_np, f, ystar, hyper)
    P_c, B_c = P.copy(), B.copy()
    gk = (np.zeros(F, np.int64), np.zeros(F, np.int64))
    resets_c = fast.rls_update(
        P_c, B_c, f[None, :], ystar[None, :], lam24, hyper.im1_q, hyper.p0_q, *gk
    )
    cn = CNet(np.zeros((F - 2, 1)), np.zeros((F - 2, F - 2)), B, None, hyper, 1, 0)
    cn.P = P.tolist()
    cn._rls(f.tolist(), ystar.tolist())  # raises Overflow if any product left int64

    assert resets_np == resets_c == cn.rls_resets == 1
    assert P_np.tolist() == P_c.tolist() == cn.P == np.diag([hyper.p0_q] * F).tolist()
    assert B_np.tolist() == B_c.tolist() == cn.B
    assert not np.array_equal(B_np, B)  # B took the saturated step before the reset
