"""The test helpers never leave a simulator or fault proxy behind (tests/child_processes.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import child_processes
from fault_proxy import ProxyProcess
from sim_process import SimProcess, start_simulator

TESTS = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: only its parent's wait() is missing (init reaps orphans soon).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _gone_within(pids: list[int], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_children_die_with_a_test_process_killed_mid_test(tmp_path: Path) -> None:
    """SIGKILL of the test process (no teardown runs) still ends its simulator and proxy,
    restarted ones included: what a run stopped by `timeout` used to leave behind."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(TESTS)!r})
        from fault_proxy import ProxyProcess
        from sim_process import SimProcess
        sim = SimProcess({str(tmp_path / "flash.bin")!r}, [], None)
        sim.kill()
        sim.restart()
        proxy = ProxyProcess(sim.path)
        print(sim.proc.pid, proxy.proc.pid, flush=True)
        time.sleep(60)
        """
    )
    victim = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    pids: list[int] = []
    try:
        assert victim.stdout is not None
        pids = [int(v) for v in victim.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        assert _gone_within(pids, 10.0), f"left running: {[p for p in pids if _alive(p)]}"
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(10)
        victim.stdout.close()  # type: ignore[union-attr]
        for pid in pids:  # if the test failed: leave nothing behind ourselves
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_stop_and_restart_leave_nothing_registered(tmp_path: Path) -> None:
    with start_simulator(tmp_path / "flash.bin") as sim:
        first = sim.proc.pid  # type: ignore[union-attr]
        sim.kill()
        sim.restart()
        with ProxyProcess(sim.path) as proxy:
            both = {sim.proc.pid, proxy.proc.pid}  # type: ignore[union-attr]
            assert set(child_processes.running()) >= both
        assert proxy.proc.pid not in child_processes.running()
    assert not _alive(first) and sim.proc.pid not in child_processes.running()  # type: ignore[union-attr]
    assert sim.returncode is not None


def test_a_failed_start_stops_the_process(tmp_path: Path) -> None:
    # An option the simulator refuses: it exits without printing a path; nothing may stay.
    before = set(child_processes.running())
    try:
        SimProcess(tmp_path / "flash.bin", ["--ram", "not-a-number"], None)
    except RuntimeError as exc:
        assert "did not print its pty path" in str(exc)
    else:
        raise AssertionError("the simulator started with a bad option")
    assert set(child_processes.running()) == before


def test_the_hil_simulator_dies_with_its_command(tmp_path: Path) -> None:
    """`twinpass hil` runs the simulator through serial_common.simulator_process: a hil
    killed without its cleanup (SIGTERM's default action, SIGKILL) takes it along."""
    # The simulator's pid, found as the child of the command in /proc.
    script = textwrap.dedent(
        f"""
        import os, time
        from twinpass.cli.serial_common import simulator_process
        with simulator_process({str(tmp_path / "flash.bin")!r}) as path:
            me = str(os.getpid())
            for pid in os.listdir("/proc"):
                try:
                    with open(f"/proc/{{pid}}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[1] == me:
                            print(pid, flush=True)
                except (OSError, IndexError):
                    pass
            time.sleep(60)
        """
    )
    victim = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    pids: list[int] = []
    try:
        assert victim.stdout is not None
        pids = [int(victim.stdout.readline())]
        assert _alive(pids[0])
        victim.send_signal(signal.SIGTERM)  # Python's default: exit at once, no finally
        victim.wait(10)
        assert _gone_within(pids, 10.0), "the simulator outlived its command"
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(10)
        victim.stdout.close()  # type: ignore[union-attr]
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
