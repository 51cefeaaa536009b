"""``twinpass firmware-sim``: prints the pty path and serves until SIGTERM."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from sim_process import SimLink

from twinpass.protocol.messages import MsgType


def test_cli_prints_the_pty_path_and_serves_until_sigterm(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-c", "from twinpass.cli.main import main; main()",
        "firmware-sim", "--flash", str(tmp_path / "f.bin"), "--ram", "64", "--step-us", "10",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert select.select([proc.stdout], [], [], 30)[0]
        path = proc.stdout.readline().decode().strip()
        assert path.startswith("/dev/")
        with SimLink(path) as link:
            caps = link.hello().payload["caps"]
            assert caps["ram_total"] == 64 * 1024 and caps["step_us"] >= 10
            assert link.ok(MsgType.PING, {}) == {}
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert (tmp_path / "f.bin").exists()
