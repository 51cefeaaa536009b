"""Results files: one line per finished configuration, resumable after a kill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinpass.core.errors import DataError
from twinpass.runtime.reproduce.experiments import plan
from twinpass.runtime.reproduce.runner import RESULTS_FILE, load_results, run_all, run_spec


def test_a_run_records_its_curve_and_is_deterministic() -> None:
    spec = plan("tiny", only=("decorrelation",), seeds=1)[-1]
    a, b = run_spec(spec), run_spec(spec)
    assert a["key"] == spec.key and not a["diverged"]
    assert len(a["curve"]) == spec.epochs + 1
    assert all("decorrelation_loss" in e for e in a["curve"])
    assert [e["test_mse"] for e in a["curve"]] == [e["test_mse"] for e in b["curve"]]


def test_resuming_skips_finished_configurations(tmp_path: Path) -> None:
    specs = plan("tiny", only=("copy",), seeds=1)
    first = specs[:2]
    run_all(first, tmp_path)
    path = tmp_path / RESULTS_FILE
    before = path.read_text()
    # A killed write leaves a torn last line: it is dropped, not fatal.
    path.write_text(before + '{"key": "torn')
    seen: list[tuple[str, bool]] = []
    rows = run_all(specs, tmp_path, on_result=lambda r, skipped: seen.append((r["key"], skipped)))
    assert set(rows) == {s.key for s in specs}
    assert sorted(k for k, skipped in seen if skipped) == sorted(s.key for s in first)
    lines = path.read_text().splitlines()
    assert lines[:2] == before.splitlines()  # finished rows untouched
    assert len(lines) == len(specs) and all(json.loads(x) for x in lines)


def test_a_corrupt_line_in_the_middle_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(DataError, match="line 2"):
        load_results(path)
