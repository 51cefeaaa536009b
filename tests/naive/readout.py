"""Float64 NumPy reference of the learner of docs/design.md §2-6: leaky units, a readout
over [xh, u, 1], the readout rules (RLS, NLMS, the rule's own) and a label delay.

Deliberately obvious: whole-matrix expressions, the pending updates of a delay kept in a
Python list of records, RLS in its textbook form (g = P f, P <- (P - g gᵀ / (λ + fᵀg)) / λ).
Noise is drawn in the kernel's documented order from the same counter-based generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twinpass.kernels.rng import fill_normal


@dataclass
class LeakyNet:
    A: np.ndarray
    R: np.ndarray
    B: np.ndarray  # (n_out, F), F = N or N + n_in + 1
    D: np.ndarray
    xh1: np.ndarray
    xh2: np.ndarray
    P: np.ndarray | None = None
    t: int = 0
    pending: list = field(default_factory=list)
    unlabelled: int = 0


def features(xh: np.ndarray, u: np.ndarray, F: int) -> np.ndarray:
    n = xh.shape[1]
    if F == n:
        return xh
    return np.concatenate([xh, u, np.ones((xh.shape[0], 1))], axis=1)


def draw_noise(rng, sigma, nb, n, n_out, two_noisy, noisy_out, dtype):
    """xi1, xi2, zeta1, zeta2 in the kernel's order; zeta only with the rule's own readout."""
    xi2 = np.empty((nb, n), dtype)
    xi1 = np.zeros((nb, n), dtype)
    zeta1 = np.zeros((nb, n_out), dtype)
    zeta2 = np.zeros((nb, n_out), dtype)
    fill_normal(rng, sigma, xi2)
    if noisy_out:
        fill_normal(rng, sigma, zeta2)
    if two_noisy:
        fill_normal(rng, sigma, xi1)
        if noisy_out:
            fill_normal(rng, sigma, zeta1)
    return [np.asarray(v, np.float64) for v in (xi1, xi2, zeta1, zeta2)]


def _learn(net: LeakyNet, rec: dict, y: np.ndarray, cfg: dict) -> tuple[float, float]:
    """Apply the update of one recorded step with its label ``y``."""
    if np.isnan(y).any():
        net.unlabelled += 1
        return np.nan, np.nan
    nb = y.shape[0]
    n = net.R.shape[0]
    b1, b2 = rec["b1"], rec["b2"]
    l1b = ((b1 - y) ** 2).mean(axis=1)
    l2b = ((b2 - y) ** 2).mean(axis=1)
    dl = l2b - l1b
    gain, lr, sigma = cfg["gain"], cfg["lr"], cfg["sigma"]
    if cfg["rule"] == "anp":
        da, db = rec["xp2"] - rec["xp1"], b2 - b1
        nda, ndb = (da**2).sum(1), (db**2).sum(1)
        kh = np.where(nda > 0, gain * dl / np.where(nda > 0, nda, 1), 0.0)
        ko = np.where(ndb > 0, gain * dl / np.where(ndb > 0, ndb, 1), 0.0)
        if cfg["output_cap"]:
            g = lr * gain * (rec["f1"] ** 2).sum(1)
            ko = np.where(g > 0.5, ko * 0.5 / np.where(g > 0.5, g, 1), ko)
        ch, co = kh[:, None] * da, ko[:, None] * db
    else:
        ch = (dl / sigma)[:, None] * (rec["xi2"] - rec["xi1"])
        co = (dl / sigma)[:, None] * (rec["zeta2"] - rec["zeta1"])
    lr_h = cfg["lr_hidden"]
    if cfg["readout"] != "anp":
        lr_h = lr_h / (1.0 + (net.B[:, :n] ** 2).sum())
    net.A = net.A - lr_h / nb * ch.T @ rec["u"]
    dR = lr_h / nb * ch.T @ rec["xprev"]
    f = rec["f1"]
    F = f.shape[1]
    if cfg["readout"] == "anp":
        net.B = net.B - lr / nb * co.T @ f
    elif cfg["readout"] == "nlms":
        e = f @ net.B.T - y
        co = cfg["readout_step"] * e / (1e-6 + (f**2).sum(1))[:, None]
        net.B = net.B - co.T @ f / nb
    else:
        lam = cfg["forgetting"]
        p0 = cfg["readout_p0"]
        for b in range(nb):
            # The guards, as the kernel applies them before each sample (docs/design.md §4).
            d = np.diag(net.P)
            if not (d.min() > 0 and np.isfinite(d).all()):
                net.P = np.eye(F) * p0
            elif d.max() > p0:
                s = np.sqrt(np.minimum(1.0, p0 / d))
                net.P = net.P * np.outer(s, s)
            g = net.P @ f[b]
            c = 1.0 / (lam + f[b] @ g)
            e = net.B @ f[b] - y[b]
            net.B = net.B - c * np.outer(e, g)
            net.P = (net.P - c * np.outer(g, g)) / lam
    net.R = net.R - dR
    return l1b.mean(), l2b.mean()


def step(net: LeakyNet, u, y, *, noise, cfg: dict) -> tuple[np.ndarray, float, float]:
    """One step in place on ``net``; ``y`` is the label arriving with this step (that of
    step t - delay). Returns (prediction, loss1, loss2) as the kernel reports them."""
    u = np.asarray(u, np.float64)
    y = np.asarray(y, np.float64)
    delay = cfg["delay"]
    l1 = l2 = np.nan
    if delay > 0 and len(net.pending) == delay:
        l1, l2 = _learn(net, net.pending.pop(0), y, cfg)
    if cfg["resync_every"] > 0 and net.t % cfg["resync_every"] == 0:
        net.xh2 = net.xh1.copy()
    xi1, xi2, zeta1, zeta2 = noise
    A, R, B, D = net.A, net.R, net.B, net.D
    xp1 = u @ A.T + net.xh1 @ R.T + xi1
    xp2 = u @ A.T + net.xh2 @ R.T + xi2
    x1, x2 = np.tanh(xp1), np.tanh(xp2)
    if cfg["decorrelation"]:
        x1, x2 = x1 @ D.T, x2 @ D.T
    a = cfg["leak"]
    xh1n = (1 - a) * net.xh1 + a * x1
    xh2n = (1 - a) * net.xh2 + a * x2
    F = B.shape[1]
    f1, f2 = features(xh1n, u, F), features(xh2n, u, F)
    noisy_out = cfg["readout"] == "anp"
    b1 = f1 @ B.T + (zeta1 if noisy_out else 0.0)
    b2 = f2 @ B.T + (zeta2 if noisy_out else 0.0)
    rec = dict(xp1=xp1, xp2=xp2, xprev=net.xh1, xi1=xi1, xi2=xi2, zeta1=zeta1, zeta2=zeta2,
               b1=b1, b2=b2, f1=f1, u=u)  # fmt: skip
    net.xh1, net.xh2 = xh1n, xh2n
    net.t += 1
    if delay == 0:
        l1, l2 = _learn(net, rec, y, cfg)
    else:
        net.pending.append(rec)
    return b1, l1, l2
