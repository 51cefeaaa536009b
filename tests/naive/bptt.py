"""Slow, obvious float64 reference of online truncated BPTT (``twinpass.kernels.bptt``).

Explicit Python loops over time, the whole unrolled history kept in a list, textbook
formulas (the decorrelation update as the full matrix product), no ring buffer, no in-place
tricks. The network and the rule are those of docs/design.md §2-3 and the kernel's docstring.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def forward(A, R, B, D, U, Ystar):
    """Run fixed parameters over U (T, nb, n_in) from xh_0 = 0; return (predictions, losses)."""
    A, R, B = (np.asarray(p, np.float64) for p in (A, R, B))
    n = R.shape[0]
    Dm = np.eye(n) if D is None else np.asarray(D, np.float64)
    xh = np.zeros((U.shape[1], n))
    preds, losses = [], []
    for t in range(U.shape[0]):
        x = np.tanh(U[t] @ A.T + xh @ R.T)
        xh = x @ Dm.T
        y = xh @ B.T
        preds.append(y)
        losses.append(np.mean((y - Ystar[t]) ** 2))
    return np.array(preds), np.array(losses)


def truncated_grad(history, K, A, R, B, D, y, ystar, xh_t):
    """Gradient of this step's loss through the last K entries of ``history``.

    ``history`` lists dicts (u, xh_prev, x) of every step since the last reset, newest last.
    """
    nb, n_out = y.shape
    g_y = 2.0 * (y - ystar) / (n_out * nb)
    gB = g_y.T @ xh_t
    gA = np.zeros_like(A)
    gR = np.zeros_like(R)
    g_xh = g_y @ B
    for entry in reversed(history[-K:]):
        g_x = g_xh @ D
        g_a = g_x * (1.0 - entry["x"] ** 2)
        gA += g_a.T @ entry["u"]
        gR += g_a.T @ entry["xh_prev"]
        g_xh = g_a @ R
    return gA, gR, gB


def decorrelate(D, xh, eps):
    """``D - eps * mean_b offdiag(xh_b xh_bᵀ) D`` as the plain O(N³) matrix product."""
    C = xh.T @ xh / xh.shape[0]
    C_off = C - np.diag(np.diag(C))
    return D - eps * (C_off @ D)


def run(
    A,
    R,
    B,
    D,
    U,
    Ystar,
    *,
    K: int,
    lr: float,
    optimizer: str = "sgd",
    decor_eps: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    adam_eps: float = 1e-8,
    resets: Iterable[int] = (),
):
    """Online TBPTT over U (T, nb, n_in), Ystar (T, nb, n_out), one update per step.

    ``D=None``: no decorrelation (identity). ``resets``: steps before which the hidden state
    is zeroed and the history forgotten. Returns a dict with the predictions, losses, the final
    parameters and hidden state, and ``grads``: each step's gradients {"A", "R", "B"} (with
    lr = 0 these are the truncated gradients of a fixed network).
    """
    A, R, B = (np.array(p, np.float64) for p in (A, R, B))
    n = R.shape[0]
    decor = D is not None
    D = np.array(D, np.float64) if decor else np.eye(n)
    resets = set(resets)
    params = {"A": A, "R": R, "B": B}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    adam_t = 0
    xh = np.zeros((U.shape[1], n))
    history = []
    preds, losses, all_grads = [], [], []
    for t in range(U.shape[0]):
        if t in resets:
            xh = np.zeros_like(xh)
            history = []
        A, R, B = params["A"], params["R"], params["B"]
        u = np.array(U[t], np.float64)
        ystar = np.array(Ystar[t], np.float64)
        x = np.tanh(u @ A.T + xh @ R.T)
        history.append({"u": u, "xh_prev": xh, "x": x})
        xh = x @ D.T
        y = xh @ B.T
        preds.append(y)
        losses.append(np.mean((y - ystar) ** 2))
        grads = dict(zip("ARB", truncated_grad(history, K, A, R, B, D, y, ystar, xh), strict=True))
        all_grads.append(grads)
        if optimizer == "adam":
            adam_t += 1
            for k in params:
                g = grads[k]
                m[k] = beta1 * m[k] + (1 - beta1) * g
                v[k] = beta2 * v[k] + (1 - beta2) * g * g
                m_hat = m[k] / (1 - beta1**adam_t)
                v_hat = v[k] / (1 - beta2**adam_t)
                params[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + adam_eps)
        else:
            for k in params:
                params[k] = params[k] - lr * grads[k]
        if decor and decor_eps:
            D = decorrelate(D, xh, decor_eps)
    return {
        "preds": np.array(preds),
        "losses": np.array(losses),
        "A": params["A"],
        "R": params["R"],
        "B": params["B"],
        "D": D if decor else None,
        "xh": xh,
        "grads": all_grads,
    }
