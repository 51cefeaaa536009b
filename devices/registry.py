"""The backends by name: one place that turns a ``--device`` spec into a :class:`Device`.

A spec is ``name`` or ``name:option`` (``host``, ``host:float64``, ``analog:pcm``, ``hil``).
The option is passed to the backend's factory as its first argument; a backend decides what
it means (the host backend: its dtype). ``twinpass devices``, the ``--device`` options and
the shared contract suite in ``tests/`` all read :data:`BACKENDS`, so a backend added here
is listed, selectable and put under contract at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from twinpass.core.errors import ConfigError

from .analog import AnalogDevice
from .base import Device, DeviceInfo
from .hil import HilDevice
from .host import HostDevice
from .serial import SerialDevice

# Each factory, called with no arguments, must build a device without touching hardware
# (no port opened, nothing allocated beyond the object) so that info() can be listed.
BACKENDS: dict[str, Callable[..., Device]] = {
    "host": HostDevice,
    # serial:URL, URL a pyserial port: a device path, a pty, socket://host:port.
    "serial": SerialDevice,
    "analog": AnalogDevice,
    # hil[:RAM_KIB | c | qemu]: a firmware on a pty (the simulator, the C firmware on the
    # host, or its netduinoplus2 image under QEMU), started on first use.
    "hil": HilDevice,
}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``name[:option]``; raise :class:`ConfigError` for an unknown name."""
    if not isinstance(spec, str):
        raise ConfigError(f"a device spec is a string such as 'host', not {spec!r}")
    name, sep, option = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ConfigError(
            f"unknown device {spec!r}: available backends are {', '.join(sorted(BACKENDS))}"
        )
    option = option.strip()
    if sep and not option:
        raise ConfigError(f"device spec {spec!r} has an empty option after ':'")
    return name, option or None


def make_device(spec: str, **options: Any) -> Device:
    """A new, unloaded device from a spec such as ``host`` or ``host:float64``.

    Keyword ``options`` go to the backend's factory unchanged (e.g. ``dtype="float64"``);
    a value the backend refuses raises :class:`ConfigError` from the backend.
    """
    name, option = parse_spec(spec)
    factory = BACKENDS[name]
    args = () if option is None else (option,)
    try:
        # Check the call against the factory's signature first, so that a wrong option
        # (``host:float64`` plus ``dtype=...``, an unknown keyword) is the user's
        # ConfigError, while a TypeError from inside the factory stays a visible bug.
        inspect.signature(factory).bind(*args, **options)
    except TypeError as exc:
        raise ConfigError(f"device {spec!r} does not take these options: {exc}") from exc
    return factory(*args, **options)


def backend_infos() -> list[DeviceInfo]:
    """What every registered backend is and can do, in registry order."""
    infos = []
    for factory in BACKENDS.values():
        device = factory()
        try:
            infos.append(device.info())
        finally:
            device.close()
    return infos
