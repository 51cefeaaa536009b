"""``twinpass reproduce`` by subprocess: report, figures, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shared_data import WTH, needs_wth

PNG = b"\x89PNG\r\n\x1a\n"


def _reproduce(*args: str, env_wth: bool = False) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != "TWINPASS_WTH"}
    return subprocess.run(
        [sys.executable, "-m", "twinpass.cli.main", "reproduce", "--scale", "tiny", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_tiny_scale_writes_report_and_figures_then_resumes(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    args = (
        "--seeds",
        "1",
        "--jobs",
        "2",
        "--out",
        str(out),
        "--only",
        "mackey-glass",
        "--only",
        "decorrelation",
        "--only",
        "memory",
    )
    first = _reproduce(*args)
    assert first.returncode == 0, first.stderr
    report = (out / "report.md").read_text()
    for heading in (
        "## Claims",
        "## Hyperparameters",
        "## Mackey-Glass",
        "### ahead",
        "### recall",
        "## Decorrelation",
        "## Memory against sequence length",
    ):
        assert heading in report, heading
    assert "weather and scaling experiments not run" in report
    # Claims 1, 3 and 4 had their experiments; claim 2 (scaling) did not.
    assert report.count("**not tested**") == 1
    for name in ("learning_curves.png", "final_performance.png", "decorrelation.png", "memory.png"):
        assert (out / name).read_bytes()[:8] == PNG
        assert f"]({name})" in report
    results = (out / "results.jsonl").read_text()
    memory = (out / "memory.jsonl").read_text()
    assert len(results.splitlines()) == 16 + 2  # 2 pairings x 8 rules, 2 decorrelation rates

    again = _reproduce(*args)
    assert again.returncode == 0, again.stderr
    assert "18 training runs, 0 memory probes" in again.stdout
    assert (out / "results.jsonl").read_text() == results  # nothing trained twice
    assert (out / "memory.jsonl").read_text() == memory
    # The report names every invocation that contributed, with what it did.
    invocations = [json.loads(x) for x in (out / "invocations.jsonl").read_text().splitlines()]
    assert [(i["trained"], i["probes"], i["jobs"]) for i in invocations] == [(18, 4, 2), (0, 0, 2)]
    report = (out / "report.md").read_text()
    assert "18 runs and 4 probes with 2 worker(s)" in report
    assert "0 runs and 0 probes" not in report  # it only rewrote the report


@needs_wth
def test_weather_runs_with_data(tmp_path: Path) -> None:
    out = tmp_path / "w"
    res = _reproduce("--seeds", "1", "--only", "weather", "--data", str(WTH), "--out", str(out))
    assert res.returncode == 0, res.stderr
    report = (out / "report.md").read_text()
    for horizon in ("1h", "24h", "48h"):
        assert f"### {horizon}" in report


def test_an_unknown_experiment_is_refused(tmp_path: Path) -> None:
    res = _reproduce("--only", "everything", "--out", str(tmp_path))
    assert res.returncode != 0
    assert "everything" in res.stderr
