"""twinpass: train recurrent networks online, without backpropagation, where the data arrives.

One import gives the public API::

    >>> import twinpass
    >>> learner = twinpass.OnlineLearner(n_in=1, n_out=1, n_hidden=100)
    >>> model = twinpass.TwinpassRegressor(n_hidden=100).partial_fit(X, y)

Its names are imported on first use, so that ``import twinpass`` (and the command line,
which imports it) stays cheap. The layers underneath are packages of their own:
``twinpass.kernels`` (compiled kernels), ``twinpass.devices`` (where the network runs),
``twinpass.runtime`` (learner, streams, tasks), ``twinpass.cli`` (the command line), and
``twinpass.river`` (River estimators; needs ``pip install 'twinpass[river]'``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("twinpass")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

#: Public name -> the module it lives in.
_API = {
    "OnlineLearner": "twinpass.runtime.learner",
    "RunResult": "twinpass.runtime.learner",
    "RuleConfig": "twinpass.runtime.config",
    "PAPER_NETWORK": "twinpass.runtime.config",
    "Params": "twinpass.runtime.params",
    "TwinpassRegressor": "twinpass.runtime.estimators",
    "StreamForecaster": "twinpass.runtime.streaming",
    "make_device": "twinpass.devices.registry",
    "Device": "twinpass.devices.base",
    # The exception tree, through the runtime's re-export (one place for its home).
    "TwinpassError": "twinpass.runtime",
    "ConfigError": "twinpass.runtime",
    "DataError": "twinpass.runtime",
    "ShapeError": "twinpass.runtime",
    "CheckpointError": "twinpass.runtime",
    "DivergenceError": "twinpass.runtime",
    "DeviceError": "twinpass.runtime",
}

__all__ = [  # noqa: RUF022 - in the order of _API
    "__version__",
    "OnlineLearner",
    "RunResult",
    "RuleConfig",
    "PAPER_NETWORK",
    "Params",
    "TwinpassRegressor",
    "StreamForecaster",
    "make_device",
    "Device",
    "TwinpassError",
    "ConfigError",
    "DataError",
    "ShapeError",
    "CheckpointError",
    "DivergenceError",
    "DeviceError",
]

if TYPE_CHECKING:
    from twinpass.devices.base import Device
    from twinpass.devices.registry import make_device
    from twinpass.runtime import (
        CheckpointError,
        ConfigError,
        DataError,
        DeviceError,
        DivergenceError,
        ShapeError,
        TwinpassError,
    )
    from twinpass.runtime.config import PAPER_NETWORK, RuleConfig
    from twinpass.runtime.estimators import TwinpassRegressor
    from twinpass.runtime.learner import OnlineLearner, RunResult
    from twinpass.runtime.params import Params
    from twinpass.runtime.streaming import StreamForecaster


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'twinpass' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
