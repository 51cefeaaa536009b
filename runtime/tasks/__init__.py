"""The paper's tasks as arrays: Mackey-Glass, copy memory and weather forecasting.

Each constructor returns a `Task` (train and test `Split`s of shape (S, T, n), float64,
plus JSON metadata); `make_task` builds one by name, for the command line and for
rebuilding a task from ``metadata["params"]``. `MackeyGlassStream` is the endless series
for streaming.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from twinpass.core.errors import ConfigError

from .base import Split, Task
from .copy_memory import CopyTask, make_copy
from .mackey_glass import STREAM_OFFSET, MackeyGlassStream, make_mackey_glass
from .weather import make_weather

__all__ = [
    "STREAM_OFFSET",
    "TASKS",
    "CopyTask",
    "MackeyGlassStream",
    "Split",
    "Task",
    "make_copy",
    "make_mackey_glass",
    "make_task",
    "make_weather",
]

_CONSTRUCTORS: dict[str, Callable[..., Task]] = {
    "mackey-glass": make_mackey_glass,
    "copy": make_copy,
    "weather": make_weather,
}
TASKS: tuple[str, ...] = tuple(_CONSTRUCTORS)

WTH_ENV = "TWINPASS_WTH"
"""Environment variable naming WTH.csv when ``make_task("weather")`` gets no ``path``."""


def make_task(name: str, **kwargs: Any) -> Task:
    """Build the task called ``name`` (one of `TASKS`) with its constructor's keywords.

    ``"weather"`` takes ``path=``; without it, the file named by $TWINPASS_WTH.
    Raises ConfigError for an unknown name or keyword.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in _CONSTRUCTORS:
        raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    constructor = _CONSTRUCTORS[key]
    accepted = list(inspect.signature(constructor).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"task {key!r} takes no keyword {', '.join(map(repr, unknown))}; "
            f"valid keywords: {', '.join(accepted)}"
        )
    if key == "weather" and kwargs.get("path") is None:
        env_path = os.environ.get(WTH_ENV)
        if not env_path:
            raise ConfigError(f"task 'weather' needs path= (WTH.csv), or ${WTH_ENV} set to it")
        kwargs["path"] = env_path
    return constructor(**kwargs)
