"""Runs and their resumption (twinpass.runtime.run): the device record, the checkpoint's
record of its run in both commands' layouts (and from before devices were recorded), and
the clash checks, through the command line that uses them and directly."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from click.testing import CliRunner

from twinpass.cli.main import cli
from twinpass.runtime.checkpoint import load_checkpoint, save_checkpoint
from twinpass.runtime.config import RuleConfig
from twinpass.runtime.run import (
    ResumeClash,
    check_stream_options,
    device_record,
    resume_stream,
    resume_training,
    run_config,
    saved_run,
)

HOST = device_record("host", None, None)


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def train_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("train") / "t.ckpt"
    _ok("train", "-N", "6", "--epochs", "1", "--checkpoint", str(path), "-q")
    return path


@pytest.fixture(scope="module")
def stream_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "s.ckpt"
    _ok("stream", "-N", "6", "--max-steps", "300", "--checkpoint", str(path), "-q")
    return path


def _without_device(src: Path, dst: Path) -> Path:
    """The checkpoint as written before runs recorded their device."""
    ck = load_checkpoint(src)
    meta = copy.deepcopy(dict(ck.meta))
    config = run_config(meta["user"])
    assert config["device_spec"] == HOST
    target = meta["user"]["run"]["config"] if "stream" in meta["user"] else meta["user"]["config"]
    del target["device_spec"]
    target.pop("device_identity", None)
    save_checkpoint(dst, ck.arrays, meta)
    return dst


def test_both_layouts_are_read_alike(train_ckpt: Path, stream_ckpt: Path) -> None:
    t, s = saved_run(str(train_ckpt)), saved_run(str(stream_ckpt))
    assert (t.command, s.command) == ("train", "stream")
    assert t.device == s.device == HOST
    assert t.config["task"] == "mackey-glass" and t.config["hidden"] == 6
    assert s.config["source"] == "mackey-glass" and s.config["hidden"] == 6


def test_a_checkpoint_from_before_device_records_ran_on_the_host(
    train_ckpt: Path, stream_ckpt: Path, tmp_path: Path
) -> None:
    for src in (train_ckpt, stream_ckpt):
        old = _without_device(src, tmp_path / f"old-{src.name}")
        assert saved_run(str(old)).device == HOST
    # ... and both commands continue them.
    old_train = tmp_path / "old-t.ckpt"
    out = _ok("train", "-N", "6", "--epochs", "2", "--checkpoint", str(old_train), "--resume")
    assert "resumed from" in out and "epoch   2" in out
    old_stream = tmp_path / "old-s.ckpt"
    out = _ok("stream", "--max-steps", "400", "--checkpoint", str(old_stream), "--resume")
    assert "resumed from" in out and "at step 300" in out


def test_a_resume_reopens_the_runs_device_and_hands_it_over_to_close(
    train_ckpt: Path, stream_ckpt: Path
) -> None:
    opened = []
    t = resume_training(str(train_ckpt), {}, device=HOST, dtype="float32", on_open=opened.append)
    s = resume_stream(
        str(stream_ckpt), {}, device=HOST, dtype="float32", rule=RuleConfig(),
        on_open=opened.append,
    )  # fmt: skip
    assert opened == [t.device, s.device] and t.learner.device is t.device
    assert [r["epoch"] for r in t.epochs] == [0, 1]
    assert s.forecaster.steps == 300 and s.config["horizon"] == 1
    for d in opened:
        d.close()


def test_clashing_options_are_a_config_error_naming_the_checkpoints_values(
    train_ckpt: Path, stream_ckpt: Path
) -> None:
    with pytest.raises(ResumeClash, match="--hidden 6"):
        resume_stream(
            str(stream_ckpt), {"hidden": 7}, device=HOST, dtype="float32", rule=RuleConfig()
        )
    with pytest.raises(ResumeClash, match="made on the device"):
        analog = device_record("analog", None, None)
        resume_stream(
            str(stream_ckpt), {"device": "analog"}, device=analog, dtype="float32",
            rule=RuleConfig(),
        )  # fmt: skip
    with pytest.raises(ResumeClash, match="is a checkpoint of `twinpass stream`"):
        resume_training(str(stream_ckpt), {}, device=HOST, dtype="float32")
    saved = saved_run(str(stream_ckpt)).config
    with pytest.raises(ResumeClash, match="the rule"):
        check_stream_options(saved, {"rule": True}, RuleConfig(lr=0.5))
    check_stream_options(saved, {"rule": True, "seed": 0}, RuleConfig.from_dict(saved["rule"]))
    assert issubclass(ResumeClash, ValueError)  # a ConfigError


def test_the_command_line_reports_a_clash_as_a_usage_error(stream_ckpt: Path) -> None:
    result = CliRunner().invoke(
        cli, ["stream", "--checkpoint", str(stream_ckpt), "--resume", "--horizon", "3"]
    )
    assert result.exit_code == 2
    assert "the checkpoint was made with --horizon 1: drop the clashing options" in result.output
