"""River estimators backed by twinpass: a recurrent network learned online, in River pipelines.

Needs River (``pip install 'twinpass[river]'``). Two estimators:

- :class:`Regressor` (``river.base.Regressor``): ``learn_one(x, y)`` / ``predict_one(x)``
  over dict features, one network step per sample, in stream order, so that it drops into
  ``evaluate.progressive_val_score`` and pipelines such as
  ``preprocessing.StandardScaler() | twinpass.river.Regressor()``.
- :class:`Forecaster` (``river.time_series.base.Forecaster``): ``learn_one(y, x=None)``
  and ``forecast(horizon, xs=None)``, iterating its own forecasts for horizons beyond one.

Both hold a :class:`twinpass.runtime.estimators.TwinpassRegressor` (one implementation of
learning, prediction and pickling). Features are the keys of the first sample learned (or
``features``), in sorted order, so the order of a dict's keys never matters; a missing key
carries that feature's last value (0 before it has one), as a missing cell does in
``twinpass stream``, and a key never seen before is left out. The rule's options are
keyword arguments, checked at once (``Regressor(leak=2)`` raises a ConfigError naming the
option and its range).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:
    from river import base
    from river.time_series.base import Forecaster as _RiverForecaster
except ImportError as e:  # pragma: no cover - exercised without river installed
    raise ImportError("twinpass.river needs River: pip install 'twinpass[river]'") from e

from twinpass.runtime.config import RuleConfig
from twinpass.runtime.estimators import TwinpassRegressor
from twinpass.runtime.normalize import RunningNormalizer


def _number(value: Any) -> float | None:
    """A feature value as a finite float, or None (missing, not a number, not finite)."""
    if isinstance(value, (bool, int, float, np.number)):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


class _Features:
    """Dict samples -> a fixed-width vector: sorted numeric keys, missing keys carried.

    Values that are not numbers (a date, a label) are left out: encode them upstream
    (e.g. ``river.preprocessing.OneHotEncoder``).
    """

    def __init__(self, names: tuple[str, ...] | None) -> None:
        self.names = None if names is None else tuple(sorted(names, key=str))
        self.last: np.ndarray | None = None

    def fix(self, x: dict) -> None:
        if self.names is None:
            self.names = tuple(sorted((k for k, v in x.items() if _number(v) is not None), key=str))
        if self.last is None:
            self.last = np.zeros(len(self.names))

    def vector(self, x: dict | None, *, commit: bool) -> np.ndarray:
        """The feature vector of ``x``; ``commit`` keeps its values as the last seen."""
        assert self.names is not None and self.last is not None
        v = self.last.copy()
        for i, name in enumerate(self.names):
            f = _number((x or {}).get(name))
            if f is not None:
                v[i] = f
        if commit:
            self.last = v
        return v


def _rule_model(n_hidden: int, seed: int, rule: dict[str, Any]) -> TwinpassRegressor:
    RuleConfig(**rule)  # fail now, naming the option, not at the first sample
    return TwinpassRegressor(n_hidden, seed=seed, **rule)


class _Estimator:
    """What both estimators share: the constructor (River clones an estimator from its
    signature, so the parameters are kept as given), the model and the feature map."""

    def __init__(
        self,
        n_hidden: int = 100,
        seed: int = 0,
        features: tuple[str, ...] | None = None,
        **rule: Any,
    ) -> None:
        self.n_hidden = n_hidden
        self.seed = seed
        self.features = features
        self.rule = rule
        self._model = _rule_model(n_hidden, seed, rule)
        self._x = _Features(features)
        self._start()

    def _start(self) -> None:
        """The estimator's own state beyond the model and the features (none here)."""

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"n_hidden": 10}


class Regressor(_Estimator, base.Regressor):
    """A recurrent network learned online by ANP (or another twinpass rule), one step per
    sample.

    Parameters
    ----------
    n_hidden
        Hidden units.
    seed
        Seeds the weights and the perturbation noise.
    features
        Feature names to use (default: the keys of the first sample learned).
    rule
        Options of the learning rule, as :class:`twinpass.RuleConfig`'s fields (``lr``,
        ``leak``, ``readout``, ...).

    Examples
    --------
    >>> from river import datasets, evaluate, metrics, preprocessing
    >>> import twinpass.river
    >>> model = preprocessing.StandardScaler() | twinpass.river.Regressor(n_hidden=50)
    >>> evaluate.progressive_val_score(datasets.TrumpApproval(), model, metrics.MAE())
    MAE: ...
    """

    def learn_one(self, x: dict, y: float) -> None:
        self._x.fix(x)
        u = self._x.vector(x, commit=True)
        self._model.partial_fit(u[None], [float(y)])

    def predict_one(self, x: dict) -> float:
        if self._model.learner_ is None:
            return 0.0  # the readout starts at zero
        u = self._x.vector(x, commit=False)
        return float(self._model.predict(u[None])[0])


class Forecaster(_Estimator, _RiverForecaster):
    """A recurrent network that forecasts a series online: it learns y[t+1] from y[t] (and
    the exogenous features x[t]) at every ``learn_one``, each standardised with the
    statistics of the values before it, and forecasts ``horizon`` steps by feeding its own
    forecasts back.

    Parameters
    ----------
    n_hidden
        Hidden units.
    seed
        Seeds the weights and the perturbation noise.
    features
        Exogenous feature names (default: the keys of the first ``x`` learned).
    rule
        Options of the learning rule, as :class:`twinpass.RuleConfig`'s fields.

    Examples
    --------
    >>> from river import datasets, metrics, time_series
    >>> import twinpass.river
    >>> model = twinpass.river.Forecaster(n_hidden=50)
    >>> time_series.evaluate(datasets.AirlinePassengers(), model, metrics.MAE(), horizon=12)
    """

    def _start(self) -> None:
        self._norm: RunningNormalizer | None = None
        # The newest input row (normalised) and the target's location and scale then.
        self._u: np.ndarray | None = None
        self._loc = 0.0
        self._scale = 1.0

    def learn_one(self, y: float, x: dict | None = None) -> None:
        self._x.fix(x or {})
        row = np.append(self._x.vector(x, commit=True), float(y))
        if self._norm is None:
            self._norm = RunningNormalizer(len(row), keep=-1)
        Z, loc, scale = self._norm.update(row[None])
        if self._u is not None:
            # The previous row's input learns this row's value, in the units of that moment.
            target = (float(y) - self._loc) / self._scale
            self._model.partial_fit(self._u[None], [target])
        self._u, self._loc, self._scale = Z[0], float(loc[0]), float(scale[0])

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list[float]:
        if self._u is None or self._model.learner_ is None:
            return [0.0] * horizon
        assert self._norm is not None
        learner = self._model.learner_
        # Steps after the first take inputs made with the statistics of now (the last value
        # included), so their outputs are in those units.
        mean, std = self._norm.mean.copy(), self._norm.std()
        out: list[float] = []
        u = self._u.copy()
        for i in range(horizon):
            z = float(learner.predict(u[None], from_learning_state=i == 0)[0, 0])
            loc, scale = (self._loc, self._scale) if i == 0 else (mean[-1], std[-1])
            y = float(loc + scale * z)
            out.append(y)
            x = xs[i] if xs is not None and i < len(xs) else None
            row = np.append(self._x.vector(x, commit=False), y)
            u = (row - mean) / std
        return out
