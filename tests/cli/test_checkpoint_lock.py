"""One run per checkpoint: while ``twinpass stream`` runs on a checkpoint (a real process
reading a pipe), a second stream or train on that path, new or ``--resume``, is refused
with a message naming the holder; the lock dies with its holder, kill -9 included."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from twinpass.cli.main import cli
from twinpass.runtime.run_lock import lock_path


def _twinpass() -> list[str]:
    exe = shutil.which("twinpass", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-c", "from twinpass.cli.main import main; main()"]


def _holder(ckpt: Path) -> subprocess.Popen:
    """A stream on ``ckpt`` reading stdin, which stays open: it holds the lock until then."""
    proc = subprocess.Popen(
        [*_twinpass(), "stream", "--source", "-", "--target", "y", "-N", "5", "-q",
         "--checkpoint", str(ckpt)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(b"x,y\n" + b"".join(b"%d,%d\n" % (i % 5, i % 3) for i in range(50)))
    proc.stdin.flush()
    lock = Path(lock_path(ckpt))
    deadline = time.monotonic() + 120  # a bound on a hang, not a timing assertion
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.exists() and f"pid {proc.pid} " in lock.read_text():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the holder never took the lock: {proc.communicate()}")


@pytest.mark.parametrize(
    "args",
    [
        ["stream", "--resume"],
        ["stream", "--max-steps", "10"],
        ["train", "--epochs", "1", "-N", "5"],
    ],
)
def test_a_second_run_on_a_held_checkpoint_is_refused(tmp_path, args: list[str]) -> None:
    ckpt = tmp_path / "same.ckpt"
    proc = _holder(ckpt)
    try:
        r = CliRunner().invoke(cli, [*args, "-q", "--checkpoint", str(ckpt)])
        assert r.exit_code == 1, r.output
        assert f"checkpoint {ckpt} is in use by another run (pid {proc.pid} on " in r.output
        assert "`twinpass stream`" in r.output and len(r.output.strip().splitlines()) == 1
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.wait(timeout=120)
    assert proc.returncode == 0, err
    # The holder's run is the one in the file, and the lock is free again.
    more = "x,y\n" + "".join(f"{i % 5},{i % 3}\n" for i in range(20))
    r = CliRunner().invoke(cli, ["stream", "-q", "--checkpoint", str(ckpt), "--resume"], input=more)
    assert r.exit_code == 0, r.output


def test_the_lock_dies_with_a_killed_holder(tmp_path) -> None:
    ckpt = tmp_path / "run.ckpt"
    proc = _holder(ckpt)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert Path(lock_path(ckpt)).read_text()  # its holder line is left behind, stale
    assert not ckpt.exists()  # the killed run saved nothing: a new run may take the path
    r = CliRunner().invoke(cli, ["stream", "-q", "--max-steps", "20", "-N", "5",
                                 "--checkpoint", str(ckpt)])  # fmt: skip
    assert r.exit_code == 0, r.output
