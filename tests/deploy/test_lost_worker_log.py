"""A Dask worker lost in the middle of a deployed run shows in the flow run's log."""

from __future__ import annotations

import re
import time

import pytest

from terrawatch.tasks.core.run_watch import TILE_KEY_PREFIX
from tests.deploy.conftest import LANDCOVER
from tests.deploy.test_fault import _tiles_done

pytestmark = pytest.mark.slow


def _tile_worker(running: dict[str, list[str]]) -> str | None:
    """A worker running tiles but not the task that submitted them (that one logs the loss)."""
    for worker, keys in running.items():
        tiles = any(k.startswith(TILE_KEY_PREFIX) for k in keys)
        if tiles and not any(k.startswith("segment_tiles-") for k in keys):
            return worker
    return None


def test_lost_tile_worker_is_named_in_the_run_log_with_the_tiles_re_run(
    stack, landcover_params, tmp_path
):
    store = tmp_path / "lost-worker.zarr"
    flow_run = stack.trigger(LANDCOVER, landcover_params(str(store)), wait=0)
    victim = None
    try:
        deadline = time.monotonic() + 240
        while victim is None and time.monotonic() < deadline:
            victim = _tile_worker(stack.dask_tasks()) if _tiles_done(store) >= 1 else None
            time.sleep(0.05)
        assert victim, "no worker ran tiles without the coordinator"
        stack.kill(victim)  # SIGKILL: the worker and its nanny
        final = stack.wait(flow_run.id)
    finally:
        stack.start_dask_worker(f"{victim or 'dask-worker'}-again")
        stack.wait_for_dask_workers(2)
    logs = stack.flow_run_logs(flow_run.id)
    assert final.state.is_completed(), logs[-4000:]
    line = re.search(rf"Dask worker {victim} \(tcp://[\d.:]+\) lost: (\d+) tile\(s\)", logs)
    assert line and int(line.group(1)) >= 1, logs[-4000:]
