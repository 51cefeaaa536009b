"""The simulator's RAM budget (docs/protocol.md §7.3)."""

from __future__ import annotations

from twinpass.firmware_sim import ram


def test_ram_footprint_and_largest_hidden() -> None:
    small = ram.ram_footprint(1, 32, 1)
    assert small < ram.ram_footprint(1, 64, 1) < ram.ram_footprint(1, 64, 1, d_present=True)
    assert ram.ram_footprint(1, 32, 1, batch=4) > small
    budget = 128 * 1024 - ram.FIRMWARE_RESERVED
    n = ram.largest_hidden(budget, 1, 1)
    assert ram.ram_footprint(1, n, 1) <= budget < ram.ram_footprint(1, n + 1, 1)
    assert 128 <= n <= 200  # int32 R: N² · 4 bytes dominates
