"""`reproduce` and `tune` with `--scheduler`: a real scheduler and two real workers on
loopback, one of them killed mid-run. The run finishes; nothing is lost or written twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from child_processes import spawn, stop

DASK = str(Path(sys.executable).with_name("dask"))


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    if not Path(DASK).exists():
        pytest.skip("the dask command is not installed beside this Python")
    sched_file = tmp_path / "scheduler.json"
    log = (tmp_path / "cluster.log").open("wb")
    procs = [
        spawn(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    ]
    try:
        _wait_for(sched_file.exists, 60, "the scheduler file")
        address = json.loads(sched_file.read_text())["address"]
        workers = [
            spawn(
                [
                    DASK,
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            for _ in range(2)
        ]
        procs += workers
        yield address, workers
    finally:
        for p in reversed(procs):
            stop(p)
        log.close()


def test_a_worker_killed_mid_run_loses_nothing_and_doubles_nothing(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]]]
) -> None:
    address, workers = cluster
    out = tmp_path / "rep"
    results = out / "results.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "twinpass.cli.main",
        "reproduce",
        "--scale",
        "tiny",
        "--seeds",
        "2",
        "--only",
        "mackey-glass",
        "--scheduler",
        address,
        "--out",
        str(out),
    ]
    env = {k: v for k, v in os.environ.items() if k != "TWINPASS_WTH"}
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        # Kill a worker once results are arriving: its running and queued tasks go elsewhere.
        _wait_for(
            lambda: results.exists() and len(results.read_text().splitlines()) >= 2,
            300,
            "the first results",
        )
        os.killpg(workers[0].pid, signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr.decode()
    keys = [json.loads(line)["key"] for line in results.read_text().splitlines()]
    assert len(keys) == 2 * 8 * 2  # 2 pairings x 8 rules x 2 seeds
    assert len(set(keys)) == len(keys)
    assert f"at {address}" in stdout.decode()
    assert workers[0].poll() is not None  # the kill did happen


def test_a_tune_survives_a_killed_worker(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]]]
) -> None:
    address, workers = cluster
    db = tmp_path / "tuned.db"

    def finished() -> int:
        if not db.exists():
            return 0
        with sqlite3.connect(db) as con:
            try:
                (n,) = con.execute(
                    "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
                ).fetchone()
            except sqlite3.OperationalError:  # the tables are not created yet
                return 0
        return n

    cmd = [
        sys.executable, "-m", "twinpass.cli.main", "tune", "--trials", "16", "--hidden", "10",
        "--tune-rows", "400", "--max-rows", "700", "--scheduler", address,
    ]  # fmt: skip
    run = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: finished() >= 2, 300, "the first trials")
        os.killpg(workers[0].pid, signal.SIGKILL)
        _, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr.decode()
    assert finished() == 16
    assert json.loads((tmp_path / "tuned.json").read_text())["tuned"]["trials"] == 16
    assert workers[0].poll() is not None
