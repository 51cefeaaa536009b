"""``twinpass deploy`` and ``twinpass device info|pull|reset`` against a firmware process.

A checkpoint written by ``twinpass train`` is deployed to a real simulator on a real pty
(and, unchanged, to the C firmware's host build and its netduinoplus2 image under QEMU);
``device info`` must then report its hash, ``device pull`` must give back its weights (to
the quantisation step), ``device reset`` must reboot the device with the model kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from sim_process import FIRMWARES, SimProcess, start_simulator

from twinpass.cli.main import cli
from twinpass.devices.serial import quantise_model
from twinpass.protocol import model_image as mi
from twinpass.runtime import OnlineLearner, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

PAPER_OPTIONS = ("--readout", "anp", "--no-readout-inputs", "--leak", "1")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module", params=FIRMWARES)
def sim(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[SimProcess]:
    flash = tmp_path_factory.mktemp("deploy") / "flash.bin"
    with start_simulator(flash, firmware=request.param) as s:
        yield s


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "mg.ckpt"
    # The paper's network: the firmwares run its readout and units (docs/protocol.md §6).
    result = run("train", "--hidden", "12", "--epochs", "1", "--checkpoint", str(path), "-q",
                 *PAPER_OPTIONS)  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


def info(port: str) -> dict:
    result = run("device", "info", "--port", port, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_deploy_info_pull_reset(sim: SimProcess, trained: Path, tmp_path: Path) -> None:
    learner, _ = OnlineLearner.load(trained)
    expected = mi.sha256(quantise_model(learner.params.arrays(), learner.device.rule_spec()))

    result = run("deploy", "--port", sim.path, str(trained))
    assert result.exit_code == 0, result.output
    assert "deployed and confirmed" in result.output and "sha256 verified" in result.output
    # Two lines: the model and the outcome; no stray "0/N bytes" status before the upload,
    # and a duration that does not round a real deploy to "0.00 s".
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and "bytes" not in lines[1], lines
    assert re.search(r"confirmed in ([1-9]\d* ms|\d+\.\d\d s)", lines[1]), lines[1]
    hello = info(sim.path)["hello"]
    assert hello["model_hash"] == expected.hex() and hello["model_state"] == "confirmed"
    assert hello["shape"] == [1, 12, 1]

    pulled = tmp_path / "pulled.ckpt"
    result = run("device", "pull", "--port", sim.path, "-o", str(pulled))
    assert result.exit_code == 0, result.output
    back, meta = OnlineLearner.load(pulled)
    assert meta["pulled_from"]["image_sha256"] == expected.hex()
    assert back.n_hidden == 12 and back.config.rule == "anp"
    assert back.config.lr == pytest.approx(learner.config.lr, rel=1e-6)
    for k, v in learner.params.arrays().items():
        np.testing.assert_allclose(back.params.arrays()[k], v, rtol=0, atol=2.0**-24)

    boot = hello["boot_id"]
    result = run("device", "reset", "--port", sim.path, "--what", "device")
    assert result.exit_code == 0, result.output
    after = info(sim.path)["hello"]
    assert after["boot_id"] == boot + 1 and after["model_hash"] == expected.hex()


def test_plain_info_is_a_table(sim: SimProcess) -> None:
    result = run("device", "info", "--port", sim.path)
    assert result.exit_code == 0, result.output
    assert "caps.max_hidden" in result.output and "stats.crc_errors" in result.output


def test_deploy_refuses_a_network_the_device_cannot_run(sim: SimProcess, tmp_path: Path) -> None:
    """The default network (exact readout over [hidden, input, 1], leaky units) is refused
    before anything is sent, with the options that make a deployable one."""
    path = tmp_path / "default.ckpt"
    assert run("train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(path)).exit_code == 0
    before = info(sim.path)["hello"]["model_hash"]
    result = run("deploy", "--port", sim.path, str(path))
    assert result.exit_code != 0
    assert "--readout anp --no-readout-inputs --leak 1" in result.output, result.output
    assert info(sim.path)["hello"]["model_hash"] == before  # nothing was uploaded


def test_deploy_refuses_a_rule_the_device_cannot_run(sim: SimProcess, tmp_path: Path) -> None:
    ckpt = tmp_path / "np.ckpt"
    OnlineLearner(1, 1, 8, RuleConfig(**PAPER_NETWORK, rule="np")).save(ckpt)
    before = info(sim.path)["hello"]["model_hash"]
    result = run("deploy", "--port", sim.path, str(ckpt))
    assert result.exit_code == 1
    assert "runs ANP only" in result.output and "Traceback" not in result.output
    assert info(sim.path)["hello"]["model_hash"] == before  # nothing was uploaded


def test_deploy_refuses_a_model_too_large_for_the_ram(tmp_path: Path) -> None:
    ckpt = tmp_path / "big.ckpt"
    OnlineLearner(1, 1, 128, RuleConfig(**PAPER_NETWORK)).save(ckpt)
    with start_simulator(tmp_path / "flash.bin", "--ram", "32") as small:
        result = run("deploy", "--port", small.path, str(ckpt))
    assert result.exit_code == 1
    assert "N=128" in result.output and "RAM holds at most" in result.output


def test_no_device_on_the_port_is_a_clear_error(tmp_path: Path, trained: Path) -> None:
    result = run("deploy", "--port", str(tmp_path / "no-such-tty"), str(trained))
    assert result.exit_code == 1
    assert "cannot open serial port" in result.output
    result = run("device", "info", "--port", str(tmp_path / "no-such-tty"))
    assert result.exit_code == 1 and "cannot open serial port" in result.output


def test_train_accepts_a_serial_device_spec(sim: SimProcess, tmp_path: Path) -> None:
    """`--device serial:URL` goes through the registry like any backend."""
    out = tmp_path / "run.json"
    result = run(
        "train", "--device", f"serial:{sim.path}", "--hidden", "8", "--epochs", "0",
        "--json-out", str(out), "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["config"]["device"] in ("serial", {"spec": f"serial:{sim.path}"}) or (
        "serial" in json.dumps(data["config"]["device"])
    )
    assert 0 < data["epochs"][0]["test_mse"] < 1
    assert info(sim.path)["hello"]["shape"] == [1, 8, 1]  # the model went to the device
