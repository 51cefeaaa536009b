"""NARMA10: the tenth-order nonlinear autoregressive moving-average benchmark series.

The input u is i.i.d. uniform on [0, 0.5); the output follows

    y[t+1] = 0.3 y[t] + 0.05 y[t] (y[t] + y[t-1] + ... + y[t-9]) + 1.5 u[t-9] u[t] + 0.1

from y[0] = ... = y[9] = 0 (the first step computed is y[10], from t = 9). The task is
exogenous: y is predicted from u alone (u -> y), so a model needs a memory of at least ten
steps of u and of its own nonlinear response. With u on [0, 0.5) the series stays bounded
(about 0.1 to 0.9 after a short transient); a non-finite value is reported, never returned.
"""

from __future__ import annotations

import numpy as np

from twinpass.core.errors import ConfigError, DataError

ORDER = 10
"""Terms in the recurrence's sum, and the lag of its input product."""


def narma10(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` steps of NARMA10 driven by ``U(0, 0.5)`` noise seeded with ``seed``.

    Returns (u, y), both float64 of shape (n,): u from
    ``numpy.random.default_rng(seed).uniform(0.0, 0.5, n)``, y from the recurrence in the
    module docstring. y[t] depends on u[t-10..t-1] (and earlier), never on u[t]: pairing
    u[t] with y[t+1] is a one-step-ahead forecast. Raises ConfigError for a negative ``n``
    and DataError if the series ever leaves the finite numbers.
    """
    if isinstance(n, bool) or int(n) != n or int(n) < 0:
        raise ConfigError(f"narma10: n must be a whole number >= 0, got {n!r}")
    n = int(n)
    u = np.random.default_rng(seed).uniform(0.0, 0.5, n)
    y = np.zeros(n)
    for t in range(ORDER - 1, n - 1):
        window = y[t - ORDER + 1 : t + 1].sum()  # y[t-9] + ... + y[t]
        y[t + 1] = 0.3 * y[t] + 0.05 * y[t] * window + 1.5 * u[t - 9] * u[t] + 0.1
    if not np.all(np.isfinite(y)):
        first = int(np.argmin(np.isfinite(y)))
        raise DataError(f"narma10: the series diverged at step {first} (seed {seed})")
    return u, y
