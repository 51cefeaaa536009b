"""``twinpass devices``: the backends a network can learn on, and what each can do.

The list comes from :data:`twinpass.devices.registry.BACKENDS`, the same registry that the
``--device`` options and the device contract tests use, so what is listed is what exists.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from twinpass.devices.base import DeviceInfo
from twinpass.devices.registry import backend_infos

from .display import Reporter

COLUMNS = ("name", "description", "rules", "dtypes", "exact")


def info_record(info: DeviceInfo) -> dict[str, Any]:
    """A backend's info as JSON-ready plain data (tuples become lists)."""
    return json.loads(json.dumps(asdict(info)))


def info_row(info: DeviceInfo) -> list[str]:
    """A backend's info as table cells."""
    presets = info.extra.get("presets")
    description = info.description
    if presets:
        # Names only; what each preset is, is in `twinpass devices --json`.
        description += "; presets: " + ", ".join(presets)
    return [
        info.name,
        description,
        ", ".join(info.rules),
        ", ".join(info.dtypes),
        "yes" if info.exact else "no",
    ]


@click.command()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON list (one object per backend, every DeviceInfo field) instead of a table.",
)
def devices(as_json: bool) -> None:
    """List the available device backends and their capabilities.

    A backend is chosen by a spec NAME[:OPTION], e.g. host or host:float64 (the host
    backend's option is its dtype) or analog:pcm (the analog backend's option is its
    preset: pcm, rram or ideal; --noise-scale scales its noise). "exact" means
    arithmetic equal to the float reference: no device noise or quantisation.
    """
    infos = backend_infos()
    if as_json:
        click.echo(json.dumps([info_record(i) for i in infos], indent=2))
        return
    Reporter().table("Device backends", COLUMNS, [info_row(i) for i in infos])
