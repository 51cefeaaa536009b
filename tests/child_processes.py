"""The test run's child processes (simulators, fault proxies): registered, never outliving it.

Simulators run in a session of their own (``start_new_session``), so neither a signal to the
test run's process group nor the end of the test run reaches them, and they never exit by
themselves (a simulator holds its own pty open and does not read stdin). Before this
module, a test run that ended without its teardowns (pytest stopped by ``timeout``, a
SIGKILL, a second Ctrl-C) left the simulator that was running at that moment behind —
in the kill -9 tests, the last one ``restart()`` had started. So every helper that starts
a process goes through :func:`spawn`:

- the child gets ``PR_SET_PDEATHSIG`` = SIGKILL (Linux): the kernel kills it when the test
  process dies, however it dies;
- it is registered until :func:`stop` ends it; :func:`stop_all` (run at interpreter exit
  and at the end of the pytest session) ends whatever a failed setup or teardown left;
- ``conftest.py`` checks after every test that no child started during the test is still
  running, and stops and reports any that is.

This module imports nothing heavy: ``fault_proxy.py`` imports it lazily.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

_LIVE: dict[int, subprocess.Popen[bytes]] = {}

PR_SET_PDEATHSIG = 1


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGKILL the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved here, in the parent: between fork and exec the child must do as little as
    # possible (other threads of the test process, e.g. serial readers, may hold locks).
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then nothing would kill us.
        if os.getppid() != parent:
            os._exit(1)

    return hook


def spawn(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(cmd, **kwargs)``, registered, dying with the test process.

    The parent-death signal is tied to the *thread* that starts the child: start children
    from the main thread (a child started from a short-lived thread dies with that thread).
    """
    proc = subprocess.Popen(list(cmd), preexec_fn=_parent_death_hook(), **kwargs)
    _LIVE[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen[bytes] | None, *, grace: float = 5.0) -> None:
    """SIGTERM, SIGKILL after ``grace`` seconds; close its pipes; unregister it."""
    if proc is None:
        return
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)
    except ProcessLookupError:  # it ended between poll() and the signal
        proc.wait(grace)
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if proc.poll() is not None:
            _LIVE.pop(proc.pid, None)


def running() -> dict[int, subprocess.Popen[bytes]]:
    """The registered children that are still running, by pid."""
    for pid, proc in list(_LIVE.items()):
        if proc.poll() is not None:
            _LIVE.pop(pid, None)
    return dict(_LIVE)


def describe(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args if isinstance(proc.args, list | tuple) else [proc.args]
    return f"pid {proc.pid}: {' '.join(map(str, args))}"


def stop_all() -> list[str]:
    """Stop every registered child still running; return what was stopped."""
    stopped = []
    for proc in running().values():
        stopped.append(describe(proc))
        stop(proc, grace=2.0)
    return stopped


atexit.register(stop_all)
