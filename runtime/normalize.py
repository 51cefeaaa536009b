"""Online normalisation of a stream's columns, with no peeking at the future.

Each cell is standardised with the running mean and standard deviation of its column's
observed cells strictly before it (Welford's algorithm, float64, one count per column), and
only then added to the statistics. Until a column has two observed cells, and while it has
been constant, its scale is 1. The statistics are updated row by row in compiled code, so a
stream gives the same bits however it is cut into blocks, and ``state()`` / ``from_state()``
resume exactly.

A missing cell (NaN) is not observed: it leaves the statistics alone and carries its
column's last observed value, standardised with the statistics of that moment; before the
column has any observed value it is 0 (the column's running mean, in normalised units).

An outlier bound (``outlier_z``) guards the statistics: once a column has ``OUTLIER_WARMUP``
accepted cells, a cell further than ``outlier_z`` running standard deviations from its
running mean is an outlier. It is treated as missing (carried, never added to the
statistics) and reported in ``Normalized.outliers``, so a single extreme value (a sensor's
1e30) cannot capture the mean and scale for the rest of the stream.

    >>> norm = RunningNormalizer(2, keep=1)
    >>> Z, loc, scale = norm.update(rows)          # rows (T, 2) float64, NaN: missing
    >>> original = prediction * scale + loc        # back to column 1's units
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError
from twinpass.kernels.streaming import normalize_block, screen_column

_KIND = "twinpass.running-normalizer"

OUTLIER_WARMUP = 30
"""Accepted cells a column needs before its outliers are judged: a scale from fewer
cells is too noisy to call anything extreme."""


@dataclass(frozen=True)
class Normalized:
    """A normalised block: Z (T, C) with missing cells carried; loc and scale (T,) of
    column ``keep`` for each row; filled (T, C): the rows with missing cells carried, in
    the original units (NaN where the column had no observed value yet); outliers (T, C):
    the cells treated as missing because they lay beyond the outlier bound."""

    Z: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    filled: np.ndarray
    outliers: np.ndarray


def _scale(n: int, m2: float) -> float:
    """The kernel's scale after ``n`` observed cells with Welford sum ``m2``."""
    return math.sqrt(m2 / (n - 1)) if n >= 2 and m2 > 0.0 else 1.0


class RunningNormalizer:
    """Running per-column standardisation; column ``keep``'s location and scale are reported."""

    def __init__(self, n_columns: int, keep: int = -1, outlier_z: float | None = None) -> None:
        if int(n_columns) < 1:
            raise ConfigError(f"n_columns must be >= 1, got {n_columns}")
        if outlier_z is not None and not (math.isfinite(outlier_z) and outlier_z > 0):
            raise ConfigError(f"outlier_z must be a number > 0 (or None: off), got {outlier_z}")
        self.outlier_z = float(outlier_z) if outlier_z is not None else None
        self.n_columns = int(n_columns)
        self.keep = int(keep) % self.n_columns
        self.rows = 0
        self.count = np.zeros(self.n_columns, np.int64)  # observed cells per column
        self.mean = np.zeros(self.n_columns)
        self.m2 = np.zeros(self.n_columns)
        self.last = np.full(self.n_columns, np.nan)  # last observed value per column

    @property
    def n_seen(self) -> int:
        """Rows added so far (missing cells included)."""
        return self.rows

    def std(self) -> np.ndarray:
        """The current scale of each column (what its next cell would be divided by)."""
        return np.array(
            [_scale(int(n), float(m)) for n, m in zip(self.count, self.m2, strict=True)]
        )

    def update(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalise ``rows`` (T, C) and add them to the statistics.

        Returns Z (T, C), and the location and scale (T,) each row of column ``keep`` was
        normalised with. NaN cells are missing: see :meth:`update_carrying`.
        """
        out = self.update_carrying(rows)
        return out.Z, out.loc, out.scale

    def update_carrying(self, rows: np.ndarray) -> Normalized:
        """Normalise ``rows`` (T, C), carrying missing (NaN) cells; see the module doc."""
        X = np.ascontiguousarray(rows, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_columns:
            raise ConfigError(f"rows must be shaped (T, {self.n_columns}), got {X.shape}")
        T, C = X.shape
        outliers = np.zeros((T, C), np.bool_)
        if self.outlier_z is not None:
            X = X.copy()
            for c in range(C):
                seen = ~np.isnan(X[:, c])
                mask = screen_column(
                    np.ascontiguousarray(X[seen, c]),
                    self.count[c : c + 1],
                    self.mean[c : c + 1],
                    self.m2[c : c + 1],
                    self.outlier_z,
                    OUTLIER_WARMUP,
                )
                outliers[np.flatnonzero(seen)[mask], c] = True
            X[outliers] = np.nan  # missing from here on: carried, never absorbed
        Z = np.empty_like(X)
        filled = X.copy()
        loc = np.empty(T)
        scale = np.empty(T)
        for c in range(C):
            x = X[:, c]
            seen = ~np.isnan(x)
            n_obs = int(seen.sum())
            xo = np.ascontiguousarray(x[seen][:, None]) if n_obs < T else X[:, c : c + 1].copy()
            zo = np.empty((n_obs, 1))
            lo = np.empty(n_obs)
            so = np.empty(n_obs)
            # One column at a time, each with its own count: the same arithmetic as the
            # kernel's all-columns pass when no cell is missing.
            normalize_block(
                xo, self.count[c : c + 1], self.mean[c : c + 1], self.m2[c : c + 1], 0, zo, lo, so
            )
            if n_obs == T:
                Z[:, c] = zo[:, 0]
                col_loc, col_scale = lo, so
            else:
                # Statistics at each row: those before the next observed cell, or the final.
                before = np.cumsum(seen) - seen
                col_loc = np.append(lo, self.mean[c])[before]
                col_scale = np.append(so, _scale(int(self.count[c]), float(self.m2[c])))[before]
                at = np.maximum.accumulate(np.where(seen, np.arange(T), -1))
                carried = np.where(at >= 0, x[np.maximum(at, 0)], self.last[c])
                z = (carried - col_loc) / col_scale
                Z[:, c] = np.where(seen, 0.0, np.where(np.isnan(carried), 0.0, z))
                Z[seen, c] = zo[:, 0]
                filled[:, c] = carried
            if c == self.keep:
                loc[:] = col_loc
                scale[:] = col_scale
            if n_obs:
                self.last[c] = xo[-1, 0]
        self.rows += T
        return Normalized(Z, loc, scale, filled, outliers)

    def state(self) -> dict[str, Any]:
        """Plain data (ints and lists of floats): float64 values survive msgpack exactly."""
        return {
            "kind": _KIND,
            "keep": self.keep,
            "rows": self.rows,
            "count": self.count.tolist(),
            "mean": self.mean.tolist(),
            "m2": self.m2.tolist(),
            "last": self.last.tolist(),
            "outlier_z": self.outlier_z,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunningNormalizer:
        if not isinstance(state, dict) or state.get("kind") != _KIND:
            raise ConfigError("not a running-normaliser state")
        mean = np.array(state["mean"], dtype=np.float64)
        m2 = np.array(state["m2"], dtype=np.float64)
        if mean.ndim != 1 or mean.shape != m2.shape or mean.size < 1:
            raise ConfigError("running-normaliser state has inconsistent mean and m2")
        # Checkpoints from before the outlier bound streamed without one.
        self = cls(mean.size, state["keep"], state.get("outlier_z"))
        count = state["count"]
        if isinstance(count, int):  # one count for all columns (no missing cells then)
            self.count[:] = count
            self.rows = count
        else:
            self.count[:] = np.array(count, dtype=np.int64)
            self.rows = int(state["rows"])
        self.mean[:] = mean
        self.m2[:] = m2
        if "last" in state:
            self.last[:] = np.array(state["last"], dtype=np.float64)
        return self
