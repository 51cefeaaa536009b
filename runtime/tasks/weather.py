"""The weather task of the paper: forecast the dry-bulb temperature from Informer's WTH.csv.

The file (Informer's "WTH" set: NOAA local climatological data, one U.S. station) has a
``date`` column and 12 numeric columns, 35,064 hourly rows from 1/1/2010 0:00 to
12/31/2013 23:00, strictly hourly with no gaps. The three Celsius duplicates
(DryBulbCelsius, WetBulbCelsius, DewPointCelsius) are dropped and the date is not an input,
which leaves the 9 inputs `FEATURES` (the target's current value among them, at index 1).
The target is DryBulbFarenheit ``horizon`` hours ahead (the paper uses 1, 24 and 48).

Split: the paper's reference code (``training_weather``/``generate_weather_data``) cuts at
row ``split_indx = 33600``, and so does the default ``split_row`` here:

- train: rows 0..33599, 2010-01-01 00:00 .. 2013-10-31 23:00 (1,400 days, ~46 months);
- test: rows 33600..35063, 2013-11-01 00:00 .. 2013-12-31 23:00 (1,464 rows, 61 days).

So "the last 2 months test" holds; "the first 28 months train" does not. 28 months is
Informer's *training* share (its paper: train/val/test 28/10/10 months; its code: the first
70 % / next 10 % / last 20 % of rows, 24,544 / 3,508 / 7,012 rows, with WetBulbCelsius as
target). The paper follows its own reference, not Informer, so twinpass does too.

Pairs never cross the split: train inputs are rows [0, split_row - horizon) and their
targets rows [horizon, split_row); test likewise from split_row on.

Scaling: min-max per column, fitted on the training rows [0, split_row) only, applied to
both splits (test values may leave [0, 1]); the constants are in ``metadata["scaling"]``.
The reference fits min-max on the whole file (test included); twinpass does not leak. On
WTH.csv the two coincide: every test value lies inside the training range.

Streams: like the reference's ``batch_size``, ``n_streams`` cuts each split's pairs into
that many contiguous segments of equal length T = n_pairs // n_streams and drops the last
n_pairs % n_streams pairs. The row ranges of every stream are in the metadata.

Missing values: the file has no empty fields, but missing observations were evidently
filled with zeros upstream: 149 rows have RelativeHumidity = 0 together with
WetBulbFarenheit = 0 (64 of them with DryBulbFarenheit = DewPointFarenheit = 0 as well),
110 in the train rows and 39 in the test rows. They are kept as they are, as the reference
and Informer keep them; ``metadata["zero_humidity_rows"]`` counts them. An empty or
non-numeric field, a short row or a missing column raises DataError with the file, line and
column.
"""

from __future__ import annotations

import csv
import hashlib
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError, DataError

from .base import Split, Task, int_param

DATE_COLUMN = "date"
FEATURES = (
    "Visibility",
    "DryBulbFarenheit",
    "WetBulbFarenheit",
    "DewPointFarenheit",
    "RelativeHumidity",
    "WindSpeed",
    "WindDirection",
    "StationPressure",
    "Altimeter",
)
"""The input columns, in the file's order once the Celsius duplicates are gone."""
TARGET = "DryBulbFarenheit"
DROPPED = ("DryBulbCelsius", "WetBulbCelsius", "DewPointCelsius")
REFERENCE_SPLIT_ROW = 33600
"""First test row in the reference code (``split_indx``): 2013-11-01 00:00."""

_DATE_FORMAT = "%m/%d/%Y %H:%M"


def read_wth(path: str | Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Parse WTH.csv: (dates, values shaped (rows, len(FEATURES)), ignored column names).

    Raises DataError naming the file, line and column of the first bad field.
    """
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(
            f"{path}: no such file; the weather task needs Informer's WTH.csv (35,064 hourly "
            "rows, 2010-2013); pass its path"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: line 1: the file is empty, expected a header line")
            header = [name.strip() for name in header]
            _check_header(path, header)
            date_col = header.index(DATE_COLUMN)
            cols = [header.index(name) for name in FEATURES]
            ignored = [n for n in header if n != DATE_COLUMN and n not in FEATURES + DROPPED]
            dates: list[str] = []
            values: list[list[float]] = []
            for row in reader:
                if not row:
                    continue  # a blank line carries no observation
                line = reader.line_num
                if len(row) != len(header):
                    raise DataError(
                        f"{path}: line {line}: expected {len(header)} fields like the header, "
                        f"found {len(row)}"
                    )
                date = row[date_col].strip()
                if not date:
                    raise DataError(f"{path}: line {line}, column '{DATE_COLUMN}': empty value")
                dates.append(date)
                values.append([_number(path, line, header[j], row[j]) for j in cols])
        except csv.Error as exc:
            raise DataError(f"{path}: line {reader.line_num}: malformed CSV: {exc}") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text: {exc}") from None
    if not values:
        raise DataError(f"{path}: no data rows after the header")
    return dates, np.array(values, dtype=np.float64), ignored


def _check_header(path: Path, header: list[str]) -> None:
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DataError(f"{path}: line 1: duplicate column(s) {', '.join(duplicates)}")
    missing = [name for name in (DATE_COLUMN, *FEATURES) if name not in header]
    if missing:
        raise DataError(
            f"{path}: line 1: missing column(s) {', '.join(missing)}; "
            f"available: {', '.join(header)}"
        )


def _number(path: Path, line: int, column: str, text: str) -> float:
    text = text.strip()
    if not text:
        raise DataError(f"{path}: line {line}, column '{column}': empty value")
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{path}: line {line}, column '{column}': {text!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{path}: line {line}, column '{column}': {text!r} is not finite")
    return value


def _iso(date: str) -> str:
    try:
        return datetime.strptime(date, _DATE_FORMAT).isoformat(timespec="minutes")
    except ValueError:
        return date  # an unexpected format is still worth recording verbatim


def _streams(
    scaled: np.ndarray, start: int, stop: int, horizon: int, n_streams: int, target_col: int
) -> tuple[Split, dict[str, Any]]:
    """Pairs from rows [start, stop) cut into n_streams contiguous segments."""
    n_pairs = stop - start - horizon
    steps = n_pairs // n_streams
    first = start + np.arange(n_streams) * steps
    inputs = np.stack([scaled[a : a + steps] for a in first])
    targets = np.stack([scaled[a + horizon : a + horizon + steps, target_col] for a in first])
    info = {
        "rows": [start, stop],
        "n_pairs": n_pairs,
        "n_steps": steps,
        "dropped_pairs": n_pairs - steps * n_streams,
        "stream_input_rows": [[int(a), int(a) + steps] for a in first],
        "stream_target_rows": [[int(a) + horizon, int(a) + horizon + steps] for a in first],
    }
    return Split(inputs, targets[:, :, None].copy()), info


def make_weather(
    path: str | Path,
    *,
    horizon: int = 1,
    n_streams: int = 1,
    split_row: int = REFERENCE_SPLIT_ROW,
) -> Task:
    """The weather task from WTH.csv at ``path``: 9 scaled inputs, DryBulbFarenheit ahead.

    ``horizon`` hours ahead (1, 24, 48 in the paper; any positive int); ``n_streams``
    contiguous streams per split; ``split_row`` the first test row (module docstring).
    """
    horizon = int_param("horizon", horizon, minimum=1)
    n_streams = int_param("n_streams", n_streams, minimum=1)
    split_row = int_param("split_row", split_row, minimum=1)
    path = Path(path)
    dates, data, ignored = read_wth(path)
    n_rows = data.shape[0]
    need = horizon + n_streams
    if split_row - need < 0 or n_rows - split_row - need < 0:
        raise ConfigError(
            f"{path} has {n_rows} rows; split_row={split_row} leaves {split_row} train and "
            f"{n_rows - split_row} test rows, and each split needs at least horizon + n_streams "
            f"= {need} rows"
        )

    lo = data[:split_row].min(axis=0)
    hi = data[:split_row].max(axis=0)
    flat = [FEATURES[j] for j in np.flatnonzero(hi == lo)]
    if flat:
        raise DataError(
            f"{path}: column(s) {', '.join(flat)} constant over the training rows "
            f"[0, {split_row}): min-max scaling is undefined"
        )
    scaled = (data - lo) / (hi - lo)
    target_col = FEATURES.index(TARGET)
    train, train_info = _streams(scaled, 0, split_row, horizon, n_streams, target_col)
    test, test_info = _streams(scaled, split_row, n_rows, horizon, n_streams, target_col)
    for info in (train_info, test_info):
        a, b = info["rows"]
        info["first_date"], info["last_date"] = _iso(dates[a]), _iso(dates[b - 1])

    params = {"horizon": horizon, "n_streams": n_streams, "split_row": split_row}
    metadata: dict[str, Any] = {
        "task": "weather",
        "params": params,
        **params,
        # The file's name and digest, never its absolute path: metadata ends up in records.
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "n_rows": n_rows,
        "first_date": _iso(dates[0]),
        "last_date": _iso(dates[-1]),
        "inputs": list(FEATURES),
        "target": TARGET,
        "target_input_index": target_col,
        "dropped_columns": [name for name in DROPPED],
        "ignored_columns": ignored,
        "scaling": {
            "kind": "min-max, (x - min) / (max - min)",
            "fit_rows": [0, split_row],
            "min": dict(zip(FEATURES, lo.tolist(), strict=True)),
            "max": dict(zip(FEATURES, hi.tolist(), strict=True)),
        },
        "split": {"train": train_info, "test": test_info},
        "zero_humidity_rows": int(
            np.count_nonzero(data[:, FEATURES.index("RelativeHumidity")] == 0)
        ),
        "source": "reference generate_weather_data of Fernandez, Keemink & van Gerven (2024), "
        "scaled on train rows only",
    }
    return Task(name="weather", train=train, test=test, metadata=metadata)
