"""Parameters of the simulated analog substrate, with presets and their published sources.

Every weight of the crossbar tiles is a differential pair of conductances,
``w = scale * (g+ - g-)``, with conductances normalised to the nominal device maximum
(``g = 1`` is ``g_max``; the PCM formulas below take ``g_max = 25 µS`` as in IBM aihwkit's
``PCMLikeNoiseModel``). ``scale`` is chosen per tile when a model is loaded:
``headroom * max|W|`` maps to the largest representable pair difference (twinpass's
choice: 2 for pcm and rram, where a wider range costs noise and step size in weight units;
4 for ideal, where it costs nothing and a task may need weights to grow further).

Components and the source of each default (``pcm`` preset unless noted):

- **Programming noise** (a write: load, and the reprogramming of a PCM pair on refresh):
  ``g = g_target + prog_scale * sigma(g) N(0, 1)``, clipped to ``[0, g_max_device]``, with
  ``sigma(g) = c0 + c1 g + c2 g²`` in µS at ``g_max = 25 µS``: ``(0.26348, 1.9650,
  -1.1731)``, the fit of aihwkit's ``PCMLikeNoiseModel`` (Nandakumar et al., ICECS 2019;
  calibrated on a 1-million-device PCM array, Joshi et al., Nat. Commun. 11, 2473, 2020).
- **Drift** ``g(t) = g0 ((t + t0) / t0)^(-nu)``, ``t`` the time since the device was
  last written, ``t0 = 20 s``; ``nu`` drawn once per device, ``|N(mu, sd)|`` with
  ``mu = clip(-0.0155 ln g + 0.0244, 0.049, 0.1)`` and ``sd = clip(-0.0125 ln g - 0.0059,
  0.008, 0.045)`` (the same aihwkit model). Time advances ``seconds_per_step`` per learning
  step (default 0.1 s: a 10 Hz sensor stream). Drift and the slow read noise are evaluated
  every ``refresh_every`` steps (piecewise constant in between; both move on a logarithmic
  time scale).
- **Read noise**, intrinsic, never visible to the learner, in two parts:
  (1) per pass, output-referred as aihwkit's ``w_noise`` of type ``PCM_READ``: output i of
  an MVM gets ``read_noise * sqrt(sum_j |w_ij / scale| x_j²) N(0, 1)``, which is in
  distribution what independent per-weight noise of standard deviation
  ``read_noise * sqrt(|w / scale|)`` on every pass gives; ``read_noise = 0.0175`` from
  aihwkit's ``StandardHWATrainingPreset`` (Rasch et al., Nat. Commun. 14, 5282, 2023);
  (2) slow 1/f noise: a per-device random walk in log time whose variance grows by
  ``(Q(g) g)²`` per e-fold of time since the write, ``Q(g) = min(0.0088 / g^0.65, 0.2)``
  (aihwkit ``PCMLikeNoiseModel``, whose accumulated 1/f noise is
  ``Q(g) g sqrt(ln((t + t_read) / (2 t_read)))``: equal power per decade).
- **DAC / ADC**: inputs of each MVM are scaled by their absolute maximum (aihwkit's
  ``NoiseManagementType.ABS_MAX``), clipped to ``±inp_bound`` and rounded to ``2^inp_bits - 1``
  levels; outputs get ``out_noise N(0, 1)`` and are clipped to ``±out_bound`` and rounded to
  ``2^out_bits - 1`` levels (aihwkit IOParameters' resolution ``1 / (2^bits - 2)`` of the
  range). Defaults 8 / 8 bits, ``out_bound = 10``, ``out_noise = 0.04``:
  ``StandardHWATrainingPreset`` (inp_res = out_res = 1/254).
- **Finite range and levels, device-to-device variation, stuck devices**: each device's
  maximum ``g_max_device = 1 + gmax_dtod N(0, 1)`` (aihwkit ``PCMPresetDevice``
  ``w_max_dtod = 0.1``); its pulse step ``dw_min (1 + dw_dtod N(0, 1))`` (``dw_min_dtod =
  0.2``); programming targets are rounded to ``levels`` levels (0: continuous, as the PCM
  model, which limits precision by the programming noise only); a fraction
  ``stuck_fraction`` of devices is stuck, half at 0 and half at their maximum. aihwkit's
  ReRAM array presets record 10-13.5 % corrupt devices measured (Gong & Rasch et al., IEDM
  2022) but default to 0; **twinpass's default of 1 % is its own choice**, not a published
  value.
- **Pulsed updates**: one pulse changes a device by ``dw_min`` (of the nominal range) times
  its device factor, times ``(1 + dw_c2c N(0, 1))`` (cycle to cycle), times a soft-bound
  factor that saturates at the bounds: up ``(1 - g/g_maxd) / (1 - g_sym)``, down
  ``(g/g_maxd) / g_sym``. PCM (aihwkit ``PCMPresetDevice``: ``dw_min = 0.01`` on a range
  of 2, so 0.005 here, ``dw_min_std = 0.6``) only potentiates: a positive update pulses
  g+, a negative one g-; once a device passes ``refresh_threshold`` of its range the pair
  is reset and its weight reprogrammed (aihwkit ``OneSidedUnitCell``, threshold 0.75).
  RRAM (aihwkit ``ReRamSBPresetDevice``: ``dw_min = 0.002`` on a range of 2, so 0.001 here,
  ``dw_min_std = 3.75``, ``dw_min_dtod = 0.3``, ``w_max_dtod = 0.3 / 1.25``) is
  bidirectional on g+ against a fixed reference g- at mid-range (aihwkit's
  ``SoftBoundsReferenceDevice`` arrangement), and does not drift.

Update modes (docs/design.md §8: a learning-rule update is far below ``dw_min``):
``stochastic`` fires a pulse with probability ``|dw| / dw_min`` per weight (the expectation
of aihwkit's stochastic pulse trains), ``mixed`` accumulates updates in a digital float32
array and transfers whole pulses once they are reached (Nandakumar et al., Front.
Neurosci. 14, 406, 2020).

``noise_scale`` multiplies every stochastic magnitude (programming noise, drift exponent,
both read noises, output noise, device-to-device and cycle-to-cycle variation, stuck
fraction); it leaves the quantisation (bits, levels, ``dw_min``) alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError
from twinpass.kernels import analog as k

UPDATE_MODES = ("mixed", "stochastic")


@dataclass(frozen=True)
class AnalogParams:
    """One substrate configuration. Units: conductances normalised to the nominal g_max."""

    # programming
    prog_coeff: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)
    g_max_us: float = 25.0
    prog_scale: float = 1.0
    levels: int = 0
    # drift
    drift_scale: float = 1.0
    t0: float = 20.0
    seconds_per_step: float = 0.1
    refresh_every: int = 1000
    # read noise
    read_noise: float = 0.0175
    flicker_scale: float = 1.0
    q_coeff: float = 0.0088
    q_exp: float = 0.65
    q_max: float = 0.2
    # periphery
    inp_bits: int = 8
    inp_bound: float = 1.0
    out_bits: int = 8
    out_bound: float = 10.0
    out_noise: float = 0.04
    # devices
    gmax_dtod: float = 0.1
    dw_min: float = 0.005
    dw_dtod: float = 0.2
    dw_c2c: float = 0.6
    stuck_fraction: float = 0.01
    unidirectional: bool = True
    refresh_threshold: float = 0.75
    headroom: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "prog_coeff":
                if len(v) != 3 or not all(math.isfinite(float(c)) for c in v):
                    raise ConfigError(f"prog_coeff must be 3 finite numbers, got {v!r}")
                continue
            if isinstance(v, bool):
                continue
            if not math.isfinite(float(v)) or float(v) < 0:
                raise ConfigError(
                    f"analog parameter {f.name} must be a finite number >= 0, got {v}"
                )
        for name in ("inp_bits", "out_bits"):
            bits = getattr(self, name)
            if bits != 0 and not 2 <= bits <= 24:
                raise ConfigError(f"{name} must be 0 (no quantisation) or 2..24, got {bits}")
        if self.levels == 1:
            raise ConfigError("levels must be 0 (continuous) or >= 2")
        if not 0 <= self.stuck_fraction <= 1:
            raise ConfigError(f"stuck_fraction must be in [0, 1], got {self.stuck_fraction}")
        for name in ("dw_min", "t0", "g_max_us", "inp_bound", "out_bound", "headroom"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"analog parameter {name} must be > 0")
        if not 0 < self.refresh_threshold <= 1:
            raise ConfigError("refresh_threshold must be in (0, 1]")

    def scaled(self, noise_scale: float) -> AnalogParams:
        """The same substrate with every stochastic magnitude multiplied by ``noise_scale``."""
        s = float(noise_scale)
        if not (math.isfinite(s) and s >= 0):
            raise ConfigError(f"noise_scale must be a finite number >= 0, got {noise_scale}")
        return replace(
            self,
            prog_scale=self.prog_scale * s,
            drift_scale=self.drift_scale * s,
            read_noise=self.read_noise * s,
            flicker_scale=self.flicker_scale * s,
            out_noise=self.out_noise * s,
            gmax_dtod=self.gmax_dtod * s,
            dw_dtod=self.dw_dtod * s,
            dw_c2c=self.dw_c2c * s,
            stuck_fraction=min(1.0, self.stuck_fraction * s),
        )

    def with_overrides(self, **changes: Any) -> AnalogParams:
        """A copy with named fields changed; an unknown name is a ConfigError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(
                f"unknown analog parameter(s) {', '.join(unknown)}: "
                f"known are {', '.join(sorted(known))}"
            )
        try:
            return replace(self, **changes)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad analog parameter: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["prog_coeff"] = list(self.prog_coeff)
        return d

    @property
    def g_sym(self) -> float:
        """Where the soft-bound up and down steps are dw_min: 0 (PCM) or mid-range (RRAM)."""
        return 0.0 if self.unidirectional else 0.5

    @property
    def span(self) -> float:
        """Largest |g+ - g-|: 1 for a PCM pair, 0.5 for RRAM against its mid-range reference."""
        return 1.0 if self.unidirectional else 0.5


PRESETS: dict[str, AnalogParams] = {
    "pcm": AnalogParams(),
    "rram": AnalogParams(
        prog_coeff=(0.26348, 1.9650, -1.1731),
        levels=64,  # a 6-bit multi-level cell: twinpass's choice, not a preset value
        drift_scale=0.0,
        flicker_scale=0.0,
        gmax_dtod=0.3 / 1.25,
        dw_min=0.001,
        dw_dtod=0.3,
        dw_c2c=3.75,
        unidirectional=False,
    ),
    "ideal": AnalogParams(
        prog_scale=0.0,
        drift_scale=0.0,
        read_noise=0.0,
        flicker_scale=0.0,
        out_noise=0.0,
        gmax_dtod=0.0,
        dw_min=2.0**-20,
        dw_dtod=0.0,
        dw_c2c=0.0,
        stuck_fraction=0.0,
        inp_bits=16,
        out_bits=16,
        headroom=4.0,
    ),
}
"""The substrates by name. ``ideal`` has no noise at all, continuous levels, a tiny pulse
step and 16-bit converters: it equals host arithmetic up to quantisation. (With no noise
to dither them, 8-bit converters make the two passes differ by whole ADC levels, which
swamps ANP's measured differences: see benchmarks/analog.py at noise scale 0.)"""

PRESET_NOTES = {
    "pcm": "phase-change memory: aihwkit PCMLikeNoiseModel + PCMPresetDevice + "
    "StandardHWATrainingPreset IO",
    "rram": "ReRAM, soft bounds against a reference (aihwkit ReRamSBPresetDevice), no drift",
    "ideal": "no noise, no drift, continuous conductances; 16-bit DAC/ADC only",
}


def preset(name: str) -> AnalogParams:
    """A preset by name; ConfigError naming the presets for an unknown one."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown analog preset {name!r}: choose one of {', '.join(PRESETS)}"
        ) from None


def kernel_vector(p: AnalogParams, *, stochastic: bool) -> np.ndarray:
    """The parameters as the float64 vector the kernels read (indices in kernels.analog)."""
    v = np.zeros(k.N_PARAMS)

    def step(bits: int, bound: float) -> float:
        return 0.0 if bits == 0 else 2.0 * bound / (2.0**bits - 2.0)

    v[k.P_INP_BOUND] = p.inp_bound
    v[k.P_INP_STEP] = step(p.inp_bits, 1.0) * p.inp_bound
    v[k.P_OUT_BOUND] = p.out_bound
    v[k.P_OUT_STEP] = step(p.out_bits, p.out_bound)
    v[k.P_OUT_NOISE] = p.out_noise
    v[k.P_READ_NOISE] = p.read_noise
    v[k.P_DW] = p.dw_min
    v[k.P_DW_C2C] = p.dw_c2c
    v[k.P_UNIDIR] = 1.0 if p.unidirectional else 0.0
    v[k.P_GSYM] = p.g_sym
    v[k.P_REFRESH_THR] = p.refresh_threshold
    c0, c1, c2 = p.prog_coeff
    v[k.P_PROG_C0] = c0 / p.g_max_us
    v[k.P_PROG_C1] = c1 / p.g_max_us
    v[k.P_PROG_C2] = c2 / p.g_max_us
    v[k.P_PROG_SCALE] = p.prog_scale
    v[k.P_LEVELS] = p.levels
    v[k.P_T0] = p.t0
    v[k.P_SPS] = p.seconds_per_step
    v[k.P_DRIFT] = p.drift_scale
    v[k.P_FLICKER] = p.flicker_scale
    v[k.P_Q_COEFF] = p.q_coeff
    v[k.P_Q_EXP] = p.q_exp
    v[k.P_Q_MAX] = p.q_max
    v[k.P_GMAX_DTOD] = p.gmax_dtod
    v[k.P_DW_DTOD] = p.dw_dtod
    v[k.P_STUCK] = p.stuck_fraction
    v[k.P_STOCHASTIC] = 1.0 if stochastic else 0.0
    v[k.P_SPAN] = p.span
    return v
