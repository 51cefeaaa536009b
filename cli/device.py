"""``twinpass device info|pull|reset``: look at, copy from and reset a device on a port."""

from __future__ import annotations

import json
from typing import Any

import click

from twinpass.core.errors import DeviceError
from twinpass.protocol import model_image as mi
from twinpass.protocol.hyper import Hyper
from twinpass.protocol.messages import MsgType
from twinpass.runtime.config import PAPER_NETWORK, RuleConfig
from twinpass.runtime.learner import OnlineLearner
from twinpass.runtime.params import Params

from .display import Reporter
from .serial_common import open_device, port_options


@click.group()
def device() -> None:
    """A twinpass device on a serial port: its capabilities, its model, a reset."""


def _plain(value: Any) -> Any:
    """JSON-ready: bytes as hex."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@device.command()
@port_options
@click.option("--json", "as_json", is_flag=True, help="Print HELLO and STATS as JSON.")
def info(port: str, baud: int, as_json: bool) -> None:
    """What the device is, what it can do, which model it holds, and its counters."""
    dev = open_device(port, baud)
    try:
        hello = dev.link.hello_info
        assert hello is not None
        stats = dev.link.request(MsgType.STATS)
    finally:
        dev.close()
    record = {"hello": _plain(hello.payload), "epoch": hello.epoch, "stats": _plain(stats)}
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    p = hello.payload
    rows: list[list[Any]] = [
        ["board", hello.board],
        ["firmware", hello.fw],
        ["protocol", f"{hello.proto[0]}.{hello.proto[1]}"],
        ["boot", f"{p.get('boot_id')} (epoch {hello.epoch})"],
        ["model", _model_line(p)],
    ]
    rows += [[f"caps.{k}", _fmt(v)] for k, v in sorted((p.get("caps") or {}).items())]
    rows += [[f"stats.{k}", _fmt(v)] for k, v in sorted(stats.items())]
    Reporter().table(f"device on {port}", ["field", "value"], rows)


def _fmt(v: Any) -> str:
    return ", ".join(map(str, v)) if isinstance(v, list) else str(v)


def _model_line(p: dict[str, Any]) -> str:
    if p.get("model_state") in (None, "none"):
        return "none"
    shape = "-".join(map(str, p.get("shape") or [])) or "?"
    digest = p.get("model_hash")
    digest = bytes(digest).hex()[:16] if isinstance(digest, bytes | bytearray) else "?"
    return f"{shape} {p.get('model_state')} in slot {p.get('active_slot')}, sha256 {digest}"


def rule_of(hyper: Hyper) -> RuleConfig:
    """The float rule configuration of an image's fixed-point hyperparameters (the
    firmwares run the paper's network and readout)."""
    return RuleConfig(
        **PAPER_NETWORK,
        rule="anp",
        lr=hyper.lr_q / 2.0**32,
        sigma=hyper.sigma_q / 2.0**16,
        eps=hyper.eps_q / 2.0**32,
        gain=hyper.gain_q / 2.0**16 if hyper.gain_q > 0 else None,
        resync_every=hyper.resync_every,
        output_cap=hyper.output_cap,
        two_noisy_passes=hyper.two_noisy,
        decorrelation=hyper.decorrelation,
    )


@device.command()
@port_options
@click.option(
    "--out", "-o", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write."
)
@click.option(
    "--source",
    type=click.Choice(["live", "flash"]),
    default="live",
    show_default=True,
    help="live: the weights as learned now; flash: the stored (deployed or saved) model.",
)
def pull(port: str, baud: int, out: str, source: str) -> None:
    """Copy the device's model into a checkpoint that `train`/`stream` can resume from.

    The checkpoint holds the device's weights (dequantised to float32) and its rule; the
    learner's state in it starts from zero (a device's fixed-point state does not carry
    over to the float learner).
    """
    dev = open_device(port, baud)
    try:
        image = dev.read_image(source=source)
        hello = dev.link.hello_info
    finally:
        dev.close()
    try:
        model = mi.parse(image)
    except mi.ModelImageError as exc:
        raise DeviceError(f"the device sent a malformed model image: {exc}") from exc
    params = Params.from_arrays(mi.dequantise(model, "float32"))
    learner = OnlineLearner(
        model.n_in, model.n_out, model.n_hidden, rule_of(model.hyper), params=params
    )
    learner.save(
        out,
        {
            "pulled_from": {
                "board": hello.board if hello else "?",
                "fw": hello.fw if hello else "?",
                "source": source,
                "image_sha256": mi.sha256(image).hex(),
            }
        },
    )
    click.echo(
        f"wrote {out}: {model.n_in}-{model.n_hidden}-{model.n_out} {learner.config.name} "
        f"({source} model, image sha256 {mi.sha256(image).hex()[:16]})"
    )


@device.command()
@port_options
@click.option(
    "--what",
    type=click.Choice(["state", "model", "device"]),
    default="device",
    show_default=True,
    help="state: zero the hidden states; model: reload the stored model (drop what was "
    "learned since); device: reboot (a pending, unconfirmed model reverts).",
)
def reset(port: str, baud: int, what: str) -> None:
    """Reset the device's state, its model, or the whole device."""
    dev = open_device(port, baud)
    try:
        dev.link.request(MsgType.RESET, {"what": what})
    finally:
        dev.close()
    click.echo(f"reset {what} on {port}")
