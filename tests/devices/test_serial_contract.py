"""The serial backend under the shared device contract, against real simulator processes.

Each device a contract test builds gets a simulator process of its own (real pty, real
flash file) from a small pool started once for the module: tests build up to five devices
side by side and compare them, which one shared simulator (one model at a time) could not
serve. The fixed-point arithmetic sets the tolerance of read-backs: Q7.24 weights come back
within 2**-25 of the float32 values loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from device_contract import BackendCase, DeviceContract
from sim_process import FIRMWARES, SimProcess

from twinpass.devices.base import Device
from twinpass.devices.serial import SerialDevice

POOL_SIZE = 6


class SimPool:
    """Simulator processes handed out one per open device."""

    def __init__(self, root: Path, size: int, firmware: str = "sim") -> None:
        self.sims: list[SimProcess] = []
        self.users: dict[int, SerialDevice] = {}
        try:
            for i in range(size):
                self.sims.append(SimProcess(root / f"flash{i}.bin", [], None, firmware))
        except BaseException:  # the fixture never yields: stop the ones already running
            self.stop()
            raise

    def device(self, **options: Any) -> SerialDevice:
        for i, sim in enumerate(self.sims):
            user = self.users.get(i)
            if user is None or user._closed:
                dev = SerialDevice(sim.path, base_timeout=0.5, **options)
                self.users[i] = dev
                return dev
        raise RuntimeError(f"all {len(self.sims)} simulators are in use: raise POOL_SIZE")

    def stop(self) -> None:
        for dev in self.users.values():
            dev.close()
        for sim in self.sims:
            sim.stop()


@dataclass(frozen=True)
class SimCase(BackendCase):
    """A serial case whose devices each talk to a free simulator of the pool."""

    pool: Any = field(default=None, compare=False)

    def make(self) -> Device:
        return self.pool.device()


# The Python simulator, the C firmware's host build and its netduinoplus2 image under QEMU:
# the same contract for all three.
@pytest.fixture(scope="module", params=FIRMWARES)
def pool(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[SimPool]:
    p = SimPool(tmp_path_factory.mktemp("sims"), POOL_SIZE, request.param)
    yield p
    p.stop()


@pytest.fixture
def case(pool: SimPool) -> BackendCase:
    # Targets travel as Q16.16 (rounding error 2**-17): a loss of error e moves by up to
    # 2 |e| 2**-17, about 3e-5 for the errors of the contract's random blocks.
    return SimCase("serial", dtype="float32", tol=2.0**-24, loss_atol=1e-4, pool=pool)


class TestSerialContract(DeviceContract):
    pass
