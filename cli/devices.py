"""``twinpass devices``: the backends a network can learn on, and what each can do.

The list comes from :data:`twinpass.devices.registry.BACKENDS`, the same registry that the
``--device`` options and the device contract tests use, so what is listed is what exists.
Each backend is one block of lines wrapped to the terminal (at most 100 columns, so that
it reads in an 80-column one); ``--json`` gives every field.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import asdict
from typing import Any

import click

from twinpass.devices.base import DeviceInfo
from twinpass.devices.registry import backend_infos

TITLE = "Device backends"

#: The widest a block is wrapped to, however wide the terminal.
MAX_WIDTH = 100

#: The narrowest (a terminal narrower than this still gets this width).
MIN_WIDTH = 40


def info_record(info: DeviceInfo) -> dict[str, Any]:
    """A backend's info as JSON-ready plain data (tuples become lists)."""
    return json.loads(json.dumps(asdict(info)))


def info_fields(info: DeviceInfo) -> list[tuple[str, str]]:
    """A backend's info as labelled lines: rules, readouts, dtypes, exact (and presets)."""
    readouts = ", ".join(info.readouts)
    if "port" in info.extra or "firmware" in info.extra:
        # A firmware says in its HELLO which readouts it runs; listed here: without a port.
        readouts += " (as the firmware's HELLO reports)"
    fields = [
        ("rules", ", ".join(info.rules)),
        ("readouts", readouts),
        ("dtypes", ", ".join(info.dtypes)),
        ("exact", "yes" if info.exact else "no"),
    ]
    presets = info.extra.get("presets")
    if presets:
        # Names only; what each preset is, is in `twinpass devices --json`.
        fields.append(("presets", ", ".join(presets)))
    return fields


def info_block(info: DeviceInfo, width: int) -> list[str]:
    """A backend as lines no wider than ``width``: its name, its description wrapped, then
    one labelled line per field (wrapped under its value)."""
    lines = [info.name]
    lines += textwrap.wrap(info.description, width, initial_indent="  ", subsequent_indent="  ")
    for label, value in info_fields(info):
        head = f"  {label + ':':<10}"
        lines += textwrap.wrap(
            value, width, initial_indent=head, subsequent_indent=" " * len(head)
        ) or [head.rstrip()]
    return lines


def output_width() -> int:
    """The terminal's width (or $COLUMNS), kept between MIN_WIDTH and MAX_WIDTH."""
    return max(MIN_WIDTH, min(MAX_WIDTH, shutil.get_terminal_size((80, 24)).columns))


@click.command()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON list (one object per backend, every DeviceInfo field) instead of text.",
)
def devices(as_json: bool) -> None:
    """List the available device backends and their capabilities.

    A backend is chosen by a spec NAME[:OPTION], e.g. host or host:float64 (the host
    backend's option is its dtype) or analog:pcm (the analog backend's option is its
    preset: pcm, rram or ideal; --noise-scale scales its noise). "rules" are the learning
    rules it runs, "readouts" how its readout may learn (--readout); "exact" means
    arithmetic equal to the float reference: no device noise or quantisation.
    """
    infos = backend_infos()
    if as_json:
        click.echo(json.dumps([info_record(i) for i in infos], indent=2))
        return
    width = output_width()
    click.echo(TITLE)
    for info in infos:
        click.echo("")
        for line in info_block(info, width):
            click.echo(line)
