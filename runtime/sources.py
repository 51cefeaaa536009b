"""Where a stream's rows come from: the Mackey-Glass generator, a CSV file, stdin, a serial port.

Every source hands out blocks of rows as float64 arrays (n, C) whose columns are the chosen
input columns with the target column last, and can describe its position as plain data for
a checkpoint. Source specifications on the command line::

    mackey-glass        the built-in endless Mackey-Glass series (one column)
    csv:PATH            a CSV file with a header row
    -                   CSV on standard input, header row first
    serial:URL          lines of comma-separated numbers from a pyserial URL or device path

CSV rules (files, stdin and serial lines alike):

- Columns are chosen by header name: ``target`` is predicted, ``columns`` are inputs
  (default: every numeric column but the target); the target is always an input too.
- A column is numeric if its field in the first data row parses as a number (an empty
  field counts as numeric); the others (a date, a label) are left out and reported. Naming
  one of them is an error.
- An empty field in a used column is a missing cell, not a bad row: it is handed out as
  NaN (the stream carries a missing input and does not learn from a missing target).
- A bad row (a field that is not a number, NaN or infinity written out in a used column, a
  wrong number of fields) is an error naming the source, line and column with
  ``on_bad_row="error"``, or is skipped and counted with ``"skip"``. Blank lines are
  ignored.
- Files support every CSV quoting rule; on stdin and serial lines each line is one record.

A serial device may have been sending before the port was opened, so its first line may be
cut short: if that line is a header (not all numbers) it names the columns, otherwise it is
dropped and the columns are named c0, c1, ... . The stream ends when the port closes.

Reads from stdin and serial ports wait at most ``FLUSH_S`` seconds before handing out the
rows that have arrived, so a slow sensor still updates the display and a stop request
(SIGINT/SIGTERM) is seen quickly.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import os
import select
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from twinpass.core.errors import ConfigError, DataError

from .csv_rows import Layout, Malformed, RowParser, is_number, split_record
from .tasks.mackey_glass import MackeyGlassStream

FLUSH_S = 0.25
"""Longest wait of a live source (stdin, serial) before handing out what has arrived."""

MAX_TYPING_SCAN = 10_000
"""Data rows searched for one with the header's number of fields, to type the columns."""

MAX_RECORD_LINES = 100
"""Lines a quoted field of a CSV file may span before its quote counts as never closed."""

MACKEY_GLASS_COLUMN = "mackey_glass"

Stop = Callable[[], bool]


def _never() -> bool:
    return False


@dataclass
class Block:
    """Rows read from a source.

    values (n, C) float64: the used columns, target last; NaN marks a missing cell.
    error: with ``on_bad_row="error"``, the bad row that ended this block (the rows before
    it are in ``values``). eof: the source has ended.
    """

    values: np.ndarray
    eof: bool = False
    error: DataError | None = None


# ---------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------


class Source:
    """Base of the sources: ``start`` learns the columns, ``read`` hands out blocks."""

    kind = "?"
    name = "?"
    live = False

    def start(self, stop: Stop = _never) -> bool:
        """Read the header and whatever is needed to choose the columns.

        Returns False if the stop was requested before that was possible.
        """
        return True

    @property
    def columns(self) -> list[str]:
        raise NotImplementedError

    @property
    def non_numeric(self) -> list[str]:
        return []

    @property
    def skipped(self) -> int:
        return 0

    @property
    def first_skipped(self) -> list[tuple[int, str]]:
        return []

    def read(self, max_rows: int, stop: Stop = _never) -> Block:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MackeyGlassSource(Source):
    """The endless Mackey-Glass series (tau = 17), one column, resumable to the bit."""

    kind = "mackey-glass"

    def __init__(self, seed: int = 0, state: dict[str, Any] | None = None) -> None:
        self.stream = (
            MackeyGlassStream.from_state(state["stream"])
            if state is not None
            else MackeyGlassStream(seed=seed)
        )
        self.name = f"mackey-glass (tau={self.stream.tau}, seed={self.stream.seed})"

    @property
    def columns(self) -> list[str]:
        return [MACKEY_GLASS_COLUMN]

    def read(self, max_rows: int, stop: Stop = _never) -> Block:
        return Block(self.stream.next(max_rows)[:, None])

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "stream": self.stream.state()}


class _ParsedSource(Source):
    """A source of CSV records; ``_records`` supplies them, the parser converts them."""

    def __init__(self, parser: RowParser) -> None:
        self.parser = parser
        self._pushback: list[tuple[list[str], int]] = []

    @property
    def columns(self) -> list[str]:
        if self.parser.layout is None:
            raise DataError(f"{self.name}: the columns are not known yet")
        return self.parser.layout.columns

    @property
    def non_numeric(self) -> list[str]:
        return list(self.parser.layout.non_numeric) if self.parser.layout else []

    @property
    def skipped(self) -> int:
        return self.parser.skipped

    @property
    def first_skipped(self) -> list[tuple[int, str]]:
        return list(self.parser.first_skipped)

    def _records(self, n: int, stop: Stop) -> tuple[list[list[str]], list[int], bool]:
        """Up to ``n`` records, their (last) line numbers, and whether the input ended."""
        raise NotImplementedError

    def _consumed(self, records: int, last_line: int | None) -> None:
        """Called with how many records of the last read were used, and the last one's line."""

    def _header(self, stop: Stop) -> bool:
        """Read the header row into the parser; False if stopped first."""
        while True:
            recs, lines, eof = self._records(1, stop)
            for rec, line in zip(recs, lines, strict=True):
                self._consumed(1, line)
                if rec:
                    self.parser.set_header(rec, line)
                    return True
            if eof:
                raise DataError(f"{self.name}: empty input (no header row)")
            if stop():
                return False

    def start(self, stop: Stop = _never) -> bool:
        if self.parser.header is None and not self._header(stop):
            return False
        if self.parser.layout is not None:
            return True
        ncol = len(self.parser.header or [])
        scanned = 0
        while True:
            recs, lines, eof = self._records(1, stop)
            for rec, line in zip(recs, lines, strict=True):
                self._pushback.append((rec, line))
                scanned += 1
                if isinstance(rec, Malformed):
                    if self.parser.on_bad_row == "error":
                        raise DataError(f"{self.name}:{line}: {rec.reason}")
                    continue
                if len(rec) == ncol:
                    self.parser.type_columns(rec, line)
                    return True
                if rec and self.parser.on_bad_row == "error":
                    raise DataError(
                        f"{self.name}:{line}: expected {ncol} fields as in the header, "
                        f"found {len(rec)}"
                    )
            if eof:
                skipped = f" ({scanned} malformed rows)" if scanned else ""
                raise DataError(f"{self.name}: no data rows after the header{skipped}")
            if scanned >= MAX_TYPING_SCAN:
                raise DataError(
                    f"{self.name}: none of the first {scanned} data rows has the header's "
                    f"{ncol} fields"
                )
            if stop():
                return False

    def read(self, max_rows: int, stop: Stop = _never) -> Block:
        take = self._pushback[:max_rows]
        del self._pushback[:max_rows]
        recs = [r for r, _ in take]
        lines = [ln for _, ln in take]
        eof = False
        if len(recs) < max_rows:
            more, more_lines, eof = self._records(max_rows - len(recs), stop)
            recs += more
            lines += more_lines
        values, used, error = self.parser.convert(recs, lines)
        self._consumed(used, lines[used - 1] if used else None)
        return Block(values, eof=eof and error is None and not self._pushback, error=error)

    def state(self) -> dict[str, Any]:
        if self._pushback:
            raise RuntimeError("source state asked for with records still pending")
        return {"kind": self.kind, "name": self.name, **self.parser.state()}


class CsvFileSource(_ParsedSource):
    """A CSV file with a header row; resumes by skipping the records already used.

    Records are cut from physical lines (ended by LF or CRLF) here rather than by the csv
    module over the whole file, so that a fault stays on its line: a quoted field may span
    up to ``MAX_RECORD_LINES`` lines, but a quote that is never closed (or closes into a
    record of the wrong shape) is a bad row on the line where it opened, and the lines
    after it are read again as records of their own; a bare CR inside a line and a field
    over the csv module's size limit are bad rows of their line.
    """

    kind = "csv"

    def __init__(
        self, path: str | os.PathLike[str], parser: RowParser, state: dict[str, Any] | None = None
    ) -> None:
        super().__init__(parser)
        self.path = os.fspath(path)
        self.name = self.path
        try:
            # utf-8-sig drops a byte-order mark; undecodable bytes become U+FFFD and so
            # make a bad row instead of a crash. newline="\n": a bare CR does not end a
            # line (it would silently split one row in two).
            self._file = open(self.path, encoding="utf-8-sig", errors="replace", newline="\n")
        except OSError as e:
            raise DataError(f"cannot open {self.path!r}: {e.strerror or e}") from None
        self._ahead: list[str] = []  # physical lines read again (after an unclosed quote)
        self._next_line = 1  # the number of the next physical line
        self.records = 0  # records used, header included
        self.line = 0  # last line of the last used record
        self._state = state

    def start(self, stop: Stop = _never) -> bool:
        if self._state is None:
            return super().start(stop)
        if not self._header(stop):
            return False
        want_records, want_line = int(self._state["records"]), int(self._state["line"])
        skip = want_records - self.records
        while skip > 0:
            recs, lines, eof = self._records(min(skip, 1 << 16), stop)
            self.records += len(recs)
            skip -= len(recs)
            if lines:
                self.line = lines[-1]
            if eof:
                break
        if self.records != want_records or self.line != want_line:
            raise DataError(
                f"{self.name}: the file has changed since the checkpoint (it was at record "
                f"{want_records}, line {want_line}; the file now ends or differs there)"
            )
        self.parser.layout = self.parser.saved
        return True

    def _physical(self, n: int) -> list[str]:
        """Up to ``n`` physical lines, their endings kept."""
        got = self._ahead[:n]
        del self._ahead[:n]
        if len(got) < n:
            # In bulk: a Python step per line would cost more than parsing it.
            got += itertools.islice(self._file, n - len(got))
        self._next_line += len(got)
        return got

    def _unread(self, lines: list[str]) -> None:
        self._ahead[:0] = lines
        self._next_line -= len(lines)

    def _records(self, n: int, stop: Stop) -> tuple[list[list[str]], list[int], bool]:
        first = self._next_line
        lines = self._physical(n)
        text = "".join(lines)
        # The usual case, in bulk: no quotes, no CR but in CRLF endings.
        if '"' not in text and text.count("\r") == text.count("\r\n"):
            try:
                recs = list(csv.reader(lines))
            except csv.Error:
                recs = []
            if len(recs) == len(lines):
                return recs, list(range(first, first + len(lines))), len(lines) < n
        self._unread(lines)
        recs, numbers = [], []
        while len(recs) < n:
            got = self._one_record()
            if got is None:
                return recs, numbers, True
            recs.append(got[0])
            numbers.append(got[1])
        return recs, numbers, False

    def _one_record(self) -> tuple[list[str], int] | None:
        """The next record and its last line; None at the end of the file."""
        got = self._physical(1)
        if not got:
            return None
        line = self._next_line - 1
        span = got
        quotes = got[0].count('"')
        # A quote left open continues the record on the next line (a quoted line break).
        while quotes % 2 and len(span) < MAX_RECORD_LINES:
            more = self._physical(1)
            if not more:
                break
            span = [*span, *more]
            quotes += more[0].count('"')
        if len(span) == 1 and quotes % 2 == 0:
            return split_record(got[0]), line
        rec = split_record("".join(span))
        ncol = len(self.parser.header) if self.parser.header is not None else len(rec)
        if quotes % 2 == 0 and not isinstance(rec, Malformed) and len(rec) == ncol:
            return rec, line + len(span) - 1
        # Not a record spanning lines: a quote opened on this line and never closed.
        self._unread(span[1:])
        return Malformed(got[0], 'malformed CSV: a quote (") opened here is never closed'), line

    def _consumed(self, records: int, last_line: int | None) -> None:
        self.records += records
        if last_line is not None:
            self.line = last_line

    def state(self) -> dict[str, Any]:
        return {**super().state(), "path": self.path, "records": self.records, "line": self.line}

    def close(self) -> None:
        self._file.close()


class _LineSource(_ParsedSource):
    """CSV records one per line from a byte stream with timeouts (stdin, serial)."""

    live = True

    def __init__(self, parser: RowParser) -> None:
        super().__init__(parser)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._lines: list[str] = []
        self._eof = False
        self.end_reason = "end of input"
        self.line = 0  # physical lines handed out

    def _read_bytes(self, timeout: float) -> bytes | None:
        """Some bytes, b"" after ``timeout`` seconds without any, None at end of input."""
        raise NotImplementedError

    def _fill(self, want: int, stop: Stop) -> None:
        deadline = time.monotonic() + FLUSH_S
        while len(self._lines) < want and not self._eof:
            left = deadline - time.monotonic()
            if left <= 0 or stop():
                return
            data = self._read_bytes(min(left, 0.1))
            if data is None:
                self._eof = True
                tail = self._partial + self._decoder.decode(b"", final=True)
                self._partial = ""
                if tail.strip():
                    self._lines.append(tail.rstrip("\r"))
                return
            if data:
                text = self._partial + self._decoder.decode(data)
                parts = text.split("\n")
                self._partial = parts.pop()
                self._lines.extend(p[:-1] if p.endswith("\r") else p for p in parts)

    def _records(self, n: int, stop: Stop) -> tuple[list[list[str]], list[int], bool]:
        self._fill(n, stop)
        lines = self._lines[:n]
        del self._lines[:n]
        if self.line == 0 and lines and lines[0].startswith("\ufeff"):
            lines[0] = lines[0][1:]
        try:
            recs = list(csv.reader(lines))
        except csv.Error:
            recs = []  # a line the reader refuses: found below, line by line
        if len(recs) != len(lines):
            # An unbalanced quote made csv join lines, or a line was refused: here every
            # line is its own record, and a refused one a bad row.
            recs = [split_record(ln) for ln in lines]
        numbers = list(range(self.line + 1, self.line + 1 + len(lines)))
        self.line += len(lines)
        return recs, numbers, self._eof and not self._lines


class StdinSource(_LineSource):
    """CSV on standard input (or any binary stream), header row first."""

    kind = "stdin"

    def __init__(self, parser: RowParser, stream: BinaryIO | None = None) -> None:
        super().__init__(parser)
        self.name = "<stdin>"
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.fd: int | None
        try:
            self.fd = self.stream.fileno()
            # Pipes and files on POSIX wait with a timeout; elsewhere reads block.
            select.select([self.fd], [], [], 0)
        except (OSError, ValueError, AttributeError):
            self.fd = None

    def _read_bytes(self, timeout: float) -> bytes | None:
        if self.fd is not None:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return b""
            data = os.read(self.fd, 1 << 16)
        else:
            read1 = getattr(self.stream, "read1", self.stream.read)
            data = read1(1 << 16)
        return data if data else None


class SerialSource(_LineSource):
    """Lines of comma-separated numbers from a serial port (any pyserial URL)."""

    kind = "serial"

    def __init__(self, url: str, parser: RowParser, *, baudrate: int = 115200) -> None:
        super().__init__(parser)
        import serial  # pyserial; imported here so other sources do not pay for it

        self.url = url
        self.name = f"serial:{url}"
        self._serial_error = serial.SerialException
        try:
            self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.1)
        except (serial.SerialException, OSError, ValueError) as e:
            raise DataError(f"cannot open serial port {url!r}: {e}") from None

    def _read_bytes(self, timeout: float) -> bytes | None:
        try:
            return self.port.read(max(1, self.port.in_waiting))
        except (self._serial_error, OSError):
            # A closed port (a pty whose writer went away, an unplugged adapter) ends the
            # stream; the checkpoint keeps everything learned so far.
            self.end_reason = "serial port closed"
            return None

    def _header(self, stop: Stop) -> bool:
        # The first line may be the tail of a line sent before the port opened: a header
        # if it is not all numbers, otherwise dropped.
        while True:
            recs, lines, eof = self._records(1, stop)
            for rec, line in zip(recs, lines, strict=True):
                if not rec:
                    continue
                if not all(is_number(f) for f in rec):
                    self.parser.set_header(rec, line, check=False)
                    return True
                if self.parser.saved is not None:
                    self.parser.header = list(self.parser.saved.header)
                    return True
                # Dropped; name the columns after the next line's fields.
                while True:
                    nxt, nlines, eof2 = self._records(1, stop)
                    for rec2, line2 in zip(nxt, nlines, strict=True):
                        if rec2:
                            self.parser.header = [f"c{i}" for i in range(len(rec2))]
                            self._pushback.append((rec2, line2))
                            return True
                    if eof2:
                        raise DataError(f"{self.name}: no data rows (the port closed)")
                    if stop():
                        return False
            if eof:
                raise DataError(f"{self.name}: no data before the port closed")
            if stop():
                return False

    def close(self) -> None:
        self.port.close()


def parse_source_spec(spec: str) -> tuple[str, str | None]:
    """``mackey-glass``, ``csv:PATH``, ``-`` or ``serial:URL`` -> (kind, location)."""
    if spec == "mackey-glass":
        return "mackey-glass", None
    if spec == "-":
        return "stdin", None
    for prefix, kind in (("csv:", "csv"), ("serial:", "serial")):
        if spec.startswith(prefix):
            rest = spec[len(prefix) :]
            if not rest:
                raise ConfigError(f"source {spec!r} needs a {'path' if kind == 'csv' else 'URL'}")
            return kind, rest
    raise ConfigError(
        f"unknown source {spec!r}: use mackey-glass, csv:PATH, - (stdin) or serial:URL"
    )


def open_source(
    spec: str,
    *,
    columns: Sequence[str] | None = None,
    target: str | None = None,
    on_bad_row: str = "error",
    seed: int = 0,
    baudrate: int = 115200,
    state: dict[str, Any] | None = None,
) -> Source:
    """Open the source ``spec`` describes; ``state`` (from a checkpoint) resumes it."""
    kind, where = parse_source_spec(spec)
    if state is not None and state.get("kind") != kind:
        raise ConfigError(
            f"the checkpoint streamed from a {state.get('kind')} source, not from {spec!r}"
        )
    if kind == "mackey-glass":
        if columns is not None or target is not None:
            raise ConfigError("--columns and --target are for csv, stdin and serial sources")
        return MackeyGlassSource(seed, state)
    layout = Layout.from_dict(state["layout"]) if state is not None else None
    name = where if kind == "csv" else ("<stdin>" if kind == "stdin" else f"serial:{where}")
    parser = RowParser(
        name or spec, columns=columns, target=target, on_bad_row=on_bad_row, layout=layout
    )
    if state is not None:
        parser.restore_counts(state)
    if kind == "csv":
        assert where is not None
        return CsvFileSource(where, parser, state)
    if kind == "stdin":
        return StdinSource(parser)
    assert where is not None
    return SerialSource(where, parser, baudrate=baudrate)
