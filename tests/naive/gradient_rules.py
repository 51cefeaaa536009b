"""Slow, obvious float64 references of the online gradient rules: RTRL, e-prop and UORO.

Python loops over time and streams, the influence J as a 3-d tensor J[k, i, j] =
∂xh_k/∂W_ij (W = [R | A]), textbook formulas (einsum, the decorrelation as the full O(N³)
product), nothing fused or deferred. The network, the rules and the order of a step are
those of docs/design.md §2 and §3.7-3.9: forward with the current weights, prediction,
the rule's influence update, the hidden update from this step's learning signal, the
readout's update (its own gradient or NLMS), the decorrelation of D.
"""

from __future__ import annotations

import numpy as np

from naive.bptt import decorrelate, features


def _step_state(A, R, D, xh, u, leak):
    """One clean step: (x, ψ, new state)."""
    x = np.tanh(u @ A.T + xh @ R.T)
    return x, 1.0 - x**2, (1 - leak) * xh + leak * (x @ D.T)


def run(
    rule,
    A,
    R,
    B,
    D,
    U,
    Y,
    *,
    lr,
    lr_hidden=None,
    leak=1.0,
    readout="anp",
    readout_step=0.5,
    decor_eps=0.0,
    feedback=None,
    signs=None,
):
    """Online learning over U (T, nb, n_in), Y (T, nb, n_out) from a zero state.

    ``D=None``: no decorrelation. ``feedback``: the random feedback matrix (n_out, N), or
    None for B's hidden columns. ``signs`` (T, nb, N): UORO's ν of every step. Returns the
    predictions and the final parameters.
    """
    A, R, B = (np.array(p, np.float64) for p in (A, R, B))
    n, n_in = A.shape
    decor = D is not None
    D = np.array(D, np.float64) if decor else np.eye(n)
    T, nb, _ = U.shape
    n_out = B.shape[0]
    w = n + n_in
    lr_h = lr if lr_hidden is None else lr_hidden
    xh = np.zeros((nb, n))
    J = np.zeros((nb, n, n, w))
    E = np.zeros((nb, n, w))
    xt = np.zeros((nb, n))
    th = np.zeros((nb, n, w))
    preds = np.zeros((T, nb, n_out))
    for t in range(T):
        u = U[t]
        _, psi, xhn = _step_state(A, R, D, xh, u, leak)
        f = features(xhn, u, B.shape[1])
        y = f @ B.T
        preds[t] = y
        err = y - Y[t]
        M = B[:, :n] if feedback is None else feedback
        L = 2.0 / n_out * err @ M
        step = lr_h / nb
        if readout != "anp":
            step /= 1.0 + np.sum(M * M)
        z = np.concatenate([xh, u], axis=1)
        G = np.zeros((n, w))
        for b in range(nb):
            if rule == "rtrl":
                direct = np.einsum("li,j->lij", np.eye(n), z[b])
                Q = psi[b][:, None, None] * (np.einsum("lm,mij->lij", R, J[b]) + direct)
                J[b] = (1 - leak) * J[b] + leak * np.einsum("kl,lij->kij", D, Q)
                G += step * np.einsum("k,kij->ij", L[b], J[b])
            elif rule == "eprop":
                E[b] = (1 - leak) * E[b] + leak * np.outer(psi[b], z[b])
                G += step * (D.T @ L[b])[:, None] * E[b]
            else:
                nu = signs[t, b]
                hx = (1 - leak) * xt[b] + leak * D @ (psi[b] * (R @ xt[b]))
                g = leak * psi[b] * (D.T @ nu)
                eps = 1e-7
                rho0 = np.sqrt((np.linalg.norm(th[b]) + eps) / (np.linalg.norm(hx) + eps))
                rho1 = np.sqrt(
                    (np.linalg.norm(g) * np.linalg.norm(z[b]) + eps) / (np.sqrt(n) + eps)
                )
                xt[b] = rho0 * hx + rho1 * nu
                th[b] = th[b] / rho0 + np.outer(g, z[b]) / rho1
                G += step * (L[b] @ xt[b]) * th[b]
        if readout == "anp":
            B -= lr / nb * (2.0 / n_out) * err.T @ f
        elif readout == "nlms":
            for b in range(nb):
                B -= readout_step * np.outer(err[b], f[b]) / (1e-6 + f[b] @ f[b]) / nb
        R -= G[:, :n]
        A -= G[:, n:]
        if decor:
            D = decorrelate(D, xhn, decor_eps)
        xh = xhn
    return {"preds": preds, "A": A, "R": R, "B": B, "D": D if decor else None}


def total_loss(A, R, B, D, U, Y, leak=1.0):
    """Σ_t mean over batch and outputs of the squared error, fixed weights, zero state."""
    n = R.shape[0]
    D = np.eye(n) if D is None else D
    xh = np.zeros((U.shape[1], n))
    tot = 0.0
    for t in range(U.shape[0]):
        _, _, xh = _step_state(A, R, D, xh, U[t], leak)
        y = features(xh, U[t], B.shape[1]) @ B.T
        tot += np.mean((y - Y[t]) ** 2)
    return tot


def rtrl_gradient(A, R, B, D, U, Y, leak=1.0):
    """Σ_t ∂l_t/∂W by RTRL with fixed weights: the gradient of :func:`total_loss`, (N, N+n_in)."""
    n, n_in = A.shape
    D = np.eye(n) if D is None else D
    nb, n_out = Y.shape[1], Y.shape[2]
    xh = np.zeros((nb, n))
    J = np.zeros((nb, n, n, n + n_in))
    G = np.zeros((n, n + n_in))
    for t in range(U.shape[0]):
        u = U[t]
        _, psi, xhn = _step_state(A, R, D, xh, u, leak)
        err = features(xhn, u, B.shape[1]) @ B.T - Y[t]
        L = 2.0 / n_out * err @ B[:, :n] / nb
        z = np.concatenate([xh, u], axis=1)
        for b in range(nb):
            direct = np.einsum("li,j->lij", np.eye(n), z[b])
            Q = psi[b][:, None, None] * (np.einsum("lm,mij->lij", R, J[b]) + direct)
            J[b] = (1 - leak) * J[b] + leak * np.einsum("kl,lij->kij", D, Q)
            G += np.einsum("k,kij->ij", L[b], J[b])
        xh = xhn
    return G


def uoro_gradients(A, R, B, D, U, Y, draws, rng, leak=1.0):
    """Σ_t of UORO's estimate with fixed weights, one per draw of the signs: (draws, N, W).

    One stream; the draws are vectorised (every array carries a leading draw axis).
    """
    n, n_in = A.shape
    D = np.eye(n) if D is None else D
    n_out = Y.shape[2]
    w = n + n_in
    xh = np.zeros((1, n))
    xt = np.zeros((draws, n))
    th = np.zeros((draws, n, w))
    G = np.zeros((draws, n, w))
    eps = 1e-7
    for t in range(U.shape[0]):
        u = U[t]
        _, psi, xhn = _step_state(A, R, D, xh, u, leak)
        err = features(xhn, u, B.shape[1]) @ B.T - Y[t]
        L = (2.0 / n_out * err @ B[:, :n])[0]
        z = np.concatenate([xh, u], axis=1)[0]
        nu = rng.choice([-1.0, 1.0], size=(draws, n))
        hx = (1 - leak) * xt + leak * (psi[0] * (xt @ R.T)) @ D.T
        g = leak * psi[0] * (nu @ D)
        rho0 = np.sqrt((np.linalg.norm(th, axis=(1, 2)) + eps) / (np.linalg.norm(hx, axis=1) + eps))
        rho1 = np.sqrt((np.linalg.norm(g, axis=1) * np.linalg.norm(z) + eps) / (np.sqrt(n) + eps))
        xt = rho0[:, None] * hx + rho1[:, None] * nu
        th = th / rho0[:, None, None] + g[:, :, None] * z[None, None, :] / rho1[:, None, None]
        G += (xt @ L)[:, None, None] * th
        xh = xhn
    return G


def run_eprop_delayed(
    A, R, B, D, U, Y, *, delay, lr, lr_hidden=None, leak=1.0, readout="anp", decor_eps=0.0
):
    """e-prop with a label delay d: Y[t] is the label of step t - d (docs/design.md §3.8).

    At step t the update of step t - d is applied first, from what was kept at t - d (its
    eligibility trace E, features and prediction), with the current feedback B and D; then
    step t runs forward with the updated weights. The first d labels are ignored. The hidden
    weights' signal is the kept prediction's error; NLMS's readout step is the current
    readout's error on the kept features (as the kernel's readout update is). Returns
    the predictions, the losses (NaN where no step is learned) and the final parameters.
    """
    A, R, B = (np.array(p, np.float64) for p in (A, R, B))
    n, n_in = A.shape
    decor = D is not None
    D = np.array(D, np.float64) if decor else np.eye(n)
    T, nb, _ = U.shape
    n_out = B.shape[0]
    lr_h = lr if lr_hidden is None else lr_hidden
    xh = np.zeros((nb, n))
    E = np.zeros((nb, n, n + n_in))
    kept = {}
    preds = np.zeros((T, nb, n_out))
    losses = np.full(T, np.nan)
    for t in range(T):
        if t >= delay > 0:
            Ek, fk, yk = kept.pop(t - delay)
            err = yk - Y[t]
            losses[t] = np.mean(err**2)
            L = 2.0 / n_out * err @ B[:, :n]
            step = lr_h / nb
            if readout != "anp":
                step /= 1.0 + np.sum(B[:, :n] ** 2)
            G = sum(step * (D.T @ L[b])[:, None] * Ek[b] for b in range(nb))
            R -= G[:, :n]
            A -= G[:, n:]
            if readout == "anp":
                B -= lr / nb * (2.0 / n_out) * err.T @ fk
            else:  # NLMS: the current readout's error on the kept features
                now = fk @ B.T - Y[t]
                B -= (
                    sum(0.5 * np.outer(now[b], fk[b]) / (1e-6 + fk[b] @ fk[b]) for b in range(nb))
                    / nb
                )
        u = U[t]
        _, psi, xhn = _step_state(A, R, D, xh, u, leak)
        f = features(xhn, u, B.shape[1])
        preds[t] = f @ B.T
        z = np.concatenate([xh, u], axis=1)
        for b in range(nb):
            E[b] = (1 - leak) * E[b] + leak * np.outer(psi[b], z[b])
        kept[t] = (E.copy(), f.copy(), preds[t].copy())
        if decor:
            D = decorrelate(D, xhn, decor_eps)
        xh = xhn
    return {"preds": preds, "loss": losses, "A": A, "R": R, "B": B, "D": D if decor else None}
