"""Devices: the backends a network learns on, behind one interface (:class:`Device`)."""

from .base import Device, DeviceInfo, StepResult
from .host import HostDevice
from .registry import BACKENDS, backend_infos, make_device, parse_spec

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
