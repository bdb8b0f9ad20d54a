"""A Dask worker killed in the middle of a deployed land-cover run: the run still completes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from tests.deploy.conftest import LANDCOVER

pytestmark = pytest.mark.slow


def _tiles_done(store: Path) -> int:
    try:
        return int((zarr.open_array(store, path="tile_done", mode="r")[:] == 1).sum())
    except (FileNotFoundError, KeyError, ValueError):
        return 0


def _coordinator(running: dict[str, list[str]]) -> str:
    """The worker running the segment-tiles task (the Prefect task that submits the tiles).

    Killing it is the hard case: Dask reruns the Prefect task on the other worker, which must
    resubmit only the tiles not yet written.
    """
    return next(
        w for w, keys in running.items() if any(k.startswith("segment_tiles-") for k in keys)
    )


def test_run_with_its_coordinating_worker_killed_mid_way_completes_with_the_clean_cube(
    stack, clean_run, landcover_params, tmp_path
):
    store = tmp_path / "faulted.zarr"
    flow_run = stack.trigger(LANDCOVER, landcover_params(str(store)), wait=0)
    try:
        deadline = time.monotonic() + 240
        while _tiles_done(store) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = _coordinator(stack.dask_tasks())
        stack.kill(victim)  # SIGKILL: the worker and its nanny, no goodbye
        total = zarr.open_array(store, path="tile_done", mode="r").size
        done_at_kill = _tiles_done(store)
        final = stack.wait(flow_run.id)
    finally:
        stack.start_dask_worker("dask-worker-3")  # later tests get two workers again
        stack.wait_for_dask_workers(2)
    assert 2 <= done_at_kill < total, "the worker must be killed part-way through the run"
    assert final.state.is_completed(), stack.flow_run_logs(flow_run.id)[-4000:]
    clean = xr.open_zarr(clean_run[1], mask_and_scale=False)
    faulted = xr.open_zarr(store, mask_and_scale=False)
    assert np.array_equal(faulted.landcover.values, clean.landcover.values)
    assert np.array_equal(faulted.confidence.values, clean.confidence.values)
