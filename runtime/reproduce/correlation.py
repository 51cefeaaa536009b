"""How correlated the hidden units are: the quantity decorrelation drives down.

The paper's decorrelation loss is the mean squared off-diagonal entry of the covariance of
the (decorrelated) hidden state ``xh = D x`` over time. It is measured here on the test
split, from a zero state and without learning, in float64 NumPy: a measurement, not a
kernel, so it stays simple.
"""

from __future__ import annotations

import numpy as np

from twinpass.runtime.params import Params


def hidden_states(params: Params, inputs: np.ndarray) -> np.ndarray:
    """``xh`` of every step of every stream: inputs (S, T, n_in) -> (S, T, N), float64."""
    A, R, _, D = (np.asarray(m, dtype=np.float64) for m in params.astuple())
    S, T, _ = inputs.shape
    xh = np.zeros((S, R.shape[0]))
    out = np.empty((S, T, R.shape[0]))
    for t in range(T):
        xh = np.tanh(inputs[:, t] @ A.T + xh @ R.T) @ D.T
        out[:, t] = xh
    return out


def decorrelation_loss(states: np.ndarray) -> float:
    """Mean squared off-diagonal covariance of hidden states shaped (..., N)."""
    flat = states.reshape(-1, states.shape[-1])
    n = flat.shape[1]
    if n < 2 or flat.shape[0] < 2:
        return 0.0
    cov = np.cov(flat, rowvar=False)
    off = cov[~np.eye(n, dtype=bool)]
    return float(np.mean(off**2))
