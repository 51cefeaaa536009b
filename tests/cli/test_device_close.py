"""`twinpass train` and `twinpass stream` close their device on every exit path.

The devices made by the commands are kept referenced here, so that a finaliser cannot close
them: what is checked is the commands' own close (a serial device holds a port and a reader
thread that a later opener of the same port would otherwise share bytes with).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import twinpass.cli.stream as stream_cmd
import twinpass.cli.train as train_cmd
import twinpass.runtime.run as run_module
from twinpass.cli.main import cli
from twinpass.runtime.streaming import StreamSession


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The devices the commands make; each counts its close() calls in ``closes``."""
    devices: list[Any] = []
    # A new run's device is opened by the command, a resumed run's by the runtime.
    for module in (train_cmd, stream_cmd, run_module):
        real = module.open_device

        def tracked(*args: Any, _real: Any = real, **kw: Any) -> tuple[Any, str]:
            dev, dtype = _real(*args, **kw)
            dev.closes = 0
            close = dev.close

            def counting_close() -> None:
                dev.closes += 1
                close()

            dev.close = counting_close
            devices.append(dev)
            return dev, dtype

        monkeypatch.setattr(module, "open_device", tracked)
    return devices


def _closed_once(devices: list[Any]) -> bool:
    return len(devices) == 1 and devices[0].closes == 1


def test_train_closes_its_device_when_it_succeeds(made: list[Any]) -> None:
    result = CliRunner().invoke(cli, ["train", "--hidden", "4", "--epochs", "0", "-q"])
    assert result.exit_code == 0, result.output
    assert _closed_once(made)


def test_train_closes_its_device_when_it_fails(
    made: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kw: Any) -> None:
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(train_cmd, "evaluate", boom)
    result = CliRunner().invoke(cli, ["train", "--hidden", "4", "--epochs", "0", "-q"])
    assert isinstance(result.exception, RuntimeError)
    assert _closed_once(made)


def test_train_resume_closes_the_device_it_made(made: list[Any], tmp_path: Path) -> None:
    ckpt = str(tmp_path / "run.ckpt")
    args = ["train", "--hidden", "4", "--epochs", "1", "--checkpoint", ckpt, "-q"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    result = CliRunner().invoke(cli, [*args[:-1], "--resume", "-q"])
    assert result.exit_code == 0, result.output
    assert len(made) == 2 and [d.closes for d in made] == [1, 1]


STREAM = ["stream", "--source", "mackey-glass", "--hidden", "4", "-q"]


def test_stream_closes_its_device_when_the_source_ends(made: list[Any]) -> None:
    result = CliRunner().invoke(cli, [*STREAM, "--max-steps", "200"])
    assert result.exit_code == 0, result.output
    assert _closed_once(made)


def test_stream_closes_its_device_after_the_sigterm_checkpoint(
    made: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_run = StreamSession.run

    def run_then_sigterm(self: StreamSession, stop: Any, *args: Any, **kw: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the command: stop, save, exit 0
        return real_run(self, stop, *args, **kw)

    monkeypatch.setattr(StreamSession, "run", run_then_sigterm)
    ckpt = tmp_path / "stream.ckpt"
    result = CliRunner().invoke(
        cli, [*STREAM, "--max-steps", "100000", "--checkpoint", str(ckpt), "--json-out",
              str(tmp_path / "s.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ckpt.exists() and '"stopped_by": "SIGTERM"' in (tmp_path / "s.json").read_text()
    assert _closed_once(made)


def test_stream_closes_its_device_when_learning_fails(
    made: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: StreamSession, *args: Any, **kw: Any) -> Any:
        raise RuntimeError("learning failed")

    monkeypatch.setattr(StreamSession, "run", boom)
    result = CliRunner().invoke(cli, [*STREAM, "--max-steps", "100"])
    assert isinstance(result.exception, RuntimeError)
    assert _closed_once(made)
