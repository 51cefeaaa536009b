"""Every registered backend under the shared device contract (``tests/device_contract.py``).

Adding a backend means adding its :class:`BackendCase` to ``CASES``; the last test fails
if a backend in the registry has none.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from device_contract import BackendCase, DeviceContract

from twinpass.devices.registry import BACKENDS

PCM_UNDER_CONTRACT = {
    "noise_scale": 0.002,
    "dw_min": 5e-5,
    "inp_bits": 16,
    "out_bits": 16,
    "headroom": 4.0,
    "update": "stochastic",
}

CASES = [
    BackendCase("host", dtype="float32"),
    BackendCase("host:float64", dtype="float64"),
    # No noise; read-back is exact up to float rounding of g = w / scale, and predictions
    # of two devices agree up to a few steps of the 16-bit ADC (each device scales its
    # tiles to the weights it was given).
    # NP and WP learn ~1e-5 per weight in the ten steps of the rule test: any change counts.
    BackendCase("analog:ideal", tol=5e-3, learn_tol=0.0),
    # Noisy PCM with its noise scaled down, a finer pulse step and 16-bit converters, so
    # that a read-back is within a tolerance and ten steps of learning at lr 1e-3 move a
    # weight by more than it (an 8-bit ADC turns a tiny difference into a whole level, so
    # no small tolerance fits it; the converters have tests of their own in test_analog).
    # Programming and read noise, drift, device variation and pulses are all on. NP and WP
    # learn less in the ten steps of the rule test than the noise moves a weight, so that
    # test only shows they run here; analog learning is tested in test_analog.py.
    BackendCase("analog:pcm", tol=5e-3, learn_tol=0.0, options=PCM_UNDER_CONTRACT),
    BackendCase(
        "analog:pcm",
        tol=5e-3,
        learn_tol=0.0,
        options={**PCM_UNDER_CONTRACT, "update": "mixed"},
    ),
]


@pytest.fixture(
    params=CASES,
    ids=lambda c: c.spec + (":" + c.options["update"] if "update" in c.options else ""),
)
def case(request: pytest.FixtureRequest) -> BackendCase:
    return request.param


class TestDeviceContract(DeviceContract):
    pass


#: Backends under the contract in a module of their own (they need a simulator process).
ELSEWHERE = {"serial": "test_serial_contract.py", "hil": "test_hil.py"}


def test_every_registered_backend_is_under_contract() -> None:
    assert set(BACKENDS) <= {c.backend for c in CASES} | set(ELSEWHERE)
    here = Path(__file__).parent
    assert all((here / module).is_file() for module in ELSEWHERE.values())
