"""``twinpass devices``: the registry's backends as plain text, a rich table, or JSON."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict

from click.testing import CliRunner

from twinpass.cli import devices as devices_cmd
from twinpass.cli.display import Reporter
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


def test_plain_output_lists_the_host_backend() -> None:
    result = CliRunner().invoke(cli, ["devices"])  # not a terminal: plain text
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Device backends"
    assert lines[1].split() == ["name", "description", "rules", "dtypes", "exact"]
    host = next(line for line in lines if line.lstrip().startswith("host "))
    assert HostDevice().info().description in host
    assert "anp, np, wp, bp" in host and "float32, float64" in host
    assert host.rstrip().endswith("yes")
    assert "\x1b[" not in result.output  # no terminal escapes in a pipe


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
    fake = next(line for line in plain.splitlines() if line.lstrip().startswith("fake "))
    assert "a test double" in fake and fake.rstrip().endswith("no")


def test_terminal_output_is_a_rich_table(monkeypatch) -> None:
    monkeypatch.setattr(devices_cmd, "Reporter", functools.partial(Reporter, live=True))
    result = CliRunner().invoke(cli, ["devices"])
    assert result.exit_code == 0, result.output
    assert "Device backends" in result.output and "host" in result.output
    assert "┃" in result.output or "|" in result.output  # drawn by rich, not aligned text


def test_listed_in_the_group_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "devices" in result.output
    result = CliRunner().invoke(cli, ["devices", "--help"])
    assert result.exit_code == 0 and "--json" in result.output
