"""Where sweeps and tuning trials run: a Dask cluster, local or at a scheduler's address.

`twinpass reproduce` and `twinpass tune` hand their work to ``dask.distributed`` rather
than to a pool of their own, so that the same command runs on one laptop (a
``LocalCluster`` with one single-threaded worker process per core, started for the run)
or on many machines (``--scheduler ADDRESS``: a running ``dask scheduler`` with workers
attached). Dask reruns the tasks of a worker that dies; the client is the only process
that writes results, so nothing is written twice.

``distributed`` is imported only when a cluster is opened: the other commands never pay
for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from twinpass.core.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

CONNECT_TIMEOUT_S = 5.0
"""How long a scheduler address may stay silent before the command gives up."""


def default_workers() -> int:
    """One worker per core: the kernels are single-threaded."""
    return os.cpu_count() or 1


@contextlib.contextmanager
def open_client(
    scheduler: str | None = None,
    *,
    workers: int | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> Iterator[Client]:
    """A Dask client: connected to ``scheduler``, or to a LocalCluster started for it.

    ``workers`` sizes the local cluster (default: one per core) and must be None with a
    scheduler address, whose cluster is already sized. Raises ConfigError naming the
    address when no scheduler answers there within ``timeout_s`` seconds.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if workers is not None:
            raise ConfigError(
                "--jobs sizes the local cluster; with --scheduler the cluster's own workers run "
                "the tasks: drop --jobs"
            )
        try:
            client = Client(scheduler, timeout=f"{timeout_s}s")
        except (OSError, TimeoutError, ValueError) as e:
            raise ConfigError(
                f"--scheduler {scheduler}: no Dask scheduler answered within {timeout_s:g} s "
                f"({type(e).__name__}); start one with `dask scheduler` and attach workers "
                "with `dask worker ADDRESS`, or leave --scheduler out to run on this machine"
            ) from None
        with client:
            yield client
        return
    n = default_workers() if workers is None else int(workers)
    if n < 1:
        raise ConfigError(f"--jobs must be >= 1, got {n}")
    # Processes, one thread each: Numba kernels hold the GIL-free core they run on, and a
    # crash in one run takes down one worker, whose tasks Dask reruns elsewhere.
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: two commands at once must not clash
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def n_workers(client: Client) -> int:
    """Workers attached to the client's scheduler now."""
    return len(client.scheduler_info().get("workers", {}))
