"""The analog backend: a simulated noisy crossbar on which the network learns.

A, R, B (and D when decorrelation is on) live as differential pairs of conductances in
three tiles (hidden ``[A | R]``, output ``B``, decorrelation ``D``); every pass through
them is noisy, and every update is a train of device pulses. The physical model, its
parameters and their published sources: :mod:`.analog_model`; the compiled kernels:
:mod:`twinpass.kernels.analog`.

Learning on it:

- ANP (and DANP) always run as **two noisy passes**: both replicas are passes through the
  substrate, and ``dl``, ``da``, ``db`` are what the ADC measured.
- The readout: the output tile learned by the rule's own estimate (``readout="anp"``, the
  paper's network), or, as analog accelerators do, in the digital periphery: a float32
  matrix over ``[xh, u, 1]`` learned exactly by NLMS or RLS from the measured hidden
  state, while the hidden tile learns by ANP from the two noisy passes. The units' leak
  is digital (the state lives in the periphery between passes). The stability guard reads
  R from the tile between blocks, every ``guard_every`` steps, and reprograms the hidden
  tile scaled onto the bound when R's spectral radius exceeds it (a real write, with its
  programming noise). The rule's ``sigma`` adds digital node noise on top (0 is allowed:
  the substrate's own noise is then the only perturbation): to both replicas with the
  output tile, to replica 2 only with a digital readout, whose features are replica 1's
  state — noise added there on purpose is noise the readout fits (on the ``ideal`` preset
  it cost 2.3x the host's test MSE; benchmarks/RESULTS.md), while the substrate's own noise
  already makes both passes noisy. ``two_noisy_passes`` puts it back on replica 1.
- NP and WP get only what the hardware exposes: their own digital noise (node noise
  added after the ADC; for WP a weight perturbation added to replica 2's analog sum), not
  the substrate's, which corrupts their estimate. BP is not offered (no exact gradients).

Time advances ``seconds_per_step`` per learning step (drift); :meth:`predict` passes are
noisy too (their own generator) but take no time and change nothing of the learning state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError, DeviceError, ShapeError
from twinpass.core.rule_spec import RuleSpec
from twinpass.kernels import analog as ka
from twinpass.kernels.api import Dims, network_dims
from twinpass.kernels.guard import GUARD_ITERS, estimate_spectral_radius
from twinpass.kernels.perturbation import RULE_ANP, RULE_NP
from twinpass.kernels.rng import new_rng_state

from .analog_model import PRESET_NOTES, PRESETS, UPDATE_MODES, AnalogParams, kernel_vector
from .analog_model import preset as get_preset
from .base import (
    PARAM_NAMES,
    DeviceInfo,
    StepResult,
    check_batch,
    check_label_delay,
    check_params,
    check_rule,
)
from .host import as_block

RULES = ("anp", "np", "wp")
#: The readouts: the output tile (the rule's own estimate), or digital NLMS and RLS.
READOUTS = ("anp", "nlms", "rls")
READOUT_CODES = {"anp": ka.READOUT_ANP, "nlms": ka.READOUT_NLMS, "rls": ka.READOUT_RLS}
RULE_CODES = {"anp": RULE_ANP, "np": RULE_NP, "wp": ka.RULE_WP}
TILES = ("H", "O", "D")
_STREAM_KEYS = (0, 0x5851F42D4C957F2D, 0x2545F4914F6CDD1D)


def _rng_states(seed: int) -> np.ndarray:
    """Three independent generator states (node, substrate, evaluation) from one seed."""
    out = np.zeros((3, 2), np.uint64)
    for k, salt in enumerate(_STREAM_KEYS):
        st = new_rng_state(seed)
        key = (int(st[0]) ^ salt) * 0x9E3779B97F4A7C15 % 2**64
        key ^= key >> 29
        out[k] = (key if k else int(st[0]), 0)
    return out


class _Tile:
    """One crossbar tile: its weights as held, its devices, its accumulator, its scale."""

    def __init__(self, rows: int, cols: int, active: bool) -> None:
        r, c = (rows, cols) if active else (0, 0)
        self.W = np.zeros((rows, cols), np.float32)
        self.dev = np.zeros((r, c, 2, ka.N_FIELDS), np.float32)
        self.tw = np.zeros((r, c, 2), np.int64)
        self.chi = np.zeros((r, c), np.float32)
        self.scale = np.ones(1)
        self.active = active

    def arrays(self) -> dict[str, np.ndarray]:
        return {"W": self.W, "dev": self.dev, "tw": self.tw, "chi": self.chi, "scale": self.scale}


class AnalogDevice:
    """A simulated noisy analog crossbar (float32).

    preset: ``pcm`` (default), ``rram`` or ``ideal`` (:data:`.analog_model.PRESETS`).
    noise_scale: multiplies every stochastic magnitude of the preset (0: noiseless).
    update: ``mixed``-precision accumulate-and-transfer (default: on PCM it learns where
    stochastic pulses do not, see benchmarks/analog.py) or ``stochastic`` pulses.
    overrides: any :class:`.analog_model.AnalogParams` field, e.g. ``drift_scale=0``,
    applied to the preset before ``noise_scale``.
    """

    name = "analog"

    def __init__(
        self,
        preset: str = "pcm",
        noise_scale: float = 1.0,
        update: str = "mixed",
        **overrides: Any,
    ) -> None:
        self.preset = str(preset).strip().lower()
        base = get_preset(self.preset)
        if update not in UPDATE_MODES:
            raise ConfigError(
                f"unknown analog update mode {update!r}: choose {' or '.join(UPDATE_MODES)}"
            )
        try:
            self.noise_scale = float(noise_scale)
        except (TypeError, ValueError):
            raise ConfigError(f"noise_scale must be a number, got {noise_scale!r}") from None
        self.update = update
        self.overrides = dict(overrides)
        self.params: AnalogParams = base.with_overrides(**overrides).scaled(self.noise_scale)
        self._prm = kernel_vector(self.params, stochastic=update == "stochastic")
        self.dtype = np.dtype(np.float32)
        self._closed = False
        self._tiles: dict[str, _Tile] | None = None

    def info(self) -> DeviceInfo:
        return DeviceInfo(
            name=self.name,
            description=f"simulated noisy analog crossbar: preset {self.preset}, noise x"
            f"{self.noise_scale:g}, {self.update} pulsed updates; ANP uses two noisy passes; "
            "the readout in the tile or in the digital periphery",
            rules=RULES,
            readouts=READOUTS,
            dtypes=("float32",),
            exact=False,
            extra={
                "preset": self.preset,
                "presets": {k: PRESET_NOTES[k] for k in PRESETS},
                "noise_scale": self.noise_scale,
                "update": self.update,
                "update_modes": list(UPDATE_MODES),
                "overrides": {k: v for k, v in sorted(self.overrides.items())},
                "options": "analog[:PRESET], --noise-scale S",
            },
        )

    # -- model ---------------------------------------------------------------------------

    def load(
        self,
        params: Mapping[str, np.ndarray],
        rule: RuleSpec,
        *,
        batch: int = 1,
        seed: int = 0,
        label_delay: int = 0,
    ) -> None:
        self._check_open()
        check_params(params)
        check_batch(batch)
        A, R, B, D = (
            np.ascontiguousarray(np.array(params[k], dtype=np.float32)) for k in PARAM_NAMES
        )
        dims = network_dims(A, R, B, D)
        spec = check_rule(
            rule,
            self.info(),
            (dims.n_in, dims.n_hidden, dims.n_out),
            why=" (BP needs exact gradients, which an analog substrate does not give)",
        )
        digital = spec.readout != "anp"
        if not digital and spec.readout_inputs:
            raise ConfigError(
                "the analog output tile reads the hidden state only: use readout_inputs=False "
                "(--no-readout-inputs), or a digital readout (--readout nlms or rls)"
            )
        check_label_delay(label_delay, 0, self.name)
        self._dims: Dims = dims
        self._rule: RuleSpec = spec
        self._decor = spec.decorrelation
        self._code = RULE_CODES[spec.rule]
        self.batch = nb = int(batch)
        n, n_in, n_out = dims.n_hidden, dims.n_in, dims.n_out
        self._rngs = _rng_states(int(seed))
        self._counters = np.zeros(3, np.int64)
        tiles = {
            "H": _Tile(n, n_in + n, True),
            "O": _Tile(n_out, n, not digital),
            "D": _Tile(n, n, self._decor),
        }
        targets = {"H": np.hstack([A, R]), "O": B, "D": D}
        p = self.params
        for key, tile in tiles.items():
            if not tile.active:
                # held digitally, never used: D without decorrelation, B with a digital readout
                tile.W[...] = D if key == "D" else B[:, :n]
                continue
            m = float(np.max(np.abs(targets[key])))
            if not np.isfinite(m):
                raise ShapeError(f"model parameters of tile {key} are not finite")
            tile.scale[0] = (p.headroom * m if m > 0 else 1.0) / p.span
            ka.program_tile(
                np.ascontiguousarray(targets[key]),
                tile.dev,
                tile.tw,
                tile.W,
                tile.scale[0],
                self._prm,
                self._rngs[ka.R_SUB],
                0,
            )
        self._tiles = tiles
        f = B.shape[1]
        rls = spec.readout == "rls"
        # The digital periphery: the readout, RLS's state, the guard's warm start and count.
        self._digital = {
            "B": B.copy() if digital else np.zeros((n_out, f), np.float32),
            "P": np.eye(f) * spec.readout_p0 if rls else np.zeros((0, 0)),
            "ph": np.zeros((2, f)),
            "pend": np.zeros(1, np.int64),
            "counts": np.zeros(3, np.int64),  # RLS resets, RLS bounds, guard projections
            "gv": np.full(n, 1.0 / np.sqrt(n)),
            "since_guard": np.zeros(1, np.int64),
        }
        self._feat = np.zeros((nb, f), np.float32)
        self._xh1 = np.zeros((nb, n), np.float32)
        self._xh2 = np.zeros((nb, n), np.float32)
        self._xh_eval = np.zeros((nb, n), np.float32)
        wp = self._code == ka.RULE_WP
        self._ws = {
            "work": np.zeros((ka.N_AWORK, nb, n), np.float32),
            "work_out": np.zeros((ka.N_AWORK_OUT, nb, n_out), np.float32),
            "zbuf": np.zeros((ka.N_ZBUF, nb, n_in + n), np.float32),
            "xbuf": np.zeros((ka.N_ZBUF, nb, n), np.float32),
            "alpha": np.zeros((2, nb)),
            "nzH": np.zeros((4, nb, n), np.float32),
            "nzO": np.zeros((4, nb, n_out), np.float32),
            "pmax": np.zeros(nb),
            "q": np.zeros(n, np.float32),
            "nbuf": np.zeros((2, n_in + n), np.float32),
            "EH": np.zeros((n, n_in + n) if wp else (0, 0), np.float32),
            "EO": np.zeros((n_out, n) if wp else (0, 0), np.float32),
        }
        self._eval_ws = self._eval_workspace(nb)

    def rule_spec(self) -> RuleSpec:
        self._loaded()
        return self._rule

    def _eval_workspace(self, nb: int) -> dict[str, np.ndarray]:
        d = self._dims
        n = d.n_hidden
        return {
            "zbuf": np.zeros((ka.N_ZBUF, nb, d.n_in + n), np.float32),
            "xbuf": np.zeros((ka.N_ZBUF, nb, n), np.float32),
            "alpha": np.zeros((2, nb)),
            "nzH": np.zeros((4, nb, n), np.float32),
            "nzO": np.zeros((4, nb, d.n_out), np.float32),
            "x": np.zeros((nb, n), np.float32),
            "xhn": np.zeros((nb, n), np.float32),
            "feat": np.zeros((nb, self._feat.shape[1]), np.float32),
        }

    def read_model(self) -> dict[str, np.ndarray]:
        t = self._loaded()
        n_in = self._dims.n_in
        return {
            "A": t["H"].W[:, :n_in].copy(),
            "R": t["H"].W[:, n_in:].copy(),
            "B": self._digital["B"].copy() if self._is_digital() else t["O"].W.copy(),
            "D": t["D"].W.copy(),
        }

    def max_abs_weight(self) -> float:
        tiles = self._loaded()
        big = max(float(np.max(np.abs(t.W))) for k, t in tiles.items() if t.active or k == "D")
        if self._is_digital():
            big = max(big, float(np.max(np.abs(self._digital["B"]))))
        return big

    def reset_state(self) -> None:
        self._loaded()
        self._xh1.fill(0)
        self._xh2.fill(0)
        self._counters[ka.C_RESYNC] = 0  # the clock runs on: drift does not reset

    # -- learning ------------------------------------------------------------------------

    def step(self, inputs: np.ndarray, targets: np.ndarray) -> StepResult:
        t = self._loaded()
        U = as_block("inputs", inputs, self.batch, self._dims.n_in, self.dtype)
        Y = as_block("targets", targets, self.batch, self._dims.n_out, self.dtype)
        if U.shape[0] != Y.shape[0]:
            raise ShapeError(f"inputs have {U.shape[0]} steps but targets have {Y.shape[0]}")
        T = U.shape[0]
        pred = np.zeros((T, self.batch, self._dims.n_out), np.float32)
        loss1 = np.zeros(T)
        loss2 = np.zeros(T)
        r = self._rule
        w = self._ws
        dg = self._digital
        H, O, D = t["H"], t["O"], t["D"]
        scales = np.array([H.scale[0], O.scale[0], D.scale[0]])
        applied = ka.analog_block(
            H.W, H.dev, H.tw, H.chi, O.W, O.dev, O.tw, O.chi, D.W, D.dev, D.tw, D.chi,
            scales, self._prm, self._xh1, self._xh2, self._counters, self._rngs,
            int(self.params.refresh_every), U, Y, pred, loss1, loss2,
            self._code, r.lr, r.sigma, r.eps,
            r.gain, self._decor, self._two_noisy(), r.resync_every,
            r.output_cap,
            w["work"], w["work_out"], w["zbuf"], w["xbuf"], w["alpha"], w["nzH"], w["nzO"],
            w["pmax"], w["q"], w["nbuf"], w["EH"], w["EO"],
            READOUT_CODES[r.readout], dg["B"], dg["P"], dg["ph"], dg["pend"], dg["counts"],
            self._feat, r.lr_hidden, r.leak, r.readout_step, r.forgetting, r.readout_p0,
        )  # fmt: skip
        if applied == T:
            self._guard(T)
        return StepResult(pred, loss1, loss2, int(applied))

    def counts(self) -> dict[str, int]:
        """The digital periphery's event counters (RLS resets and bounds, guard scalings)."""
        c = self._digital["counts"]
        return {"rls_resets": int(c[0]), "rls_bounds": int(c[1]), "guard_projections": int(c[2])}

    def _guard(self, steps: int) -> None:
        """The stability guard between blocks: once ``guard_every`` steps have passed, read
        R from the tile and, if its spectral radius exceeds the bound, program the hidden
        tile with R scaled onto it (A unchanged)."""
        bound = self._rule.radius_bound
        if bound is None:
            return
        dg = self._digital
        dg["since_guard"][0] += steps
        if dg["since_guard"][0] < self._rule.guard_every:
            return
        dg["since_guard"][0] = 0
        H = self._loaded()["H"]
        n_in = self._dims.n_in
        R = np.ascontiguousarray(H.W[:, n_in:], dtype=np.float64)
        rho = estimate_spectral_radius(R, dg["gv"], GUARD_ITERS)
        if not rho > bound:
            return
        target = np.ascontiguousarray(H.W, dtype=np.float32).copy()
        target[:, n_in:] *= np.float32(bound / rho)
        ka.program_tile(
            target, H.dev, H.tw, H.W, H.scale[0], self._prm, self._rngs[ka.R_SUB],
            int(self._counters[ka.C_CLOCK]),
        )  # fmt: skip
        dg["counts"][2] += 1

    def predict(self, inputs: np.ndarray, *, reset: bool = True) -> np.ndarray:
        t = self._loaded()
        nb = inputs.shape[1] if isinstance(inputs, np.ndarray) and inputs.ndim == 3 else -1
        U = as_block("inputs", inputs, nb, self._dims.n_in, self.dtype)
        if reset or self._xh_eval.shape[0] != nb:
            self._xh_eval = np.zeros((nb, self._dims.n_hidden), np.float32)
        if self._eval_ws["x"].shape[0] != nb:
            self._eval_ws = self._eval_workspace(nb)
        pred = np.zeros((U.shape[0], nb, self._dims.n_out), np.float32)
        scales = np.array([t["H"].scale[0], t["O"].scale[0], t["D"].scale[0]])
        e = self._eval_ws
        ka.analog_forward_block(
            t["H"].W, t["O"].W, t["D"].W, scales, self._prm, self._xh_eval, U, pred,
            self._decor, self._rngs[ka.R_EVAL], e["zbuf"], e["xbuf"], e["alpha"], e["nzH"],
            e["nzO"], e["x"], e["xhn"], READOUT_CODES[self._rule.readout],
            self._digital["B"], e["feat"], self._rule.leak,
        )  # fmt: skip
        return pred

    # -- state for checkpoints -------------------------------------------------------------

    def export_state(self) -> dict[str, np.ndarray]:
        state = self._state_arrays()
        state["xh_eval"] = self._xh_eval
        return {k: np.array(v, copy=True) for k, v in state.items()}

    def import_state(self, state: Mapping[str, np.ndarray]) -> None:
        targets = self._state_arrays()
        if "analog.params" in state and not np.array_equal(
            np.asarray(state["analog.params"]), self._prm
        ):
            raise ConfigError(
                "device state was saved by an analog device with other parameters "
                "(preset, noise scale, update mode or overrides): make the same device"
            )
        if "xh_eval" in state:
            xe = np.asarray(state["xh_eval"])
            if xe.ndim != 2 or xe.shape[1] != self._dims.n_hidden:
                raise ShapeError(f"device state 'xh_eval' has shape {xe.shape}")
            self._xh_eval = np.ascontiguousarray(xe, dtype=np.float32).copy()
        for key, dst in targets.items():
            if key not in state:
                raise ShapeError(f"device state lacks {key!r}: it was saved by another device?")
            src = np.asarray(state[key])
            if src.shape != dst.shape:
                raise ShapeError(
                    f"device state {key!r} has shape {src.shape}, expected {dst.shape}"
                )
        for key, dst in targets.items():
            if key != "analog.params":
                dst[...] = np.asarray(state[key]).astype(dst.dtype, copy=False)

    def close(self) -> None:
        self._closed = True
        self._tiles = None

    # -- helpers ---------------------------------------------------------------------------

    def _is_digital(self) -> bool:
        return self._rule.readout != "anp"

    def _two_noisy(self) -> bool:
        """Whether replica 1 gets digital node noise too: ANP with the output tile (the
        paper's network) always, ANP with a digital readout and NP as configured, WP never.
        (Both passes carry the substrate's noise whatever this says.)"""
        if self._code == RULE_ANP:
            return not self._is_digital() or self._rule.two_noisy_passes
        return self._code == RULE_NP and self._rule.two_noisy_passes

    def _state_arrays(self) -> dict[str, np.ndarray]:
        tiles = self._loaded()
        state = {
            "xh1": self._xh1,
            "xh2": self._xh2,
            "counters": self._counters,
            "rngs": self._rngs,
            "analog.params": self._prm,
        }
        for key, tile in tiles.items():
            for name, arr in tile.arrays().items():
                state[f"tile.{key}.{name}"] = arr
        # The paper's network keeps nothing in the periphery (its checkpoints stay as before).
        if self._is_digital() or self._rule.radius_bound is not None:
            for name, arr in self._digital.items():
                state[f"digital.{name}"] = arr
        return state

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError("analog device is closed")

    def _loaded(self) -> dict[str, _Tile]:
        self._check_open()
        if self._tiles is None:
            raise DeviceError("no model loaded: call load() first")
        return self._tiles
