"""The project's exception hierarchy.

It lives on the ground floor (``twinpass.core`` imports nothing else of the project) so that
every layer raises the same types, and the firmware simulator needs neither the devices nor
the kernels for them. Users import them from ``twinpass`` or ``twinpass.runtime``.
"""

from __future__ import annotations


class TwinpassError(Exception):
    """Base of every error twinpass raises on purpose."""


class ShapeError(TwinpassError, ValueError):
    """An array has the wrong shape, dtype or memory layout for the call."""


class ConfigError(TwinpassError, ValueError):
    """A configuration value is out of range or inconsistent with another one."""


class DataError(TwinpassError, ValueError):
    """Input data is malformed: the message names the file, line and field."""


class CheckpointError(TwinpassError):
    """A checkpoint cannot be written or read (truncated, corrupted, newer schema)."""


class DivergenceError(TwinpassError, FloatingPointError):
    """Learning produced non-finite or exploding weights."""

    def __init__(self, message: str, *, step: int, rule: str) -> None:
        super().__init__(message)
        self.step = step
        self.rule = rule


class DeviceError(TwinpassError):
    """A device backend failed or refused a request."""


class ProtocolError(DeviceError):
    """Bytes on a link do not form a valid twinpass frame or message."""


class RemoteError(DeviceError):
    """The device answered a request with an ERROR reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"device refused the request: {code}: {message}")
        self.code = code
        self.remote_message = message


class ClusterError(TwinpassError):
    """A cluster (Dask) could not finish the work: workers lost, tasks failing past retries."""
