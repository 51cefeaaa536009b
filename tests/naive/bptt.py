"""Slow, obvious float64 reference of online truncated BPTT (``twinpass.kernels.bptt``).

Explicit Python loops over time, the whole unrolled history kept in a list, textbook
formulas (the decorrelation update as the full matrix product), no ring buffer, no in-place
tricks. The network and the rule are those of docs/design.md §2-3 and the kernel's docstring:
leaky units xh_t = (1 - α) xh_{t-1} + α D tanh(A u_t + R xh_{t-1}), a readout over xh_t or
over [xh_t, u_t, 1] (B's width says which), sliding or chunked windows, global norm clipping.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def features(xh, u, width):
    """The readout's input: xh, or [xh, u, 1] when B is ``width`` = N + n_in + 1 wide."""
    if width == xh.shape[1]:
        return xh
    return np.concatenate([xh, u, np.ones((xh.shape[0], 1))], axis=1)


def forward(A, R, B, D, U, Ystar, leak=1.0):
    """Run fixed parameters over U (T, nb, n_in) from xh_0 = 0; return (predictions, losses)."""
    A, R, B = (np.asarray(p, np.float64) for p in (A, R, B))
    n = R.shape[0]
    Dm = np.eye(n) if D is None else np.asarray(D, np.float64)
    xh = np.zeros((U.shape[1], n))
    preds, losses = [], []
    for t in range(U.shape[0]):
        x = np.tanh(U[t] @ A.T + xh @ R.T)
        xh = (1 - leak) * xh + leak * (x @ Dm.T)
        y = features(xh, U[t], B.shape[1]) @ B.T
        preds.append(y)
        losses.append(np.mean((y - Ystar[t]) ** 2))
    return np.array(preds), np.array(losses)


def window_grad(history, A, R, B, D, leak=1.0):
    """Gradient of sum_k c_k l_k over ``history`` (dicts u, xh_prev, x, xh, g_y with
    g_y = c_k dl_k/dy_k; oldest first), truncated at the oldest entry's xh_prev."""
    n = R.shape[0]
    gA, gR, gB = np.zeros_like(A), np.zeros_like(R), np.zeros_like(B)
    g_xh = np.zeros_like(history[-1]["xh"])
    for entry in reversed(history):
        gB += entry["g_y"].T @ features(entry["xh"], entry["u"], B.shape[1])
        g_xh = g_xh + entry["g_y"] @ B[:, :n]
        g_a = leak * (g_xh @ D) * (1.0 - entry["x"] ** 2)
        gA += g_a.T @ entry["u"]
        gR += g_a.T @ entry["xh_prev"]
        g_xh = g_a @ R + (1 - leak) * g_xh
    return gA, gR, gB


def truncated_grad(history, K, A, R, B, D, y, ystar, xh_t, leak=1.0):
    """Gradient of this step's loss through the last K entries of ``history``.

    ``history`` lists dicts (u, xh_prev, x, xh) of every step since the last reset, newest
    last.
    """
    nb, n_out = y.shape
    window = [dict(e, g_y=np.zeros_like(y)) for e in history[-K:]]
    window[-1]["g_y"] = 2.0 * (y - ystar) / (n_out * nb)
    return window_grad(window, A, R, B, D, leak)


def clip_grads(grads, clip):
    """Scale the gradients, as one vector, to norm ``clip`` if longer (None: unchanged)."""
    if not clip:
        return grads
    norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    return {k: g * (clip / norm) for k, g in grads.items()} if norm > clip else grads


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
    mode: str = "sliding",
    clip: float | None = None,
    leak: float = 1.0,
    decor_eps: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    adam_eps: float = 1e-8,
    resets: Iterable[int] = (),
    flush: bool = False,
):
    """Online TBPTT over U (T, nb, n_in), Ystar (T, nb, n_out).

    ``mode="sliding"``: one update per step, the gradient of l_t through the last K steps.
    ``mode="chunked"``: one update per non-overlapping window of K steps, the gradient of
    the window's mean loss through the window. ``D=None``: no decorrelation (identity).
    ``resets``: steps before which the hidden state is zeroed and the history forgotten (a
    partial chunked window dropped, or applied first if ``flush``; ``flush`` also applies
    the last partial window at the end). Returns a dict with the predictions, losses, the
    final parameters and hidden state, and ``grads``: the gradients {"A", "R", "B"} of every
    update, before clipping (with lr = 0 these are the truncated gradients of a fixed
    network), and ``applied``: the same after clipping.
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
    preds, losses, all_grads, applied = [], [], [], []

    def update(grads):
        nonlocal adam_t
        all_grads.append(grads)
        grads = clip_grads(grads, clip)
        applied.append(grads)
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

    def chunk_update():
        window = [dict(e, g_y=e["g_y"] / len(history)) for e in history]
        update(dict(zip("ARB", window_grad(window, *params.values(), D, leak), strict=True)))

    for t in range(U.shape[0]):
        if t in resets:
            if flush and mode == "chunked" and history:
                chunk_update()
            xh = np.zeros_like(xh)
            history = []
        A, R, B = params["A"], params["R"], params["B"]
        u = np.array(U[t], np.float64)
        ystar = np.array(Ystar[t], np.float64)
        x = np.tanh(u @ A.T + xh @ R.T)
        entry = {"u": u, "xh_prev": xh, "x": x}
        xh = (1 - leak) * xh + leak * (x @ D.T)
        y = features(xh, u, B.shape[1]) @ B.T
        nb, n_out = y.shape
        entry.update(xh=xh, g_y=2.0 * (y - ystar) / (n_out * nb))
        history.append(entry)
        preds.append(y)
        losses.append(np.mean((y - ystar) ** 2))
        if mode == "sliding":
            g = truncated_grad(history, K, A, R, B, D, y, ystar, xh, leak)
            update(dict(zip("ARB", g, strict=True)))
        elif len(history) == K:
            chunk_update()
            history = []
        if decor and decor_eps:
            D = decorrelate(D, xh, decor_eps)
    if flush and mode == "chunked" and history:
        chunk_update()
    return {
        "preds": np.array(preds),
        "losses": np.array(losses),
        "A": params["A"],
        "R": params["R"],
        "B": params["B"],
        "D": D if decor else None,
        "xh": xh,
        "grads": all_grads,
        "applied": applied,
    }
