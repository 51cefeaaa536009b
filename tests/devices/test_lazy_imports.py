"""``twinpass.devices`` imports its backends on first use, so the simulator starts quickly."""

from __future__ import annotations

import subprocess
import sys

import twinpass.devices as devices


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_simulator_does_not_import_the_backends_or_the_kernels() -> None:
    # A package's __init__ runs for every submodule import: the simulator imports
    # twinpass.devices.protocol, and must not pay for the host backend's Numba kernels.
    loaded = _modules_after("import twinpass.firmware_sim.server")
    assert "twinpass.devices.protocol" in loaded
    heavy = {"twinpass.devices.host", "twinpass.devices.registry", "twinpass.kernels.api"}
    assert not heavy & loaded, sorted(heavy & loaded)


def test_the_public_names_still_import_from_the_package() -> None:
    from twinpass.devices import BACKENDS, Device, HostDevice, StepResult, make_device

    assert set(devices.__all__) == set(devices._EXPORTS)
    assert make_device("host").__class__ is HostDevice and "host" in BACKENDS
    assert Device is not None and StepResult is not None
    assert set(devices.__all__) <= set(dir(devices))
    try:
        devices.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
