"""`twinpass stream` with the online gradient rules at a horizon > 1 (a delayed label)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from twinpass.cli.main import cli


def test_eprop_streams_24_ahead_and_learns(tmp_path: Path) -> None:
    """Horizon 24: the learner scores causally by delaying the label 24 steps, which e-prop
    now learns with (it was refused). After 3000 steps its running error is far below
    persistence's and below its own frozen initial network's."""
    out = tmp_path / "r.json"
    args = ["stream", "--rule", "eprop", "--horizon", "24", "--max-steps", "3000", "-q"]
    result = CliRunner().invoke(cli, [*args, "--json-out", str(out)])
    assert result.exit_code == 0, result.output
    rec = json.loads(out.read_text())
    assert rec["label_delay"] == 24 and rec["causal"] and rec["steps"] == 3000
    assert rec["config"]["rule"]["rule"] == "eprop"
    assert rec["ema_mse"] < 0.1 * rec["persistence_ema_mse"]
    assert rec["ema_mse"] < 0.5 * rec["initial_model_ema_mse"]


def test_rtrl_at_a_horizon_is_still_a_one_line_error() -> None:
    result = CliRunner().invoke(cli, ["stream", "--rule", "rtrl", "--horizon", "3", "-q"])
    assert result.exit_code != 0
    assert "label delay" in result.output
