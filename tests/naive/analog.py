"""Float64 NumPy references of the analog kernels (twinpass.kernels.analog).

Deliberately obvious: whole-array expressions and Python loops, the model written from
the docstrings of :mod:`twinpass.devices.analog_model`. Scalar draws reproduce the
kernels' documented order from the same counter-based generator.
"""

from __future__ import annotations

import numpy as np

from twinpass.kernels import analog as ka
from twinpass.kernels.rng import fill_normal

M64 = 2**64 - 1
GOLDEN = 0x9E3779B97F4A7C15


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def uniform(rng: np.ndarray) -> float:
    """next_uniform_inline in Python."""
    ctr = int(rng[1])
    h = _mix64((int(rng[0]) + ctr * GOLDEN) & M64)
    rng[1] = np.uint64(ctr + 1)
    return ((h >> 11) + 0.5) / 2.0**53


def normal(rng: np.ndarray) -> float:
    """next_normal_inline: the first of the pair at the counter (a size-1 fill)."""
    out = np.zeros(1)
    fill_normal(rng, 1.0, out)
    return float(out[0])


def quantise(v, bound: float, step: float):
    v = np.clip(v, -bound, bound)
    return np.floor(v / step + 0.5) * step if step > 0 else v


def mvm(W, scale, z, prm, nz_read, nz_out):
    """One replica's noisy MVM: z (nb, cols) -> (nb, rows), noise samples given."""
    z = np.asarray(z, np.float64)
    alpha = np.abs(z).max(axis=1, keepdims=True)
    alpha[alpha == 0] = 1.0
    zq = quantise(z / alpha, prm[ka.P_INP_BOUND], prm[ka.P_INP_STEP])
    W = np.asarray(W, np.float64)
    acc = zq @ W.T / scale
    var = (zq**2) @ np.abs(W).T / scale
    y = acc + prm[ka.P_READ_NOISE] * np.sqrt(np.maximum(var, 0)) * nz_read
    y = y + prm[ka.P_OUT_NOISE] * nz_out
    return quantise(y, prm[ka.P_OUT_BOUND], prm[ka.P_OUT_STEP]) * alpha * scale


def prog_sigma(g, prm):
    return max(prm[ka.P_PROG_C0] + prm[ka.P_PROG_C1] * g + prm[ka.P_PROG_C2] * g * g, 0.0)


def level(g, prm):
    L = prm[ka.P_LEVELS]
    return np.floor(g * (L - 1) + 0.5) / (L - 1) if L >= 2 else g


def program(Wt, scale, prm, rng):
    """program_tile: returns per-device dicts g, gmax, dwf, stuck, nu and the weights."""
    rows, cols = Wt.shape
    f = {k: np.zeros((rows, cols, 2)) for k in ("g", "gmax", "dwf", "stuck", "nu")}
    W = np.zeros((rows, cols))
    span = prm[ka.P_SPAN]
    for i in range(rows):
        for j in range(cols):
            w = float(np.clip(Wt[i, j] / scale, -span, span))
            if prm[ka.P_UNIDIR] > 0:
                gp, gm = max(w, 0.0), max(-w, 0.0)
            else:
                gp, gm = 0.5 + w, 0.5
            gp, gm = level(gp, prm), level(gm, prm)
            for d in range(2):
                gmf = max(1 + prm[ka.P_GMAX_DTOD] * normal(rng), 0.1) if prm[ka.P_GMAX_DTOD] else 1
                dwf = max(1 + prm[ka.P_DW_DTOD] * normal(rng), 0.0) if prm[ka.P_DW_DTOD] else 1
                f["gmax"][i, j, d], f["dwf"][i, j, d] = gmf, dwf
                if prm[ka.P_STUCK] > 0 and uniform(rng) < prm[ka.P_STUCK]:
                    f["stuck"][i, j, d] = 1
                    f["g"][i, j, d] = gmf if uniform(rng) < 0.5 else 0.0
                if prm[ka.P_DRIFT] > 0:
                    lg = np.log(max(gp if d == 0 else gm, 1e-7))
                    mu = min(max(-0.0155 * lg + 0.0244, 0.049), 0.1)
                    sd = min(max(-0.0125 * lg - 0.0059, 0.008), 0.045)
                    f["nu"][i, j, d] = abs(mu + sd * normal(rng)) * prm[ka.P_DRIFT]
            if f["stuck"][i, j, 0] and not f["stuck"][i, j, 1]:
                gm = level(max(f["g"][i, j, 0] - w, 0.0), prm)
            elif f["stuck"][i, j, 1] and not f["stuck"][i, j, 0]:
                gp = level(max(f["g"][i, j, 1] + w, 0.0), prm)
            for d, target in ((0, gp), (1, gm)):
                if f["stuck"][i, j, d]:
                    continue
                g = target
                if prm[ka.P_PROG_SCALE] > 0:
                    g += prm[ka.P_PROG_SCALE] * prog_sigma(target, prm) * normal(rng)
                f["g"][i, j, d] = min(max(g, 0.0), f["gmax"][i, j, d])
            W[i, j] = scale * (f["g"][i, j, 0] - f["g"][i, j, 1])
    return f, W


def drifted(g0, nu, age_s, t0):
    """g(t) = g0 ((t + t0) / t0)^-nu."""
    return g0 * ((age_s + t0) / t0) ** (-nu)


def mixed_update(W, chi, g, gmax, scale, delta, prm):
    """Mixed precision with no variation: chi += delta / dw; whole pulses are transferred
    with soft-bound steps (unidirectional pair: + to g+, - to g-). Returns W, chi, g."""
    W, chi, g = W.astype(np.float64), chi.astype(np.float64), g.copy()
    chi = chi + delta / (prm[ka.P_DW] * scale)
    n = np.trunc(chi)
    chi = chi - n
    rows, cols = W.shape
    for i in range(rows):
        for j in range(cols):
            k = int(n[i, j])
            d = 0 if k > 0 else 1
            for _ in range(abs(k)):
                gh = g[i, j, d] / gmax[i, j, d]
                g[i, j, d] = min(g[i, j, d] + prm[ka.P_DW] * (1 - gh), gmax[i, j, d])
            W[i, j] = scale * (g[i, j, 0] - g[i, j, 1])
    return W, chi, g
