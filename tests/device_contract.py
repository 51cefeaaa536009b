"""The device contract: what every backend must do, whatever it computes on.

A backend is put under contract by one :class:`BackendCase` entry in
``tests/devices/test_contract.py``; a test module for hardware (a serial port) can reuse
:class:`DeviceContract` with a ``case`` fixture of its own. Backend-specific behaviour
(the host's kernels, the analog noise statistics) belongs in that backend's own tests.

The checks speak only the :class:`~twinpass.devices.base.Device` protocol and the
project's error types, so a backend passes them or the contract is wrong, never the test
harness. Comparisons are bit-exact unless a case gives a tolerance (a noisy backend).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pytest

from twinpass.core.errors import ConfigError, DeviceError, ShapeError
from twinpass.core.rule_spec import RuleSpec
from twinpass.devices.base import PARAM_NAMES, Device, DeviceInfo, StepResult
from twinpass.devices.registry import make_device
from twinpass.runtime import OnlineLearner, Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK, READOUTS, RULES

#: The rule every backend runs: the paper's network and readout (with twinpass's
#: safeguards). The host's exact readouts and leaky units are tested in test_host.py.
PAPER = RuleConfig(**PAPER_NETWORK)

N_IN, N_HIDDEN, N_OUT = 2, 10, 1
SEED = 3


@dataclass(frozen=True)
class BackendCase:
    """One backend configuration under contract.

    spec: what :func:`make_device` takes (``host``, ``host:float64``, later ``analog:ideal``).
    dtype: the dtype the device computes in (its parameters and predictions).
    tol: 0 compares read-backs and fresh-device predictions bit for bit; a noisy backend
    gives the absolute tolerance its noise allows.
    loss_atol: absolute tolerance of the losses against the MSE of the predictions; 0 for a
    float backend, the target quantisation's share for a fixed-point one (its loss is that
    of the quantised targets).
    options: keyword options for :func:`make_device` (``noise_scale=0.05``).
    learn_tol: the change of a weight that counts as learning in ten steps (default
    ``tol``); a noisy backend whose read-back tolerance is larger than what NP or WP
    learn in ten steps at lr 1e-3 sets it lower.
    known_bugs: ``test_name`` or ``test_name[param_id]`` -> reason: that test is expected to
    fail (strict xfail) on this case until the backend is fixed; the reason says the bug
    and the fix. Parameter ids must not contain "-" (pytest joins ids with it).
    """

    spec: str
    dtype: str = "float32"
    tol: float = 0.0
    loss_atol: float = 0.0
    known_bugs: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    learn_tol: float | None = None

    def make(self) -> Device:
        return make_device(self.spec, **self.options)

    @property
    def backend(self) -> str:
        return self.spec.partition(":")[0]


def model(dtype: str = "float32", seed: int = 0) -> dict[str, np.ndarray]:
    """A small network's parameters A, R, B, D."""
    return Params.init(N_IN, N_HIDDEN, N_OUT, seed=seed, dtype=dtype).arrays()


def block(
    T: int = 20, batch: int = 1, *, dtype: Any = np.float32, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs (T, batch, N_IN) and targets (T, batch, N_OUT)."""
    g = np.random.default_rng(seed)
    return (
        g.standard_normal((T, batch, N_IN)).astype(dtype),
        (0.3 * g.standard_normal((T, batch, N_OUT))).astype(dtype),
    )


def resolved(rule: RuleConfig, params: Mapping[str, np.ndarray]) -> RuleSpec:
    """``rule`` resolved for the network ``params`` holds: what a device's load takes."""
    n, n_in = np.shape(params["A"])
    return rule.resolve(n_in, n, np.shape(params["B"])[0])


def same(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """Equal bits (tol 0), or equal within an absolute tolerance."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    return a.tobytes() == b.tobytes() if tol == 0 else bool(np.allclose(a, b, rtol=0, atol=tol))


def same_model(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], tol: float) -> bool:
    return set(a) == set(b) and all(same(a[k], b[k], tol) for k in a)


class DeviceContract:
    """The contract tests. Subclass as ``Test...`` in a module that defines ``case``."""

    @pytest.fixture(autouse=True)
    def _known_bugs(self, request: pytest.FixtureRequest, case: BackendCase) -> None:
        # A documented bug of one backend turns that one test into a strict xfail: it
        # must keep failing until fixed, and then the entry must be removed.
        # Keys are "test_name" or "test_name[param_id]" (one of the test's own parameters).
        name = request.node.originalname
        callspec = getattr(request.node, "callspec", None)
        ids = callspec.id.split("-") if callspec is not None else []
        keys = [name, *(f"{name}[{i}]" for i in ids)]
        reason = next((case.known_bugs[k] for k in keys if k in case.known_bugs), None)
        if reason:
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))

    @pytest.fixture
    def new(self, case: BackendCase) -> Iterator[Callable[..., Device]]:
        """Build (and by default load) devices of the case; all are closed afterwards."""
        made: list[Device] = []

        def make(
            rule: RuleConfig | None = None,
            *,
            batch: int = 1,
            seed: int = SEED,
            params: Mapping[str, np.ndarray] | None = None,
            load: bool = True,
        ) -> Device:
            dev = case.make()
            made.append(dev)
            if load:
                arrays = model(case.dtype) if params is None else params
                dev.load(arrays, resolved(rule or PAPER, arrays), batch=batch, seed=seed)
            return dev

        yield make
        for dev in made:
            dev.close()

    # -- what it is ------------------------------------------------------------------------

    def test_is_a_device_and_describes_itself(
        self, case: BackendCase, new: Callable[..., Device]
    ) -> None:
        dev = new(load=False)  # info() needs no model: `twinpass devices` lists unloaded ones
        assert isinstance(dev, Device)
        info = dev.info()
        assert isinstance(info, DeviceInfo)
        assert info.name == case.backend
        assert isinstance(info.description, str) and info.description.strip()
        assert isinstance(info.rules, tuple) and info.rules
        assert set(info.rules) <= set(RULES), f"rules the runtime does not know: {info.rules}"
        assert isinstance(info.dtypes, tuple) and case.dtype in info.dtypes
        assert all(np.issubdtype(np.dtype(d), np.floating) for d in info.dtypes)
        assert isinstance(info.exact, bool)
        assert info.max_hidden is None or (isinstance(info.max_hidden, int) and info.max_hidden > 0)
        # Plain data, unchanged by loading: it is printed as JSON by `twinpass devices`.
        json.dumps(asdict(info))
        loaded = new()
        assert loaded.info() == info

    # -- stepping and predicting -------------------------------------------------------------

    @pytest.mark.parametrize("batch", [1, 4])
    def test_step_and_predict_shapes(
        self, case: BackendCase, new: Callable[..., Device], batch: int
    ) -> None:
        dev = new(batch=batch)
        U, Y = block(T=15, batch=batch)
        res = dev.step(U, Y)
        assert isinstance(res, StepResult)
        assert res.applied == 15
        assert res.predictions.shape == (15, batch, N_OUT)
        assert res.predictions.dtype == np.dtype(case.dtype)
        for loss in (res.loss1, res.loss2):
            assert loss.shape == (15,) and np.issubdtype(loss.dtype, np.floating)
            assert np.all(np.isfinite(loss))
        # loss1 is replica 1's loss: the MSE (over outputs and batch) of the predictions.
        err = res.predictions.astype(np.float64) - Y.astype(np.float64)
        np.testing.assert_allclose(
            res.loss1, np.mean(err**2, axis=(1, 2)), rtol=1e-5, atol=case.loss_atol
        )
        # predict takes any batch, whatever the learning batch is.
        for b in sorted({1, 4, batch, 3}):
            P, _ = block(T=7, batch=b, seed=2)
            out = dev.predict(P)
            assert out.shape == (7, b, N_OUT) and out.dtype == np.dtype(case.dtype)
            assert np.all(np.isfinite(out))

    def test_same_seed_same_bits_other_seed_other_noise(
        self, case: BackendCase, new: Callable[..., Device]
    ) -> None:
        U, Y = block(T=30, batch=2)
        runs = []
        for seed in (SEED, SEED, SEED + 1):
            dev = new(batch=2, seed=seed)
            res = dev.step(U, Y)
            runs.append((res, dev.read_model(), dev.predict(U)))
        (a, ma, pa), (b, mb, pb), (c, mc, _) = runs
        # Same seed: the same bits, noise included (tolerance 0 even for a noisy backend).
        for x, y in ((a.predictions, b.predictions), (a.loss1, b.loss1), (a.loss2, b.loss2)):
            assert same(x, y, 0)
        assert same_model(ma, mb, 0) and same(pa, pb, 0)
        # Another seed: other perturbations, so other losses and other learned weights.
        assert not same(a.loss2, c.loss2, 0)
        assert not same_model(ma, mc, 0)

    # -- the model ---------------------------------------------------------------------------

    def test_load_and_read_back_round_trip_with_copies(
        self, case: BackendCase, new: Callable[..., Device]
    ) -> None:
        params = model(case.dtype)
        original = {k: v.copy() for k, v in params.items()}
        dev = new(params=params)
        out = dev.read_model()
        assert set(out) == set(PARAM_NAMES)
        assert all(v.dtype == np.dtype(case.dtype) for v in out.values())
        assert same_model(out, original, case.tol)
        assert all(not np.shares_memory(out[k], params[k]) for k in out)
        assert dev.max_abs_weight() == max(float(np.abs(v).max()) for v in out.values())
        # Neither the caller's arrays nor the returned copies reach the device.
        params["R"][:] = 99.0
        out["A"][:] = -99.0
        assert same_model(dev.read_model(), original, case.tol)
        # A second load replaces the model; other dtypes are converted to the device's.
        other = model("float64", seed=7)
        dev.load(other, resolved(PAPER, other), seed=SEED)
        back = dev.read_model()
        assert all(v.dtype == np.dtype(case.dtype) for v in back.values())
        converted = {k: v.astype(case.dtype) for k, v in other.items()}
        assert same_model(back, converted, case.tol)

    def test_export_import_state_continues_bit_identically(
        self, case: BackendCase, new: Callable[..., Device]
    ) -> None:
        U, Y = block(T=40, batch=2)
        dev = new(batch=2)
        dev.step(U[:17], Y[:17])
        weights, state = dev.read_model(), dev.export_state()
        frozen = {k: np.array(v, copy=True) for k, v in state.items()}
        rest = dev.step(U[17:], Y[17:])
        # The export is a copy: stepping on does not change it.
        assert all(same(state[k], frozen[k], 0) for k in state)

        restored = new(batch=2, params=weights)
        restored.import_state(state)
        again = restored.step(U[17:], Y[17:])
        assert same(again.predictions, rest.predictions, 0)
        assert same(again.loss1, rest.loss1, 0) and same(again.loss2, rest.loss2, 0)
        assert same_model(restored.read_model(), dev.read_model(), 0)
        # Control: the same weights without the state do not continue the same way.
        cold = new(batch=2, params=weights).step(U[17:], Y[17:])
        assert not same(cold.predictions, rest.predictions, 0)

    def test_every_listed_readout_continues_bit_identically_after_export_import(
        self, new: Callable[..., Device]
    ) -> None:
        """An exact readout keeps learner state of its own (RLS's P, on a serial device read
        and written row block by row block): it travels with export_state/import_state."""
        U, Y = block(T=30, batch=2)
        probe = new(load=False)
        readouts = probe.info().readouts
        probe.close()  # a serial case has a pool of devices: give them back as we go
        for readout in readouts:
            # P0 10: what a fixed-point device holds (docs/protocol.md §6.8).
            rule = PAPER.replace(readout=readout, readout_p0=10.0)
            dev = new(rule, batch=2)
            dev.step(U[:13], Y[:13])
            weights, state = dev.read_model(), dev.export_state()
            rest = dev.step(U[13:], Y[13:])
            restored = new(rule, batch=2, params=weights)
            restored.import_state(state)
            again = restored.step(U[13:], Y[13:])
            assert same(again.predictions, rest.predictions, 0), readout
            assert same_model(restored.read_model(), dev.read_model(), 0), readout
            dev.close()
            restored.close()

    def test_reset_state_zeroes_the_replicas_and_keeps_the_weights(
        self, case: BackendCase, new: Callable[..., Device]
    ) -> None:
        U, Y = block(T=25)
        U2, Y2 = block(T=5, seed=9)
        dev = new()
        dev.step(U, Y)
        weights = dev.read_model()
        dev.reset_state()
        assert same_model(dev.read_model(), weights, 0)
        after_reset = dev.step(U2, Y2)
        fresh = new(params=weights).step(U2, Y2)
        # Step 0's prediction is made before any update, from the (zero) state and the
        # weights: a reset device and a fresh one with the same weights agree on it.
        assert same(after_reset.predictions[0], fresh.predictions[0], case.tol)
        # Control: without the reset the carried state shows in that prediction.
        carried = new(params=model(case.dtype))
        carried.step(U, Y)
        assert not same(carried.step(U2, Y2).predictions[0], fresh.predictions[0], case.tol)

    # -- what is refused ---------------------------------------------------------------------

    @pytest.mark.parametrize(
        "bad",
        [
            "wrong n_in",
            "wrong n_out",
            "wrong batch",
            "2d inputs",
            "2d targets",
            "integer inputs",
            "integer targets",
            "mismatched T",
            "a list",
        ],
    )
    def test_bad_blocks_are_refused_without_side_effects(
        self, case: BackendCase, new: Callable[..., Device], bad: str
    ) -> None:
        dev = new(batch=2)
        U, Y = block(T=12, batch=2)
        dev.step(U, Y)  # a state worth protecting
        weights, state = dev.read_model(), dev.export_state()
        g = np.random.default_rng(5)
        U_bad, Y_bad = {
            "wrong n_in": (g.standard_normal((12, 2, N_IN + 1)).astype(np.float32), Y),
            "wrong n_out": (U, np.zeros((12, 2, N_OUT + 1), np.float32)),
            "wrong batch": (U[:, :1], Y[:, :1]),
            "2d inputs": (U[:, 0], Y),
            "2d targets": (U, Y[:, 0]),
            "integer inputs": (U.astype(np.int64), Y),
            "integer targets": (U, Y.astype(np.int32)),
            "mismatched T": (U, Y[:-1]),
            "a list": (U.tolist(), Y),
        }[bad]
        with pytest.raises(ShapeError):
            dev.step(U_bad, Y_bad)
        # Refused means nothing happened: same weights, same state, and it still learns.
        assert same_model(dev.read_model(), weights, 0)
        after = dev.export_state()
        assert set(after) == set(state) and all(same(after[k], state[k], 0) for k in state)
        assert dev.step(U, Y).applied == 12

    @pytest.mark.parametrize("bad", ["wrong n_in", "2d", "integer", "a list"])
    def test_bad_predict_inputs_are_refused(self, new: Callable[..., Device], bad: str) -> None:
        dev = new()
        U, _ = block(T=8, batch=3)
        U_bad = {
            "wrong n_in": np.zeros((8, 3, N_IN + 1), np.float32),
            "2d": U[:, 0],
            "integer": U.astype(np.int32),
            "a list": U.tolist(),
        }[bad]
        with pytest.raises(ShapeError):
            dev.predict(U_bad)

    def test_bad_models_are_refused(self, case: BackendCase, new: Callable[..., Device]) -> None:
        dev = new(load=False)
        rule = resolved(PAPER, model())
        for name in PARAM_NAMES:
            with pytest.raises(ShapeError):
                dev.load({k: v for k, v in model(case.dtype).items() if k != name}, rule)
        misshapen = model(case.dtype)
        misshapen["R"] = np.zeros((N_HIDDEN + 1, N_HIDDEN + 1), case.dtype)
        with pytest.raises(ShapeError):
            dev.load(misshapen, rule)
        with pytest.raises(ConfigError):
            dev.load(model(case.dtype), rule, batch=0)

    @pytest.mark.parametrize(
        "rule",
        [{}, {"rule": "anp"}, PAPER.to_dict(), PAPER],
        ids=["empty", "name_only", "a_full_mapping", "unresolved"],
    )
    def test_a_rule_that_is_not_a_resolved_spec_is_refused(
        self, new: Callable[..., Device], rule: Any
    ) -> None:
        """A backend takes the rule only as a RuleSpec (RuleConfig.resolve): a mapping, even
        a complete one, would leave it to fill in defaults of its own."""
        dev = new(load=False)
        with pytest.raises(ConfigError, match="RuleSpec"):
            dev.load(model(), rule)

    def test_a_rule_resolved_for_another_network_is_refused(
        self, new: Callable[..., Device]
    ) -> None:
        # Its gain was worked out for another number of units.
        dev = new(load=False)
        other = PAPER.resolve(N_IN, N_HIDDEN + 1, N_OUT)
        with pytest.raises(ConfigError, match="resolved for a 2-11-1 network, the model is 2-10-1"):
            dev.load(model(), other)

    def test_a_rule_or_readout_it_does_not_list_is_refused_naming_those_it_runs(
        self, new: Callable[..., Device]
    ) -> None:
        dev = new(load=False)
        info = dev.info()
        for what, listed, everything in (
            ("rule", info.rules, RULES),
            ("readout", info.readouts, READOUTS),
        ):
            for name in sorted(set(everything) - set(listed)):
                spec = replace(resolved(PAPER, model()), **{what: name})
                with pytest.raises(ConfigError) as refused:
                    dev.load(model(), spec)
                message = str(refused.value)
                assert f"{what} {name!r} is not one the {info.name} device runs" in message
                assert all(offered in message for offered in listed), message

    def test_reports_the_resolved_rule_it_received(
        self, case: BackendCase, new: Callable[..., Device]
    ) -> None:
        """Every backend receives the same resolved rule and reports it back unchanged: no
        backend fills in or alters a value of its own."""
        params = model(case.dtype)
        spec = resolved(PAPER, params)
        dev = new(params=params)
        assert dev.rule_spec() == spec
        assert spec.gain == np.sqrt(N_IN + N_HIDDEN + N_OUT) and spec.lr_hidden == spec.lr
        # A later load replaces it, with every field as given.
        other = resolved(PAPER.replace(lr=2e-3, resync_every=3, output_cap=False), params)
        dev.load(params, other, seed=SEED)
        assert dev.rule_spec() == other

    def test_use_before_load_raises_device_error(self, new: Callable[..., Device]) -> None:
        dev = new(load=False)
        U, Y = block()
        calls: list[Callable[[], Any]] = [
            dev.read_model,
            dev.reset_state,
            dev.export_state,
            dev.max_abs_weight,
            dev.rule_spec,
            lambda: dev.step(U, Y),
            lambda: dev.predict(U),
            lambda: dev.import_state({}),
        ]
        for call in calls:
            with pytest.raises(DeviceError):
                call()

    @pytest.mark.parametrize(
        "rule", [PAPER, PAPER.replace(rule="np", decorrelation=True)], ids=lambda c: c.name
    )
    def test_inputs_and_targets_are_never_modified(
        self, case: BackendCase, new: Callable[..., Device], rule: RuleConfig
    ) -> None:
        rules = new(load=False).info().rules
        if rule.rule not in rules:  # a backend with fewer rules: the same check with its first
            rule = rule.replace(rule=rules[0])
        dev = new(rule, batch=2)
        for dtype in (np.float32, np.float64):  # the device's dtype passed through, or not
            U, Y = block(T=20, batch=2, dtype=dtype)
            U0, Y0 = U.copy(), Y.copy()
            dev.step(U, Y)
            dev.predict(U)
            dev.predict(U, reset=False)
            assert same(U, U0, 0) and same(Y, Y0, 0)

    def test_a_strided_block_gives_the_same_result_as_its_copy(
        self, new: Callable[..., Device]
    ) -> None:
        # Inputs sliced from a larger array (the usual case when streaming windows) must
        # not be read with the wrong strides.
        U, Y = block(T=40, batch=2)
        a = new(batch=2).step(U[::2], Y[::2])
        b = new(batch=2).step(U[::2].copy(), Y[::2].copy())
        assert same(a.predictions, b.predictions, 0) and same(a.loss2, b.loss2, 0)

    def test_close_twice_is_harmless_and_use_after_close_raises(
        self, new: Callable[..., Device]
    ) -> None:
        new(load=False).close()  # closing a device that never loaded anything
        dev = new()
        U, Y = block()
        state = dev.export_state()
        dev.close()
        dev.close()
        calls: list[Callable[[], Any]] = [
            dev.read_model,
            dev.reset_state,
            dev.export_state,
            dev.max_abs_weight,
            lambda: dev.step(U, Y),
            lambda: dev.predict(U),
            lambda: dev.import_state(state),
            dev.rule_spec,
            lambda: dev.load(model(), resolved(PAPER, model())),
        ]
        for call in calls:
            with pytest.raises(DeviceError):
                call()

    # -- learning ------------------------------------------------------------------------------

    def test_online_learner_drives_it_and_learns_a_sine(
        self, case: BackendCase, new: Callable[..., Device]
    ) -> None:
        dev = new(load=False)
        config = PAPER.replace(lr=1e-2)  # the default 1e-3 needs a longer stream
        learner = OnlineLearner(1, 1, 16, config, seed=0, dtype=case.dtype, device=dev)
        assert learner.device is dev
        s = np.sin(0.2 * np.arange(3001)).astype(case.dtype)
        res = learner.run(s[:-1, None], s[1:, None])  # predict one step ahead
        # On host, ANP gets >10x lower here (seeds 0-2); without learning it stays put.
        early, late = res.loss1[:300].mean(), res.loss1[-300:].mean()
        assert late < early / 5, (early, late)
        # The learner holds no copy of the model: what it reports is the device's.
        assert same_model(learner.params.arrays(), dev.read_model(), 0)

    @pytest.mark.parametrize("decorrelation", [False, True], ids=["plain", "decorrelated"])
    def test_every_listed_rule_runs(
        self, case: BackendCase, new: Callable[..., Device], decorrelation: bool
    ) -> None:
        # Longer than BP's default window (20 steps, one update at its end).
        U, Y = block(T=25, batch=2)
        for name in new(load=False).info().rules:
            before = model(case.dtype)
            dev = new(PAPER.replace(rule=name, decorrelation=decorrelation), batch=2, params=before)
            res = dev.step(U, Y)
            assert res.applied == 25, name
            assert np.all(np.isfinite(res.loss1)) and np.all(np.isfinite(res.loss2)), name
            after = dev.read_model()
            tol = case.tol if case.learn_tol is None else case.learn_tol
            for k in ("A", "R", "B"):
                assert not same(after[k], before[k], tol), f"{name} did not learn {k}"
            # D is learned exactly when decorrelation is on.
            assert same(after["D"], before["D"], tol) != decorrelation, name
