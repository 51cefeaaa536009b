"""``twinpass devices``: the registry's backends as blocks of text that fit 80 columns, or JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict

from click.testing import CliRunner

from twinpass.cli.main import cli
from twinpass.devices.base import DeviceInfo
from twinpass.devices.host import HostDevice
from twinpass.devices.registry import BACKENDS
from twinpass.runtime.config import RULES


class _FakeDevice:
    """Only what listing needs: a registered backend that is not the host."""

    def info(self) -> DeviceInfo:
        return DeviceInfo(
            name="fake",
            description="a test double",
            rules=("anp",),
            dtypes=("float64",),
            exact=False,
            max_hidden=64,
            extra={"presets": ["ideal", "pcm"]},
        )

    def close(self) -> None:
        pass


def _blocks(output: str) -> dict[str, list[str]]:
    """The listing's blocks by backend name (a block: a name line, then indented lines)."""
    blocks: dict[str, list[str]] = {}
    for block in output.split("\n\n")[1:]:
        lines = block.strip("\n").splitlines()
        blocks[lines[0]] = lines[1:]
    return blocks


def _field(block: list[str], label: str) -> str:
    """A labelled field's value, its wrapped lines joined."""
    i = next(i for i, ln in enumerate(block) if ln.lstrip().startswith(label + ":"))
    value = [block[i].split(":", 1)[1].strip()]
    value += [ln.strip() for ln in block[i + 1 :] if ln.startswith(" " * 12)]
    return " ".join(value)


def test_plain_output_lists_the_host_backend() -> None:
    result = CliRunner().invoke(cli, ["devices"])  # not a terminal: plain text
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "Device backends"
    host = _blocks(result.output)["host"]
    assert HostDevice().info().description in " ".join(ln.strip() for ln in host)
    assert _field(host, "rules") == ", ".join(RULES)
    assert _field(host, "readouts") == ", ".join(HostDevice().info().readouts)
    assert _field(host, "dtypes") == "float32, float64" and _field(host, "exact") == "yes"
    assert "\x1b[" not in result.output  # no terminal escapes in a pipe


def _run_devices(columns: int) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("twinpass", path=os.path.dirname(sys.executable))
    cmd = [exe] if exe else [sys.executable, "-c", "from twinpass.cli.main import main; main()"]
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run(
        [*cmd, "devices"], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_every_line_fits_an_80_column_terminal() -> None:
    result = _run_devices(80)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80, max(lines, key=len)
    blocks = _blocks(result.stdout)
    assert list(blocks) == list(BACKENDS)
    # Each backend says which readout rules it offers; a firmware's come from its HELLO.
    for name, block in blocks.items():
        assert _field(block, "readouts"), name
    assert "HELLO" in _field(blocks["serial"], "readouts")
    assert _field(blocks["host"], "readouts") == ", ".join(HostDevice().info().readouts)


def test_a_wide_terminal_still_gets_lines_of_at_most_100_columns() -> None:
    result = _run_devices(250)
    assert result.returncode == 0, result.stderr
    assert max(len(ln) for ln in result.stdout.splitlines()) <= 100


def test_json_is_every_info_field_of_every_backend() -> None:
    result = CliRunner().invoke(cli, ["devices", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [d["name"] for d in data] == list(BACKENDS)
    host = json.loads(json.dumps(asdict(HostDevice().info())))
    assert data[0] == host
    assert data[0]["rules"] == list(RULES) and data[0]["exact"] is True


def test_a_registered_backend_is_listed(monkeypatch) -> None:
    names = list(BACKENDS)
    monkeypatch.setitem(BACKENDS, "fake", _FakeDevice)
    data = json.loads(CliRunner().invoke(cli, ["devices", "--json"]).output)
    assert [d["name"] for d in data] == [*names, "fake"]
    assert data[-1]["extra"] == {"presets": ["ideal", "pcm"]} and data[-1]["max_hidden"] == 64
    plain = CliRunner().invoke(cli, ["devices"]).output
    fake = _blocks(plain)["fake"]
    assert fake[0].strip() == "a test double" and _field(fake, "exact") == "no"
    assert _field(fake, "readouts") == "anp" and _field(fake, "presets") == "ideal, pcm"


def test_listed_in_the_group_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "devices" in result.output
    result = CliRunner().invoke(cli, ["devices", "--help"])
    assert result.exit_code == 0 and "--json" in result.output
