"""The analog kernels against their float64 NumPy references (tests/naive/analog.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import analog as nv

from twinpass.devices.analog_model import PRESETS, kernel_vector
from twinpass.kernels import analog as ka
from twinpass.kernels.rng import fill_normal, new_rng_state


def test_scalar_draws_match_the_reference() -> None:
    from numba import njit

    from twinpass.kernels.rng import next_normal_inline, next_uniform_inline

    @njit
    def draws(rng, out):
        for k in range(out.shape[0]):
            out[k, 0] = next_uniform_inline(rng)
            out[k, 1] = next_normal_inline(rng)

    a, b = new_rng_state(5), new_rng_state(5)
    out = np.zeros((50, 2))
    draws(a, out)
    ref = [(nv.uniform(b), nv.normal(b)) for _ in range(50)]
    np.testing.assert_allclose(out, ref, rtol=0, atol=0)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("preset", ["pcm", "rram", "ideal"])
def test_program_tile_matches_reference(preset: str) -> None:
    params = PRESETS[preset].with_overrides(stuck_fraction=0.2)  # exercise the stuck path
    prm = kernel_vector(params, stochastic=True)
    Wt = np.random.default_rng(1).uniform(-0.6, 0.6, (7, 9))
    W = np.zeros((7, 9), np.float32)
    dev = np.zeros((7, 9, 2, ka.N_FIELDS), np.float32)
    tw = np.zeros((7, 9, 2), np.int64)
    r1, r2 = new_rng_state(3), new_rng_state(3)
    ka.program_tile(Wt.astype(np.float32), dev, tw, W, 1.3, prm, r1, 0)
    f, Wref = nv.program(Wt.astype(np.float32).astype(np.float64), 1.3, prm, r2)
    np.testing.assert_allclose(dev[..., ka.F_G0], f["g"], atol=1e-6)
    np.testing.assert_allclose(dev[..., ka.F_NU], f["nu"], atol=1e-6)
    np.testing.assert_array_equal(dev[..., ka.F_STUCK], f["stuck"])
    np.testing.assert_allclose(W, Wref, atol=5e-6)
    assert r1.tobytes() == r2.tobytes()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    nb=st.integers(1, 3),
    bits=st.sampled_from([0, 4, 8]),
    noise=st.booleans(),
)
def test_mvm_matches_reference(seed: int, nb: int, bits: int, noise: bool) -> None:
    params = PRESETS["pcm"].with_overrides(inp_bits=bits, out_bits=bits)
    if not noise:
        params = params.scaled(0.0)
    prm = kernel_vector(params, stochastic=True)
    g = np.random.default_rng(seed)
    W = g.uniform(-1, 1, (5, 11)).astype(np.float32)
    z = g.uniform(-2, 2, (nb, 11)).astype(np.float32)
    out = np.zeros((nb, 5), np.float32)
    zb = np.zeros((ka.N_ZBUF, nb, 11), np.float32)
    alpha = np.zeros((2, nb))
    nz = np.zeros((4, nb, 5), np.float32)
    r1, r2 = new_rng_state(seed), new_rng_state(seed)
    ka.mvm(W, 1.7, z, prm, r1, out, zb, alpha, nz)
    ref_nz = np.zeros((4, nb, 5), np.float32)
    if noise:
        fill_normal(r2, 1.0, ref_nz)
    ref = nv.mvm(W, 1.7, z, prm, ref_nz[0].astype(np.float64), ref_nz[1].astype(np.float64))
    # float32 sums may land on the other side of an ADC threshold: one level at most.
    lsb = prm[ka.P_OUT_STEP] * np.abs(z).max(axis=1, keepdims=True) * 1.7
    assert np.all(np.abs(out - ref) <= np.maximum(lsb, 0) + 1e-4)
    assert np.mean(np.abs(out - ref) <= 1e-4) > 0.9


def test_refresh_applies_the_drift_power_law() -> None:
    params = PRESETS["pcm"].with_overrides(flicker_scale=0.0, stuck_fraction=0.0)
    prm = kernel_vector(params, stochastic=True)
    Wt = np.random.default_rng(0).uniform(-0.5, 0.5, (6, 8)).astype(np.float32)
    W = np.zeros((6, 8), np.float32)
    dev = np.zeros((6, 8, 2, ka.N_FIELDS), np.float32)
    tw = np.zeros((6, 8, 2), np.int64)
    ka.program_tile(Wt, dev, tw, W, 1.0, prm, new_rng_state(0), 0)
    tw[..., 1] = 700  # g- written later than g+
    ka.refresh_tile(dev, tw, W, 1.0, prm, new_rng_state(1), 5000, 0, np.zeros((2, 8), np.float32))
    sps, t0 = params.seconds_per_step, params.t0
    g = dev[..., ka.F_G0].astype(np.float64)
    nu = dev[..., ka.F_NU].astype(np.float64)
    gp = nv.drifted(g[..., 0], nu[..., 0], 5000 * sps, t0)
    gm = nv.drifted(g[..., 1], nu[..., 1], 4300 * sps, t0)
    np.testing.assert_allclose(W, gp - gm, atol=2e-6)


def test_mixed_update_matches_reference() -> None:
    params = PRESETS["pcm"].scaled(0.0).with_overrides(dw_min=0.01)
    prm = kernel_vector(params, stochastic=False)
    g = np.random.default_rng(4)
    Wt = g.uniform(-0.5, 0.5, (6, 7)).astype(np.float32)
    W = np.zeros((6, 7), np.float32)
    dev = np.zeros((6, 7, 2, ka.N_FIELDS), np.float32)
    tw = np.zeros((6, 7, 2), np.int64)
    ka.program_tile(Wt, dev, tw, W, 1.0, prm, new_rng_state(0), 0)
    chi = np.zeros((6, 7), np.float32)
    gref = dev[..., ka.F_G0].astype(np.float64)
    gmax = dev[..., ka.F_GMAX].astype(np.float64)
    Wref, chiref = W.astype(np.float64), chi.astype(np.float64)
    none = np.zeros((0, 0), np.float32)
    for step in range(5):
        c = g.normal(0, 1, (2, 6)).astype(np.float32)
        p = g.normal(0, 1, (2, 7)).astype(np.float32)
        ka.apply_update(W, dev, tw, chi, 1.0, c, p, 0.01, np.zeros(6, np.float32), 0.0, none,
                        0.0, np.zeros(2), prm, new_rng_state(step), step)  # fmt: skip
        delta = -0.01 * c.astype(np.float64).T @ p.astype(np.float64)
        Wref, chiref, gref = nv.mixed_update(Wref, chiref, gref, gmax, 1.0, delta, prm)
    np.testing.assert_allclose(chi, chiref, atol=1e-4)
    np.testing.assert_allclose(W, Wref, atol=1e-5)


def test_stochastic_update_is_unbiased() -> None:
    """E[pulses] = |dw| / dw_min per weight, through both sampling paths (dense, skipping)."""
    params = PRESETS["rram"].scaled(0.0).with_overrides(levels=0, dw_min=1e-3)
    prm = kernel_vector(params, stochastic=True)
    rows, cols = 4, 2000
    none = np.zeros((0, 0), np.float32)
    for amount in (0.3, 2.5):  # pulses per weight: skipping path, dense path
        W = np.zeros((rows, cols), np.float32)
        dev = np.zeros((rows, cols, 2, ka.N_FIELDS), np.float32)
        tw = np.zeros((rows, cols, 2), np.int64)
        ka.program_tile(W.copy(), dev, tw, W, 1.0, prm, new_rng_state(0), 0)
        p = np.random.default_rng(0).uniform(0, 1, (1, cols)).astype(np.float32)
        c = np.full((1, rows), -amount * 1e-3, np.float32)  # W += amount dw_min * p
        ka.apply_update(W, dev, tw, np.zeros_like(W), 1.0, c, p, 1.0, np.zeros(rows, np.float32),
                        0.0, none, 0.0, np.zeros(1), prm, new_rng_state(9), 1)  # fmt: skip
        # Soft bounds at the symmetry point: one pulse moves the weight by dw_min there.
        pulses = W.astype(np.float64) / 1e-3
        want = amount * p.astype(np.float64)
        assert pulses.mean() == pytest.approx(want.mean(), rel=0.02)
        np.testing.assert_allclose(np.floor(pulses + 1e-3), np.floor(pulses + 1e-3).round())
        assert np.all(np.floor(want) - 1 <= pulses + 1e-3)
