"""``prefect flow-run cancel`` reaches Dask: a land-cover run on a shared cluster, cancelled
through the API while its tiles are written, ends Cancelled within 30 s, writes no tile once
Cancelled (the workers live on, so only the cancellation can stop them), gives its writer lease
back, and a rerun completes the cube with only the missing tiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr

from terrawatch.flows.landcover import ModelOptions, landcover
from terrawatch.tasks.core.lease_files import LEASE_SUFFIX
from terrawatch.tasks.core.local_item import add_local_item
from tests.conftest import REPO, shared_data
from tests.flows.test_resume import PARAMS, _tiles_done

pytestmark = pytest.mark.slow

RUNNER = """
import json, sys
from prefect_dask import DaskTaskRunner
from terrawatch.flows.landcover import landcover
params, address = json.loads(sys.argv[1]), sys.argv[2]
landcover.with_options(task_runner=DaskTaskRunner(address=address))(**params)
"""


def _last_write(store: Path) -> float:
    """The latest modification time of a file of the cube's variables (what a tile writes)."""
    return max(path.stat().st_mtime for path in store.rglob("*") if path.is_file())


def _state(run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def test_cancel_stops_the_tiles_and_ends_the_run_cancelled(
    run_flow, prefect_api, dask_cluster, tmp_path, tiny_model_files
):
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    image = shared_data("optical", "oem_koeln_50.tif")
    catalog = tmp_path / "catalog"
    add_local_item(image, catalog, datetime="2024-06-01T10:00:00Z")
    model = {
        "weights": str(tiny_model_files["clip"]),
        "upsampler_weights": str(tiny_model_files["simfeatup"]),
    }
    store = tmp_path / "cube.zarr"
    search = {"catalog": str(catalog), "collections": ["local"], "max_cloud": None}
    params = dict(PARAMS, search=search, store=str(store), model=model)
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(params), dask_cluster.scheduler_address],
        cwd=REPO,
        env=env,
        stdout=open(tmp_path / "run.log", "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while _tiles_done(store) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        lease_dir = tmp_path / f"cube.zarr{LEASE_SUFFIX}"
        run_id = json.loads(sorted(lease_dir.glob("*.json"))[-1].read_text())["run_id"]

        with get_client(sync_client=True) as client:  # what `prefect flow-run cancel` does
            client.set_flow_run_state(run_id, Cancelling(message="cancelled by the test"))
        cancelled_at = time.time()
        while not _state(run_id).is_cancelled() and time.time() < cancelled_at + 30:
            time.sleep(0.2)
        state = _state(run_id)
        assert state.is_cancelled(), f"run is {state.name} 30 s after the cancel"
        ended_at = time.time()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    total = zarr.open_array(store, path="tile_done", mode="r").size
    done = _tiles_done(store)
    time.sleep(3.0)  # the cluster's workers are still up: orphaned tiles would write now
    assert _tiles_done(store) == done < total
    assert _last_write(store) <= ended_at
    lease = json.loads(sorted(lease_dir.glob("*.json"))[-1].read_text())
    assert lease["run_id"] == run_id and lease["released"]

    summary = run_flow(landcover, **dict(params, model=ModelOptions(**model)))
    assert summary["tiles"] == {"written": total - done}
    assert _tiles_done(store) == total
