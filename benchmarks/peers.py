"""twinpass against the online learners a user would pick instead, on the same arrays.

One causal prequential protocol for every system (docs/design.md §6):

- every column is standardised online with the statistics of the rows strictly before it
  (twinpass's own :class:`~twinpass.runtime.normalize.RunningNormalizer`, so every system
  sees the same numbers);
- at row t each system forecasts y[t+h] from what is known at row t, after learning the pair
  whose label arrived at row t, (inputs of row t-h, y[t]); the forecast is mapped back to the
  target's units with the statistics of row t and scored when row t+h arrives;
- MSE in the target's units over the whole stream and over its last 20 %, and rows/s.

Systems: persistence (y[t]); twinpass (``StreamForecaster``, the defaults, N = 100 and 500);
reservoirpy's echo-state network (``Reservoir`` N = 100 and 500, leak 0.3, spectral radius
0.9, its other arguments at their documented defaults) with its online ``RLS`` and ``LMS``
readouts (``LMS`` at learning rate 1e-3) over [state, input, 1] — the bias given as a
constant feature with ``fit_bias=False``, because reservoirpy's ``fit_bias=True`` is far
worse on these streams; River's ``LinearRegression`` (SGD 1e-3) on the last 10 rows of every
input column and ``SNARIMAX(10, 1, 0)`` on the target. reservoirpy and River are optional
(``pip install -e '.[bench]'``); a missing one is skipped with a note.

Streams: Mackey-Glass 20k rows, NARMA10 20k rows (exogenous: u -> y, the target is not an
input), WTH WetBulbCelsius at 1 h and 24 h ahead (``../shared/data/WTH.csv``; skipped when
absent).

    python benchmarks/peers.py                     # every stream, writes nothing
    python benchmarks/peers.py --quick             # 3,000 rows per stream
    python benchmarks/peers.py --write-results     # the table into benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
from default_sweep import mackey_glass_rows, narma10, wth_rows

from twinpass.runtime.normalize import RunningNormalizer
from twinpass.runtime.streaming import StreamForecaster

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## Peers: twinpass against reservoirpy and River (`benchmarks/peers.py`)"


class Stream:
    """Rows (n, C) with the target last; whether the target is also an input; horizon."""

    def __init__(self, name: str, X: np.ndarray, target_input: bool, horizon: int) -> None:
        self.name, self.X, self.target_input, self.h = name, X, target_input, horizon
        Z, loc, scale = RunningNormalizer(X.shape[1], keep=-1).update(X)
        self.Z, self.loc, self.scale = Z, loc, scale
        self.inputs = Z if target_input else Z[:, :-1]
        self.y = X[:, -1]

    def score(self, forecasts: np.ndarray) -> tuple[float, float]:
        """forecasts[t]: the forecast of y[t+h] made at row t, in normalised units."""
        h = self.h
        pred = forecasts[: len(self.y) - h] * self.scale[:-h] + self.loc[:-h]
        err = (pred - self.y[h:]) ** 2
        return float(err.mean()), float(err[int(0.8 * len(err)) :].mean())


def persistence(s: Stream) -> np.ndarray:
    return s.Z[:, -1].copy()


def twinpass(s: Stream, n_hidden: int) -> np.ndarray:
    """The forecaster as ``twinpass stream`` runs it, its forecasts in normalised units."""
    f = StreamForecaster(
        s.X.shape[1], horizon=s.h, n_hidden=n_hidden, seed=0, target_input=s.target_input
    )
    preds = []
    for i in range(0, len(s.X), 4096):
        preds.append(f.learn_block(s.X[i : i + 4096]).predictions[:, 0])
    units = np.concatenate(preds)  # forecasts of rows h.., in units, made h rows earlier
    out = np.zeros(len(s.y))
    out[: len(units)] = (units - s.loc[: len(units)]) / s.scale[: len(units)]
    return out


def online_readout(
    s: Stream, feats: np.ndarray, learn: Callable[[np.ndarray, float], None], weights
) -> np.ndarray:
    """Row by row: learn the pair whose label arrived, then forecast from this row."""
    out = np.zeros(len(s.y))
    h = s.h
    for t in range(len(s.y)):
        if t >= h:
            learn(feats[t - h], s.Z[t, -1])
        W, b = weights()
        out[t] = float(feats[t] @ W + b)
    return out


def esn(s: Stream, units: int, readout: str) -> np.ndarray:
    from reservoirpy.nodes import LMS, RLS, Reservoir

    res = Reservoir(units, lr=0.3, sr=0.9, seed=0)
    states = res.run(s.inputs)  # causal: state t depends on inputs up to t only
    feats = np.hstack([states, s.inputs, np.ones((len(states), 1))])
    node = RLS(fit_bias=False) if readout == "rls" else LMS(1e-3, fit_bias=False)
    node.initialize(feats[:1], np.zeros((1, 1)))

    def learn(x: np.ndarray, y: float) -> None:
        node.partial_fit(x[None], np.array([[y]]))

    return online_readout(s, feats, learn, lambda: (node.Wout[:, 0], float(node.bias[0])))


def river_linear(s: Stream) -> np.ndarray:
    from river import linear_model, optim

    model = linear_model.LinearRegression(optimizer=optim.SGD(1e-3))
    lags: deque[np.ndarray] = deque(maxlen=10)
    feats = []
    for t in range(len(s.y)):
        lags.appendleft(s.inputs[t])
        feats.append(
            {f"c{c}_lag{k}": float(v[c]) for k, v in enumerate(lags) for c in range(len(v))}
        )
    out = np.zeros(len(s.y))
    for t in range(len(s.y)):
        if t >= s.h:
            model.learn_one(feats[t - s.h], float(s.Z[t, -1]))
        out[t] = model.predict_one(feats[t])
    return out


def snarimax(s: Stream) -> np.ndarray:
    from river import time_series

    model = time_series.SNARIMAX(p=10, d=1, q=0)
    out = np.zeros(len(s.y))
    for t in range(len(s.y)):
        model.learn_one(float(s.Z[t, -1]))
        out[t] = model.forecast(horizon=s.h)[s.h - 1]
    return out


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def systems() -> dict[str, tuple[str | None, Callable[[Stream], np.ndarray]]]:
    return {
        "persistence": (None, persistence),
        "twinpass N=100 (defaults)": (None, lambda s: twinpass(s, 100)),
        "twinpass N=500 (defaults)": (None, lambda s: twinpass(s, 500)),
        "reservoirpy ESN N=100 + RLS": ("reservoirpy", lambda s: esn(s, 100, "rls")),
        "reservoirpy ESN N=500 + RLS": ("reservoirpy", lambda s: esn(s, 500, "rls")),
        "reservoirpy ESN N=100 + LMS(1e-3)": ("reservoirpy", lambda s: esn(s, 100, "lms")),
        "River LinearRegression, 10 lags, SGD 1e-3": ("river", river_linear),
        "River SNARIMAX(10, 1, 0)": ("river", snarimax),
    }


def streams(n: int | None) -> list[Stream]:
    rows = 20_000 if n is None else n
    out = [
        Stream("Mackey-Glass", mackey_glass_rows(rows + 1), True, 1),
        Stream("NARMA10 (u → y)", narma10(rows), False, 1),
    ]
    w = wth_rows()
    if w is None:
        print("WTH.csv not found: the weather streams are left out")
    else:
        w = w if n is None else w[:n]
        out += [Stream("WTH 1 h", w, True, 1), Stream("WTH 24 h", w, True, 24)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3,000 rows per stream")
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()
    data = streams(3000 if args.quick else None)
    header = "| system | " + " | ".join(s.name for s in data) + " | rows/s |"
    lines = [header, "|---|" + "---|" * (len(data) + 1)]
    print(header, flush=True)
    for name, (module, run) in systems().items():
        if module is not None and not have(module):
            print(f"{name}: {module} is not installed (pip install -e '.[bench]'), skipped")
            continue
        cells, rows, secs = [], 0, 0.0
        for s in data:
            t0 = time.perf_counter()
            whole, last = s.score(run(s))
            secs += time.perf_counter() - t0
            rows += len(s.y)
            cells.append(f"{whole:.3g} / {last:.3g}")
        line = f"| {name} | " + " | ".join(cells) + f" | {rows / secs:,.0f} |"
        lines.append(line)
        print(line, flush=True)
    if args.write_results:
        write_results("\n".join(lines), args.quick)


def write_results(table: str, quick: bool) -> None:
    cmd = "python benchmarks/peers.py" + (" --quick" if quick else "") + " --write-results"
    section = f"""{HEADING}

Measured {datetime.date.today()} (the project's 2-core sandbox, shared; one process).
Command: `{cmd}`. Cells: MSE in the target's units, whole stream / last 20 %. Protocol:
every column standardised from earlier rows only; at row t the forecast of y[t+h] is made
after learning the pair whose label arrived at row t and scored at row t+h (causal for
every horizon). Peers at their documented defaults, except the echo-state networks' leak
(0.3) and spectral radius (0.9) and the bias given to their readouts as a constant feature
(`fit_bias=False`). rows/s: rows over the whole table's run, learning and scoring included.

{table}
"""
    text = RESULTS.read_text(encoding="utf-8")
    if HEADING in text:
        start = text.index(HEADING)
        nxt = re.search(r"\n## ", text[start + len(HEADING) :])
        end = len(text) if nxt is None else start + len(HEADING) + nxt.start() + 1
        text = text[:start] + section + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
