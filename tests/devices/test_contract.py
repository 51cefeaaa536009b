"""Every registered backend under the shared device contract (``tests/device_contract.py``).

Adding a backend means adding its :class:`BackendCase` to ``CASES``; the last test fails
if a backend in the registry has none.
"""

from __future__ import annotations

import pytest
from device_contract import BackendCase, DeviceContract

from twinpass.devices.registry import BACKENDS

CASES = [
    BackendCase("host", dtype="float32"),
    BackendCase("host:float64", dtype="float64"),
]


@pytest.fixture(params=CASES, ids=lambda c: c.spec)
def case(request: pytest.FixtureRequest) -> BackendCase:
    return request.param


class TestDeviceContract(DeviceContract):
    pass


def test_every_registered_backend_is_under_contract() -> None:
    assert set(BACKENDS) <= {c.backend for c in CASES}
