"""A noisy serial line, as issue 14 measured it: bit flips, dropped and duplicated bytes at
a rate per byte (so long frames are hit more often), through the fault proxy between the
host and a real simulator process on real ptys. The run finishes, with the weights of a
clean run, because frames shrink after a resend (and grow back on a clean line); a large
STEP frame resent unchanged (the old behaviour) was rarely delivered whole at this rate."""

from __future__ import annotations

import numpy as np
import pytest
from fault_proxy import ProxyProcess
from sim_process import start_simulator

from twinpass.core.errors import ConfigError
from twinpass.devices.serial import SerialDevice
from twinpass.devices.serial_link import LinkStats
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

N, T = 8, 400
RULE = RuleConfig(**PAPER_NETWORK, lr=1e-2).resolve(1, N, 1)
# Three times the rates of the measurement (flip 5e-4, drop 2e-4, dup 2e-3 per
# byte), so that a short run meets as many faults as the long one.
NOISE = ("flip:both:1.5e-3/B", "drop:both:6e-4/B", "dup:both:6e-3/B")


def _session(path: str, **kw: object) -> tuple[dict[str, np.ndarray], np.ndarray, LinkStats]:
    dev = SerialDevice(path, base_timeout=0.1, first_timeout=1.5, **kw)  # type: ignore[arg-type]
    try:
        dev.load(Params.init(1, N, 1, seed=0).arrays(), RULE, seed=3)
        u = np.random.default_rng(0).standard_normal((T + 1, 1, 1)).astype(np.float32)
        res = dev.step(u[:-1], 0.5 * u[1:])
        return dev.read_model(), res.predictions, dev.link.stats
    finally:
        dev.close()


def test_a_noisy_line_finishes_with_the_clean_weights(tmp_path) -> None:
    with start_simulator(tmp_path / "flash.bin") as sim:
        clean_w, clean_p, _ = _session(sim.path)
        with ProxyProcess(sim.path, *NOISE, seed=1, skip=1) as proxy:
            w, p, stats = _session(proxy.path)
            injected = proxy.stop()
    assert injected.get("flip:up", 0) + injected.get("flip:down", 0) >= 5, injected
    assert stats.retries >= 5  # the faults did bite
    assert w.keys() == clean_w.keys()
    assert all(w[k].tobytes() == clean_w[k].tobytes() for k in w)
    assert np.array_equal(p, clean_p)
    # Frames shrank: far more STEPs than the 32-step frames of a clean line would take.
    assert stats.requests > 2 * T / 32


def test_the_retry_budget_is_checked() -> None:
    with pytest.raises(ConfigError, match="retries must be a whole number >= 0"):
        SerialDevice("loop://", retries=-1)
