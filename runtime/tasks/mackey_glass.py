"""The Mackey-Glass task of the paper, and an endless Mackey-Glass stream.

Series: dx/dt = 0.2 x(t - tau) / (1 + x(t - tau)^10) - 0.1 x(t), tau = 17, integrated by
explicit Euler with ``DELTA_T`` = 10 sub-steps per sample (step 1/10), squashed as
``tanh(x - 1)``. This reproduces the paper's reference generator bit for bit, quirks
included:

- each series starts from a history of ``tau * DELTA_T`` values ``1.2 + 0.2 (U - 0.5)``,
  U drawn with ``numpy.random.RandomState(seed).rand``, one draw of the history per series
  from the same generator;
- the integrator's current value is *not* reset between series: series k starts from the
  last value of series k-1 (the very first starts from 1.2);
- ``washout`` samples are dropped, then one mean over *all* 2 n_series series (train and
  test alike, including the ``horizon`` extra samples) is subtracted.

`make_mackey_glass` builds 2 n_series independent series: the first n_series train, the
rest test. Pairing "ahead" (twinpass's default; the paper's text: "predict 15 steps ahead")
feeds s[t] and asks for s[t + horizon]; pairing "recall" (what the reference code does)
feeds s[t + horizon] and asks for s[t]. Either way T = ``length``.

`MackeyGlassStream` continues the first series forever for the streaming command. A stream
has no future to average over, so it subtracts the fixed constant `STREAM_OFFSET` (the
long-run mean of tanh(x - 1) on the attractor) instead of the batch mean; its ``state()``
round-trips through JSON or msgpack and resumes bit-identically.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from twinpass.core.errors import ConfigError

from .base import Split, Task, int_param

DELTA_T = 10
"""Euler sub-steps per sample (the reference's ``delta_t``); the step is 1/DELTA_T."""

PAIRINGS = {
    "ahead": "input s[t], target s[t+horizon]: forecast horizon steps ahead (the paper's text)",
    "recall": "input s[t+horizon], target s[t]: recall the value horizon steps back "
    "(what the reference code does)",
}

STREAM_OFFSET = -0.065386
"""Long-run mean of tanh(x - 1) on the tau=17 attractor, subtracted by `MackeyGlassStream`.

Measured once (5 seeds x 2e7 samples after the washout; the seeds agree to 1e-6, standard
error 2e-7) with::

    python - <<'EOF'
    import numpy as np
    from twinpass.runtime.tasks.mackey_glass import MackeyGlassStream as S
    print(np.mean([S(seed=k, offset=0.0).next(20_000_000).mean() for k in range(5)]))
    EOF

which printed -0.0653860. A finite series' own mean differs by up to about 1e-3 (the default
task's is -0.06568): the stream is centred, not exactly zero-mean.
"""

_STATE_KIND = "twinpass.mackey-glass-stream"
_STATE_VERSION = 1
_MAX_SEED = 2**32 - 1  # numpy.random.RandomState accepts seeds up to this


@njit(cache=True)
def _integrate(history: np.ndarray, pos: int, x: float, delta_t: int, out: np.ndarray):
    """Advance the delay equation by ``out.size`` samples of ``delta_t`` Euler sub-steps.

    ``history`` is a ring buffer of the last ``tau * delta_t`` sub-step values, oldest at
    ``pos``; each sub-step reads the oldest as x(t - tau) and overwrites it with the
    current x. Returns the new ``(pos, x)``; ``out`` receives x after each sample.
    """
    n_hist = history.shape[0]
    for i in range(out.shape[0]):
        for _ in range(delta_t):
            xtau = history[pos]
            history[pos] = x
            pos += 1
            if pos == n_hist:
                pos = 0
            # Same operation order as the reference, and a float exponent: an integer one
            # compiles to repeated multiplication, whose rounding differs from libm's pow,
            # and the chaos amplifies one ulp to O(1) within a few thousand samples.
            x = x + (0.2 * xtau / (1.0 + xtau**10.0) - 0.1 * x) / delta_t
        out[i] = x
    return pos, x


@njit(cache=True)
def _squash(raw: np.ndarray, offset: float, out: np.ndarray) -> None:
    for i in range(raw.shape[0]):
        out[i] = math.tanh(raw[i] - 1.0) - offset


def _initial_history(rng: np.random.RandomState, tau: int) -> np.ndarray:
    n_hist = tau * DELTA_T
    return 1.2 * np.ones(n_hist) + 0.2 * (rng.rand(n_hist) - 0.5)


def _raw_series(tau: int, seed: int, n_series: int, n_samples: int) -> list[np.ndarray]:
    """``n_series`` consecutive squashed series of ``n_samples`` each, shaped (n, 1)."""
    rng = np.random.RandomState(seed)
    x = 1.2
    series = []
    for _ in range(n_series):
        history = _initial_history(rng, tau)
        raw = np.empty((n_samples, 1))
        _, x = _integrate(history, 0, x, DELTA_T, raw[:, 0])
        # numpy's tanh on the same contiguous (n, 1) layout as the reference: its SIMD
        # and scalar loops may round differently.
        series.append(np.tanh(raw - 1))
    return series


def make_mackey_glass(
    *,
    length: int = 5000,
    tau: int = 17,
    horizon: int = 15,
    washout: int = 100,
    pairing: str = "ahead",
    seed: int = 0,
    n_series: int = 1,
) -> Task:
    """The paper's Mackey-Glass task: n_series train and n_series test streams of ``length``.

    Inputs and targets are (n_series, length, 1) float64. See the module docstring for the
    generator and the two pairings.
    """
    length = int_param("length", length, minimum=1)
    tau = int_param("tau", tau, minimum=1)
    horizon = int_param("horizon", horizon, minimum=1)
    washout = int_param("washout", washout, minimum=0)
    seed = int_param("seed", seed, minimum=0, maximum=_MAX_SEED)
    n_series = int_param("n_series", n_series, minimum=1)
    if pairing not in PAIRINGS:
        raise ConfigError(f"pairing must be one of {sorted(PAIRINGS)}, got {pairing!r}")

    series = _raw_series(tau, seed, 2 * n_series, length + horizon + washout)
    X = np.stack(series, axis=1)[washout:]  # (length + horizon, 2 n_series, 1)
    # The reference's layout and reduction order, so the mean matches to the last bit.
    center = float(np.mean(X))
    X -= center
    early, late = X[:-horizon], X[horizon:]
    inputs, targets = (early, late) if pairing == "ahead" else (late, early)
    inputs = np.ascontiguousarray(inputs.transpose(1, 0, 2))
    targets = np.ascontiguousarray(targets.transpose(1, 0, 2))

    params = {
        "length": length,
        "tau": tau,
        "horizon": horizon,
        "washout": washout,
        "pairing": pairing,
        "seed": seed,
        "n_series": n_series,
    }
    metadata: dict[str, Any] = {
        "task": "mackey-glass",
        "params": params,
        **params,
        "delta_t": DELTA_T,
        "equation": "dx/dt = 0.2 x(t-tau) / (1 + x(t-tau)^10) - 0.1 x(t)",
        "integrator": f"explicit Euler, {DELTA_T} sub-steps per sample",
        "initial_history": "1.2 + 0.2 (U - 0.5), U ~ numpy.random.RandomState(seed).rand, "
        "redrawn per series; integrator value carried over between series",
        "squash": "tanh(x - 1)",
        "pairing_explanation": PAIRINGS[pairing],
        "center": center,
        "centering": "mean over all train and test series after washout, subtracted",
        "split": {
            "train_series": list(range(n_series)),
            "test_series": list(range(n_series, 2 * n_series)),
            "note": "independent series from one generator: series k+1 continues after k",
        },
        "source": "reference generator of Fernandez, Keemink & van Gerven (2024)",
    }
    return Task(
        name="mackey-glass",
        train=Split(inputs[:n_series], targets[:n_series]),
        test=Split(inputs[n_series:], targets[n_series:]),
        metadata=metadata,
    )


class MackeyGlassStream:
    """An endless, deterministic Mackey-Glass series, ``tanh(x - 1) - offset``.

    It is the first series of ``make_mackey_glass(tau=tau, seed=seed)`` continued forever
    (same history draw, same ``washout`` samples skipped), centred by the fixed ``offset``
    (default `STREAM_OFFSET`, the attractor's long-run mean for tau = 17) instead of a
    batch mean. ``next(n)`` returns the next n samples; ``state()`` / ``from_state()``
    resume bit-identically, and chunked reads equal one long read.
    """

    def __init__(
        self,
        tau: int = 17,
        seed: int = 0,
        *,
        washout: int = 100,
        offset: float = STREAM_OFFSET,
    ) -> None:
        self.tau = int_param("tau", tau, minimum=1)
        self.seed = int_param("seed", seed, minimum=0, maximum=_MAX_SEED)
        self.washout = int_param("washout", washout, minimum=0)
        self.offset = _finite_float("offset", offset)
        self._history = _initial_history(np.random.RandomState(self.seed), self.tau)
        self._pos = 0
        self._x = 1.2
        self._emitted = 0
        if self.washout:
            self._pos, self._x = _integrate(
                self._history, self._pos, self._x, DELTA_T, np.empty(self.washout)
            )

    @property
    def emitted(self) -> int:
        """Samples returned so far (after the washout)."""
        return self._emitted

    def next(self, n: int) -> np.ndarray:
        """The next ``n`` samples, float64, shaped (n,)."""
        n = int_param("n", n, minimum=0)
        raw = np.empty(n)
        pos, x = _integrate(self._history, self._pos, self._x, DELTA_T, raw)
        self._pos, self._x = int(pos), float(x)
        out = np.empty(n)
        _squash(raw, self.offset, out)
        self._emitted += n
        return out

    def state(self) -> dict[str, Any]:
        """Everything needed to resume: plain ints, floats and a list of floats."""
        return {
            "kind": _STATE_KIND,
            "version": _STATE_VERSION,
            "tau": self.tau,
            "seed": self.seed,
            "washout": self.washout,
            "offset": self.offset,
            "delta_t": DELTA_T,
            # Oldest first, so the ring position need not be stored.
            "history": np.roll(self._history, -self._pos).tolist(),
            "x": self._x,
            "emitted": self._emitted,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MackeyGlassStream:
        """A stream that continues exactly where the one that wrote ``state`` stopped."""
        if not isinstance(state, dict):
            raise ConfigError(f"stream state must be a dict, got {type(state).__name__}")
        missing = {"kind", "version", "tau", "seed", "washout", "offset", "history", "x"}
        missing -= set(state)
        if missing:
            raise ConfigError(f"Mackey-Glass stream state lacks {sorted(missing)}")
        if state["kind"] != _STATE_KIND or state["version"] != _STATE_VERSION:
            raise ConfigError(
                f"not a version-{_STATE_VERSION} Mackey-Glass stream state: kind "
                f"{state['kind']!r}, version {state['version']!r}"
            )
        if state.get("delta_t", DELTA_T) != DELTA_T:
            raise ConfigError(f"stream state has delta_t {state['delta_t']}, need {DELTA_T}")
        self = cls.__new__(cls)
        self.tau = int_param("tau", state["tau"], minimum=1)
        self.seed = int_param("seed", state["seed"], minimum=0, maximum=_MAX_SEED)
        self.washout = int_param("washout", state["washout"], minimum=0)
        self.offset = _finite_float("offset", state["offset"])
        history = np.array(state["history"], dtype=np.float64)
        if history.shape != (self.tau * DELTA_T,) or not np.all(np.isfinite(history)):
            raise ConfigError(
                f"stream state history must be {self.tau * DELTA_T} finite floats, got "
                f"shape {history.shape}"
            )
        self._history = history
        self._pos = 0
        self._x = _finite_float("x", state["x"])
        self._emitted = int_param("emitted", state.get("emitted", 0), minimum=0)
        return self


def _finite_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return out
