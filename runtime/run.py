"""Runs and their resumption: the device a run is on, what a checkpoint records of its run,
and the checks that a resumed run is continued with the options it was made with.

The commands that learn (``twinpass stream``, ``twinpass train``) only wire their options to
this module. A checkpoint's user metadata holds the run's configuration in one of two
places, which :func:`run_config` reads alike:

- a stream's (:class:`twinpass.runtime.streaming.StreamSession`): ``{"stream": forecaster
  state, "run": {"config": CONFIG, "source": source state}}``;
- a training run's: ``{"config": CONFIG, "epochs": [epoch records]}``.

CONFIG records the device as ``device_spec`` (:func:`device_record`); checkpoints written
before devices existed have none and ran on the host (the checkpoint's ``device`` field).
Options given again on a resume that contradict the checkpoint raise :class:`ResumeClash`
(a ConfigError), with a message in the command line's words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twinpass.core.errors import ConfigError
from twinpass.devices.base import Device
from twinpass.devices.registry import make_device, parse_spec
from twinpass.devices.serial import SerialDevice
from twinpass.protocol.hyper import DEVICE_P0

from .checkpoint import load_checkpoint
from .config import PAPER_NETWORK, RuleConfig
from .learner import OnlineLearner
from .streaming import StreamForecaster

#: The options that choose a device (their parameter names).
DEVICE_OPTIONS = ("device", "noise_scale", "analog_update")

#: The command line's --on-divergence -> the learner's ``on_divergence``.
ON_DIVERGENCE = {"stop": "raise", "rollback": "rollback"}


class ResumeClash(ConfigError):
    """Options given on a resume contradict the run in the checkpoint."""


# -- the device --------------------------------------------------------------------------


def device_record(
    spec: str, noise_scale: float | None, analog_update: str | None
) -> dict[str, Any]:
    """What a run records of its device, enough to make the same device again."""
    return {"spec": spec, "noise_scale": noise_scale, "analog_update": analog_update}


def open_device(
    spec: str,
    noise_scale: float | None,
    analog_update: str | None,
    dtype: str,
    *,
    link_retries: int | None = None,
) -> tuple[Device, str]:
    """The device a spec and its options describe, and the dtype to compute in.

    ``link_retries``: a serial device's retry budget (None: its default; ignored by the
    other backends, which have no link). Raises ConfigError for a bad spec or an option
    that does not fit the device.
    """
    name, option = parse_spec(spec)
    kw: dict[str, Any] = {}
    if name == "serial" and link_retries is not None:
        kw["retries"] = link_retries
    if name != "analog":
        for flag, value in (("--noise-scale", noise_scale), ("--analog-update", analog_update)):
            if value is not None:
                raise ConfigError(f"{flag} is for the analog device, not {name}")
    else:
        if noise_scale is not None:
            kw["noise_scale"] = noise_scale
        if analog_update is not None:
            kw["update"] = analog_update
    if name == "host":
        if option is None:
            kw["dtype"] = dtype
        else:
            dtype = option
    elif dtype != "float32":
        raise ConfigError(f"the {name} device computes in float32, not {dtype}")
    device = make_device(spec, **kw)
    return device, dtype


def open_recorded_device(
    record: Mapping[str, Any], dtype: str, *, link_retries: int | None = None
) -> tuple[Device, str]:
    """:func:`open_device` for a :func:`device_record`."""
    return open_device(
        record["spec"],
        record["noise_scale"],
        record["analog_update"],
        dtype,
        link_retries=link_retries,
    )


def fit_rule_to_device(config: RuleConfig, device: Device, explicit: set[str]) -> RuleConfig:
    """The rule a device can run: RLS with the P0 a fixed-point device holds (10, measured
    stable there) where the configured P0 is beyond its format, the learner's network with
    the NLMS readout on a device that offers NLMS but not the configured readout, the
    paper's readout and units on a device that offers neither, unless the user asked for
    them explicitly.

    An explicit choice the device cannot run is left as it is: the device refuses it
    with a message naming what it offers.
    """
    info = device.info()
    p0_max = info.readout_p0_max
    if (
        config.readout == "rls"
        and "rls" in info.readouts
        and p0_max is not None
        and config.readout_p0 > p0_max
        and "readout_p0" not in explicit
    ):
        config = config.replace(readout_p0=min(DEVICE_P0, p0_max))
    if config.readout in info.readouts or explicit & {"readout", "readout_inputs", "leak"}:
        return config
    if "nlms" in info.readouts:
        # The exact readout's nearest a device runs: the learner's network, NLMS's step.
        return config.replace(readout="nlms")
    return config.replace(**PAPER_NETWORK)


def serial_identity(dev: Device) -> dict[str, Any] | None:
    """What tells a serial device apart after its model is loaded: board, firmware and the
    hash of its active model (None for the other devices)."""
    if not isinstance(dev, SerialDevice):
        return None
    hello = dev.link.hello()  # a fresh look: the load deployed this run's model
    return {
        "board": hello.board,
        "fw": hello.fw,
        "model_hash": hello.model_hash.hex() if hello.model_hash else None,
    }


def _both_serial(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return str(a["spec"]).startswith("serial:") and str(b["spec"]).startswith("serial:")


def check_same_serial_device(
    saved: Mapping[str, Any], want: Mapping[str, Any] | None, dev: SerialDevice
) -> None:
    """A resume on another port path continues only on the device the run was on: the same
    board and firmware, holding the model the run loaded (``want``: the run's
    ``device_identity``)."""
    hello = dev.link.hello_info
    assert hello is not None
    have = {
        "board": hello.board,
        "fw": hello.fw,
        "model_hash": hello.model_hash.hex() if hello.model_hash else None,
    }
    if not want or want != have or have["model_hash"] is None:
        raise ResumeClash(
            f"the checkpoint was made on {saved['spec']}; the device on "
            f"{dev.port} is not the same one (it holds "
            f"{have['board']} fw {have['fw']}, model {str(have['model_hash'])[:16]}; the run "
            f"was on {(want or {}).get('board')} fw {(want or {}).get('fw')}, model "
            f"{str((want or {}).get('model_hash'))[:16]}): drop --device to continue on "
            f"{saved['spec']}"
        )


# -- the checkpoint's record of its run --------------------------------------------------


def run_config(user: Mapping[str, Any]) -> dict[str, Any]:
    """The run's configuration in a checkpoint's user metadata, whichever command wrote it
    (empty if none)."""
    if "stream" in user:
        return dict(user.get("run", {}).get("config", {}))
    return dict(user.get("config", {}))


@dataclass(frozen=True)
class SavedRun:
    """What a checkpoint says of its run, read without building the learner."""

    command: str  # "stream" or "train" (a pulled or hand-made checkpoint: "train")
    config: dict[str, Any]
    device: dict[str, Any]  # a device_record
    user: dict[str, Any] = field(repr=False)


def saved_run(path: str) -> SavedRun:
    """The run recorded in the checkpoint at ``path`` (older ones: on the host)."""
    meta = load_checkpoint(path).meta
    user = dict(meta.get("user", {}))
    config = run_config(user)
    rec = config.get("device_spec")
    if rec is None:
        rec = device_record(str(meta.get("device", "host")), None, None)
    return SavedRun("stream" if "stream" in user else "train", config, dict(rec), user)


def _clash(parts: list[str], advice: str) -> None:
    if parts:
        raise ResumeClash("the checkpoint was made with " + "; ".join(parts) + advice)


# -- resuming a stream --------------------------------------------------------------------

_STREAM_ADVICE = (
    ": drop the clashing options to continue it, or start a new run with another --checkpoint"
)


@dataclass
class ResumedStream:
    """A stream run loaded from its checkpoint, with the values the checkpoint fixes."""

    forecaster: StreamForecaster
    device: Device
    device_spec: dict[str, Any]  # the record of the device it continues on
    config: dict[str, Any]  # the run's recorded configuration
    source_state: Any


def resume_stream(
    path: str,
    given: Mapping[str, Any],
    *,
    device: Mapping[str, Any],
    dtype: str,
    rule: RuleConfig,
    link_retries: int | None = None,
    on_open: Callable[[Device], object] | None = None,
) -> ResumedStream:
    """Load the stream run in ``path``, checking the options the user gave against it.

    ``given``: the options set explicitly, by parameter name (``device``, ``noise_scale``,
    ``analog_update``, ``source``, ``columns``, ``target``, ``horizon``, ``hidden``,
    ``seed``, ``dtype``, ``target_input``, ``target_mode``, ``metrics_every``,
    ``outlier_z``, ``on_divergence``; ``rule`` if any rule option was given, ``rule`` then
    being the configuration they describe). ``device``: the :func:`device_record` of the
    device options as they stand (defaults included). The device the run was on is opened again
    (``on_open(device)`` is called at once, so that the caller closes it on every exit
    path); a serial device on another port path must be the run's. Raises ResumeClash.
    """
    saved = saved_run(path)
    record = saved.device
    wanted = dict(device)
    device_given = any(k in given for k in DEVICE_OPTIONS)
    moved = device_given and saved.device != wanted and _both_serial(saved.device, wanted)
    if device_given and saved.device != wanted and not moved:
        raise ResumeClash(
            f"the checkpoint was made on the device {saved.device}: drop --device, "
            "--noise-scale and --analog-update to continue it"
        )
    if moved:
        record = wanted
    dev, _ = open_recorded_device(record, dtype, link_retries=link_retries)
    if on_open is not None:
        on_open(dev)
    if moved:  # the same device on another port path (a USB adapter re-plugged)?
        assert isinstance(dev, SerialDevice)
        check_same_serial_device(saved.device, saved.config.get("device_identity"), dev)
    forecaster, run_meta = StreamForecaster.load(path, device=dev)
    config = run_meta.get("config", {})
    check_stream_options(config, given, rule)
    check_stream_forecaster(forecaster, config, given)
    if "on_divergence" in given:  # how to react, not what was learned
        forecaster.learner.on_divergence = ON_DIVERGENCE[given["on_divergence"]]
    return ResumedStream(forecaster, dev, record, config, run_meta.get("source"))


def check_stream_options(
    saved: Mapping[str, Any], given: Mapping[str, Any], rule: RuleConfig
) -> None:
    """Options given again on a stream's resume must agree with the checkpoint's."""
    from .sources import parse_source_spec

    clashes = []
    if "source" in given:
        kind, _ = parse_source_spec(given["source"])
        if kind != saved.get("source_kind"):
            clashes.append(f"--source {saved.get('source')}")
    columns, target = given.get("columns"), given.get("target")
    wanted_target = target if target is not None else saved.get("target")
    names = list(dict.fromkeys(c for c in columns or [] if c != wanted_target))
    if columns is not None and names != saved.get("inputs"):
        clashes.append(f"--columns {','.join(saved.get('inputs', []))}")
    if target is not None and target != saved.get("target"):
        clashes.append(f"--target {saved.get('target')}")
    for name in ("horizon", "hidden", "seed", "dtype"):
        if name in given and given[name] != saved.get(name):
            clashes.append(f"--{name} {saved.get(name)}")
    if "rule" in given and rule.to_dict() != saved.get("rule"):
        clashes.append(f"the rule {saved.get('rule_name')} with {saved.get('rule')}")
    _clash(clashes, _STREAM_ADVICE)


def check_stream_forecaster(
    f: StreamForecaster, saved: Mapping[str, Any], given: Mapping[str, Any]
) -> None:
    """--target-input, --target-mode, --metrics-every and --outlier-z given again on a
    stream's resume must be the checkpoint's."""
    clashes = []
    if "target_input" in given and given["target_input"] != f.target_input:
        clashes.append("--target-input" if f.target_input else "--no-target-input")
    if "target_mode" in given and given["target_mode"] != f.target_mode:
        clashes.append(f"--target-mode {f.target_mode}")
    _clash(clashes, _STREAM_ADVICE)
    if "metrics_every" in given and given["metrics_every"] != saved.get("metrics_every"):
        raise ResumeClash(
            f"the checkpoint records metrics every {saved.get('metrics_every')} steps; "
            "drop --metrics-every to continue it"
        )
    if "outlier_z" in given and (given["outlier_z"] or None) != f.outlier_z:
        raise ResumeClash(
            f"the checkpoint was made with --outlier-z {f.outlier_z or 0:g}: drop --outlier-z "
            "to continue it"
        )


# -- resuming a training run --------------------------------------------------------------


@dataclass
class ResumedTraining:
    """A training run loaded from its checkpoint."""

    learner: OnlineLearner
    device: Device
    device_spec: dict[str, Any]
    config: dict[str, Any]  # the run's recorded configuration
    epochs: list[dict[str, Any]]  # the epoch records so far


def resume_training(
    path: str,
    given: Mapping[str, Any],
    *,
    device: Mapping[str, Any],
    dtype: str,
    on_open: Callable[[Device], object] | None = None,
) -> ResumedTraining:
    """Load the training run in ``path`` on the device it was made on (``given`` and
    ``device`` as for :func:`resume_stream`; the task and the other options are checked by
    :func:`check_training_options` once the task is made). Raises ResumeClash."""
    saved = saved_run(path)
    if any(k in given for k in DEVICE_OPTIONS) and saved.device != dict(device):
        raise ResumeClash(
            f"--resume continues the checkpoint's run on its device {saved.device}: drop "
            "--device/--noise-scale/--analog-update, or start a new run"
        )
    if saved.command == "stream":
        raise ResumeClash(
            f"{path} is a checkpoint of `twinpass stream`, not of train: continue "
            "it with `twinpass stream --checkpoint ... --resume`"
        )
    dev, _ = open_recorded_device(saved.device, dtype)
    if on_open is not None:
        on_open(dev)
    learner, user = OnlineLearner.load(path, device=dev)
    if "on_divergence" in given:
        learner.on_divergence = ON_DIVERGENCE[given["on_divergence"]]
    return ResumedTraining(
        learner, dev, saved.device, run_config(user), list(user.get("epochs", []))
    )


def training_task_options(
    saved: Mapping[str, Any], given: Mapping[str, Any], task: str, pairing: str, horizon: Any
) -> tuple[str, str, Any]:
    """The task, pairing and horizon a resumed training run goes on with: those given, or
    else the checkpoint's."""
    if "task" not in given:
        task = saved.get("task", task)
    params = saved.get("task_params", {})
    if task == "mackey-glass":
        pairing = pairing if "pairing" in given else params.get("pairing", pairing)
    if "horizon" not in given and "horizon" in params:
        horizon = params["horizon"]
    return task, pairing, horizon


def check_training_options(
    saved: Mapping[str, Any], task: Any, rule: RuleConfig, given: Mapping[str, Any]
) -> None:
    """Refuse to resume a training checkpoint with options that contradict it (``given``
    as for :func:`resume_stream`)."""
    conflicts = []
    if saved.get("task") != task.name or saved.get("task_params") != task.metadata.get(
        "params", {}
    ):
        conflicts.append(
            f"task {task.name} {task.metadata.get('params')} "
            f"(checkpoint: {saved.get('task')} {saved.get('task_params')})"
        )
    for name in ("hidden", "seed", "batch", "dtype"):
        if name in given and saved.get(name) != given[name]:
            conflicts.append(f"--{name} {given[name]} (checkpoint: {saved.get(name)})")
    if "rule" in given and saved.get("rule") != rule.to_dict():
        conflicts.append(f"rule {rule.name} {rule.to_dict()} (checkpoint: {saved.get('rule')})")
    if conflicts:
        raise ResumeClash(
            "--resume continues the checkpoint's run; these options contradict it: "
            + "; ".join(conflicts)
            + ". Drop them, or start a new run without --resume."
        )
