"""Float64 NumPy reference of one ANP / NP / WP step, written from docs/design.md §2–3.

Deliberately obvious: whole-matrix NumPy expressions, no fusion, no deferred updates.
Noise is passed in; :func:`draw_node_noise` and :func:`draw_weight_noise` reproduce the
kernels' documented draw order from the same counter-based generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twinpass.kernels.rng import fill_normal


@dataclass
class Net:
    A: np.ndarray
    R: np.ndarray
    B: np.ndarray
    D: np.ndarray
    xh1: np.ndarray
    xh2: np.ndarray
    t: int = 0
    history: list = field(default_factory=list)

    def copy(self) -> Net:
        return Net(
            *(
                np.array(m, dtype=np.float64)
                for m in (self.A, self.R, self.B, self.D, self.xh1, self.xh2)
            ),
            t=self.t,
        )


def draw_node_noise(rng, sigma, nb, n, n_out, two_noisy, dtype):
    """xi1, xi2, zeta1, zeta2 in the kernel's order: xi2, zeta2, then xi1, zeta1."""
    xi2 = np.empty((nb, n), dtype)
    zeta2 = np.empty((nb, n_out), dtype)
    xi1 = np.zeros((nb, n), dtype)
    zeta1 = np.zeros((nb, n_out), dtype)
    fill_normal(rng, sigma, xi2)
    fill_normal(rng, sigma, zeta2)
    if two_noisy:
        fill_normal(rng, sigma, xi1)
        fill_normal(rng, sigma, zeta1)
    return [np.asarray(v, np.float64) for v in (xi1, xi2, zeta1, zeta2)]


def draw_weight_noise(rng, sigma, n_in, n, n_out, dtype):
    """E_A, E_R (row by row), E_B in the WP kernel's order."""
    EA = np.empty((n, n_in), dtype)
    ER = np.empty((n, n), dtype)
    EB = np.empty((n_out, n), dtype)
    fill_normal(rng, sigma, EA)
    for i in range(n):
        fill_normal(rng, sigma, ER[i])
    fill_normal(rng, sigma, EB)
    return [np.asarray(v, np.float64) for v in (EA, ER, EB)]


def offdiag(M):
    return M - np.diag(np.diag(M))


def step(
    net: Net,
    u,
    y,
    *,
    rule,
    lr,
    sigma,
    eps,
    gain,
    decor,
    resync_every,
    out_cap,
    noise=None,
    weight_noise=None,
):
    """One online step in place on ``net`` (float64). Returns (pred, loss1, loss2)."""
    u = np.asarray(u, np.float64)
    y = np.asarray(y, np.float64)
    nb = u.shape[0]
    if resync_every > 0 and net.t % resync_every == 0:
        net.xh2 = net.xh1.copy()
    A, R, B, D = net.A, net.R, net.B, net.D
    if rule == "wp":
        EA, ER, EB = weight_noise
        xi1 = xi2 = np.zeros_like(net.xh1)
        zeta1 = zeta2 = np.zeros((nb, B.shape[0]))
        a1 = u @ A.T + net.xh1 @ R.T
        a2 = u @ (A + EA).T + net.xh2 @ (R + ER).T
        B2 = B + EB
    else:
        xi1, xi2, zeta1, zeta2 = noise
        a1 = u @ A.T + net.xh1 @ R.T
        a2 = u @ A.T + net.xh2 @ R.T
        B2 = B
    xp1, xp2 = a1 + xi1, a2 + xi2
    x1, x2 = np.tanh(xp1), np.tanh(xp2)
    xh1n = x1 @ D.T if decor else x1
    xh2n = x2 @ D.T if decor else x2
    b1 = xh1n @ B.T + zeta1
    b2 = xh2n @ B2.T + zeta2
    l1b = ((b1 - y) ** 2).mean(axis=1)
    l2b = ((b2 - y) ** 2).mean(axis=1)
    dl = l2b - l1b
    if rule == "anp":
        da, db = xp2 - xp1, b2 - b1
        nda, ndb = (da**2).sum(1), (db**2).sum(1)
        kh = np.where(nda > 0, gain * dl / np.where(nda > 0, nda, 1), 0.0)
        ko = np.where(ndb > 0, gain * dl / np.where(ndb > 0, ndb, 1), 0.0)
        if out_cap:
            g = lr * gain * (xh1n**2).sum(1)
            ko = np.where(g > 0.5, ko * 0.5 / np.where(g > 0.5, g, 1), ko)
        ch, co = kh[:, None] * da, ko[:, None] * db
    elif rule == "np":
        ch = (dl / sigma)[:, None] * (xi2 - xi1)
        co = (dl / sigma)[:, None] * (zeta2 - zeta1)
    if rule == "wp":
        k = lr * dl.mean() / sigma
        net.A = A - k * EA
        net.R = R - k * ER
        net.B = B - k * EB
    else:
        net.A = A - lr / nb * ch.T @ u
        net.R = R - lr / nb * ch.T @ net.xh1
        net.B = B - lr / nb * co.T @ xh1n
    if decor:
        dD = sum(offdiag(np.outer(v, v)) for v in xh1n) @ D
        net.D = D - eps / nb * dD
    net.xh1, net.xh2 = xh1n, xh2n
    net.t += 1
    return b1, l1b.mean(), l2b.mean()


def loss_grad(net: Net, u, y, *, decor):
    """Exact gradient of the clean replica's loss l_t w.r.t. (A, R, B), float64.

    The previous state ``net.xh1`` is held fixed (no backpropagation through time): this is
    the direction a one-step perturbation rule estimates. ``net`` is not modified.
    """
    u = np.asarray(u, np.float64)
    y = np.asarray(y, np.float64)
    nb, n_out = y.shape
    D = net.D if decor else np.eye(net.R.shape[0])
    x = np.tanh(u @ net.A.T + net.xh1 @ net.R.T)
    xh = x @ D.T
    g_y = 2.0 * (xh @ net.B.T - y) / (n_out * nb)
    g_a = (g_y @ net.B @ D) * (1.0 - x**2)
    return g_a.T @ u, g_a.T @ net.xh1, g_y.T @ xh
