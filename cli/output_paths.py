"""Output paths checked before a run starts, so hours of learning never end in a traceback
because the results cannot be written (a missing folder, a read-only one, a directory)."""

from __future__ import annotations

import os

import click


def check_output_path(path: str | None, option: str) -> None:
    """Raise a one-line click error if ``path`` cannot be written; None passes."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        problem = "is a directory"
    elif not os.path.isdir(folder):
        problem = f"its folder {os.path.dirname(path) or '.'!r} does not exist"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"its folder {os.path.dirname(path) or '.'!r} is not writable"
    elif os.path.exists(path) and not os.access(path, os.W_OK):
        problem = "it is not writable"
    else:
        return
    raise click.BadParameter(f"cannot write {path!r}: {problem}", param_hint=option)


def check_output_paths(**paths: str | None) -> None:
    """``check_output_path`` for each option (``json_out=...`` names ``--json-out``)."""
    for name, path in paths.items():
        check_output_path(path, "--" + name.replace("_", "-"))
