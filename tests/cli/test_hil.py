"""``twinpass hil``: fixed-point learning on a real simulator process next to float learning.

Each run starts the simulator on a pty as a subprocess, deploys, streams Mackey-Glass, and
stops it. The fast test checks the JSON and that the device learned as well as the host
within 1.5x at N=32 on a short run; the slow one is the full check at N=32 and 64.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from sim_process import FIRMWARES

from twinpass.cli.main import cli

KEYS = {"steps", "device_test_mse", "host_test_mse", "steps_per_s"}


def hil(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "hil.json"
    result = CliRunner().invoke(cli, ["hil", *args, "--json-out", str(out)])
    assert result.exit_code == 0, result.output
    assert "device (fixed point)" in result.output and "host (float32)" in result.output
    return json.loads(out.read_text())


def test_hil_learns_on_the_device_within_1_5x_of_float(tmp_path: Path) -> None:
    data = hil(tmp_path, "--task", "mackey-glass", "--hidden", "32", "--steps", "1000")
    assert KEYS <= set(data) and data["steps"] == 1000
    assert all(math.isfinite(data[k]) and data[k] > 0 for k in KEYS)
    # It learned: the test MSE fell well below the untrained model's on the device ...
    assert data["device_test_mse"] < 0.7 * data["device_test_mse_initial"]
    # ... and fixed point costs less than 1.5x the float learner's test MSE.
    assert data["device_test_mse"] <= 1.5 * data["host_test_mse"], data
    assert data["link"]["dropped"] == 0 and data["link"]["bytes_per_step"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("hidden", [32, 64])
def test_fixed_point_within_1_5x_of_float_on_mackey_glass(tmp_path: Path, hidden: int) -> None:
    data = hil(tmp_path, "--hidden", str(hidden), "--steps", "5000")
    assert data["device_test_mse"] < 0.5 * data["device_test_mse_initial"]
    assert data["device_test_mse"] <= 1.5 * data["host_test_mse"], data


def test_hil_refuses_a_model_the_simulator_cannot_hold(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["hil", "--hidden", "400", "--steps", "10", "--ram", "32"])
    assert result.exit_code == 1
    assert "do not fit the device's RAM" in result.output


@pytest.mark.parametrize("firmware", [p for p in FIRMWARES if p != "sim"])
def test_hil_runs_the_c_firmware_as_the_simulator(tmp_path: Path, firmware: str) -> None:
    """The same session on the C firmware (host build, or netduinoplus2 under QEMU): the
    same fixed-point arithmetic, so the same test MSE as on the simulator, bit for bit."""
    args = ("--hidden", "16", "--steps", "300")
    sim = hil(tmp_path, *args)
    c = hil(tmp_path, *args, "--firmware", firmware)
    assert c["firmware"] == firmware and c["board"] != sim["board"]
    assert c["device_test_mse"] == sim["device_test_mse"]
    assert c["device_train_mse"] == sim["device_train_mse"]
    assert c["device_test_mse"] < c["device_test_mse_initial"]


def test_ram_is_a_simulator_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["hil", "--firmware", "c", "--ram", "64"])
    assert result.exit_code == 2 and "--ram sets the simulator's RAM" in result.output


def test_in_flight_pipelines_steps_and_is_recorded(tmp_path: Path) -> None:
    data = hil(tmp_path, "--hidden", "8", "--steps", "200", "--in-flight", "2")
    assert data["in_flight"] == 2 and "window" not in data


def test_the_old_window_name_still_works_with_a_one_line_note(tmp_path: Path) -> None:
    out = tmp_path / "hil.json"
    args = ["hil", "--hidden", "8", "--steps", "200", "--window", "2", "--json-out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    notes = [ln for ln in result.output.splitlines() if "deprecated" in ln]
    assert len(notes) == 1 and "--in-flight" in notes[0]
    assert json.loads(out.read_text())["in_flight"] == 2
    assert "--window" not in CliRunner().invoke(cli, ["hil", "--help"]).output


def test_the_old_and_the_new_name_together_are_refused() -> None:
    result = CliRunner().invoke(cli, ["hil", "--window", "2", "--in-flight", "3"])
    assert result.exit_code == 2 and "give only --in-flight" in result.output
