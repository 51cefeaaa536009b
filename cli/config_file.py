"""``--config FILE``: option values from a file, such as the setting ``twinpass tune`` found.

The file is JSON: ``{"format": "twinpass.config", "version": 1, "options": {...}}``, the
options by parameter name (``lr_hidden`` or ``lr-hidden``). They become the command's
defaults, so an option given on the command line still wins. A name the command does not
have, or a value its option refuses, is an error naming the file and the option.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from twinpass.runtime.tune import CONFIG_FORMAT, CONFIG_VERSION


def read_config_file(path: str) -> dict[str, Any]:
    """The ``options`` of a config file, checked for format and version."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise click.BadParameter(f"{path}: {e.strerror}", param_hint="--config") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"{path}: not a JSON file ({e})", param_hint="--config") from None
    if not isinstance(data, dict) or data.get("format") != CONFIG_FORMAT:
        raise click.BadParameter(
            f'{path}: not a twinpass config file (no "format": "{CONFIG_FORMAT}")',
            param_hint="--config",
        )
    if data.get("version") != CONFIG_VERSION:
        raise click.BadParameter(
            f"{path}: config file version {data.get('version')}, this twinpass reads "
            f"version {CONFIG_VERSION}",
            param_hint="--config",
        )
    options = data.get("options")
    if not isinstance(options, dict):
        raise click.BadParameter(f'{path}: "options" must be an object', param_hint="--config")
    return {str(k).replace("-", "_"): v for k, v in options.items()}


def _apply(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    options = read_config_file(value)
    params = {p.name: p for p in ctx.command.params if p.name and p.name != param.name}
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise click.BadParameter(
            f"{value}: twinpass {ctx.command.name} has no option "
            + ", ".join("--" + u.replace("_", "-") for u in unknown),
            param_hint="--config",
        )
    for name, raw in options.items():
        p = params[name]
        try:
            # The option's own type checks the value (ranges, choices) as on the command line.
            options[name] = p.type_cast_value(ctx, raw)
        except click.BadParameter as e:
            flag = "--" + name.replace("_", "-")
            raise click.BadParameter(
                f"{value}: {flag} = {raw!r}: {e.message}", param_hint="--config"
            ) from None
    ctx.default_map = {**(ctx.default_map or {}), **options}
    return value


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--config FILE`` (read before every other option; the command line wins)."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=_apply,
        help="Option values from a JSON file (e.g. the best setting `twinpass tune` wrote); "
        "options on the command line win.",
    )(f)
