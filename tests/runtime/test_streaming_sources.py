"""Stream sources: CSV files and stdin (header, column choice, the bad-row matrix, quoting,
resume), live reads with timeouts through a real pipe, Mackey-Glass state, source specs."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from twinpass.runtime import ConfigError, DataError
from twinpass.runtime.sources import (
    FLUSH_S,
    MackeyGlassSource,
    open_source,
    parse_source_spec,
)


def _csv(tmp_path: Path, text: str, name: str = "d.csv") -> str:
    p = tmp_path / name
    p.write_bytes(text.encode())
    return f"csv:{p}"


def _read_all(src, n: int = 1000) -> np.ndarray:
    assert src.start()
    out = []
    while True:
        b = src.read(n)
        if b.error is not None:
            raise b.error
        out.append(b.values)
        if b.eof:
            return np.concatenate(out)


GOOD = "date,temp,hum\n2024-01-01,20.5,40\n2024-01-02,21.0,41\n2024-01-03,19.5,42\n"


def test_columns_target_and_non_numeric(tmp_path) -> None:
    src = open_source(_csv(tmp_path, GOOD), target="temp")
    assert src.start()
    assert src.columns == ["hum", "temp"]  # inputs, then the target
    assert src.non_numeric == ["date"]
    np.testing.assert_array_equal(_read_all(src), [[40.0, 20.5], [41.0, 21.0], [42.0, 19.5]])
    only = open_source(_csv(tmp_path, GOOD), target="hum", columns=["hum", "temp", "temp"])
    assert only.start() and only.columns == ["temp", "hum"]


def test_single_numeric_column_needs_no_target(tmp_path) -> None:
    src = open_source(_csv(tmp_path, "when,level\nmon,1.5\ntue,2.5\n"))
    assert src.start() and src.columns == ["level"]


@pytest.mark.parametrize(
    ("text", "kw", "message"),
    [
        (
            GOOD,
            {},
            r"choose the column to predict with --target; numeric columns: temp, hum; "
            r"not numeric: date",
        ),
        (
            GOOD,
            {"target": "pressure"},
            r"no column 'pressure' \(for --target\); available: "
            r"date, temp, hum",
        ),
        (GOOD, {"target": "temp", "columns": ["wind"]}, r"no column 'wind' \(for --columns\)"),
        (
            GOOD,
            {"target": "date"},
            r"d.csv:2: column 'date' is not numeric \(first data row: "
            r"'2024-01-01'\)",
        ),
        (GOOD, {"target": "temp", "columns": ["date"]}, r"column 'date' is not numeric"),
        ("a,a,b\n1,2,3\n", {"target": "a"}, r"column name 'a' appears twice"),
        ("", {"target": "a"}, r"d.csv: empty input \(no header row\)"),
        ("\n\n", {"target": "a"}, r"empty input"),
        ("a,b\n", {"target": "a"}, r"d.csv: no data rows after the header"),
        ("a,b\n\n\n", {"target": "a"}, r"no data rows after the header"),
        ("1.5,2.5\n3,4\n", {"target": "a"}, r"d.csv:1: the first line looks like data"),
        ("a,b\n1\n", {"target": "a"}, r"d.csv:2: expected 2 fields as in the header, found 1"),
    ],
)
def test_header_and_column_errors(tmp_path, text: str, kw: dict, message: str) -> None:
    src = open_source(_csv(tmp_path, text), **kw)
    with pytest.raises(DataError, match=message):
        src.start()


BAD_ROWS = [
    ("a,b\n1,2\n3,x\n5,6\n", r"d.csv:3: column 'b': not a number: 'x'"),
    ("a,b\n1,2\n3,NaN\n5,6\n", r"d.csv:3: column 'b': 'NaN' is not a finite number"),
    ("a,b\n1,2\n3,nan\n5,6\n", r"d.csv:3: column 'b': 'nan' is not a finite number"),
    ("a,b\n1,2\n3,-inf\n5,6\n", r"d.csv:3: column 'b': '-inf' is not a finite number"),
    ("a,b\n1,2\n3,4,5\n5,6\n", r"d.csv:3: expected 2 fields as in the header, found 3"),
    ("a,b\n1,2\n3\n5,6\n", r"d.csv:3: expected 2 fields as in the header, found 1"),
    ("a,b\n1,2\n\n1e400,4\n5,6\n", r"d.csv:4: column 'a': '1e400' is not a finite number"),
]


@pytest.mark.parametrize(("text", "message"), BAD_ROWS)
def test_bad_rows_stop_with_file_line_and_column(tmp_path, text: str, message: str) -> None:
    src = open_source(_csv(tmp_path, text), target="a")
    assert src.start()
    block = src.read(100)
    assert str(block.error) == src.name + message.removeprefix("d.csv")
    np.testing.assert_array_equal(block.values, [[2.0, 1.0]])  # the rows before it
    assert not block.eof
    # The position stops right before the bad row, so a fixed file resumes there.
    assert src.state()["records"] == 2 + text.count("\n\n")  # header, good row, blank


@pytest.mark.parametrize(("text", "message"), BAD_ROWS)
def test_bad_rows_can_be_skipped_and_counted(tmp_path, text: str, message: str) -> None:
    src = open_source(_csv(tmp_path, text), target="a", on_bad_row="skip")
    np.testing.assert_array_equal(_read_all(src), [[2.0, 1.0], [6.0, 5.0]])
    assert src.skipped == 1
    line = int(message.split(":")[1])
    assert src.first_skipped[0][0] == line
    assert message.split(": ", 1)[1] == src.first_skipped[0][1]


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_empty_fields_are_missing_cells_not_bad_rows(tmp_path, policy: str) -> None:
    """An empty field is NaN (missing) on the fast and the slow path alike; text next to
    it is still a bad row."""
    text = "a,b,c\n1,2,3\n,5,6\n7,  ,9\n10,11,\n,,\n13,14,15\n"
    src = open_source(_csv(tmp_path, text), target="c", on_bad_row=policy)
    nan = np.nan
    want = [[1, 2, 3], [nan, 5, 6], [7, nan, 9], [10, 11, nan], [nan, nan, nan], [13, 14, 15]]
    np.testing.assert_array_equal(_read_all(src), want)
    assert src.skipped == 0
    mixed = open_source(_csv(tmp_path, text + "16,x,\n", "m.csv"), target="c", on_bad_row=policy)
    assert mixed.start()
    block = mixed.read(100)
    np.testing.assert_array_equal(block.values, want)
    if policy == "error":
        assert str(block.error) == f"{mixed.name}:8: column 'b': not a number: 'x'"
    else:
        assert mixed.skipped == 1 and block.error is None


def test_missing_cells_through_stdin(tmp_path) -> None:
    from twinpass.runtime.csv_rows import RowParser
    from twinpass.runtime.sources import StdinSource

    r, w = os.pipe()
    os.write(w, b"t,u\n1,10\n,20\n3,\n")
    os.close(w)
    with os.fdopen(r, "rb", buffering=0) as stream:
        src = StdinSource(RowParser("<stdin>", target="t"), stream)
        np.testing.assert_array_equal(_read_all(src), [[10, 1], [20, np.nan], [np.nan, 3]])


def test_skips_report_the_first_ten_lines_and_count_all(tmp_path) -> None:
    rows = "".join(f"{i},{'x' if i % 3 == 0 else i}\n" for i in range(1, 61))
    src = open_source(_csv(tmp_path, "a,b\n" + rows), target="a", on_bad_row="skip")
    assert len(_read_all(src, n=7)) == 40
    assert src.skipped == 20
    assert [ln for ln, _ in src.first_skipped] == [i + 1 for i in range(3, 31, 3)]


def test_unused_columns_may_hold_anything(tmp_path) -> None:
    src = open_source(_csv(tmp_path, "a,b,c\n1,2,3\n4,oops,6\n"), target="c", columns=["a"])
    np.testing.assert_array_equal(_read_all(src), [[1.0, 3.0], [4.0, 6.0]])


def test_csv_quoting_bom_crlf_and_multiline_fields(tmp_path) -> None:
    text = (
        '\ufeffnote,"x"\r\n'
        '"hello, world",1.5\r\n'
        '"two\nlines",2.5\r\n'
        '"""quoted""",3.5\r\n'
        '"late",bad\r\n'
    )
    src = open_source(_csv(tmp_path, text), target="x")
    assert src.start() and src.columns == ["x"] and src.non_numeric == ["note"]
    block = src.read(10)
    np.testing.assert_array_equal(block.values, [[1.5], [2.5], [3.5]])
    # The multi-line record shifts the physical line numbers: "late" is on line 6.
    assert str(block.error) == f"{src.name}:6: column 'x': not a number: 'bad'"


def test_csv_resume_skips_the_used_records_and_checks_the_file(tmp_path) -> None:
    text = "a,b\n" + "".join(f"{i},{2 * i}\n" for i in range(100))
    spec = _csv(tmp_path, text)
    src = open_source(spec, target="b")
    assert src.start()
    first = src.read(30).values
    state = src.state()
    assert state["records"] == 31 and state["line"] == 31
    again = open_source(spec, state=state)
    rest = _read_all(again)
    np.testing.assert_array_equal(
        np.concatenate([first, rest]), _read_all(open_source(spec, target="b"))
    )
    # A different header, or a file now shorter than the position, is refused.
    other = _csv(tmp_path, text.replace("a,b", "a,c"), "o.csv")
    with pytest.raises(DataError, match="differs from the one in the checkpoint"):
        open_source(other, state=state).start()
    short = _csv(tmp_path, "a,b\n1,2\n", "s.csv")
    with pytest.raises(DataError, match="has changed since the checkpoint"):
        open_source(short, state=state).start()
    with pytest.raises(ConfigError, match="from a csv source"):
        open_source("mackey-glass", state=state)


def test_stdin_hands_out_what_arrived_without_waiting_for_a_full_block() -> None:
    r, w = os.pipe()
    stream = os.fdopen(r, "rb", buffering=0)

    def writer() -> None:
        os.write(w, b"t,u\n1,10\n2,20\n")
        time.sleep(4 * FLUSH_S)
        os.write(w, b"3,30\n4,")  # a line cut in two writes
        time.sleep(FLUSH_S / 2)
        os.write(w, b"40\n5,50")  # the last line has no newline
        os.close(w)

    from twinpass.runtime.csv_rows import RowParser
    from twinpass.runtime.sources import StdinSource

    src = StdinSource(RowParser("<stdin>", target="t"), stream)
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert src.start()
        t0 = time.monotonic()
        b1 = src.read(4096)
        assert time.monotonic() - t0 < 3 * FLUSH_S  # did not wait for 4096 rows
        np.testing.assert_array_equal(b1.values, [[10.0, 1.0], [20.0, 2.0]])
        got = [b1.values]
        while True:
            b = src.read(4096)
            got.append(b.values)
            if b.eof:
                break
    finally:
        thread.join()
        stream.close()
    np.testing.assert_array_equal(np.concatenate(got)[:, 1], [1, 2, 3, 4, 5])


def test_mackey_glass_source_resumes_exactly() -> None:
    a = MackeyGlassSource(seed=2)
    first = a.read(500).values
    b = MackeyGlassSource(state=a.state())
    assert (
        b.read(700).values.tobytes() == MackeyGlassSource(seed=2).read(1200).values[500:].tobytes()
    )
    assert first.shape == (500, 1)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mackey-glass", ("mackey-glass", None)),
        ("-", ("stdin", None)),
        ("csv:data/x.csv", ("csv", "data/x.csv")),
        ("serial:/dev/ttyUSB0", ("serial", "/dev/ttyUSB0")),
        ("serial:socket://localhost:7777", ("serial", "socket://localhost:7777")),
    ],
)
def test_source_specs(spec: str, expected: tuple) -> None:
    assert parse_source_spec(spec) == expected


@pytest.mark.parametrize("spec", ["data.csv", "csv:", "serial:", "stdin", ""])
def test_bad_source_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_source_spec(spec)


def test_mackey_glass_takes_no_columns() -> None:
    with pytest.raises(ConfigError, match="--columns and --target"):
        open_source("mackey-glass", target="x")


def test_missing_file_and_missing_serial_port(tmp_path) -> None:
    with pytest.raises(DataError, match=r"cannot open .*nope\.csv"):
        open_source(f"csv:{tmp_path / 'nope.csv'}", target="a")
    with pytest.raises(DataError, match="cannot open serial port"):
        open_source(f"serial:{tmp_path / 'no-such-tty'}", target="a")
