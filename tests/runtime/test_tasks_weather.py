"""Weather task: the reference's split and pairing, train-only scaling, bad-file messages."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from shared_data import WTH, needs_wth

from twinpass.core.errors import ConfigError, DataError
from twinpass.runtime.tasks import make_task, make_weather
from twinpass.runtime.tasks.weather import FEATURES

HEADER = [
    "date",
    "Visibility",
    "DryBulbFarenheit",
    "DryBulbCelsius",
    "WetBulbFarenheit",
    "DewPointFarenheit",
    "DewPointCelsius",
    "RelativeHumidity",
    "WindSpeed",
    "WindDirection",
    "StationPressure",
    "Altimeter",
    "WetBulbCelsius",
]


@pytest.fixture(scope="module")
def raw() -> np.ndarray:
    """The file's 9 input columns, read independently of the package."""
    with WTH.open(newline="") as f:
        rows = list(csv.reader(f))
    cols = [rows[0].index(name) for name in FEATURES]
    return np.array([[float(r[j]) for j in cols] for r in rows[1:]])


@pytest.fixture(scope="module")
def task1():
    return make_weather(WTH)


def _write(path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _rows(n: int, seed: int = 0) -> list[list[object]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        values = rng.integers(1, 90, size=len(HEADER) - 1).tolist()
        rows.append([f"1/{1 + i // 24}/2010 {i % 24}:00", *values])
    return rows


# --- the real file ------------------------------------------------------------------------


@needs_wth
def test_reference_split_sizes_and_dates(task1) -> None:
    assert (task1.n_in, task1.n_out) == (9, 1)
    assert task1.train.inputs.shape == (1, 33599, 9)
    assert task1.train.targets.shape == (1, 33599, 1)
    assert task1.test.inputs.shape == (1, 1463, 9)
    assert task1.train.inputs.dtype == task1.test.targets.dtype == np.float64
    meta = json.loads(json.dumps(task1.metadata))
    assert meta["n_rows"] == 35064 and meta["file"] == "WTH.csv"
    assert (meta["first_date"], meta["last_date"]) == ("2010-01-01T00:00", "2013-12-31T23:00")
    train, test = meta["split"]["train"], meta["split"]["test"]
    assert train["rows"] == [0, 33600] and test["rows"] == [33600, 35064]
    assert (train["first_date"], train["last_date"]) == ("2010-01-01T00:00", "2013-10-31T23:00")
    assert (test["first_date"], test["last_date"]) == ("2013-11-01T00:00", "2013-12-31T23:00")
    assert meta["inputs"] == list(FEATURES) and meta["target_input_index"] == 1
    assert meta["zero_humidity_rows"] == 149
    assert task1.extra_metrics(task1.test.targets, "test") == {}


@needs_wth
def test_scaling_is_fitted_on_train_rows_only(task1, raw) -> None:
    lo, hi = raw[:33600].min(axis=0), raw[:33600].max(axis=0)
    scaling = task1.metadata["scaling"]
    assert [scaling["min"][c] for c in FEATURES] == lo.tolist()
    assert [scaling["max"][c] for c in FEATURES] == hi.tolist()
    inputs = task1.train.inputs[0]
    assert np.array_equal(inputs.min(axis=0), np.zeros(9))
    assert np.array_equal(inputs.max(axis=0), np.ones(9))
    np.testing.assert_allclose(task1.test.inputs[0], (raw[33600:-1] - lo) / (hi - lo), atol=1e-15)
    # On this file every test value lies inside the training range, so the reference's
    # whole-file fit gives the same numbers; the small-file test below shows the difference.
    assert np.array_equal(raw.min(axis=0), lo) and np.array_equal(raw.max(axis=0), hi)


@needs_wth
@pytest.mark.parametrize("horizon", [1, 24, 48])
def test_horizon_shift(horizon, raw) -> None:
    task = make_weather(WTH, horizon=horizon)
    for split, (a, b) in ((task.train, (0, 33600)), (task.test, (33600, 35064))):
        assert split.inputs.shape[1] == b - a - horizon
        # the target is the input's DryBulbFarenheit, horizon hours later
        assert np.array_equal(split.targets[0, :-horizon, 0], split.inputs[0, horizon:, 1])
    # and the last training target is the last training row's temperature, no more
    lo, hi = task.metadata["scaling"]["min"], task.metadata["scaling"]["max"]
    last = raw[33599, 1]
    expected = (last - lo["DryBulbFarenheit"]) / (hi["DryBulbFarenheit"] - lo["DryBulbFarenheit"])
    assert task.train.targets[0, -1, 0] == expected


@needs_wth
def test_streams_cut_like_the_reference(raw) -> None:
    horizon, k = 24, 10
    task = make_weather(WTH, horizon=horizon, n_streams=k)
    lo = np.array(list(task.metadata["scaling"]["min"].values()))
    hi = np.array(list(task.metadata["scaling"]["max"].values()))
    scaled = (raw - lo) / (hi - lo)
    for split, (a, b) in ((task.train, (0, 33600)), (task.test, (33600, 35064))):
        x = scaled[a : b - horizon]
        y = scaled[a + horizon : b, 1]
        steps = len(x) // k
        assert split.inputs.shape == (k, steps, 9)
        for i in range(k):
            np.testing.assert_array_equal(split.inputs[i], x[i * steps : (i + 1) * steps])
            np.testing.assert_array_equal(split.targets[i, :, 0], y[i * steps : (i + 1) * steps])
    info = task.metadata["split"]["test"]
    assert info["n_steps"] == (35064 - 33600 - horizon) // k
    assert info["dropped_pairs"] == (35064 - 33600 - horizon) % k


@needs_wth
def test_make_task_weather_uses_env_var(monkeypatch) -> None:
    monkeypatch.setenv("TWINPASS_WTH", str(WTH))
    task = make_task("weather", horizon=48)
    assert task.metadata["params"] == {"horizon": 48, "n_streams": 1, "split_row": 33600}


# --- small files written here ------------------------------------------------------------


def test_small_file_split_and_test_values_beyond_train_range(tmp_path) -> None:
    rows = _rows(60)
    rows[50][2] = 500  # DryBulbFarenheit far above anything in the training rows
    task = make_weather(_write(tmp_path / "w.csv", rows), horizon=2, split_row=40)
    assert task.train.inputs.shape == (1, 38, 9) and task.test.inputs.shape == (1, 18, 9)
    assert task.train.inputs.min() == 0.0 and task.train.inputs.max() <= 1.0
    assert task.test.inputs[0, 10, 1] > 1.0
    assert task.test.targets[0, 8, 0] == task.test.inputs[0, 10, 1]
    assert task.metadata["file"] == "w.csv"
    assert task.metadata["split"]["test"]["first_date"] == "2010-01-02T16:00"


def test_extra_columns_are_ignored_and_celsius_dropped(tmp_path) -> None:
    header = [*HEADER, "Notes"]
    rows = [[*r, 7] for r in _rows(30)]
    task = make_weather(_write(tmp_path / "w.csv", rows, header), split_row=20)
    assert task.metadata["ignored_columns"] == ["Notes"]
    assert task.n_in == 9


def test_missing_file(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "WTH.csv"
    with pytest.raises(DataError, match="no such file") as err:
        make_weather(missing)
    assert str(missing) in str(err.value)


def test_missing_column_lists_the_available_ones(tmp_path) -> None:
    header = [h for h in HEADER if h != "WindSpeed"]
    rows = [r[: len(header)] for r in _rows(30)]
    path = _write(tmp_path / "w.csv", rows, header)
    with pytest.raises(DataError) as err:
        make_weather(path, split_row=20)
    message = str(err.value)
    assert str(path) in message and "line 1" in message
    assert "missing column(s) WindSpeed" in message
    assert "available: date, Visibility, DryBulbFarenheit" in message


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("abc", "'abc' is not a number"),
        ("", "empty value"),
        ("  ", "empty value"),
        ("nan", "not finite"),
    ],
)
def test_bad_field_names_file_line_and_column(tmp_path, value, what) -> None:
    rows = _rows(30)
    rows[6][HEADER.index("StationPressure")] = value  # 8th line of the file
    path = _write(tmp_path / "w.csv", rows)
    with pytest.raises(DataError) as err:
        make_weather(path, split_row=20)
    message = str(err.value)
    assert str(path) in message
    assert "line 8, column 'StationPressure'" in message
    assert what in message


def test_bad_value_in_dropped_column_is_ignored(tmp_path) -> None:
    rows = _rows(30)
    rows[3][HEADER.index("DewPointCelsius")] = "n/a"
    assert make_weather(_write(tmp_path / "w.csv", rows), split_row=20).n_in == 9


def test_short_row_and_empty_date(tmp_path) -> None:
    rows = _rows(30)
    rows[2] = rows[2][:-1]
    path = _write(tmp_path / "short.csv", rows)
    with pytest.raises(DataError, match=r"line 4: expected 13 fields like the header, found 12"):
        make_weather(path, split_row=20)
    rows = _rows(30)
    rows[9][0] = ""
    with pytest.raises(DataError, match=r"line 11, column 'date': empty value"):
        make_weather(_write(tmp_path / "nodate.csv", rows), split_row=20)


def test_empty_file_and_header_only(tmp_path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="line 1: the file is empty"):
        make_weather(empty)
    with pytest.raises(DataError, match="no data rows"):
        make_weather(_write(tmp_path / "header.csv", []))


def test_constant_training_column(tmp_path) -> None:
    rows = _rows(30)
    for r in rows[:20]:
        r[HEADER.index("Visibility")] = 10
    with pytest.raises(DataError, match="Visibility constant over the training rows"):
        make_weather(_write(tmp_path / "w.csv", rows), split_row=20)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"horizon": 0},
        {"n_streams": 0},
        {"split_row": 0},
        {"split_row": 30},
        {"split_row": 20, "horizon": 10},
        {"split_row": 20, "n_streams": 11},
    ],
)
def test_bad_parameters(tmp_path, kwargs) -> None:
    path = _write(tmp_path / "w.csv", _rows(30))
    with pytest.raises(ConfigError):
        make_weather(path, **kwargs)


def test_make_task_weather_without_path(monkeypatch) -> None:
    monkeypatch.delenv("TWINPASS_WTH", raising=False)
    with pytest.raises(ConfigError, match="path="):
        make_task("weather")
