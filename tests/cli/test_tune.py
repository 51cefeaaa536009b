"""``twinpass tune`` by subprocess: a short search, its file read back by ``stream`` and
``train --config``, a resumed study, a killed tune resumed, and refused inputs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

SHORT = ("--hidden", "10", "--tune-rows", "400", "--max-rows", "700", "--jobs", "2")


def _twinpass(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twinpass.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def _finished_trials(db: Path) -> int:
    with sqlite3.connect(db) as con:
        (n,) = con.execute(
            "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
        ).fetchone()
    return n


def _finished_trials_so_far(db: Path) -> int:
    """The count while ``tune`` is still writing: its file appears before optuna has created
    the tables, and a write in progress may hold the lock; either reads as not yet."""
    if not db.exists():
        return 0
    try:
        return _finished_trials(db)
    except sqlite3.OperationalError:
        return 0


def test_a_short_tune_writes_a_setting_that_stream_and_train_read(tmp_path: Path) -> None:
    res = _twinpass("tune", "--trials", "6", *SHORT, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "6/6 done" in res.stdout
    assert "never seen by the search" in res.stdout
    data = json.loads((tmp_path / "tuned.json").read_text())
    assert data["format"] == "twinpass.config"
    options = data["options"]
    assert options["hidden"] == 10
    assert set(options) >= {"lr_hidden", "sigma", "leak", "forgetting", "spectral_radius"}
    assert data["tuned"]["trials"] == 6 and data["tuned"]["tune_rows"] == 400
    assert data["tuned"]["after_mse"] > 0 and data["tuned"]["default_after_mse"] > 0
    assert _finished_trials(tmp_path / "tuned.db") == 6

    out = tmp_path / "s.json"
    res = _twinpass(
        "stream",
        "--config",
        "tuned.json",
        "--max-steps",
        "300",
        "--quiet",
        "--json-out",
        str(out),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    run = json.loads(out.read_text())
    cfg = json.dumps(run)
    assert f"{options['leak']}" in cfg  # the tuned leak is the one streamed with
    res = _twinpass(
        "stream",
        "--config",
        "tuned.json",
        "--leak",
        "0.5",
        "--max-steps",
        "50",
        "--quiet",
        "--json-out",
        str(out),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert '"leak": 0.5' in out.read_text()  # the command line wins
    res = _twinpass("train", "--config", "tuned.json", "--epochs", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr

    # The same command with a larger budget resumes the study: 6 trials kept, 3 more run.
    res = _twinpass("tune", "--trials", "9", *SHORT, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "6 of 9 trials done before" in res.stdout
    assert _finished_trials(tmp_path / "tuned.db") == 9


def test_a_killed_tune_resumes_with_its_finished_trials(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "twinpass.cli.main", "tune", "--trials", "40", *SHORT]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    db = tmp_path / "tuned.db"
    try:
        deadline = time.monotonic() + 300
        while _finished_trials_so_far(db) < 3:
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "no trial finished"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    kept = _finished_trials(db)
    assert 3 <= kept < 40
    res = _twinpass("tune", "--trials", "12", *SHORT, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"{kept} of 12 trials done before" in res.stdout or kept >= 12
    assert _finished_trials(db) >= 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--source", "-"), "needs a file"),
        (("--tune-rows", "5000", "--max-rows", "3000"), "lower --tune-rows"),
        (("--out", "missing/t.json"), "does not exist"),
        (("--scheduler", "tcp://127.0.0.1:9", "--trials", "1"), "no Dask scheduler answered"),
        (("--scheduler", "tcp://127.0.0.1:9", "--jobs", "2"), "drop --jobs"),
    ],
)
def test_bad_tune_options_are_one_line_errors(tmp_path: Path, args: tuple, message: str) -> None:
    res = _twinpass("tune", *args, cwd=tmp_path)
    assert res.returncode != 0
    assert message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not a JSON file"),
        ('{"format": "other"}', "not a twinpass config file"),
        ('{"format": "twinpass.config", "version": 9, "options": {}}', "version 9"),
        ('{"format": "twinpass.config", "version": 1, "options": {"nope": 1}}', "no option --nope"),
        ('{"format": "twinpass.config", "version": 1, "options": {"hidden": 0}}', "--hidden = 0"),
    ],
)
def test_a_bad_config_file_is_named_in_the_error(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "c.json").write_text(content)
    res = _twinpass("stream", "--config", "c.json", "--max-steps", "10", cwd=tmp_path)
    assert res.returncode != 0
    assert "c.json" in res.stderr and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
