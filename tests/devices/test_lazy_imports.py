"""``twinpass.devices`` imports its backends on first use; the simulator imports none of it."""

from __future__ import annotations

import subprocess
import sys

import twinpass.devices as devices


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_simulator_imports_neither_the_devices_nor_the_kernels() -> None:
    # It speaks the wire format of twinpass.protocol; the backends and the host's Numba
    # kernels are none of its business (and would cost its start ~0.4 s).
    loaded = _modules_after("import twinpass.firmware_sim.server")
    assert "twinpass.protocol.frame" in loaded
    above = sorted(m for m in loaded if m.startswith(("twinpass.devices", "twinpass.kernels")))
    assert not above, above


def test_the_serial_link_does_not_import_the_backends() -> None:
    # A package's __init__ runs for every submodule import: importing the link must not
    # load the host backend's Numba kernels.
    loaded = _modules_after("import twinpass.devices.serial_link")
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
