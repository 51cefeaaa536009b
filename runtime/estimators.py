"""A NumPy estimator in the scikit-learn style: ``partial_fit`` on blocks of a stream.

:class:`TwinpassRegressor` wraps :class:`OnlineLearner` for users who hold their stream as
arrays: rows in time order, one target row per input row. ``partial_fit(X, y)`` learns
from the next block of the stream (one update per row, prequential), ``predict(X)`` gives
the outputs for rows that continue the stream without learning from them. The learning
rule's options are constructor arguments (those of :class:`RuleConfig`, with its
defaults), so ``get_params`` / ``set_params`` and scikit-learn's ``clone`` work; a pickle
holds the learner as a checkpoint (:meth:`OnlineLearner.save`), so a model survives a
round trip bit for bit.

Unlike most scikit-learn regressors the model has a state that runs along the stream:
``partial_fit`` continues it, and ``predict`` by default starts where the learned stream
stopped (``warm=False``: from a zero state).
"""

from __future__ import annotations

import inspect
import os
import tempfile
from dataclasses import fields
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError, ShapeError

from .config import RuleConfig
from .learner import OnlineLearner

_D = RuleConfig()
RULE_FIELDS = tuple(f.name for f in fields(RuleConfig))


class TwinpassRegressor:
    """A recurrent network that learns a stream online: X (T, n_in) -> y (T,) or (T, n_out).

    Parameters
    ----------
    n_hidden:
        Hidden units.
    seed:
        Seeds the initial weights and the perturbation noise.
    dtype:
        ``float32`` or ``float64``.
    on_divergence:
        ``raise`` or ``rollback`` (:class:`OnlineLearner`).
    rule, decorrelation, lr, sigma, ...:
        The learning rule, field by field as in :class:`RuleConfig` (same defaults).

    Attributes (after the first ``partial_fit``)
    ---------------------------------------------
    learner_:
        The :class:`OnlineLearner`.
    n_features_in_, n_outputs_:
        Widths of X and y.
    """

    def __init__(
        self,
        n_hidden: int = 100,
        *,
        seed: int = 0,
        dtype: str = "float32",
        on_divergence: str = "raise",
        rule: str = _D.rule,
        decorrelation: bool = _D.decorrelation,
        lr: float = _D.lr,
        sigma: float = _D.sigma,
        eps: float = _D.eps,
        bptt_window: int = _D.bptt_window,
        optimizer: str | None = None,
        two_noisy_passes: bool = _D.two_noisy_passes,
        resync_every: int = _D.resync_every,
        output_cap: bool = _D.output_cap,
        gain: float | None = _D.gain,
        readout: str | None = None,
        readout_inputs: bool = _D.readout_inputs,
        forgetting: float = _D.forgetting,
        readout_p0: float = _D.readout_p0,
        readout_step: float = _D.readout_step,
        leak: float = _D.leak,
        spectral_radius: float | None = _D.spectral_radius,
        input_scale: float | None = _D.input_scale,
        lr_hidden: float | None = _D.lr_hidden,
        radius_bound: float | None = _D.radius_bound,
        guard_every: int = _D.guard_every,
        bptt_mode: str = _D.bptt_mode,
        clip: float | None = _D.clip,
        feedback: str = _D.feedback,
    ) -> None:
        # scikit-learn's convention: store the arguments as given, validate when fitting.
        for name, value in locals().items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)
        # (the same, spelt out for type checkers, for the ones read as attributes)
        self.n_hidden, self.seed, self.dtype = n_hidden, seed, dtype
        self.on_divergence = on_divergence
        self.learner_: OnlineLearner | None = None

    # -- parameters ------------------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> TwinpassRegressor:
        """Change constructor arguments. A fitted model is dropped: a new setting starts a new
        network at the next ``partial_fit``."""
        names = set(self._param_names())
        unknown = sorted(set(params) - names)
        if unknown:
            raise ConfigError(
                f"TwinpassRegressor has no parameter {', '.join(unknown)}: one of "
                f"{', '.join(sorted(names))}"
            )
        for name, value in params.items():
            setattr(self, name, value)
        self.learner_ = None
        return self

    def config(self) -> RuleConfig:
        """The learning rule the parameters describe (raises ConfigError naming a bad one)."""
        return RuleConfig(**{name: getattr(self, name) for name in RULE_FIELDS})

    def __repr__(self) -> str:
        changed = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if v != inspect.signature(type(self).__init__).parameters[k].default
        ]
        return f"TwinpassRegressor({', '.join(changed)})"

    # -- learning --------------------------------------------------------------------------

    def _xy(self, X: Any, y: Any | None) -> tuple[np.ndarray, np.ndarray | None]:
        Xa = np.asarray(X, dtype=np.float64)
        if Xa.ndim == 1:
            Xa = Xa[:, None]
        if Xa.ndim != 2:
            raise ShapeError(f"X must be (T, n_features), got shape {Xa.shape}")
        if y is None:
            return Xa, None
        ya = np.asarray(y, dtype=np.float64)
        if ya.ndim == 1:
            ya = ya[:, None]
        if ya.ndim != 2 or ya.shape[0] != Xa.shape[0]:
            raise ShapeError(
                f"y must be (T,) or (T, n_outputs) with T = {Xa.shape[0]} rows of X, "
                f"got shape {np.shape(y)}"
            )
        return Xa, ya

    def partial_fit(self, X: Any, y: Any) -> TwinpassRegressor:
        """Learn from the next rows of the stream: one update per row, in order.

        X (T, n_features), y (T,) or (T, n_outputs); a NaN target is not learned from.
        """
        Xa, ya = self._xy(X, y)
        assert ya is not None
        if self.learner_ is None:
            self.learner_ = OnlineLearner(
                Xa.shape[1],
                ya.shape[1],
                int(self.n_hidden),
                self.config(),
                seed=int(self.seed),
                dtype=self.dtype,
                on_divergence=self.on_divergence,
            )
            self._y_1d = np.ndim(y) == 1
        ln = self.learner_
        if Xa.shape[1] != ln.n_in or ya.shape[1] != ln.n_out:
            raise ShapeError(
                f"the model learned {ln.n_in} features -> {ln.n_out} outputs, got "
                f"{Xa.shape[1]} -> {ya.shape[1]}"
            )
        ln.run(Xa, ya)
        return self

    def fit(self, X: Any, y: Any) -> TwinpassRegressor:
        """A new model learned from one pass over X, y (``partial_fit`` from scratch)."""
        self.learner_ = None
        return self.partial_fit(X, y)

    def predict(self, X: Any, *, warm: bool = True) -> np.ndarray:
        """Outputs for rows X without learning from them: (T,) or (T, n_outputs) like y.

        ``warm``: X continues the stream learned so far (its state at the last row);
        otherwise the network starts from a zero state.
        """
        if self.learner_ is None:
            raise ConfigError("this TwinpassRegressor has not learned anything: partial_fit first")
        Xa, _ = self._xy(X, None)
        if Xa.shape[1] != self.learner_.n_in:
            raise ShapeError(
                f"X has {Xa.shape[1]} features, the model learned {self.learner_.n_in}"
            )
        out = self.learner_.predict(Xa, reset=not warm, from_learning_state=warm)
        out = np.asarray(out, np.float64)
        return out[:, 0] if self._y_1d else out

    def score(self, X: Any, y: Any) -> float:
        """R² of ``predict(X)`` against y (scikit-learn's regressor score)."""
        _, ya = self._xy(X, y)
        assert ya is not None
        pred = self.predict(X).reshape(ya.shape)
        ss_res = float(np.sum((ya - pred) ** 2))
        ss_tot = float(np.sum((ya - ya.mean(axis=0)) ** 2))
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")

    # -- pickling: the learner as a checkpoint ---------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        learner = state.pop("learner_")
        state["learner_checkpoint"] = None if learner is None else _checkpoint_bytes(learner)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        blob = state.pop("learner_checkpoint")
        self.__dict__.update(state)
        self.learner_ = None if blob is None else _learner_from_bytes(blob)


def _checkpoint_bytes(learner: OnlineLearner) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "learner.ckpt")
        learner.save(path)
        with open(path, "rb") as f:
            return f.read()


def _learner_from_bytes(blob: bytes) -> OnlineLearner:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "learner.ckpt")
        with open(path, "wb") as f:
            f.write(blob)
        learner, _ = OnlineLearner.load(path)
    return learner
