"""The rank-one decorrelation update against the explicit O(N³) formula of docs/design.md §3.6."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba.core.dispatcher import Dispatcher

from twinpass.kernels.decorrelation import decor_prepare, decor_row_update, decorrelation_update


def offdiag(M):
    return M - np.diag(np.diag(M))


def explicit(D, xh, eps):
    """``D - eps/nb * sum_b offdiag(xh_b xh_bᵀ) D``, the matrix product written out."""
    nb = xh.shape[0]
    return D - eps / nb * sum(offdiag(np.outer(v, v)) for v in xh) @ D


def update(D, xh, eps):
    """decorrelation_update on copies; returns the new D."""
    D = np.array(D)
    tmp = np.empty_like(xh)
    q = np.empty(D.shape[0], D.dtype)
    decorrelation_update(D, np.array(xh), eps, tmp, q)
    return D


values = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False)


@st.composite
def problems(draw):
    n = draw(st.integers(1, 9))
    nb = draw(st.integers(1, 5))
    D = draw(hnp.arrays(np.float64, (n, n), elements=values))
    xh = draw(hnp.arrays(np.float64, (nb, n), elements=values))
    eps = draw(st.floats(0.0, 0.3))
    return D, xh, eps


@settings(max_examples=60, deadline=None)
@given(problems())
def test_rank_one_form_equals_explicit_formula(prob):
    D, xh, eps = prob
    want = explicit(D, xh, eps)
    # The rounding error is relative to the terms summed, not to their (possibly 0) result.
    scale = np.abs(D).max() + eps * (np.abs(xh) ** 2).sum(0).max() * np.abs(D).max() * D.shape[0]
    np.testing.assert_allclose(update(D, xh, eps), want, rtol=0, atol=1e-13 * (1 + scale))


def test_float32_is_close_to_float64():
    g = np.random.default_rng(0)
    D = np.eye(12) + 0.2 * g.normal(size=(12, 12))
    xh = np.tanh(g.normal(size=(4, 12)))
    want = explicit(D, xh, 0.05)
    got = update(D.astype(np.float32), xh.astype(np.float32), 0.05)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
    assert np.abs(want - D).max() > 1e-3  # the update is not negligible at this tolerance


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eps_zero_leaves_d_unchanged(dtype):
    """eps = 0: D stays exactly what it was (I stays I) however many steps."""
    g = np.random.default_rng(1)
    for D0 in (np.eye(7, dtype=dtype), (np.eye(7) + 0.3 * g.normal(size=(7, 7))).astype(dtype)):
        D = D0.copy()
        tmp = np.empty((3, 7), dtype)
        q = np.empty(7, dtype)
        for _ in range(50):
            decorrelation_update(D, np.tanh(g.normal(size=(3, 7))).astype(dtype), 0.0, tmp, q)
        np.testing.assert_array_equal(D, D0)


def test_small_eps_keeps_d_near_identity_and_first_order():
    """For small eps, D moves from I by eps times the mean off-diagonal correlation."""
    g = np.random.default_rng(2)
    xh = np.tanh(g.normal(size=(5, 10)))
    eps = 1e-6
    D = update(np.eye(10), xh, eps)
    corr = sum(offdiag(np.outer(v, v)) for v in xh) / 5
    np.testing.assert_allclose((np.eye(10) - D) / eps, corr, rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.diag(D), np.ones(10), rtol=0, atol=1e-15)  # offdiag only


def test_single_active_unit_is_no_update():
    """xh with one nonzero entry has no off-diagonal correlation: D does not move."""
    g = np.random.default_rng(3)
    D = np.eye(6) + 0.2 * g.normal(size=(6, 6))
    xh = np.zeros((1, 6))
    xh[0, 2] = 1.7
    np.testing.assert_allclose(update(D, xh, 0.1), D, rtol=0, atol=1e-15)


def test_batch_is_averaged():
    """nb identical streams give the update of one stream (mean, not sum, over the batch)."""
    g = np.random.default_rng(4)
    D = np.eye(5) + 0.1 * g.normal(size=(5, 5))
    v = np.tanh(g.normal(size=(1, 5)))
    np.testing.assert_allclose(update(D, np.repeat(v, 4, 0), 0.1), update(D, v, 0.1), rtol=1e-14)


def test_two_pass_form_equals_standalone_update():
    """decor_prepare + decor_row_update per row (the kernels' deferred form) == the update.

    Not compared bit for bit here: which bits decorrelation_update produces depends on which
    kernel compiled it first (see test_no_kernel_contracts_fma below)."""
    g = np.random.default_rng(5)
    for dtype, tol in ((np.float32, 1e-6), (np.float64, 1e-15)):
        D0 = (np.eye(9) + 0.2 * g.normal(size=(9, 9))).astype(dtype)
        xh = np.tanh(g.normal(size=(3, 9))).astype(dtype)
        D = D0.copy()
        tmp = np.empty((3, 9), dtype)
        q = np.empty(9, dtype)
        decor_prepare(D, xh, tmp, q)
        np.testing.assert_array_equal(D, D0)  # the first pass only reads D
        np.testing.assert_allclose(tmp, xh @ D0, rtol=0, atol=10 * tol)
        np.testing.assert_allclose(q, (xh.astype(np.float64) ** 2).sum(0), rtol=1e-6)
        for i in range(9):
            decor_row_update(D, i, xh, tmp, q, 0.07 / 3)
        np.testing.assert_allclose(D, update(D0, xh, 0.07), rtol=0, atol=2 * tol)
        np.testing.assert_allclose(D, explicit(D0, xh, 0.07), rtol=0, atol=10 * tol)


def test_repeated_updates_decorrelate_the_state():
    """Run on correlated inputs, xh = D x becomes decorrelated (Ahmad et al. 2022)."""
    g = np.random.default_rng(6)
    n = 4
    L = np.linalg.cholesky(0.6 * np.ones((n, n)) + 0.4 * np.eye(n))  # correlation 0.6
    D = np.eye(n)
    tmp = np.empty((8, n))
    q = np.empty(n)

    def max_corr(D):
        xh = g.normal(size=(20000, n)) @ L.T @ D.T
        c = np.corrcoef(xh.T)
        return np.abs(offdiag(c)).max()

    assert max_corr(D) > 0.55
    for _ in range(3000):
        xh = np.ascontiguousarray(g.normal(size=(8, n)) @ L.T @ D.T)
        decorrelation_update(D, xh, 0.01, tmp, q)
    assert max_corr(D) < 0.1
    assert np.isfinite(D).all()


# --- bit reproducibility of the shared kernel ----------------------------------------------

# Shared helpers are inlined, so no cached function is compiled with another kernel's fastmath
# flags (numba#7168): the bits must not depend on which kernel compiled first.


def _shared_callees(disp):
    """Separately compiled dispatchers of other modules that ``disp`` calls by name."""
    py = disp.py_func
    for name in py.__code__.co_names:
        obj = py.__globals__.get(name)
        if (
            isinstance(obj, Dispatcher)
            and obj.targetoptions.get("inline", "never") != "always"
            and obj.py_func.__module__ != py.__module__
        ):
            yield name


def test_no_kernel_leaks_fma_contraction_into_shared_kernels():
    offenders = []
    for mod_name in ("bptt", "decorrelation", "forward", "perturbation", "rng", "rowops"):
        mod = importlib.import_module(f"twinpass.kernels.{mod_name}")
        for name, obj in vars(mod).items():
            if not isinstance(obj, Dispatcher):
                continue
            fm = obj.targetoptions.get("fastmath") or set()
            leaky = fm is True or bool({"contract", "fast", "afn"} & set(fm))
            if leaky and list(_shared_callees(obj)):
                offenders.append(f"{mod_name}.{name} -> {list(_shared_callees(obj))}")
    assert not offenders, offenders


_ORDER_SCRIPT = """
import sys
import numpy as np
from twinpass.kernels.decorrelation import decorrelation_update
if sys.argv[1] == "bptt-first":
    from twinpass.kernels.bptt import bptt_block, bptt_scratch
    g = np.random.default_rng(0)
    n_in, n, n_out, nb, T = 3, 8, 2, 1, 3
    A, R = g.normal(size=(n, n_in)), g.normal(size=(n, n)) / 3
    B, D = g.normal(size=(n_out, n)), np.eye(n)
    bufs = bptt_scratch(n_in, n, n_out, nb, 2, np.float64)
    bptt_block(g.normal(size=(T, nb, n_in)), g.normal(size=(T, nb, n_out)),
               np.empty((T, nb, n_out)), np.empty(T), A, R, B, D, bufs, lr=0.01, decor_eps=0.01)
g = np.random.default_rng(1)
D = np.eye(9) + 0.2 * g.normal(size=(9, 9))
decorrelation_update(D, np.tanh(g.normal(size=(3, 9))), 0.07, np.empty((3, 9)), np.empty(9))
print(D.tobytes().hex())
"""


@pytest.mark.slow
def test_decorrelation_bits_do_not_depend_on_compile_order(tmp_path):
    """Fresh Numba caches: compiling the BPTT kernel first must not change the bits of a
    later, direct decorrelation_update (~25 s: it compiles the BPTT kernel)."""
    out = {}
    for order in ("direct", "bptt-first"):
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / order)}
        proc = subprocess.run(
            [sys.executable, "-c", _ORDER_SCRIPT, order],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        out[order] = proc.stdout.strip()
    assert out["direct"] == out["bptt-first"]
