"""The memory probe measures the run's own process, whatever started it."""

from __future__ import annotations

from twinpass.runtime.reproduce.memory import measure


def test_full_bptt_grows_with_length_and_anp_does_not_even_under_a_large_parent() -> None:
    # A parent larger than any probe: Linux's ru_maxrss survives exec, so a probe that read
    # it would report this process's peak for every run (seen: all rows equal).
    ballast = bytearray(600 * 2**20)
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    short, long = 1_000, 60_000  # N = 100 float32 activities: 24 MB more at 60,000 steps
    bptt = [measure("full-bptt", n, 100) for n in (short, long)]
    anp = [measure("anp", n, 100) for n in (short, long)]
    assert bptt[1]["run_mib"] - bptt[0]["run_mib"] > 15
    assert abs(anp[1]["run_mib"] - anp[0]["run_mib"]) < 3
    assert all(r["peak_rss_mib"] < 500 for r in bptt + anp)
    del ballast
