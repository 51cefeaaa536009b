"""An exclusive lock on a checkpoint path for the lifetime of a run.

Two runs on one checkpoint would each save over the other's (both report success, the file
holds one of them) and a second ``--resume`` would fork the history. The lock is an OS
advisory lock (portalocker: flock on POSIX, LockFileEx on Windows) on ``PATH.lock``, so it
dies with its process, kill -9 included: a stale lock file never blocks the next run. The
holder writes who it is into the lock file, and a refused run names it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Iterator
from typing import IO

import portalocker

from twinpass.core.errors import CheckpointError


def lock_path(checkpoint: str | os.PathLike[str]) -> str:
    return os.fspath(checkpoint) + ".lock"


@contextlib.contextmanager
def hold_checkpoint(checkpoint: str | os.PathLike[str], command: str) -> Iterator[None]:
    """Hold the lock of ``checkpoint`` for the block; CheckpointError naming the holder if
    another process holds it. ``command`` says what holds it (``twinpass stream``)."""
    path = lock_path(checkpoint)
    f = _acquire(os.fspath(checkpoint), path)
    try:
        f.seek(0)
        f.truncate()
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, `{command}` since {now}\n")
        f.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            f.seek(0)
            f.truncate()
        portalocker.unlock(f)
        f.close()


def _acquire(checkpoint: str, path: str) -> IO[str]:
    for _ in range(5):
        try:
            # "a+": never truncate what the holder wrote before knowing it is ours.
            f = open(path, "a+", encoding="utf-8")
        except OSError as e:
            raise CheckpointError(
                f"cannot lock checkpoint {checkpoint!r} ({path}): {e.strerror or e}"
            ) from None
        try:
            portalocker.lock(
                f, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
            )
        except portalocker.LockException:
            f.seek(0)
            holder = f.read().strip() or "a process that has not said who it is yet"
            f.close()
            raise CheckpointError(
                f"checkpoint {checkpoint} is in use by another run ({holder}): wait for it "
                "to end, or give this run another --checkpoint"
            ) from None
        # Locked: make sure it is still the file at the path (one removed and made anew
        # in between would be a lock nobody else sees).
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                return f
        except FileNotFoundError:
            pass
        portalocker.unlock(f)
        f.close()
    raise CheckpointError(f"cannot lock checkpoint {checkpoint!r}: {path} keeps changing")
