"""NARMA10: the recurrence against an independent loop, the input's law, seeds, bad n."""

from __future__ import annotations

import numpy as np
import pytest

from twinpass.core.errors import ConfigError
from twinpass.runtime.tasks.narma import narma10


def _reference(u: np.ndarray) -> np.ndarray:
    """y written term by term, straight from the recurrence, in plain Python floats."""
    n = len(u)
    y = [0.0] * n
    for t in range(9, n - 1):
        total = 0.0
        for i in range(10):
            total += y[t - i]
        y[t + 1] = 0.3 * y[t] + 0.05 * y[t] * total + 1.5 * u[t - 9] * u[t] + 0.1
    return np.array(y)


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_recurrence_matches_an_independent_loop(seed: int) -> None:
    u, y = narma10(3000, seed)
    assert u.shape == y.shape == (3000,)
    assert u.dtype == y.dtype == np.float64
    np.testing.assert_allclose(y, _reference(u), rtol=1e-12, atol=0.0)


def test_input_law_and_bounded_output() -> None:
    u, y = narma10(20_000, 0)
    assert u.min() >= 0.0 and u.max() < 0.5
    assert abs(u.mean() - 0.25) < 0.01
    assert np.all(y[:10] == 0.0)
    assert np.all(np.isfinite(y)) and 0.0 < y[100:].min() and y.max() < 1.5


def test_seeded_and_prefix_stable() -> None:
    u0, y0 = narma10(500, 7)
    u1, y1 = narma10(500, 7)
    assert np.array_equal(u0, u1) and np.array_equal(y0, y1)
    assert not np.array_equal(narma10(500, 8)[0], u0)
    u_short, y_short = narma10(200, 7)
    assert np.array_equal(u_short, u0[:200]) and np.array_equal(y_short, y0[:200])


def test_input_does_not_reach_the_same_step() -> None:
    """y[t] depends on u up to t-1: changing u[t] leaves y[..t] alone."""
    u, y = narma10(100, 3)
    v = u.copy()
    v[50] = 0.0
    assert np.array_equal(_reference(v)[:51], y[:51])
    assert not np.array_equal(_reference(v)[51:], y[51:])


@pytest.mark.parametrize("n", [0, 1, 9, 10, 11])
def test_short_series(n: int) -> None:
    u, y = narma10(n, 0)
    assert u.shape == y.shape == (n,)
    np.testing.assert_array_equal(y, _reference(u))


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_bad_length(n: object) -> None:
    with pytest.raises(ConfigError, match="n must be"):
        narma10(n, 0)  # type: ignore[arg-type]
