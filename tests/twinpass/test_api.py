"""One import: ``import twinpass`` gives the version and the public API, lazily."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys

import twinpass


def test_the_version_is_the_distributions() -> None:
    assert twinpass.__version__ == md.version("twinpass")


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in twinpass.__all__:
        assert getattr(twinpass, name) is not None
    assert twinpass.OnlineLearner.__module__ == "twinpass.runtime.learner"
    assert issubclass(twinpass.ConfigError, twinpass.TwinpassError)
    assert "TwinpassRegressor" in dir(twinpass)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        twinpass.NotAThing  # noqa: B018
    except AttributeError as e:
        assert "NotAThing" in str(e)
    else:
        raise AssertionError("no AttributeError")


def test_import_twinpass_loads_no_kernel() -> None:
    # The command line imports the package: it must not pay for Numba or the learner.
    code = (
        "import sys, twinpass; "
        "print(sorted(m for m in sys.modules if m.startswith(('numba', 'twinpass.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
