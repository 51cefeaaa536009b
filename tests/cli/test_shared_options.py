"""Options that several commands take are declared once: one name, one meaning, one range.

Checked on the commands as the ``twinpass`` group holds them, and through the command line
(an out-of-range --seed is refused the same way by every command that has it).
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from twinpass.cli.main import cli

#: Options whose declaration every command shares (the default may differ: --hidden).
SHARED = ("seed", "hidden", "json_out", "quiet", "baud", "scheduler", "jobs", "source")


def _commands(group: click.Group = cli, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def _declaration(p: click.Parameter) -> tuple:
    t = p.type
    bounds = (getattr(t, "min", None), getattr(t, "max", None))
    assert isinstance(p, click.Option)
    return (tuple(p.opts), tuple(p.secondary_opts), type(t).__name__, bounds, p.help, p.is_flag)


def _by_option() -> dict[str, dict[str, click.Parameter]]:
    found: dict[str, dict[str, click.Parameter]] = {}
    for path, command in _commands():
        for p in command.params:
            if p.name in SHARED:
                found.setdefault(p.name, {})[path] = p
    return found


def test_every_shared_option_has_one_declaration() -> None:
    found = _by_option()
    assert {"stream", "train", "hil", "tune", "firmware-sim"} <= set(found["seed"])
    assert {"stream", "train", "hil", "tune"} <= set(found["hidden"])
    assert {"stream", "train", "hil"} <= set(found["json_out"])
    assert {"stream", "train", "hil", "tune", "reproduce", "deploy"} <= set(found["quiet"])
    for name in SHARED:
        if name == "baud":
            # firmware-sim's --baud throttles the simulated line (its own meaning).
            found[name].pop("firmware-sim", None)
        if name == "source":
            # device pull's --source is which model it copies (live or flash), not a stream.
            found[name].pop("device pull", None)
        if name == "json_out":  # the help says what each command writes
            decl = {path: _declaration(p)[:4] for path, p in found[name].items()}
        else:
            decl = {path: _declaration(p) for path, p in found[name].items()}
        assert len(set(decl.values())) == 1, (name, decl)


def test_seed_takes_what_a_32_bit_generator_holds_in_every_command() -> None:
    for path, p in _by_option()["seed"].items():
        assert (p.type.min, p.type.max) == (0, 2**32 - 1), path  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["stream", "train", "hil", "tune", "firmware-sim"])
def test_an_out_of_range_seed_is_refused_alike(command: str) -> None:
    for bad in ("-1", str(2**32)):
        result = CliRunner().invoke(cli, [command, "--seed", bad])
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--seed'" in result.output
        assert "0<=x<=4294967295" in result.output


@pytest.mark.parametrize("command", ["stream", "train", "hil", "tune", "reproduce", "deploy"])
def test_quiet_has_a_short_form_everywhere(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "-q, --quiet" in result.output


def test_tune_reads_columns_as_stream_does() -> None:
    for command in ("stream", "tune"):
        result = CliRunner().invoke(cli, [command, "--columns", "a,,b"])
        assert result.exit_code == 2 and "has an empty column name" in result.output
