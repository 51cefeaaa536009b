"""The runtime: learning-rule configuration, the online learner, tasks and checkpoints.

>>> from twinpass.runtime import OnlineLearner, RuleConfig
>>> learner = OnlineLearner(n_in=1, n_out=1, n_hidden=100, config=RuleConfig(rule="anp"))
"""

from twinpass.core.errors import (
    CheckpointError,
    ClusterError,
    ConfigError,
    DataError,
    DeviceError,
    DivergenceError,
    ProtocolError,
    RemoteError,
    ShapeError,
    TwinpassError,
)

from .config import RuleConfig
from .learner import OnlineLearner, RunResult
from .params import Params

__all__ = [
    "CheckpointError",
    "ClusterError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "DivergenceError",
    "OnlineLearner",
    "Params",
    "ProtocolError",
    "RemoteError",
    "RuleConfig",
    "RunResult",
    "ShapeError",
    "TwinpassError",
]
