"""--rule rtrl|eprop|uoro and --feedback on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from twinpass.cli.main import cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rule", "eprop", "--feedback", "random"], {"rule": "eprop", "feedback": "random"}),
        (["--rule", "uoro"], {"rule": "uoro", "readout": "rls"}),
        (["--rule", "rtrl", "--leak", "1"], {"rule": "rtrl", "leak": 1.0}),
    ],
)
def test_train_takes_the_gradient_rules(args: list[str], expected: dict, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        cli, ["train", "--epochs", "1", "--hidden", "6", "--quiet", "--json-out", str(out), *args]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    rule = record["config"]["rule"]
    for key, value in expected.items():
        assert rule[key] == value, (key, rule)
    assert record["epochs"][-1]["test_mse"] > 0


def test_feedback_of_a_perturbation_rule_is_a_one_line_error() -> None:
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--feedback", "random"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "for the gradient rules" in result.output
    assert result.output.count("\n") == 1
