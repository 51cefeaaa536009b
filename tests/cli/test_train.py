"""``twinpass train``: options, JSON results, checkpoints and resume, and error handling."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from shared_data import WTH, needs_wth

from twinpass.cli.main import cli
from twinpass.runtime import OnlineLearner, RuleConfig


@pytest.fixture(autouse=True)
def _no_wth_env(monkeypatch) -> None:
    monkeypatch.delenv("TWINPASS_WTH", raising=False)


def _train(*args: str) -> Result:
    return CliRunner().invoke(cli, ["train", *args])


def _ok(*args: str) -> Result:
    result = _train(*args)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    return result


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _without_wall(epochs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "wall_s"} for e in epochs]


def test_help_mentions_the_options() -> None:
    result = _ok("--help")
    for option in (
        "--task",
        "--rule",
        "--decorrelation",
        "--lr",
        "--sigma",
        "--eps",
        "--window",
        "--optimizer",
        "--two-noisy-passes",
        "--resync-every",
        "--output-cap",
        "--gain",
        "--reference",
        "--hidden",
        "--epochs",
        "--seed",
        "--batch",
        "--data",
        "--horizon",
        "--pairing",
        "--dtype",
        "--checkpoint",
        "--resume",
        "--json-out",
        "--quiet",
    ):
        assert option in result.output, option
    assert "mackey-glass" in result.output and "weather" in result.output


def test_short_run_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = _ok("--epochs", "2", "--hidden", "20", "--json-out", str(out))
    data = _json(out)
    assert set(data) == {"config", "epochs", "wall_s"}
    assert isinstance(data["wall_s"], float) and data["wall_s"] >= 0
    epochs = data["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert epochs[0]["train_mse"] is None
    assert all(isinstance(e["test_mse"], float) for e in epochs)
    assert all(isinstance(e["train_mse"], float) for e in epochs[1:])
    assert epochs[2]["test_mse"] < epochs[0]["test_mse"]  # it learned something
    config = data["config"]
    assert config["task"] == "mackey-glass" and config["hidden"] == 20
    assert config["task_params"]["pairing"] == "ahead"
    assert config["rule"] == RuleConfig().to_dict() and config["rule_name"] == "ANP"
    assert (config["epochs"], config["seed"], config["batch"]) == (2, 0, 1)
    assert (config["dtype"], config["device"]) == ("float32", "host")
    # The plain output: a header, one line per epoch, a table, the wall time.
    lines = result.output.splitlines()
    assert lines[0].startswith("ANP on mackey-glass: N=20")
    per_epoch = [line for line in lines if re.match(r"epoch +\d+  train MSE .* test MSE", line)]
    assert len(per_epoch) == 3
    assert any(re.match(r" *epoch +train MSE +test MSE$", line) for line in lines)  # the table
    assert lines[-1].startswith("wall time")


def test_the_numbers_are_those_of_the_library(tmp_path: Path) -> None:
    """The command trains exactly what OnlineLearner + train() would."""
    from twinpass.runtime.tasks import make_task
    from twinpass.runtime.training import train

    out = tmp_path / "r.json"
    _ok("--epochs", "1", "--hidden", "12", "--seed", "3", "--pairing", "recall", "--quiet",
        "--json-out", str(out))  # fmt: skip
    records = train(OnlineLearner(1, 1, 12, seed=3), make_task("mackey-glass", pairing="recall"), 1)
    assert _without_wall(_json(out)["epochs"]) == _without_wall([r.to_dict() for r in records])


def test_quiet_prints_nothing(tmp_path: Path) -> None:
    result = _ok("--epochs", "1", "--hidden", "10", "--quiet", "--json-out", str(tmp_path / "r"))
    assert result.output == ""
    assert (tmp_path / "r").is_file()


def test_checkpoint_is_loadable_and_resume_continues(tmp_path: Path) -> None:
    ckpt, a, b, c = (tmp_path / n for n in ("c.ckpt", "a.json", "b.json", "c.json"))
    common = ("--hidden", "20", "--seed", "1", "--quiet")
    _ok("--epochs", "2", "--checkpoint", str(ckpt), "--json-out", str(a), *common)
    learner, user = OnlineLearner.load(ckpt)
    assert learner.n_hidden == 20 and learner.seed == 1 and learner.steps == 2 * 5000
    assert [e["epoch"] for e in user["epochs"]] == [0, 1, 2]
    assert user["epochs"] == _json(a)["epochs"]
    assert user["config"] == _json(a)["config"]

    result = _ok("--epochs", "4", "--checkpoint", str(ckpt), "--resume", "--json-out", str(b),
                 "--hidden", "20", "--seed", "1")  # fmt: skip
    assert f"resumed from {ckpt} after epoch 2" in result.output
    resumed = _json(b)["epochs"]
    assert [e["epoch"] for e in resumed] == [0, 1, 2, 3, 4]
    assert resumed[:3] == _json(a)["epochs"]  # the shared epochs, wall times included
    assert OnlineLearner.load(ckpt)[0].steps == 4 * 5000
    # Resuming gives the same numbers as never stopping.
    _ok("--epochs", "4", "--json-out", str(c), *common)
    assert _without_wall(resumed) == _without_wall(_json(c)["epochs"])


def test_resume_without_a_checkpoint_file_starts_afresh(tmp_path: Path) -> None:
    ckpt = tmp_path / "new.ckpt"
    result = _ok("--epochs", "1", "--hidden", "10", "--checkpoint", str(ckpt), "--resume")
    assert "resumed" not in result.output
    assert OnlineLearner.load(ckpt)[0].steps == 5000


def test_resume_past_the_last_epoch_only_reports(tmp_path: Path) -> None:
    ckpt, out = tmp_path / "c.ckpt", tmp_path / "r.json"
    _ok("--epochs", "2", "--hidden", "10", "--checkpoint", str(ckpt), "--quiet")
    before = ckpt.read_bytes()
    _ok("--epochs", "1", "--hidden", "10", "--checkpoint", str(ckpt), "--resume",
        "--json-out", str(out))  # fmt: skip
    assert [e["epoch"] for e in _json(out)["epochs"]] == [0, 1, 2]
    assert ckpt.read_bytes() == before


def test_resume_refuses_a_checkpoint_of_another_task(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.ckpt"
    _ok("--epochs", "1", "--hidden", "10", "--checkpoint", str(ckpt), "--quiet")
    result = _train("--epochs", "2", "--hidden", "10", "--checkpoint", str(ckpt), "--resume",
                    "--pairing", "recall")  # fmt: skip
    assert result.exit_code != 0
    assert "Error" in result.output


@pytest.mark.parametrize(
    ("args", "field", "allowed"),
    [
        (["--leak", "1.5"], "leak", "(0, 1]"),
        (["--leak", "0"], "leak", "(0, 1]"),
        (["--forgetting", "1.01"], "forgetting", "(0, 1]"),
        (["--forgetting", "0"], "forgetting", "(0, 1]"),
        (["--spectral-radius", "0"], "spectral_radius", "> 0"),
        (["--spectral-radius", "-1"], "spectral_radius", "> 0"),
        (["--readout-step", "2"], "readout_step", "(0, 2)"),
    ],
)
def test_out_of_range_network_options_name_the_option_and_range(
    args: list[str], field: str, allowed: str, tmp_path: Path
) -> None:
    result = _train("--epochs", "0", "--hidden", "5", *args)
    assert result.exit_code != 0
    assert field in result.output and allowed in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rule", "bp", "--window", "5", "--optimizer", "adam"],
         {"rule": "bp", "bptt_window": 5, "optimizer": "adam"}),
        (["--decorrelation", "--eps", "0.002"], {"decorrelation": True, "eps": 0.002}),
        (["--rule", "np", "--sigma", "0.01", "--lr", "0.0005"],
         {"rule": "np", "sigma": 0.01, "lr": 0.0005}),
        (["--two-noisy-passes", "--resync-every", "0", "--no-output-cap", "--gain", "2"],
         {"two_noisy_passes": True, "resync_every": 0, "output_cap": False, "gain": 2.0}),
        (["--reference"], {"resync_every": 0, "output_cap": False}),
        (["--reference", "--resync-every", "5"], {"resync_every": 5, "output_cap": False}),
        (["--reference", "--rule", "bp"], {"optimizer": "adam", "bptt_window": 1}),
        (["--reference", "--rule", "bp", "-K", "4"], {"optimizer": "adam", "bptt_window": 4}),
        (["--reference", "--output-cap"], {"resync_every": 0, "output_cap": True}),
        (["--rule", "bp"], {"bptt_window": 20, "bptt_mode": "chunked", "optimizer": "adam"}),
        ([], {"readout": "rls", "readout_inputs": True, "leak": 0.3, "spectral_radius": 0.95}),
        (["--readout", "nlms", "--readout-step", "0.2", "--no-readout-inputs", "--leak", "1",
          "--lr-hidden", "0.01", "--radius-bound", "1.5", "--guard-every", "50"],
         {"readout": "nlms", "readout_step": 0.2, "readout_inputs": False, "leak": 1.0,
          "lr_hidden": 0.01, "radius_bound": 1.5, "guard_every": 50}),
        (["--reference"], {"readout": "anp", "readout_inputs": False, "leak": 1.0,
                           "spectral_radius": None, "radius_bound": None}),
    ],
)  # fmt: skip
def test_rule_options_reach_the_config(args: list[str], expected: dict, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    _ok("--epochs", "0", "--hidden", "5", "--quiet", "--json-out", str(out), *args)
    rule = _json(out)["config"]["rule"]
    for key, value in expected.items():
        assert rule[key] == value, (key, rule)
    assert RuleConfig.from_dict(rule).name == _json(out)["config"]["rule_name"]


def test_reference_bp_with_explicit_sgd(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    _ok("--epochs", "0", "--hidden", "5", "--quiet", "--json-out", str(out),
        "--reference", "--rule", "bp", "--optimizer", "sgd")  # fmt: skip
    assert _json(out)["config"]["rule"]["optimizer"] == "sgd"


def test_other_tasks_and_options(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    _ok("--task", "copy", "--epochs", "1", "--hidden", "10", "--batch", "16", "--quiet",
        "--json-out", str(out))  # fmt: skip
    data = _json(out)
    assert data["config"]["task"] == "copy" and data["config"]["batch"] == 16
    assert all("bit_errors" in e for e in data["epochs"])
    _ok("--epochs", "0", "--hidden", "5", "--dtype", "float64", "--horizon", "5", "--quiet",
        "--json-out", str(out))  # fmt: skip
    config = _json(out)["config"]
    assert config["dtype"] == "float64" and config["task_params"]["horizon"] == 5


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--rule", "sgd"],
        ["--task", "chess"],
        ["--hidden", "0"],
        ["--epochs", "-1"],
        ["--lr", "fast"],
        ["--batch", "0"],
        ["--window", "0"],
        ["--dtype", "float16"],
        ["--pairing", "sideways"],
        ["--resume"],  # needs --checkpoint
        ["--data", "x.csv"],  # only for weather
        ["--task", "copy", "--horizon", "3"],
    ],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    result = _train("--epochs", "1", "--hidden", "5", *args)
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.output and "Error:" in result.output
    assert "Traceback" not in result.output


def test_weather_without_data_is_a_usage_error() -> None:
    result = _train("--task", "weather", "--epochs", "1")
    assert result.exit_code == 2
    assert "--task weather needs --data" in result.output


def test_weather_with_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "WTH.csv"
    result = _train("--task", "weather", "--data", str(missing), "--epochs", "1")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "WTH.csv" in errors[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--lr", "-1"], "lr must be"),
        (["--lr", "0"], "lr must be > 0"),
        (["--lr", "nan"], "lr must be"),
        (["--rule", "np", "--sigma", "0"], "sigma"),
        (["--optimizer", "adam"], "Adam"),
        (["--rule", "wp", "--two-noisy-passes"], "two noisy passes"),
        (["--gain", "-1"], "gain"),
    ],
)
def test_bad_rule_values_exit_1_with_one_line(args: list[str], words: str) -> None:
    result = _train("--epochs", "1", "--hidden", "5", *args)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: ") and words in result.output
    assert result.output.count("\n") == 1


def test_batch_that_does_not_divide_the_sequences_is_an_error_not_a_traceback() -> None:
    result = _train("--epochs", "1", "--hidden", "5", "--batch", "2")  # Mackey-Glass: 1 series
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (1, 2) and "Error:" in result.output


@pytest.mark.parametrize("option", ["--checkpoint", "--json-out"])
def test_unwritable_output_is_refused_before_the_run(tmp_path: Path, option: str) -> None:
    # Checked before training: a missing folder used to crash after the whole run.
    path = tmp_path / "no" / "dir" / "c.out"
    result = _train("--epochs", "1", "--hidden", "5", "--quiet", option, str(path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Invalid value for {option}: cannot write" in result.output
    assert "does not exist" in result.output
    assert not (tmp_path / "no").exists()


def test_epochs_0_still_writes_the_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.ckpt"
    _ok("--epochs", "0", "--hidden", "5", "--quiet", "--checkpoint", str(ckpt))
    learner, user = OnlineLearner.load(ckpt)
    assert learner.steps == 0 and [e["epoch"] for e in user["epochs"]] == [0]
    result = _ok("--epochs", "1", "--hidden", "5", "--checkpoint", str(ckpt), "--resume")
    assert "resumed from" in result.output and "after epoch 0" in result.output


def test_a_stream_checkpoint_is_named_as_such(tmp_path: Path) -> None:
    ckpt = tmp_path / "s.ckpt"
    r = CliRunner().invoke(
        cli, ["stream", "-q", "-N", "5", "--max-steps", "50", "--checkpoint", str(ckpt)]
    )
    assert r.exit_code == 0, r.output
    result = _train("--epochs", "1", "--checkpoint", str(ckpt), "--resume")
    assert result.exit_code == 2 and "None" not in result.output
    assert "is a checkpoint of `twinpass stream`, not of train" in result.output


def test_divergence_has_a_flag(tmp_path: Path) -> None:
    args = ["--epochs", "1", "--hidden", "20", "--quiet", "--readout", "anp", "--no-output-cap"]
    args += ["--lr", "100"]
    result = _train(*args)
    assert result.exit_code == 1
    assert "diverged" in result.output and "--on-divergence rollback" in result.output
    assert "(epoch 1)" in result.output and len(result.output.strip().splitlines()) == 1
    out = tmp_path / "r.json"
    _ok(*args, "--on-divergence", "rollback", "--json-out", str(out))
    assert [e["epoch"] for e in _json(out)["epochs"]] == [0, 1]


def test_weather_env_variable_is_used(tmp_path: Path, monkeypatch) -> None:
    """$TWINPASS_WTH stands in for --data: a missing file there is reported by name."""
    monkeypatch.setenv("TWINPASS_WTH", str(tmp_path / "env-WTH.csv"))
    result = _train("--task", "weather", "--epochs", "1")
    assert result.exit_code == 1 and "env-WTH.csv" in result.output


@needs_wth
def test_weather_trains(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    _ok("--task", "weather", "--data", str(WTH), "--epochs", "1", "--hidden", "8",
        "--horizon", "24", "--quiet", "--json-out", str(out))  # fmt: skip
    data = _json(out)
    assert data["config"]["task"] == "weather"
    assert data["config"]["task_params"]["horizon"] == 24
    assert data["epochs"][1]["test_mse"] < data["epochs"][0]["test_mse"]


def test_console_script_in_a_real_process(tmp_path: Path) -> None:
    """The installed ``twinpass`` script (next to this interpreter), not CliRunner."""
    exe = shutil.which("twinpass", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("no twinpass console script beside the interpreter (package not installed)")
    env = {k: v for k, v in os.environ.items() if k != "TWINPASS_WTH"}
    proc = subprocess.run(
        [exe, "train", "--epochs", "1", "--hidden", "10"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("ANP on mackey-glass: N=10")
    assert "epoch   1  train MSE" in proc.stdout and "wall time" in proc.stdout
    bad = subprocess.run(
        [exe, "train", "--lr", "-1"], capture_output=True, text=True, timeout=120, env=env
    )
    assert bad.returncode == 1 and bad.stderr.startswith("Error: lr must be")
    assert "Traceback" not in bad.stderr
