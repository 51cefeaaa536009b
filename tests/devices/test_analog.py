"""The analog backend: each noise component's statistics, ideal == host, learning on PCM.

Statistics are measured on large samples through the public kernels and the device, and
compared with the configured values of :mod:`twinpass.devices.analog_model`.
"""

from __future__ import annotations

import numpy as np
import pytest

from twinpass.core.errors import ConfigError
from twinpass.devices.analog import AnalogDevice
from twinpass.devices.analog_model import PRESETS, AnalogParams, kernel_vector
from twinpass.devices.host import HostDevice
from twinpass.devices.registry import make_device
from twinpass.kernels import analog as ka
from twinpass.kernels.rng import new_rng_state
from twinpass.runtime import OnlineLearner, Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK
from twinpass.runtime.tasks import make_task
from twinpass.runtime.training import train


def tile(rows: int, cols: int):
    return (
        np.zeros((rows, cols), np.float32),
        np.zeros((rows, cols, 2, ka.N_FIELDS), np.float32),
        np.zeros((rows, cols, 2), np.int64),
    )


def program(params: AnalogParams, Wt: np.ndarray, scale: float = 1.0, seed: int = 0):
    W, dev, tw = tile(*Wt.shape)
    prm = kernel_vector(params, stochastic=True)
    ka.program_tile(Wt.astype(np.float32), dev, tw, W, scale, prm, new_rng_state(seed), 0)
    return W, dev, tw, prm


QUIET = PRESETS["pcm"].with_overrides(
    stuck_fraction=0.0, gmax_dtod=0.0, drift_scale=0.0, flicker_scale=0.0
)


@pytest.mark.parametrize("g", [0.1, 0.5, 0.9])
def test_programming_noise_std_matches_the_pcm_polynomial(g: float) -> None:
    _W, dev, _, _ = program(QUIET, np.full((200, 200), g))
    got = dev[..., 0, ka.F_G0].astype(np.float64)
    c0, c1, c2 = QUIET.prog_coeff
    want = (c0 + c1 * g + c2 * g * g) / QUIET.g_max_us
    assert abs(got.mean() - g) < 4 * want / 200
    assert got.std() == pytest.approx(want, rel=0.03)
    # The unused device of the pair was written to 0 and clipped there (g >= 0).
    assert np.all(dev[..., 1, ka.F_G0] >= 0)


def test_drift_exponent_and_power_law() -> None:
    p = QUIET.with_overrides(drift_scale=1.0, prog_scale=0.0)
    g = 0.5
    W, dev, tw, prm = program(p, np.full((200, 200), g))
    nu = dev[..., 0, ka.F_NU].astype(np.float64)
    mu = min(max(-0.0155 * np.log(g) + 0.0244, 0.049), 0.1)
    sd = min(max(-0.0125 * np.log(g) - 0.0059, 0.008), 0.045)
    # |N(mu, sd)| with mu >> sd: mean mu, std sd.
    assert nu.mean() == pytest.approx(mu, rel=0.01)
    assert nu.std() == pytest.approx(sd, rel=0.03)
    # After t seconds, g(t) = g0 ((t + t0) / t0)^-nu: recover nu from two refreshes.
    nbuf = np.zeros((2, 200), np.float32)
    rng = new_rng_state(1)
    steps = 100_000
    ka.refresh_tile(dev, tw, W, 1.0, prm, rng, steps, 0, nbuf)
    t = steps * p.seconds_per_step
    fitted = -np.log(W.astype(np.float64) / g) / np.log((t + p.t0) / p.t0)
    np.testing.assert_allclose(fitted, nu, rtol=1e-3, atol=1e-5)


def test_slow_flicker_noise_variance_grows_per_e_fold_of_time() -> None:
    p = QUIET.with_overrides(prog_scale=0.0, flicker_scale=1.0)
    g = 0.5
    W, dev, tw, prm = program(p, np.full((300, 300), g))
    nbuf = np.zeros((2, 300), np.float32)
    steps = 20_000
    ka.refresh_tile(dev, tw, W, 1.0, prm, new_rng_state(2), steps, 0, nbuf)
    flk = dev[..., 0, ka.F_FLK].astype(np.float64)
    q = min(p.q_coeff / g**p.q_exp, p.q_max)
    sps = p.seconds_per_step
    want = q * g * np.sqrt(np.log((steps * sps + sps) / sps))
    assert flk.std() == pytest.approx(want, rel=0.03)
    assert abs(flk.mean()) < 4 * want / 300


def mvm_samples(params: AnalogParams, W: np.ndarray, z: np.ndarray, reps: int, seed: int = 0):
    prm = kernel_vector(params, stochastic=True)
    rows = W.shape[0]
    out = np.zeros((reps, rows), np.float32)
    zb = np.zeros((ka.N_ZBUF, 1, W.shape[1]), np.float32)
    alpha = np.zeros((2, 1))
    nz = np.zeros((4, 1, rows), np.float32)
    rng = new_rng_state(seed)
    for r in range(reps):
        ka.mvm(W.astype(np.float32), 1.0, z.astype(np.float32), prm, rng, out[r : r + 1], zb,
               alpha, nz)  # fmt: skip
    return out


def test_read_noise_std_per_pass_matches_configuration() -> None:
    g = np.random.default_rng(0)
    W = g.uniform(-1, 1, (4, 64))
    z = g.uniform(-1, 1, (1, 64))
    no_adc = PRESETS["pcm"].with_overrides(inp_bits=0, out_bits=0, out_noise=0.0)
    out = mvm_samples(no_adc, W, z, 20_000).astype(np.float64)
    zq = z / np.abs(z).max()  # abs-max scaling, no DAC rounding
    clean = (W @ zq[0]) * np.abs(z).max()
    want = no_adc.read_noise * np.sqrt(np.abs(W) @ (zq[0] ** 2)) * np.abs(z).max()
    np.testing.assert_allclose(out.mean(0), clean, atol=4 * want.max() / np.sqrt(20_000))
    np.testing.assert_allclose(out.std(0), want, rtol=0.03)
    # Output noise alone: constant std out_noise in normalised units.
    only_out = no_adc.with_overrides(read_noise=0.0, out_noise=0.04)
    out = mvm_samples(only_out, W, z, 20_000).astype(np.float64)
    np.testing.assert_allclose(out.std(0), 0.04 * np.abs(z).max(), rtol=0.03)


@pytest.mark.parametrize("bits", [4, 8])
def test_adc_has_2_to_the_bits_minus_1_levels_and_clips(bits: int) -> None:
    p = PRESETS["ideal"].with_overrides(inp_bits=0, out_bits=bits, out_bound=2.0)
    ramp = np.linspace(-3, 3, 20_001)
    W = ramp[:, None]
    out = mvm_samples(p, W, np.ones((1, 1)), 1)[0]
    levels = np.unique(out)
    assert len(levels) == 2**bits - 1
    assert levels.min() == pytest.approx(-2.0) and levels.max() == pytest.approx(2.0)
    step = 4.0 / (2**bits - 2)
    np.testing.assert_allclose(np.diff(levels), step, rtol=1e-4)
    inside = np.abs(ramp) <= 2
    assert np.max(np.abs(out[inside] - ramp[inside])) <= step / 2 + 1e-6


def test_dac_rounds_inputs_to_its_levels() -> None:
    p = PRESETS["ideal"].with_overrides(inp_bits=4, out_bits=0)
    z = np.linspace(-1, 1, 1001)[None]
    W = np.eye(1001)
    out = mvm_samples(p, W, z, 1)[0]
    assert len(np.unique(out)) == 2**4 - 1


def test_stuck_fraction_and_levels() -> None:
    p = PRESETS["pcm"].with_overrides(stuck_fraction=0.05)
    W, dev, _, _ = program(p, np.full((300, 300), 0.3))
    stuck = dev[..., ka.F_STUCK]
    assert stuck.mean() == pytest.approx(0.05, abs=0.002)
    on = dev[..., ka.F_G0][stuck > 0] == dev[..., ka.F_GMAX][stuck > 0]
    assert on.mean() == pytest.approx(0.5, abs=0.02)
    # A stuck partner is compensated by programming the other device: only pairs with
    # both devices stuck (or a target out of reach) keep a large error.
    err = np.abs(W - 0.3)
    assert np.mean(err > 0.2) < 0.05
    # RRAM: programming targets on a grid of 64 levels (no noise to blur them here).
    q = PRESETS["rram"].scaled(0.0)
    _, dev, _, _ = program(q, np.random.default_rng(0).uniform(-0.5, 0.5, (50, 50)))
    g = dev[..., 0, ka.F_G0].astype(np.float64)
    np.testing.assert_allclose(g * 63, np.round(g * 63), atol=1e-3)


def test_device_to_device_variation_of_range() -> None:
    _W, dev, _, _ = program(PRESETS["pcm"].with_overrides(stuck_fraction=0.0), np.zeros((200, 200)))
    gm = dev[..., ka.F_GMAX].astype(np.float64)
    assert gm.mean() == pytest.approx(1.0, abs=0.002)
    assert gm.std() == pytest.approx(0.1, rel=0.03)


def pulse_once(params: AnalogParams, stochastic: bool, n: int = 300, w0: float = 0.3):
    """One update of +dw_min/2 (stochastic) or +dw_min (mixed) on every weight at w0."""
    W, dev, tw, prm = program(params, np.full((n, n), w0))
    prm = kernel_vector(params, stochastic=stochastic)
    chi = np.zeros((n, n), np.float32)
    before = dev[..., 0, ka.F_G0].copy()
    amount = params.dw_min * (0.5 if stochastic else 1.0)
    c = np.full((1, n), -amount, np.float32)  # W -= kc c p: +amount everywhere
    p = np.ones((1, n), np.float32)
    none = np.zeros((0, 0), np.float32)
    ka.apply_update(W, dev, tw, chi, 1.0, c, p, 1.0, np.zeros(n, np.float32), 0.0, none, 0.0,
                    np.zeros(1), prm, new_rng_state(3), 1)  # fmt: skip
    return dev[..., 0, ka.F_G0].astype(np.float64) - before, chi


def test_pulse_step_size_and_cycle_to_cycle_variation() -> None:
    p = QUIET.with_overrides(prog_scale=0.0, dw_dtod=0.0)
    step, chi = pulse_once(p, stochastic=False)
    # Mixed precision: exactly one pulse per weight, chi keeps the remainder 0.
    assert np.all(np.abs(chi) < 1e-6)
    nominal = p.dw_min * (1 - 0.3)  # the soft-bound factor at g = 0.3
    assert step.mean() == pytest.approx(nominal, rel=0.01)
    assert step.std() == pytest.approx(p.dw_c2c * nominal, rel=0.03)
    # Stochastic: half the weights get one pulse.
    step, _ = pulse_once(p.with_overrides(dw_c2c=0.0), stochastic=True)
    fired = step > 0
    assert fired.mean() == pytest.approx(0.5, abs=0.01)
    np.testing.assert_allclose(step[fired], nominal, rtol=1e-4)


def test_pulses_saturate_at_the_device_bound() -> None:
    p = PRESETS["rram"].scaled(0.0).with_overrides(levels=0)
    W, dev, tw, _ = program(p, np.zeros((4, 4)))
    prm = kernel_vector(p, stochastic=False)
    chi = np.zeros((4, 4), np.float32)
    c = np.full((1, 4), -1.0, np.float32)
    for k in range(20):  # 20 x 100 pulses up: soft bounds approach g_max, never pass it
        ka.apply_update(W, dev, tw, chi, 1.0, c, np.ones((1, 4), np.float32), 100 * p.dw_min,
                        np.zeros(4, np.float32), 0.0, np.zeros((0, 0), np.float32), 0.0,
                        np.zeros(1), prm, new_rng_state(k), k + 1)  # fmt: skip
    g = dev[..., 0, ka.F_G0]
    assert np.all(g <= dev[..., 0, ka.F_GMAX]) and np.all(g > 0.99 * dev[..., 0, ka.F_GMAX])


# -- the device ---------------------------------------------------------------------------------


def test_ideal_analog_equals_host_within_quantisation() -> None:
    params = Params.init(3, 40, 2, seed=1).arrays()
    U = np.random.default_rng(0).standard_normal((50, 2, 3)).astype(np.float32)
    host, ideal = HostDevice(), AnalogDevice("ideal")
    for dev in (host, ideal):
        dev.load(params, RuleConfig(**PAPER_NETWORK).resolve(3, 40, 2), batch=2, seed=0)
    # Read-back: exact up to the float rounding of w -> g -> w.
    for k, v in ideal.read_model().items():
        np.testing.assert_allclose(v, params[k], rtol=0, atol=2e-7)
    a, b = host.predict(U), ideal.predict(U)
    # 16-bit converters: each MVM's output is within half an ADC step (in normalised units,
    # scaled back by alpha * scale); a few steps of recurrence keep it at that order.
    step = 2 * ideal.params.out_bound / (2**16 - 2) * ideal._tiles["O"].scale[0]
    assert np.max(np.abs(a - b)) < 50 * step
    assert np.max(np.abs(a - b)) > 0  # but it is quantised
    # Learning: the same rule on both (host with two noisy passes, as analog ANP always is)
    # stays close over a block.
    two_noisy = RuleConfig(**PAPER_NETWORK, two_noisy_passes=True).resolve(3, 40, 2)
    host.load(params, two_noisy, batch=2, seed=0)
    ideal.load(params, RuleConfig(**PAPER_NETWORK).resolve(3, 40, 2), batch=2, seed=0)
    Y = np.tanh(U[..., :2])
    ra, rb = host.step(U, Y), ideal.step(U, Y)
    np.testing.assert_allclose(ra.loss1[:10], rb.loss1[:10], rtol=0.05, atol=1e-3)
    assert rb.loss1.mean() == pytest.approx(ra.loss1.mean(), rel=0.05)


def test_make_device_presets_and_errors() -> None:
    dev = make_device("analog:rram", noise_scale=2, update="mixed")
    assert dev.info().extra["preset"] == "rram" and dev.info().extra["noise_scale"] == 2.0
    assert dev.params.dw_c2c == pytest.approx(2 * PRESETS["rram"].dw_c2c)
    assert set(dev.info().extra["presets"]) == {"pcm", "rram", "ideal"}
    assert dev.info().rules == ("anp", "np", "wp")
    assert dev.info().readouts == ("anp", "nlms", "rls")
    for bad in ("analog:nope", "analog:pcm:x"):
        with pytest.raises(ConfigError):
            make_device(bad)
    with pytest.raises(ConfigError, match="update"):
        make_device("analog", update="sometimes")
    with pytest.raises(ConfigError, match="noise_scale"):
        make_device("analog", noise_scale=-1)
    with pytest.raises(ConfigError, match="unknown analog parameter"):
        make_device("analog", dw_minimum=1)
    dev = make_device("analog")
    with pytest.raises(ConfigError, match="BP"):
        dev.load(
            Params.init(1, 4, 1).arrays(), RuleConfig(**PAPER_NETWORK, rule="bp").resolve(1, 4, 1)
        )


def test_drift_moves_the_weights_with_the_stream_clock() -> None:
    dev = AnalogDevice("pcm", refresh_every=100)
    dev.load(
        Params.init(1, 20, 1, seed=0).arrays(),
        RuleConfig(**PAPER_NETWORK, lr=1e-9).resolve(1, 20, 1),
    )
    before = dev.read_model()["R"]
    U = np.zeros((1000, 1, 1), np.float32)
    dev.step(U, U)
    after = dev.read_model()["R"]
    # Conductances decay: |w| shrinks on average (drift, not learning: lr is ~0).
    assert np.mean(np.abs(after)) < 0.99 * np.mean(np.abs(before))
    state = dev.export_state()
    assert state["counters"][ka.C_CLOCK] == 1000


def test_checkpoint_needs_the_same_device(tmp_path) -> None:
    dev = AnalogDevice("pcm", noise_scale=0.5)
    ln = OnlineLearner(1, 1, 8, RuleConfig(**PAPER_NETWORK), seed=0, device=dev)
    s = np.sin(0.2 * np.arange(201)).astype(np.float32)
    ln.run(s[:100, None], s[1:101, None])
    ln.save(tmp_path / "a.ckpt")
    rest = ln.run(s[100:200, None], s[101:201, None])
    from twinpass.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="analog"):
        OnlineLearner.load(tmp_path / "a.ckpt")
    with pytest.raises(CheckpointError, match="other parameters"):
        OnlineLearner.load(tmp_path / "a.ckpt", device=AnalogDevice("pcm"))
    again, _ = OnlineLearner.load(tmp_path / "a.ckpt", device=AnalogDevice("pcm", noise_scale=0.5))
    res = again.run(s[100:200, None], s[101:201, None])
    assert res.loss1.tobytes() == rest.loss1.tobytes()


@pytest.mark.parametrize("rule", ["np", "wp"])
def test_np_and_wp_run_on_analog(rule: str) -> None:
    dev = AnalogDevice("pcm")
    ln = OnlineLearner(1, 1, 16, RuleConfig(**PAPER_NETWORK, rule=rule), seed=0, device=dev)
    s = np.sin(0.2 * np.arange(501)).astype(np.float32)
    res = ln.run(s[:-1, None], s[1:, None])
    assert np.all(np.isfinite(res.loss1))


def mackey_glass_run(epochs: int, update: str, pairing: str) -> tuple[float, float]:
    task = make_task("mackey-glass", pairing=pairing)
    dev = AnalogDevice("pcm", update=update)
    ln = OnlineLearner(1, 1, 100, RuleConfig(**PAPER_NETWORK), seed=0, device=dev)
    recs = train(ln, task, epochs)
    return recs[0].test_mse, min(r.test_mse for r in recs[1:])


def test_anp_on_pcm_lowers_mackey_glass_mse_5x() -> None:
    # The reference code's pairing (recall), where host ANP reaches ~5e-4 from 0.08 (seed
    # 0). In the forecast pairing, from seed 0's start, host ANP itself gains only ~3x in
    # 20 epochs; benchmarks/analog.py measures that pairing over seeds.
    first, best = mackey_glass_run(2, "mixed", "recall")
    assert best < first / 5, (first, best)


@pytest.mark.slow
def test_anp_on_pcm_forecasts_mackey_glass() -> None:
    first, best = mackey_glass_run(10, "mixed", "ahead")
    assert best < first / 1.5, (first, best)


# -- the readout in the digital periphery ----------------------------------------------------


def sine_stream(n: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.sin(0.2 * np.arange(n + 1)).astype(np.float32)
    return s[:-1, None], s[1:, None]


@pytest.mark.parametrize("readout", ["nlms", "rls"])
def test_ideal_analog_with_a_digital_readout_learns_like_the_host(readout: str) -> None:
    # The learner's network (leak, [xh, u, 1], guard) on the ideal substrate: its only
    # differences from the host are 16-bit converters, pulsed updates and the two noisy
    # passes, so its prequential error stays near the host's.
    u, y = sine_stream(3000)
    losses = {}
    for name, dev in (("host", None), ("ideal", AnalogDevice("ideal"))):
        ln = OnlineLearner(1, 1, 24, RuleConfig(readout=readout), seed=0, device=dev)
        losses[name] = float(np.mean(ln.run(u, y).loss1[-1000:]))
    assert losses["ideal"] < 3 * losses["host"] + 1e-5, losses
    assert losses["ideal"] < 1e-2, losses  # and it learned: a zero forecast scores ~0.5


@pytest.mark.parametrize(
    ("rule", "replica1_noisy"),
    [
        ({}, False),  # a digital readout fits replica 1's state: no digital noise on it
        ({"two_noisy_passes": True}, True),
        (PAPER_NETWORK, True),  # the output tile learns from both passes' noise
    ],
)
def test_digital_node_noise_reaches_replica_1_only_where_asked(
    rule: dict, replica1_noisy: bool
) -> None:
    # On the noiseless ideal substrate replica 1's first output is the clean forward pass
    # (predict) unless the rule's digital node noise was added to it.
    u, y = sine_stream(1)
    dev = AnalogDevice("ideal")
    cfg = RuleConfig(**rule)
    dev.load(Params.init(1, 16, 1, seed=0, readout_inputs=cfg.readout_inputs).arrays(),
             cfg.resolve(1, 16, 1))  # fmt: skip
    clean = dev.predict(u[:, None, :])
    first = dev.step(u[:, None, :], y[:, None, :]).predictions
    if replica1_noisy:
        assert not np.array_equal(first, clean)
    else:
        np.testing.assert_array_equal(first, clean)


def test_a_digital_readout_lives_outside_the_tiles() -> None:
    dev = AnalogDevice("pcm")
    spec = RuleConfig(readout="nlms").resolve(1, 16, 1)
    params = Params.init(1, 16, 1, seed=0, readout_inputs=True).arrays()
    dev.load(params, spec)
    assert dev.read_model()["B"].shape == (1, 16 + 1 + 1)
    assert dev._tiles["O"].dev.size == 0  # the output tile is not programmed
    u, y = sine_stream(500)
    dev.step(u[:, None, :], y[:, None, :])
    B = dev.read_model()["B"]
    assert np.all(np.isfinite(B)) and not np.array_equal(B, params["B"])


def test_checkpoint_with_a_digital_rls_readout_resumes_bit_identically(tmp_path) -> None:
    ln = OnlineLearner(1, 1, 12, RuleConfig(), seed=0, device=AnalogDevice("pcm"))
    u, y = sine_stream(400)
    ln.run(u[:200], y[:200])
    ln.save(tmp_path / "a.ckpt")
    rest = ln.run(u[200:], y[200:])
    again, _ = OnlineLearner.load(tmp_path / "a.ckpt", device=AnalogDevice("pcm"))
    res = again.run(u[200:], y[200:])
    assert res.loss1.tobytes() == rest.loss1.tobytes()
    assert again.device.read_model()["B"].tobytes() == ln.device.read_model()["B"].tobytes()


def test_readouts_the_analog_device_cannot_run_are_refused() -> None:
    dev = AnalogDevice("pcm")
    with pytest.raises(ConfigError, match="output tile reads the hidden state only"):
        dev.load(
            Params.init(1, 8, 1, seed=0, readout_inputs=True).arrays(),
            RuleConfig(readout="anp", readout_inputs=True).resolve(1, 8, 1),
        )


def test_the_guard_reprograms_the_hidden_tile_onto_the_bound() -> None:
    dev = AnalogDevice("pcm", noise_scale=0.0)
    spec = RuleConfig(readout="nlms", radius_bound=0.5, guard_every=100).resolve(1, 20, 1)
    params = Params.init(1, 20, 1, seed=0, readout_inputs=True, spectral_radius=0.95).arrays()
    dev.load(params, spec)
    u, y = sine_stream(300)
    dev.step(u[:, None, :], y[:, None, :])
    R = dev.read_model()["R"].astype(np.float64)
    assert dev.counts()["guard_projections"] >= 1
    assert np.max(np.abs(np.linalg.eigvals(R))) < 0.5 * 1.1
