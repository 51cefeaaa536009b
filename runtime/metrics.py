"""Prequential error metrics of a stream, and the metrics file that records them over time.

`PrequentialMetrics` keeps, for each predictor (the model and its baselines), the running
mean squared error since the start of the stream and an exponential moving average (EMA)
of the squared error, ``ema <- ema + alpha (e^2 - ema)``: with the default ``alpha`` =
0.01 it weighs roughly the last 100 steps, so it shows where the learner is *now* while
the running MSE still carries the start. Both accumulate row by row in compiled code,
bit-identical under any chunking.

`MetricsLog` appends one row every ``every`` steps to a CSV or JSON-lines file, flushed per
block; on resume it drops rows written after the checkpoint, so the file continues without
duplicates. `read_metrics` loads such a file back (for plots).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from twinpass.core.errors import ConfigError, DataError
from twinpass.kernels.streaming import accumulate_errors

DEFAULT_ALPHA = 0.01
"""EMA weight of the newest squared error (about a 100-step window)."""

_KIND = "twinpass.prequential-metrics"
FORMATS = ("csv", "jsonl")


class PrequentialMetrics:
    """Running MSE and EMA of the squared error for named predictors."""

    def __init__(
        self, names: Sequence[str], *, alpha: float = DEFAULT_ALPHA, every: int = 100
    ) -> None:
        self.names = tuple(names)
        if not self.names:
            raise ConfigError("need at least one predictor name")
        if not 0.0 < float(alpha) <= 1.0:
            raise ConfigError(f"EMA alpha must be in (0, 1], got {alpha}")
        if int(every) < 0:
            raise ConfigError(f"metrics interval must be >= 0 (0: no rows), got {every}")
        self.alpha = float(alpha)
        self.every = int(every)
        K = len(self.names)
        self.count = np.zeros(1, np.int64)
        self.sse = np.zeros(K)
        self.ema = np.zeros(K)

    @property
    def steps(self) -> int:
        return int(self.count[0])

    @property
    def columns(self) -> list[str]:
        """Column names of the rows :meth:`update` returns."""
        return ["step"] + [f"{n}_{m}" for n in self.names for m in ("mse", "ema")]

    def update(self, predictions: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """Score a block: predictions (T, K) in predictor order, truth (T,).

        Returns the snapshot rows (step, mse, ema per predictor) that fell in the block.
        """
        P = np.ascontiguousarray(predictions, dtype=np.float64)
        y = np.ascontiguousarray(truth, dtype=np.float64)
        T = P.shape[0]
        rows = np.empty((T // self.every + 1 if self.every else 0, 1 + 2 * len(self.names)))
        n = accumulate_errors(P, y, self.count, self.sse, self.ema, self.alpha, self.every, rows)
        return rows[:n]

    def mse(self) -> dict[str, float | None]:
        n = self.steps
        return {k: (float(s) / n if n else None) for k, s in zip(self.names, self.sse, strict=True)}

    def ema_mse(self) -> dict[str, float | None]:
        n = self.steps
        return {k: (float(e) if n else None) for k, e in zip(self.names, self.ema, strict=True)}

    def state(self) -> dict[str, Any]:
        return {
            "kind": _KIND,
            "names": list(self.names),
            "alpha": self.alpha,
            "every": self.every,
            "count": self.steps,
            "sse": self.sse.tolist(),
            "ema": self.ema.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PrequentialMetrics:
        if not isinstance(state, dict) or state.get("kind") != _KIND:
            raise ConfigError("not a prequential-metrics state")
        self = cls(state["names"], alpha=state["alpha"], every=state["every"])
        self.count[0] = int(state["count"])
        self.sse[:] = state["sse"]
        self.ema[:] = state["ema"]
        return self


def metrics_format(path: str | os.PathLike[str]) -> str:
    """``csv`` or ``jsonl``, from the file name."""
    name = os.fspath(path).lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    raise ConfigError(f"metrics file {os.fspath(path)!r} must end in .csv or .jsonl")


def _fmt(v: float) -> str:
    # repr is the shortest string that reads back to the same float: files compare exactly.
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))


class MetricsLog:
    """Appends metric rows to a CSV or JSON-lines file, durable up to each checkpoint."""

    def __init__(
        self, path: str | os.PathLike[str], columns: Sequence[str], *, resume_step: int | None
    ) -> None:
        """Open ``path`` for appending rows with ``columns`` (the first is ``step``).

        ``resume_step`` None starts a new file (replacing any old one); an integer keeps
        the rows up to that step of an existing file and drops the rest, which were
        written after the checkpoint being resumed.
        """
        self.path = os.fspath(path)
        self.format = metrics_format(self.path)
        self.columns = list(columns)
        self._header = ",".join(self.columns) + "\n"
        if resume_step is not None and os.path.exists(self.path):
            self._truncate_after(resume_step)
            self._f: IO[str] = open(self.path, "a", encoding="utf-8", newline="")
        else:
            self._f = open(self.path, "w", encoding="utf-8", newline="")
            if self.format == "csv":
                self._f.write(self._header)
                self._f.flush()

    def _truncate_after(self, step: int) -> None:
        """Cut the file after its last complete row with ``step`` <= the given one."""
        keep = 0
        with open(self.path, "rb") as f:
            first = True
            for raw in f:
                if not raw.endswith(b"\n"):  # a row cut short by a crash
                    break
                if first and self.format == "csv":
                    first = False
                    if raw.decode("utf-8", "replace") != self._header:
                        raise DataError(
                            f"{self.path}: its header is not that of a twinpass stream "
                            f"metrics file ({self._header.strip()}); choose another file"
                        )
                    keep += len(raw)
                    continue
                try:
                    if self.format == "csv":
                        row_step = int(raw.split(b",", 1)[0])
                    else:
                        row_step = int(json.loads(raw)["step"])
                except (ValueError, KeyError, TypeError):
                    break
                if row_step > step:
                    break
                keep += len(raw)
        with open(self.path, "r+b") as f:
            f.truncate(keep)
        if keep == 0 and self.format == "csv":
            with open(self.path, "w", encoding="utf-8", newline="") as f:
                f.write(self._header)

    def write(self, rows: np.ndarray) -> None:
        """Append rows (n, len(columns)) and flush them to the operating system."""
        if len(rows) == 0:
            return
        if self.format == "csv":
            text = "".join(",".join(_fmt(v) for v in r) + "\n" for r in rows)
        else:
            text = "".join(
                json.dumps(
                    {
                        c: (int(v) if c == "step" else float(v))
                        for c, v in zip(self.columns, r, strict=True)
                    }
                )
                + "\n"
                for r in rows
            )
        self._f.write(text)
        self._f.flush()

    def sync(self) -> None:
        """Make the rows written so far durable (before a checkpoint that counts on them)."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_metrics(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a metrics file written by :class:`MetricsLog`: column name -> values."""
    path = os.fspath(path)
    fmt = metrics_format(path)
    try:
        f = open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise DataError(f"cannot read metrics file {path!r}: {e.strerror or e}") from None
    with f:
        if fmt == "csv":
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or header[0] != "step":
                raise DataError(f"{path}: not a twinpass metrics file (no 'step' header)")
            records = [r for r in reader if r]
            cols = header
            try:
                values = np.array(records, dtype=np.float64).reshape(len(records), len(cols))
            except ValueError as e:
                raise DataError(f"{path}: malformed metrics row ({e})") from None
            data = {c: values[:, i] for i, c in enumerate(cols)}
        else:
            rows = []
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}:{i}: not JSON ({e.msg})") from None
            cols = list(rows[0]) if rows else []
            try:
                data = {c: np.array([r[c] for r in rows], dtype=np.float64) for c in cols}
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}: inconsistent metrics rows ({e})") from None
    if not data or "step" not in data or data["step"].size == 0:
        raise DataError(f"{path}: no metric rows yet (nothing to plot)")
    return data
