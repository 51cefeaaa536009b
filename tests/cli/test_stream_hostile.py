"""``twinpass stream`` on hostile input (issue 14): a value past float32's range is a bad
row, divergence has a flag and names its data row, output paths are checked before the
run, and stdin gives the file source's messages for malformed CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from twinpass.cli.main import cli


def _stream(*args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["stream", "-q", "-N", "20", *args], input=input)


def _csv(path: Path, rows: int = 300, at: int | None = None, value: str = "1e200") -> Path:
    g = np.random.default_rng(1)
    t = np.arange(rows)
    x, y = np.sin(t / 8.0), np.cos(t / 8.0) + 0.05 * g.standard_normal(rows)
    cells = [[f"{a:.5f}", f"{b:.5f}"] for a, b in zip(x, y, strict=True)]
    if at is not None:
        cells[at][1] = value
    path.write_text("x,temp\n" + "".join(f"{a},{b}\n" for a, b in cells))
    return path


@pytest.mark.parametrize("value", ["1e200", "-1e308", "3.5e38"])
def test_a_value_past_float32_is_a_bad_row_naming_its_line(tmp_path, value: str) -> None:
    src = _csv(tmp_path / "big.csv", at=150, value=value)
    r = _stream("--source", f"csv:{src}", "--target", "temp")
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        f"Error: {src}:152: column 'temp': {value!r} is beyond float32's range (±3.4e+38), "
        "in which the network learns"
    ]
    out = tmp_path / "r.json"
    r = _stream("--source", f"csv:{src}", "--target", "temp", "--on-bad-row", "skip",
                "--json-out", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["skipped_rows"] == 1 and res["skipped_first"][0]["line"] == 152
    assert np.isfinite(res["mse"]) and res["mse"] < 1.0


def test_divergence_names_the_data_row_and_rollback_goes_on(tmp_path) -> None:
    # Without the outlier bound a 1e30 target makes the learner's loss overflow float32.
    src = _csv(tmp_path / "spike.csv", at=200, value="1e30")
    r = _stream("--source", f"csv:{src}", "--target", "temp", "--outlier-z", "0")
    assert r.exit_code == 1
    assert "on data row 200 of the stream" in r.output
    assert "the data caused it" in r.output and "--on-divergence rollback" in r.output
    assert len(r.output.strip().splitlines()) == 1
    out = tmp_path / "r.json"
    r = _stream("--source", f"csv:{src}", "--target", "temp", "--outlier-z", "0",
                "--on-divergence", "rollback", "--json-out", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["steps"] == 299


@pytest.mark.parametrize("option", ["--json-out", "--metrics-out", "--checkpoint"])
def test_an_unwritable_output_is_refused_before_the_run(tmp_path, option: str) -> None:
    src = _csv(tmp_path / "ok.csv")
    r = _stream("--source", f"csv:{src}", "--target", "temp", option,
                str(tmp_path / "missing" / "x.csv"))  # fmt: skip
    assert r.exit_code == 2
    assert f"Invalid value for {option}: cannot write" in r.output
    assert "does not exist" in r.output and "Traceback" not in r.output
    r = _stream("--source", f"csv:{src}", "--target", "temp", option, str(tmp_path))
    assert r.exit_code == 2 and "is a directory" in r.output


_GOOD = "x,temp\n" + "".join(f"{i % 7}.5,{i % 5}.25\n" for i in range(40))
_HOSTILE = {
    "bare CR": ("12,4\r5\n", "malformed CSV: a bare carriage return (CR) inside a field"),
    "NUL byte": ("1,2\x00\n", "column 'temp': not a number"),
    "huge field": ("1," + "9" * 140_000 + "\n", "malformed CSV: a field longer than 131,072"),
}


@pytest.mark.parametrize("case", sorted(_HOSTILE))
def test_stdin_reports_malformed_csv_by_line_and_skips_it(tmp_path, case: str) -> None:
    bad, message = _HOSTILE[case]
    text = _GOOD + bad + _GOOD.split("\n", 1)[1]
    r = _stream("--source", "-", "--target", "temp", input=text.encode())
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.startswith(f"Error: <stdin>:42: {message}"), r.output
    out = tmp_path / "r.json"
    args = ("--source", "-", "--target", "temp", "--on-bad-row", "skip", "--json-out", str(out))
    r = _stream(*args, input=text.encode())
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["skipped_rows"] == 1 and res["skipped_first"][0]["line"] == 42
    assert res["rows"] == 80


def test_random_bytes_on_stdin_are_a_one_line_error() -> None:
    data = np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    for policy in ("error", "skip"):
        r = _stream("--source", "-", "--target", "temp", "--on-bad-row", policy, input=data)
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("Error: <stdin>")


def test_a_semicolon_separated_file_is_named_as_such(tmp_path) -> None:
    src = tmp_path / "semi.csv"
    src.write_text("a;b;temp\n1;2;3\n4;5;6\n")
    r = _stream("--source", f"csv:{src}", "--target", "temp")
    assert r.exit_code == 1 and "available: a;b;temp" not in r.output
    assert "looks separated by ';'" in r.output and "comma-separated" in r.output


def test_a_horizon_longer_than_the_data_is_an_error_and_keeps_the_rows(tmp_path) -> None:
    src = _csv(tmp_path / "short.csv", rows=5)
    ckpt = tmp_path / "c.ckpt"
    r = _stream("--source", f"csv:{src}", "--target", "temp", "--horizon", "6",
                "--checkpoint", str(ckpt))  # fmt: skip
    assert r.exit_code == 1
    assert "ended after 5 data rows, and a forecast 6 rows ahead needs 7" in r.output
    assert ckpt.exists()  # the rows seen are kept: more rows continue the run
    longer = _csv(tmp_path / "short.csv", rows=20)
    out = tmp_path / "r.json"
    r = _stream("--source", f"csv:{longer}", "--checkpoint", str(ckpt), "--resume",
                "--json-out", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["steps"] == 20 - 6
