"""Command-line options shared by several commands, each declared once: the learning rule's
(every command that learns), the device's, and --seed, --hidden, --json-out, --quiet, the
stream's data options and the cluster's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from twinpass.runtime.config import (
    BPTT_MODES,
    FEEDBACKS,
    READOUTS,
    RULES,
    RuleConfig,
)
from twinpass.runtime.csv_rows import BAD_ROW_POLICIES
from twinpass.runtime.run import ON_DIVERGENCE
from twinpass.runtime.streaming import TARGET_MODES

_DEFAULT = RuleConfig()

#: The parameter names that :func:`rule_options` adds.
RULE_OPTION_NAMES = (
    "rule",
    "decorrelation",
    "lr",
    "sigma",
    "eps",
    "window",
    "optimizer",
    "two_noisy_passes",
    "resync_every",
    "output_cap",
    "gain",
    "readout",
    "readout_inputs",
    "forgetting",
    "readout_p0",
    "readout_step",
    "leak",
    "spectral_radius",
    "input_scale",
    "lr_hidden",
    "radius_bound",
    "guard_every",
    "bptt_mode",
    "clip",
    "feedback",
    "reference",
)

#: Options whose value None means "RuleConfig's default" (they are only passed when given).
_OPTIONAL_FIELDS = RULE_OPTION_NAMES[RULE_OPTION_NAMES.index("readout") : -1]

#: ``--dtype``, shared by the commands that build a network.
dtype_option = click.option(
    "--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True
)


def is_explicit(ctx: click.Context, name: str) -> bool:
    """Whether the user set option ``name`` (command line or environment), not its default."""
    return ctx.get_parameter_source(name) in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    )


def given_options(ctx: click.Context) -> dict[str, Any]:
    """The options the user set (not defaults), by parameter name, for the run's resume
    checks; ``rule`` is True if any option of the learning rule was set."""
    given = {name: value for name, value in ctx.params.items() if is_explicit(ctx, name)}
    if any(k in given for k in RULE_OPTION_NAMES):
        given["rule"] = True
    return given


def rule_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --rule, --decorrelation, --lr, ... to a click command (collected in **kwargs)."""
    options = [
        click.option(
            "--rule",
            type=click.Choice(RULES),
            default="anp",
            show_default=True,
            help="anp: activity-based node perturbation; np: node perturbation; "
            "wp: weight perturbation; bp: truncated backprop (baseline); the online gradient "
            "rules rtrl (exact, O(N³) memory), eprop (eligibility traces), uoro (unbiased "
            "rank-one estimate).",
        ),
        click.option(
            "--decorrelation/--no-decorrelation",
            default=False,
            show_default=True,
            help="Add the decorrelation rule (DANP, DNP, DWP, DBP).",
        ),
        click.option(
            "--lr", type=float, default=_DEFAULT.lr, show_default=True, help="Learning rate."
        ),
        click.option(
            "--sigma",
            type=float,
            default=_DEFAULT.sigma,
            show_default=True,
            help="Perturbation standard deviation.",
        ),
        click.option(
            "--eps",
            type=float,
            default=_DEFAULT.eps,
            show_default=True,
            help="Decorrelation learning rate.",
        ),
        click.option(
            "--window",
            "-K",
            type=click.IntRange(1),
            default=None,
            help=f"BP: truncation window K (1 = one-step BP) [default: {_DEFAULT.bptt_window}; "
            "reference: 1].",
        ),
        click.option(
            "--optimizer",
            type=click.Choice(["sgd", "adam"]),
            default=None,
            help="BP only: SGD or Adam [default: adam].",
        ),
        click.option(
            "--two-noisy-passes",
            is_flag=True,
            help="Perturb both replicas; learn from measured differences only.",
        ),
        click.option(
            "--resync-every",
            type=click.IntRange(0),
            default=None,
            help=f"Copy replica 1's hidden state into replica 2 every k steps "
            f"(0 never) [default: {_DEFAULT.resync_every}; reference: 0].",
        ),
        click.option(
            "--output-cap/--no-output-cap",
            default=None,
            help="Cap ANP's output step at the normalised-LMS bound [default: on; reference: off].",
        ),
        click.option(
            "--gain",
            type=float,
            default=None,
            help="Factor of the ANP step [default: sqrt(n_in + N + n_out)].",
        ),
        click.option(
            "--readout",
            type=click.Choice(READOUTS),
            default=None,
            help="How the readout learns: rls (recursive least squares, exact), nlms "
            "(normalised LMS), anp (the rule's own estimate, the paper's) [default: rls for "
            "anp/np, the rule's own for wp/bp].",
        ),
        click.option(
            "--readout-inputs/--no-readout-inputs",
            default=None,
            help="The readout sees [hidden, input, 1] (a direct input path and a bias) "
            f"[default: {'on' if _DEFAULT.readout_inputs else 'off'}; reference: off].",
        ),
        click.option(
            "--forgetting",
            type=float,
            default=None,
            help=f"RLS forgetting factor λ in (0, 1] [default: {_DEFAULT.forgetting:g}].",
        ),
        click.option(
            "--readout-p0",
            type=float,
            default=None,
            help="RLS initial inverse covariance P0 = p0 I, > 0 "
            f"[default: {_DEFAULT.readout_p0:g}].",
        ),
        click.option(
            "--readout-step",
            type=float,
            default=None,
            help=f"NLMS step μ in (0, 2) [default: {_DEFAULT.readout_step:g}].",
        ),
        click.option(
            "--leak",
            type=float,
            default=None,
            help=f"Leak α of the hidden units in (0, 1] (1: no leak) [default: {_DEFAULT.leak:g}].",
        ),
        click.option(
            "--spectral-radius",
            type=float,
            default=None,
            help="Draw R with this spectral radius, > 0 "
            f"[default: {_DEFAULT.spectral_radius}; reference: Xavier].",
        ),
        click.option(
            "--input-scale",
            type=float,
            default=None,
            help="Draw A uniform in [-s, s], s > 0 "
            f"[default: {_DEFAULT.input_scale}; reference: Xavier].",
        ),
        click.option(
            "--lr-hidden",
            type=float,
            default=None,
            help="Learning rate of the input and recurrent weights [default: "
            + ("--lr" if _DEFAULT.lr_hidden is None else f"{_DEFAULT.lr_hidden:g}")
            + "].",
        ),
        click.option(
            "--radius-bound",
            type=float,
            default=None,
            help="Keep R's spectral radius at most this, checked every --guard-every steps "
            f"[default: {_DEFAULT.radius_bound}; reference: off].",
        ),
        click.option(
            "--guard-every",
            type=click.IntRange(1),
            default=None,
            help="Steps between two checks of R's spectral radius "
            f"[default: {_DEFAULT.guard_every}].",
        ),
        click.option(
            "--bptt-mode",
            type=click.Choice(BPTT_MODES),
            default=None,
            help="BP: chunked (one update per window of K steps) or sliding (every step) "
            f"[default: {_DEFAULT.bptt_mode}; reference: sliding].",
        ),
        click.option(
            "--clip",
            type=float,
            default=None,
            help=f"BP: global gradient-norm clipping threshold [default: {_DEFAULT.clip}].",
        ),
        click.option(
            "--feedback",
            type=click.Choice(FEEDBACKS),
            default=None,
            help="rtrl, eprop, uoro: send the output error back through the readout's "
            "weights (symmetric, the gradient) or a fixed random matrix (random) "
            "[default: symmetric].",
        ),
        click.option(
            "--reference",
            is_flag=True,
            help="The published method unchanged (no resync, no output cap; BP with "
            "Adam, K=1): for reproducing the paper, not for stable learning.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def rule_config_from_options(opts: dict[str, Any]) -> RuleConfig:
    """Build the RuleConfig that the options describe (consumes them from ``opts``)."""
    keys = RULE_OPTION_NAMES
    o = {k: opts.pop(k) for k in keys}
    fields: dict[str, Any] = {
        "decorrelation": o["decorrelation"],
        "lr": o["lr"],
        "sigma": o["sigma"],
        "eps": o["eps"],
        "two_noisy_passes": o["two_noisy_passes"],
        "gain": o["gain"],
    }
    if o["optimizer"] is not None:
        fields["optimizer"] = o["optimizer"]
    if o["resync_every"] is not None:
        fields["resync_every"] = o["resync_every"]
    if o["output_cap"] is not None:
        fields["output_cap"] = o["output_cap"]
    fields.update({k: o[k] for k in _OPTIONAL_FIELDS if o[k] is not None})
    if o["window"] is not None:
        fields["bptt_window"] = o["window"]
    if o["reference"]:
        return RuleConfig.reference(o["rule"], **fields)
    return RuleConfig(rule=o["rule"], **fields)


#: The parameter names that :func:`device_options` adds.
DEVICE_OPTION_NAMES = ("device", "noise_scale", "analog_update")


def device_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --device, --noise-scale and --analog-update to a click command."""
    options = [
        click.option(
            "--device",
            default="host",
            show_default=True,
            help="Where the network learns: host, host:float64, analog[:pcm|rram|ideal] "
            "(a simulated noisy crossbar), serial:PORT (a microcontroller), or hil (the "
            "firmware simulator, started for the run); see `twinpass devices`.",
        ),
        click.option(
            "--noise-scale",
            type=float,
            default=None,
            help="analog: multiply every noise of the preset (0 = noiseless) [default: 1].",
        ),
        click.option(
            "--analog-update",
            type=click.Choice(["mixed", "stochastic"]),
            default=None,
            help="analog: mixed-precision accumulate-and-transfer, or stochastic pulses "
            "[default: mixed].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


#: --on-divergence on the command line -> the learner's ``on_divergence``.
ON_DIVERGENCE_CHOICES = ON_DIVERGENCE

on_divergence_option = click.option(
    "--on-divergence",
    type=click.Choice(list(ON_DIVERGENCE_CHOICES)),
    default="stop",
    show_default=True,
    help="When learning diverges (a non-finite loss or update, a runaway weight): stop with "
    "an error (the last checkpoint stays intact), or roll back to the last good parameters, "
    "drop the diverged step and go on.",
)


def cli_wording(message: str) -> str:
    """A learner's divergence message in the command line's words."""
    return message.replace("on_divergence='rollback'", "--on-divergence rollback")


link_retries_option = click.option(
    "--link-retries",
    type=click.IntRange(0, 100),
    default=None,
    help="serial: resends of a request before the link resynchronises, and again after it, "
    "before the run stops [default: 5]. Frames shrink after a resend, so a noisy line "
    "needs few.",
)


# Options that several commands declare: declared here once, with one meaning and one
# range (a command may pick another default, e.g. fewer hidden units on a firmware).

#: The seeds a run accepts: what a firmware's 32-bit generator and NumPy both take.
SEED_RANGE = click.IntRange(0, 2**32 - 1)

seed_option = click.option(
    "--seed",
    type=SEED_RANGE,
    default=0,
    show_default=True,
    help="Seeds everything random in the run (weights, noise, the built-in series, a "
    "search): same seed, same bits.",
)

quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="Print nothing but errors; results go to files."
)


def hidden_option(default: int = 100) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--hidden/-N``: the number of hidden units (at least 1)."""
    return click.option(
        "--hidden",
        "-N",
        type=click.IntRange(1),
        default=default,
        show_default=True,
        help="Hidden units.",
    )


def json_out_option(contents: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--json-out FILE``: the command's results as JSON (``contents`` says which)."""
    return click.option(
        "--json-out",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"Write {contents} as JSON (atomically).",
    )


baud_option = click.option(
    "--baud",
    type=click.IntRange(1),
    default=115200,
    show_default=True,
    help="serial: the baud rate (a pty ignores it; it scales the timeouts).",
)

scheduler_option = click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run on a running Dask scheduler (e.g. tcp://10.0.0.5:8786, see `dask scheduler`) "
    "[default: a local cluster started for the run].",
)

jobs_option = click.option(
    "--jobs",
    type=click.IntRange(1),
    default=None,
    help="Workers of the local Dask cluster [default: one per core].",
)


def column_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """``--columns a,b,c`` as a list of names (None: not given); an empty name is an error."""
    if value is None:
        return None
    names = [c.strip() for c in value.split(",")]
    if not all(names):
        raise click.BadParameter(f"{value!r} has an empty column name")
    return names


def stream_data_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add what a stream is read and predicted from: --source, --columns, --target,
    --horizon, --target-input, --target-mode and --on-bad-row (stream and tune)."""
    options = [
        click.option(
            "--source",
            default="mackey-glass",
            show_default=True,
            help="mackey-glass (built in), csv:PATH, - (CSV on stdin) or serial:URL (pyserial "
            "URL or device path; lines of comma-separated numbers). tune replays the stream "
            "once per trial: mackey-glass or csv:PATH only.",
        ),
        click.option(
            "--columns",
            callback=column_list,
            default=None,
            help="Input columns, comma-separated [default: every numeric column but the target].",
        ),
        click.option(
            "--target", default=None, help="Column to predict (needed if several are numeric)."
        ),
        click.option(
            "--horizon", type=click.IntRange(1), default=1, show_default=True, help="Rows ahead."
        ),
        click.option(
            "--target-input/--no-target-input",
            default=True,
            show_default=True,
            help="Whether the target's own value is an input; --no-target-input learns from "
            "the other columns only (an exogenous model, NARMA10's u -> y). Persistence is "
            "still scored.",
        ),
        click.option(
            "--target-mode",
            type=click.Choice(TARGET_MODES),
            default="level",
            show_default=True,
            help="level: learn the target's standardised value; delta: learn its change over "
            "the horizon (persistence is the zero forecast), mapped back to levels for "
            "scoring.",
        ),
        click.option(
            "--on-bad-row",
            type=click.Choice(BAD_ROW_POLICIES),
            default="error",
            show_default=True,
            help="A malformed row (text in a numeric field, a wrong number of fields) stops "
            "with an error naming file, line and column, or is skipped and counted. An empty "
            "field is not malformed: a missing input carries its last value, a missing target "
            "is not learned.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f
