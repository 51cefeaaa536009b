"""The backend registry: device specs, errors that name the choices, and the listing."""

from __future__ import annotations

import numpy as np
import pytest

import twinpass.devices as devices_pkg
from twinpass.core.errors import ConfigError
from twinpass.devices.base import Device, DeviceInfo
from twinpass.devices.host import HostDevice
from twinpass.devices.registry import BACKENDS, backend_infos, make_device, parse_spec


def test_every_backend_builds_an_unloaded_device_named_as_registered() -> None:
    assert "host" in BACKENDS
    for name, factory in BACKENDS.items():
        dev = factory()
        assert isinstance(dev, Device) and dev.info().name == name
        dev.close()


def test_exported_from_the_package() -> None:
    assert devices_pkg.make_device is make_device and devices_pkg.BACKENDS is BACKENDS


@pytest.mark.parametrize(
    ("spec", "options", "dtype"),
    [
        ("host", {}, np.float32),
        ("host:float64", {}, np.float64),
        (" Host : float64 ", {}, np.float64),
        ("host", {"dtype": "float64"}, np.float64),
    ],
)
def test_make_device_parses_the_spec(spec: str, options: dict, dtype: type) -> None:
    dev = make_device(spec, **options)
    assert isinstance(dev, HostDevice) and dev.dtype == dtype


def test_each_call_is_a_new_device() -> None:
    assert make_device("host") is not make_device("host")


def test_parse_spec() -> None:
    assert parse_spec("host") == ("host", None)
    assert parse_spec("host:float64") == ("host", "float64")


@pytest.mark.parametrize("spec", ["gpu", "", "no-such-backend:x", ":float64"])
def test_an_unknown_backend_names_the_available_ones(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown device .*available backends are (\w+, )*host"):
        make_device(spec)


@pytest.mark.parametrize(
    ("spec", "options", "match"),
    [
        ("host:", {}, "empty option"),
        ("host:float64", {"dtype": "float32"}, "does not take these options"),
        ("host", {"noise_scale": 2.0}, "does not take these options"),
        ("host:int8", {}, "float32 or float64"),
        (3, {}, "is a string"),
    ],
)
def test_bad_specs_and_options_are_config_errors(spec, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_device(spec, **options)


def test_a_nonsense_host_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        make_device("host:fast")


def test_backend_infos_lists_and_closes_every_backend(monkeypatch) -> None:
    closed: list[str] = []

    class Fake:
        def info(self) -> DeviceInfo:
            return DeviceInfo("fake", "double", ("anp",), ("float64",), exact=False)

        def close(self) -> None:
            closed.append("fake")

    names = list(BACKENDS)
    monkeypatch.setitem(BACKENDS, "fake", Fake)
    infos = backend_infos()
    assert [i.name for i in infos] == [*names, "fake"]
    assert infos[0] == HostDevice().info()
    assert closed == ["fake"]
