"""Devices: the backends a network learns on, behind one interface (:class:`Device`).

The public names are imported on first use (PEP 562 module ``__getattr__``), not here:
a package's ``__init__`` runs whenever any of its submodules is imported (the serial
link's, say, by a tool that needs no backend). Eager imports of the host backend and the
registry would load the Numba kernels of every backend into each such import (about
0.4 s). ``from twinpass.devices import HostDevice`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time ``__getattr__`` imports them
    from .base import Device, DeviceInfo, StepResult
    from .host import HostDevice
    from .registry import BACKENDS, backend_infos, make_device, parse_spec

#: Public name -> the submodule that defines it (the same names as ``__all__``).
_EXPORTS = {
    "BACKENDS": "registry",
    "Device": "base",
    "DeviceInfo": "base",
    "HostDevice": "host",
    "StepResult": "base",
    "backend_infos": "registry",
    "make_device": "registry",
    "parse_spec": "registry",
}

__all__ = [
    "BACKENDS",
    "Device",
    "DeviceInfo",
    "HostDevice",
    "StepResult",
    "backend_infos",
    "make_device",
    "parse_spec",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        submodule = importlib.import_module(f".{module}", __name__)
    except AttributeError as exc:
        # An AttributeError escaping __getattr__ would read as "no such name" (and `from
        # twinpass.devices import X` would say "cannot import name"): keep the real cause.
        raise ImportError(f"{__name__}.{module} failed to import: {exc}") from exc
    value = getattr(submodule, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
