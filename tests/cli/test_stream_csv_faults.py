"""``twinpass stream --source csv:`` on malformed CSV (issue 14, item 6): an unclosed
quote, a bare CR and an oversized field are reported at their own line, and a skip drops
only the row it reports; a run stopped at such a row resumes after it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from twinpass.cli.main import cli

ROWS, BAD_LINE = 300, 58  # the header is line 1


def _stream(*args: str) -> Result:
    return CliRunner().invoke(cli, ["stream", "-q", "-N", "10", "--target", "temp", *args])


_FAULTS = {
    "unclosed quote": ('"3.5,1.25', 'a quote (") opened here is never closed'),
    "bare CR": ("3.5,1\r.25", "a bare carriage return (CR) inside a field"),
    "huge field": ("3.5," + "9" * 140_000, "a field longer than 131,072 characters"),
}


def _file(tmp_path: Path, fault: str) -> Path:
    rows = ["x,temp"] + [f"{i % 7}.5,{i % 5}.25" for i in range(ROWS)]
    rows[BAD_LINE - 1] = _FAULTS[fault][0]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("fault", sorted(_FAULTS))
def test_the_fault_is_reported_at_its_line(tmp_path, fault: str) -> None:
    r = _stream("--source", f"csv:{_file(tmp_path, fault)}")
    assert r.exit_code == 1
    assert r.output.strip().endswith(f"d.csv:{BAD_LINE}: malformed CSV: {_FAULTS[fault][1]}")


@pytest.mark.parametrize("fault", sorted(_FAULTS))
def test_a_skip_drops_only_the_row_it_reports(tmp_path, fault: str) -> None:
    out = tmp_path / "r.json"
    r = _stream("--source", f"csv:{_file(tmp_path, fault)}", "--on-bad-row", "skip",
                "--json-out", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["skipped_rows"] == 1 and res["skipped_first"][0]["line"] == BAD_LINE
    assert res["rows"] == ROWS - 1


def test_a_run_stopped_at_an_unclosed_quote_resumes_after_the_fix(tmp_path) -> None:
    path = _file(tmp_path, "unclosed quote")
    ckpt = tmp_path / "c.ckpt"
    r = _stream("--source", f"csv:{path}", "--checkpoint", str(ckpt))
    assert r.exit_code == 1 and f"d.csv:{BAD_LINE}" in r.output
    path.write_text(path.read_text().replace('"3.5,1.25', "3.5,1.25"))
    out = tmp_path / "r.json"
    r = _stream("--source", f"csv:{path}", "--checkpoint", str(ckpt), "--resume",
                "--json-out", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["rows"] == ROWS and res["resumed_from_step"] == BAD_LINE - 3


def test_a_quoted_line_break_in_an_unused_column_is_still_one_record(tmp_path) -> None:
    path = tmp_path / "d.csv"
    body = "".join(f'{i}.5,"note\n{i}",{i % 3}.0\n' for i in range(50))
    path.write_text("x,note,temp\n" + body)
    out = tmp_path / "r.json"
    r = _stream("--source", f"csv:{path}", "--json-out", str(out))
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["rows"] == 50
