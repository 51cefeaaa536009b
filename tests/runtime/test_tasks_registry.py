"""make_task: names, keywords and the errors that say what is valid."""

from __future__ import annotations

import numpy as np
import pytest

from twinpass.core.errors import ConfigError, ShapeError
from twinpass.runtime.tasks import TASKS, Split, Task, make_task


def test_task_names() -> None:
    assert TASKS == ("mackey-glass", "copy", "weather")


def test_names_are_normalised() -> None:
    task = make_task("Mackey_Glass", length=50)
    assert task.name == "mackey-glass"
    assert task.train.inputs.shape == (1, 50, 1)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown task 'lorenz'; valid tasks: mackey-glass, copy"):
        make_task("lorenz")


def test_unknown_keyword_is_named() -> None:
    with pytest.raises(ConfigError, match=r"takes no keyword 'lenght'; valid keywords: length"):
        make_task("copy", lenght=5)


def test_split_and_task_check_their_arrays() -> None:
    good = np.zeros((2, 5, 3))
    with pytest.raises(ShapeError):
        Split(good.astype(np.float32), good)
    with pytest.raises(ShapeError):
        Split(good, np.zeros((2, 4, 1)))
    with pytest.raises(ShapeError):
        Task("t", Split(good, good), Split(np.zeros((1, 5, 4)), np.zeros((1, 5, 3))), {})
    task = Task("t", Split(good, good[..., :1]), Split(good, good[..., :1]), {})
    assert (task.n_in, task.n_out) == (3, 1)
    assert task.split("test") is task.test
    with pytest.raises(ConfigError):
        task.split("val")
