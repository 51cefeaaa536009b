"""CSV records to rows of floats: the header, the choice of columns, and bad rows.

Shared by every CSV-like source (files, stdin, serial lines), see
:mod:`twinpass.runtime.sources` for the rules. Conversion takes a block of records at a
time: one ``float`` per used field through ``numpy.fromiter`` when the block is clean, a
row-by-row scan only to locate (and skip or report) the bad rows.

An empty field (or one of blanks) in a used column is a *missing* cell, not a bad row: it
becomes NaN, which the stream carries (an input) or leaves unlearned (the target). Text that
is not a number, NaN or infinity written out, a number beyond float32's range (the network
computes in float32: 1e200 would overflow it and end the stream), and a wrong number of
fields are bad rows.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError, DataError

BAD_ROW_POLICIES = ("error", "skip")
MAX_VALUE = float(np.finfo(np.float32).max)
"""The largest magnitude a cell may have: float32's range, in which the network learns."""

MAX_REPORTED_SKIPS = 10
"""How many skipped rows are reported by line number (all are counted)."""


class Malformed(list):  # type: ignore[type-arg]
    """A record the CSV reader refused (a NUL byte, a field over the size limit, a bare
    CR): one field, its raw text, and ``reason``; a bad row like any other."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__([text])
        self.reason = reason


_CSV_ERRORS = {
    "new-line character seen in unquoted field": "a bare carriage return (CR) inside a field",
    "line contains NUL": "a NUL byte",
    "field larger than field limit": f"a field longer than {csv.field_size_limit():,} characters",
}


def csv_error_text(e: csv.Error) -> str:
    """The CSV reader's complaint in plain words (it suggests opening files differently)."""
    text = str(e)
    for start, plain in _CSV_ERRORS.items():
        if text.startswith(start):
            return f"malformed CSV: {plain}"
    return f"malformed CSV: {text}"


def split_record(text: str) -> list[str]:
    """One line as one CSV record; a line the reader refuses becomes a Malformed record."""
    try:
        return next(csv.reader([text]), [])
    except csv.Error as e:
        return Malformed(text, csv_error_text(e))


@dataclass
class Layout:
    """Which fields of a record are used: plain data, saved in checkpoints."""

    header: list[str]
    selected: list[int]  # indices into the header: input columns, target last
    non_numeric: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [self.header[i] for i in self.selected]

    def to_dict(self) -> dict[str, Any]:
        return {
            "header": list(self.header),
            "selected": list(self.selected),
            "non_numeric": list(self.non_numeric),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Layout:
        return cls(list(d["header"]), [int(i) for i in d["selected"]], list(d["non_numeric"]))


def _cell(text: str) -> float:
    """A field's value: NaN for an empty field (a missing cell); ValueError for text."""
    try:
        return float(text)
    except ValueError:
        if not text.strip():
            return math.nan
        raise


def _names(names: Iterable[str]) -> str:
    """Column names for a one-line message: one with a line break or control character is
    shown quoted and escaped."""
    return ", ".join(n if n.isprintable() else repr(n) for n in names)


def is_number(text: str) -> bool:
    """Whether ``float`` reads ``text`` (NaN and infinity included)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


class RowParser:
    """Turns CSV records into float rows: the header, the column choice and bad rows."""

    def __init__(
        self,
        name: str,
        *,
        columns: Sequence[str] | None = None,
        target: str | None = None,
        on_bad_row: str = "error",
        layout: Layout | None = None,
    ) -> None:
        if on_bad_row not in BAD_ROW_POLICIES:
            raise ConfigError(f"on_bad_row must be 'error' or 'skip', not {on_bad_row!r}")
        self.name = name
        self.want_columns = list(columns) if columns is not None else None
        self.want_target = target
        self.on_bad_row = on_bad_row
        self.saved = layout
        self.header: list[str] | None = None
        self.layout: Layout | None = None
        self.skipped = 0
        self.first_skipped: list[tuple[int, str]] = []

    # -- header and columns ------------------------------------------------------------

    def set_header(self, record: list[str], line: int, *, check: bool = True) -> None:
        """Take ``record`` as the header row (``check``: it must look like one)."""
        if isinstance(record, Malformed):
            raise DataError(f"{self.name}:{line}: the header row is {record.reason}")
        header = [h.strip() for h in record]
        if check and header and all(is_number(h) for h in header):
            raise DataError(
                f"{self.name}:{line}: the first line looks like data, not a header; the "
                "input needs a header row naming its columns"
            )
        if self.saved is not None and header != self.saved.header:
            raise DataError(
                f"{self.name}:{line}: the header ({_names(header)}) differs from the one "
                f"in the checkpoint ({_names(self.saved.header)}): not the same stream"
            )
        self.header = header

    def type_columns(self, record: list[str], line: int) -> None:
        """Decide the numeric columns from the first data row, and choose the columns."""
        assert self.header is not None
        if self.saved is not None:
            self.layout = self.saved
            return
        header = self.header
        if len(header) == 1:
            seps = [c for c in ";\t|" if c in header[0]]
            if seps:
                sep = "tab" if seps[0] == "\t" else repr(seps[0])
                raise DataError(
                    f"{self.name}:{line}: the header is one field, {header[0]!r}: the file "
                    f"looks separated by {sep}, and twinpass reads comma-separated values; "
                    "convert it to commas first"
                )
        numeric = [i for i, v in enumerate(record) if not v.strip() or is_number(v)]
        others = [i for i in range(len(header)) if i not in set(numeric)]
        non_numeric = [header[i] for i in others]
        example = {header[i]: record[i] for i in others}

        def index(name: str, role: str) -> int:
            hits = [i for i, h in enumerate(header) if h == name]
            if not hits:
                raise DataError(
                    f"{self.name}: no column {name!r} (for {role}); available: {_names(header)}"
                )
            if len(hits) > 1:
                raise DataError(f"{self.name}: column name {name!r} appears twice in the header")
            if hits[0] not in numeric:
                raise DataError(
                    f"{self.name}:{line}: column {name!r} is not numeric (first data row: "
                    f"{example[name]!r}); twinpass learns from numeric columns only"
                )
            return hits[0]

        if self.want_target is None:
            if len(numeric) != 1:
                left = f"; not numeric: {_names(non_numeric)}" if non_numeric else ""
                raise DataError(
                    f"{self.name}: choose the column to predict with --target; numeric "
                    f"columns: {_names(header[i] for i in numeric) or 'none'}{left}"
                )
            target = numeric[0]
        else:
            target = index(self.want_target, "--target")
        if self.want_columns is None:
            inputs = [i for i in numeric if i != target]
        else:
            inputs = []
            for name in self.want_columns:
                i = index(name, "--columns")
                if i != target and i not in inputs:
                    inputs.append(i)
        self.layout = Layout(list(header), [*inputs, target], non_numeric)

    # -- rows ----------------------------------------------------------------------------

    def convert(
        self, records: list[list[str]], lines: list[int]
    ) -> tuple[np.ndarray, int, DataError | None]:
        """Convert records to rows of the used columns.

        Returns (values, used, error): ``used`` records were consumed (all of them unless
        a bad row stopped the block under ``on_bad_row="error"``; then ``error`` is the
        DataError for it and ``used`` its index). Blank records are ignored.
        """
        assert self.layout is not None
        sel = self.layout.selected
        ncol = len(self.layout.header)
        recs = records
        if not all(records):  # drop blank lines, and their line numbers
            recs = [r for r in records if r]
            lines = [ln for r, ln in zip(records, lines, strict=True) if r]
        n = len(recs)
        out = np.empty((n, len(sel)))
        ok = set(map(len, recs)) <= {ncol} and Malformed not in set(map(type, recs))
        if ok and n:
            cols = list(zip(*recs, strict=True))
            try:
                for j, c in enumerate(sel):
                    try:
                        out[:, j] = np.fromiter(map(float, cols[c]), np.float64, n)
                    except ValueError:  # an empty field (missing) or text (bad)
                        out[:, j] = np.fromiter(map(_cell, cols[c]), np.float64, n)
            except ValueError:
                ok = False
            else:
                # NaN is fine only where the field was empty: "nan" and "inf" are bad rows.
                bad = np.argwhere(~np.isfinite(out))
                ok = all(not cols[sel[j]][i].strip() for i, j in bad)
                ok = ok and not (np.abs(out) > MAX_VALUE).any()
        if ok:
            return out, len(records), None
        return self._convert_slowly(records, lines, recs, out)

    def _convert_slowly(
        self, records: list[list[str]], lines: list[int], recs: list[list[str]], out: np.ndarray
    ) -> tuple[np.ndarray, int, DataError | None]:
        """Row by row, to find the bad ones: skip them, or stop at the first one."""
        good = 0
        nonblank_pos = [i for i, r in enumerate(records) if r]
        for k, rec in enumerate(recs):
            reason = self._check(rec, out[good])
            if reason is None:
                good += 1
                continue
            if self.on_bad_row == "error":
                error = DataError(f"{self.name}:{lines[k]}: {reason}")
                return out[:good].copy(), nonblank_pos[k], error
            self.skipped += 1
            if len(self.first_skipped) < MAX_REPORTED_SKIPS:
                self.first_skipped.append((lines[k], reason))
        return out[:good].copy(), len(records), None

    def _check(self, rec: list[str], row: np.ndarray) -> str | None:
        """Fill ``row`` from ``rec``; return why the record is bad, or None."""
        assert self.layout is not None
        header = self.layout.header
        if isinstance(rec, Malformed):
            return rec.reason
        if len(rec) != len(header):
            return f"expected {len(header)} fields as in the header, found {len(rec)}"
        for j, c in enumerate(self.layout.selected):
            text = rec[c]
            if not text.strip():
                row[j] = math.nan  # missing, not malformed
                continue
            try:
                v = float(text)
            except ValueError:
                return f"column {header[c]!r}: not a number: {text!r}"
            if not math.isfinite(v):
                return f"column {header[c]!r}: {text.strip()!r} is not a finite number"
            if abs(v) > MAX_VALUE:
                return (
                    f"column {header[c]!r}: {text.strip()!r} is beyond float32's range "
                    f"(±{MAX_VALUE:.3g}), in which the network learns"
                )
            row[j] = v
        return None

    def state(self) -> dict[str, Any]:
        return {
            "layout": self.layout.to_dict() if self.layout is not None else None,
            "skipped": self.skipped,
            "first_skipped": [list(s) for s in self.first_skipped],
        }

    def restore_counts(self, state: dict[str, Any]) -> None:
        self.skipped = int(state.get("skipped", 0))
        self.first_skipped = [(int(a), str(b)) for a, b in state.get("first_skipped", [])]
