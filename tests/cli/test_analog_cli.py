"""``--device analog[:preset]`` and ``--noise-scale`` on ``train`` and ``stream``, and the
analog backend in ``twinpass devices``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from twinpass.cli.main import cli

FAST = ["--hidden", "8", "--quiet"]


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_train_on_analog_records_the_device(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["train", "--task", "copy", "--epochs", "1", *FAST, "--json-out", str(out)]
    result = _run(*args, "--device", "analog:rram", "--noise-scale", "0.5")
    assert result.exit_code == 0, result.output
    config = json.loads(out.read_text())["config"]
    assert config["device"] == "analog"
    assert config["device_spec"] == {
        "spec": "analog:rram",
        "noise_scale": 0.5,
        "analog_update": None,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "analog:nope"], "unknown analog preset 'nope'"),
        (["--device", "quantum"], "unknown device 'quantum'"),
        (["--device", "host", "--noise-scale", "2"], "--noise-scale is for the analog device"),
        (["--device", "analog", "--noise-scale", "-1"], "noise_scale must be"),
        (["--device", "analog", "--dtype", "float64"], "computes in float32"),
        (["--device", "analog", "--rule", "bp"], "not one the analog device runs"),
        (["--device", "analog:"], "empty option"),
    ],
)
def test_bad_device_options_are_one_line_errors(args: list[str], message: str) -> None:
    result = _run("train", "--task", "copy", "--epochs", "0", *FAST, *args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines


def test_train_resume_continues_on_the_same_analog_device(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.ckpt"
    base = ["train", "--task", "copy", *FAST, "--device", "analog:pcm", "--noise-scale", "0.3"]
    whole = tmp_path / "whole.json"
    assert _run(*base, "--epochs", "2", "--json-out", str(whole)).exit_code == 0
    first = _run(*base, "--epochs", "1", "--checkpoint", str(ckpt))
    assert first.exit_code == 0, first.output
    # Resuming takes the device from the checkpoint; giving another one is refused.
    clash = _run("train", "--task", "copy", *FAST, "--epochs", "2", "--checkpoint", str(ckpt),
                 "--resume", "--device", "analog:rram")  # fmt: skip
    assert clash.exit_code == 2 and "device" in clash.output
    resumed = tmp_path / "resumed.json"
    again = _run("train", "--task", "copy", *FAST, "--epochs", "2", "--checkpoint", str(ckpt),
                 "--resume", "--json-out", str(resumed))  # fmt: skip
    assert again.exit_code == 0, again.output
    a = json.loads(whole.read_text())["epochs"]
    b = json.loads(resumed.read_text())["epochs"]
    assert [r["test_mse"] for r in a] == [r["test_mse"] for r in b]


def test_stream_on_analog_and_resume(tmp_path: Path) -> None:
    ckpt = tmp_path / "s.ckpt"
    out = tmp_path / "s.json"
    args = ["stream", *FAST, "--device", "analog:ideal", "--max-steps", "300"]
    result = _run(*args, "--checkpoint", str(ckpt), "--json-out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["config"]["device"] == "analog:ideal"
    more = _run("stream", *FAST, "--max-steps", "400", "--checkpoint", str(ckpt), "--resume",
                "--json-out", str(out))  # fmt: skip
    assert more.exit_code == 0, more.output
    assert json.loads(out.read_text())["steps"] == 400
    bad = _run("stream", *FAST, "--device", "analog:bogus")
    assert bad.exit_code == 1 and "unknown analog preset" in bad.output


def test_devices_lists_analog_with_its_presets() -> None:
    result = _run("devices", "--json")
    assert result.exit_code == 0, result.output
    analog = next(d for d in json.loads(result.output) if d["name"] == "analog")
    assert set(analog["extra"]["presets"]) == {"pcm", "rram", "ideal"}
    assert analog["rules"] == ["anp", "np", "wp"] and analog["exact"] is False
    table = _run("devices")
    assert "analog" in table.output and "rram" in table.output
