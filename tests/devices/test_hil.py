"""The ``hil`` backend: the serial device with a firmware simulator of its own.

The protocol and the learning are SerialDevice's, under contract in
test_serial_contract.py; what is new here is the simulator's life cycle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sim_process import FIRMWARES, start_simulator

from twinpass.core.errors import ConfigError, DeviceError
from twinpass.devices.hil import HilDevice
from twinpass.devices.registry import make_device
from twinpass.devices.serial import SerialDevice
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK


def _model() -> dict[str, np.ndarray]:
    return Params.init(1, 12, 1, seed=4).arrays()


def _block() -> tuple[np.ndarray, np.ndarray]:
    s = np.sin(0.3 * np.arange(201)).astype(np.float32)
    return s[:-1, None, None], s[1:, None, None]


def test_listing_starts_no_simulator() -> None:
    dev = make_device("hil")
    assert isinstance(dev, HilDevice)
    info = dev.info()
    assert info.name == "hil" and info.rules == ("anp",)
    assert dev.port is None  # nothing started (the conftest also fails on a leaked child)
    dev.close()


@pytest.mark.parametrize("spec", ["hil:lots", "hil:8", "hil:arduino"])
def test_bad_ram_options_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="KiB"):
        make_device(spec)


def test_learns_like_a_serial_device_on_its_own_simulator_and_stops_it(tmp_path: Path) -> None:
    U, Y = _block()
    rule = RuleConfig(**PAPER_NETWORK, lr=1e-2).resolve(1, 12, 1)
    hil = make_device("hil")
    try:
        hil.load(_model(), rule, seed=3)
        got = hil.step(U, Y)
        weights = hil.read_model()
        port = hil.port
        assert port is not None and os.path.exists(port)
    finally:
        hil.close()
    hil.close()  # twice is harmless
    with pytest.raises(DeviceError):
        hil.step(U, Y)
    # The simulator is gone with its pty.
    assert not os.path.exists(port)

    # The same exchange with a simulator started by hand: the same bits.
    with start_simulator(tmp_path / "flash.bin") as sim:
        ref = SerialDevice(sim.path)
        try:
            ref.load(_model(), rule, seed=3)
            want = ref.step(U, Y)
            np.testing.assert_array_equal(got.predictions, want.predictions)
            np.testing.assert_array_equal(got.loss2, want.loss2)
            for k, v in ref.read_model().items():
                np.testing.assert_array_equal(weights[k], v)
        finally:
            ref.close()
    assert got.loss1[-20:].mean() < got.loss1[:20].mean()  # and it learned


def test_stream_runs_on_hil(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "twinpass.cli.main", "stream", "--device", "hil", "--hidden",
         "16", "--max-steps", "400", "--quiet", "--json-out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["steps"] == 400
    assert np.isfinite(r["mse"]) and r["mse"] < r["initial_model_mse"]


@pytest.mark.parametrize("firmware", [p for p in FIRMWARES if p != "sim"])
def test_the_c_firmware_learns_the_same_bits_as_the_simulator(firmware: str) -> None:
    """``hil:c`` (the C firmware on this machine) and ``hil:qemu`` (its netduinoplus2 image
    under QEMU) run the session of ``hil`` (the Python simulator) bit for bit."""
    U, Y = _block()
    rule = RuleConfig(**PAPER_NETWORK, lr=1e-2).resolve(1, 12, 1)
    results = {}
    for spec in ("hil", f"hil:{firmware}"):
        dev = make_device(spec)
        try:
            dev.load(_model(), rule, seed=3)
            out = dev.step(U, Y)
            results[spec] = (out, dev.read_model(), dev.link.hello_info)
        finally:
            dev.close()
    (ref, ref_w, ref_hello), (got, got_w, hello) = results.values()
    assert hello is not None and ref_hello is not None and hello.fw != ref_hello.fw
    np.testing.assert_array_equal(got.predictions, ref.predictions)
    np.testing.assert_array_equal(got.loss1, ref.loss1)
    np.testing.assert_array_equal(got.loss2, ref.loss2)
    for k, v in ref_w.items():
        np.testing.assert_array_equal(got_w[k], v)
