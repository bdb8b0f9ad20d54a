"""The cancellation / crash hook's Dask half on a real cluster: it cancels the tiles of its own
flow run, found by their keys from another client, and leaves another run's tiles alone."""

from __future__ import annotations

import time

from distributed import Client

from terrawatch.flows.run_hooks import cancel_run_tiles
from terrawatch.tasks.core.run_watch import tile_keys


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _known(dask_scheduler, keys: list[str]) -> list[bool]:
    return [key in dask_scheduler.tasks for key in keys]


def test_hook_cancels_only_its_runs_tiles(dask_cluster):
    with Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        other = client.map(_sleep, [0.5], key=tile_keys("run-other", 1))
        mine = client.map(_sleep, [2.0] * 4, key=tile_keys("run-mine", 4))
        deadline = time.monotonic() + 10  # map() submits in the background: wait for the scheduler
        while time.monotonic() < deadline and not all(
            client.run_on_scheduler(_known, keys=[f.key for f in mine + other])
        ):
            time.sleep(0.05)
        assert cancel_run_tiles(dask_cluster.scheduler_address, "run-mine") == 4
        deadline = time.monotonic() + 10
        while not all(f.cancelled() for f in mine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(f.cancelled() for f in mine)
        assert other[0].result(timeout=30) == 0.5
        assert cancel_run_tiles(dask_cluster.scheduler_address, "run-none") == 0
