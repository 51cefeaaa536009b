"""The Dask cluster behind `reproduce` and `tune`: a real LocalCluster, a silent address."""

from __future__ import annotations

import socket

import pytest

from twinpass.core.errors import ConfigError
from twinpass.runtime.cluster import n_workers, open_client


def _square(x: int) -> int:
    return x * x


def test_a_local_cluster_has_the_workers_asked_for_and_runs_tasks() -> None:
    with open_client(workers=2) as client:
        assert n_workers(client) == 2
        assert client.gather(client.map(_square, range(5))) == [0, 1, 4, 9, 16]


def test_a_silent_scheduler_address_is_a_clear_error() -> None:
    # A port that was free a moment ago: nothing answers there.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ConfigError, match=rf"--scheduler {address}: no Dask scheduler answered"):
        with open_client(address, timeout_s=1.0):
            pass


def test_jobs_and_a_scheduler_address_do_not_go_together() -> None:
    with pytest.raises(ConfigError, match="drop --jobs"):
        with open_client("tcp://127.0.0.1:1", workers=2):
            pass


def test_a_local_cluster_needs_a_worker() -> None:
    with pytest.raises(ConfigError, match="--jobs must be >= 1"):
        with open_client(workers=0):
            pass
