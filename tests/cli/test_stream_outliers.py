"""``twinpass stream`` against one extreme value: a 1e30 in the target or an input is
forecast from but not learned, the running MSE over the rest of the stream stays within
1.1x of the spike-free run (the bar of benchmarks/outlier_spike.py, on a shorter stream),
and the outlier is counted and listed in --json-out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from twinpass.cli.main import cli
from twinpass.runtime.metrics import read_metrics

ROWS, SPIKE = 700, 350


def _csv(path: Path, spike: str | None) -> Path:
    g = np.random.default_rng(0)
    t = np.arange(ROWS)
    x = np.sin(2 * np.pi * t / 50) + 0.1 * g.standard_normal(ROWS)
    y = np.sin(2 * np.pi * (t + 3) / 50) + 0.1 * g.standard_normal(ROWS)
    cells = [[f"{a:.6f}", f"{b:.6f}"] for a, b in zip(x, y, strict=True)]
    if spike is not None:
        cells[SPIKE][0 if spike == "x" else 1] = "1e30"
    path.write_text("x,temp\n" + "".join(f"{a},{b}\n" for a, b in cells))
    return path


def _mse_after_spike(tmp_path: Path, spike: str | None, *extra: str) -> tuple[float, dict]:
    """The model's MSE over the forecasts scored at the rows after the spike row."""
    name = spike or "clean"
    src, metrics, out = (tmp_path / f"{name}{len(extra)}{s}" for s in (".csv", ".m.csv", ".json"))
    result = CliRunner().invoke(
        cli,
        ["stream", "--source", f"csv:{_csv(src, spike)}", "--target", "temp", "-q", "-N", "30",
         "--metrics-out", str(metrics), "--metrics-every", "1", "--json-out", str(out), *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    m = read_metrics(metrics)
    sse = m["step"] * m["model_mse"]
    n = ROWS - 1 - SPIKE  # horizon 1: forecast k is scored at data row k
    return float((sse[-1] - sse[-n - 1]) / n), json.loads(out.read_text())


@pytest.mark.parametrize("column", ["temp", "x"])
def test_one_extreme_value_does_not_poison_the_stream(tmp_path, column: str) -> None:
    clean, _ = _mse_after_spike(tmp_path, None)
    spiked, res = _mse_after_spike(tmp_path, column)
    assert spiked <= 1.1 * clean, (spiked, clean)
    assert res["outlier_rows"] == 1
    assert res["outliers_first"] == [{"row": SPIKE, "column": column, "value": 1e30}]
    assert res["scored"] == ROWS - 1 - (column == "temp")  # the spiked target is not scored


def test_without_the_bound_the_spike_poisons_the_model(tmp_path) -> None:
    clean, _ = _mse_after_spike(tmp_path, None)
    spiked, res = _mse_after_spike(tmp_path, "x", "--outlier-z", "0")
    assert spiked > 1e6 * clean and res["outlier_rows"] == 0
