"""Both implementations of the simulator's arithmetic (the compiled loops of
``firmware_sim.fast`` and the NumPy expressions) equal a scalar, overflow-checked C-style
transcription of docs/protocol.md §6 (tests/naive/fixed_point.py), bit for bit, including
saturation."""

from __future__ import annotations

import numpy as np
import pytest
from naive.fixed_point import CNet

from twinpass.firmware_sim.fixed_point import A_FRAC, W_FRAC, FixedNet, hyper_from_rule
from twinpass.firmware_sim.fixed_point import quantise_array as q
from twinpass.runtime import Params, RuleConfig

CASES = {
    "plain": dict(batch=1, rule={}),
    "batch3_two_noisy": dict(batch=3, rule={"two_noisy_passes": True, "resync_every": 3}),
    "decorrelated_batch2": dict(batch=2, rule={"decorrelation": True, "eps": 1e-2}),
    "no_cap_big_lr": dict(batch=1, rule={"output_cap": False, "lr": 0.5, "sigma": 0.3}),
    "extreme_inputs": dict(batch=2, rule={"lr": 0.05, "sigma": 0.05}, scale=300.0),
    "big_weights_stored_d": dict(batch=1, rule={"lr": 0.2}, wscale=40.0, stored_d=True),
}


@pytest.mark.parametrize("compiled", [True, False], ids=["loops", "numpy"])
@pytest.mark.parametrize("name", list(CASES))
def test_simulator_equals_the_c_style_reference(name: str, compiled: bool) -> None:
    case = CASES[name]
    n_in, n, n_out, nb = 3, 6, 2, case["batch"]
    p = Params.init(n_in, n, n_out, seed=4)
    ws = case.get("wscale", 1.0)
    A, R, B = (q(m * ws, W_FRAC) for m in (p.A, p.R, p.B))
    D = q(np.eye(n) + 0.05, W_FRAC) if case.get("stored_d") else None
    hyper = hyper_from_rule({**RuleConfig().to_dict(), **case["rule"]}, n_in + n + n_out)
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
