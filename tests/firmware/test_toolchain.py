"""In CI the firmware's QEMU tests must run, not skip: the toolchain must be there.

``.ci/run`` installs ``gcc-arm-none-eabi`` and ``qemu-system-arm`` and runs the suite with
``CI=true``; elsewhere the QEMU tests skip with a reason when the tools are missing, and
this test says so too.
"""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only in CI (CI=true)")
@pytest.mark.parametrize("tool", ["arm-none-eabi-gcc", "qemu-system-arm", "cc"])
def test_ci_has_the_firmware_toolchain(tool: str) -> None:
    assert shutil.which(tool) is not None, f"{tool} is missing: the firmware tests would skip"
