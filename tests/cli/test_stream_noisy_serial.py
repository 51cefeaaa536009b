"""``twinpass stream --device serial:PORT`` through a noisy line (the fault proxy at three
times the issue's per-byte rates, a real simulator process on real ptys): the run finishes
with the results of a clean run; ``--link-retries`` sets the retry budget (0: a noisy line
stops the run with a one-line error, after saving what was learned); a resume on another
port path to the same device is accepted, to another device refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fault_proxy import ProxyProcess
from sim_process import start_simulator

from twinpass.cli.main import cli

NOISE = ("flip:both:1.5e-3/B", "drop:both:6e-4/B", "dup:both:6e-3/B")
ROWS = 300


def _csv(path: Path) -> Path:
    t = np.arange(ROWS)
    path.write_text("x,y\n" + "".join(f"{np.sin(i / 9):.5f},{np.cos(i / 7):.5f}\n" for i in t))
    return path


def _stream(port: str, src: Path, out: Path, *extra: str) -> tuple[int, str]:
    r = CliRunner().invoke(
        cli,
        ["stream", "--device", f"serial:{port}", "--source", f"csv:{src}", "--target", "y",
         "-N", "8", "-q", "--json-out", str(out), *extra],
    )  # fmt: skip
    return r.exit_code, r.output


# ~30 s on 2 cores; tests/devices/test_serial_noisy_line.py is the fast version (the same
# faults, the device's weights against a clean run's).
@pytest.mark.slow
def test_a_stream_on_a_noisy_serial_line_finishes_as_on_a_clean_one(tmp_path) -> None:
    src = _csv(tmp_path / "d.csv")
    with start_simulator(tmp_path / "flash.bin") as sim:
        code, out = _stream(sim.path, src, tmp_path / "clean.json")
        assert code == 0, out
        with ProxyProcess(sim.path, *NOISE, seed=2, skip=1) as proxy:
            code, out = _stream(proxy.path, src, tmp_path / "noisy.json")
            injected = proxy.stop()
        assert code == 0, out
        assert sum(v for k, v in injected.items() if not k.startswith("dup")) >= 5, injected
        clean = json.loads((tmp_path / "clean.json").read_text())
        noisy = json.loads((tmp_path / "noisy.json").read_text())
        assert noisy["steps"] == clean["steps"] == ROWS - 1
        assert noisy["mse"] == clean["mse"]  # the same predictions, bit for bit

        with ProxyProcess(sim.path, *NOISE, seed=3, skip=1) as proxy:
            code, out = _stream(
                proxy.path, src, tmp_path / "none.json", "--link-retries", "0",
                "--checkpoint", str(tmp_path / "c.ckpt"),
            )  # fmt: skip
        assert code == 1 and "no reply from the device" in out
        assert len(out.strip().splitlines()) == 1


def test_resume_on_another_port_path_to_the_same_device(tmp_path) -> None:
    """A USB adapter re-plugged comes back under another name: the resume is accepted when
    the device there is the run's (board, firmware, the run's model), refused otherwise."""
    src = _csv(tmp_path / "d.csv")
    ckpt = tmp_path / "c.ckpt"
    with start_simulator(tmp_path / "flash.bin") as sim:
        code, out = _stream(sim.path, src, tmp_path / "a.json", "--checkpoint", str(ckpt),
                            "--max-steps", "100")  # fmt: skip
        assert code == 0, out
        other_name = tmp_path / "ttyUSB1"
        other_name.symlink_to(sim.path)
        code, out = _stream(str(other_name), src, tmp_path / "b.json", "--checkpoint",
                            str(ckpt), "--resume")  # fmt: skip
        assert code == 0, out
        assert json.loads((tmp_path / "b.json").read_text())["steps"] == ROWS - 1
    with start_simulator(tmp_path / "flash2.bin") as another:  # no model of this run
        code, out = _stream(another.path, src, tmp_path / "c.json", "--checkpoint",
                            str(ckpt), "--resume")  # fmt: skip
        assert code == 2 and "is not the same one" in out, out
