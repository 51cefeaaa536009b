"""The C firmware built away from the checkout, as an installed wheel builds it.

The wheel ships ``firmware/`` as ``twinpass/firmware`` (tests/test_packaging.py checks the
files; ``.ci/run`` installs the wheel into a fresh venv and runs ``twinpass hil --firmware
c`` from outside the repository). Here: the sources copied elsewhere, the build going to a
user cache folder, and the message when no compiler is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)


def _hil(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "twinpass.cli.main", "hil", "--firmware", "c"]
    cmd += ["--hidden", "8", "--steps", "200"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_sources_elsewhere_build_into_the_user_cache(tmp_path: Path) -> None:
    src = tmp_path / "sources"
    shutil.copytree(REPO / "firmware", src, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    cache = tmp_path / "cache"
    env = {**os.environ, "TWINPASS_FIRMWARE_DIR": str(src), "XDG_CACHE_HOME": str(cache)}
    run = _hil(tmp_path, env)
    assert run.returncode == 0, run.stderr
    assert "device / host test MSE" in run.stdout
    built = list(cache.glob("twinpass/firmware-host-*/twinpass_fw_host"))
    assert len(built) == 1
    assert not list(src.rglob("twinpass_fw_host")), "the build wrote into the sources"
    # A second run takes the cached binary: nothing rebuilt.
    mtime = built[0].stat().st_mtime_ns
    assert _hil(tmp_path, env).returncode == 0
    assert built[0].stat().st_mtime_ns == mtime


def test_no_compiler_is_a_one_line_error_naming_the_package(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env.update(PATH=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    run = _hil(tmp_path, env)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert "no C compiler" in run.stderr and "apt-get install gcc" in run.stderr
