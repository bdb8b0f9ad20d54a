"""A land-cover run killed mid-way (its processes SIGKILLed), then rerun, equals a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from terrawatch.flows.landcover import ModelOptions, landcover
from terrawatch.tasks.core.local_item import add_local_item
from tests.conftest import REPO, shared_data

pytestmark = pytest.mark.slow
CLASSES = ["water", "building", "road", "tree", "grass"]
PARAMS = dict(
    aoi="6.8075,50.9590,6.8135,50.9628",
    start="2024-06-01",
    end="2024-06-02",
    classes=CLASSES,
    grid={"resolution": 1.0},
    tiling={"chunk": 64},
)

RUNNER = """
import json, sys
from prefect_dask import DaskTaskRunner
from terrawatch.flows.landcover import landcover
from terrawatch.flows.runner import local_cluster
params = json.loads(sys.argv[1])  # option groups as dicts, as a deployment passes them
# the flows' own local cluster (what dask_task_runner() builds), one worker to kill
runner = DaskTaskRunner(cluster_class=local_cluster,
                        cluster_kwargs={"n_workers": 1, "threads_per_worker": 1,
                                        "processes": True, "dashboard_address": None})
landcover.with_options(task_runner=runner)(**params)
"""


def _tiles_done(store: Path) -> int:
    try:
        return int((zarr.open_array(store, path="tile_done", mode="r")[:] == 1).sum())
    except (FileNotFoundError, KeyError, ValueError):
        return 0


def test_killed_run_resumes_to_the_same_cube(run_flow, prefect_api, tmp_path, tiny_model_files):
    image = shared_data("optical", "oem_koeln_50.tif")
    catalog = tmp_path / "catalog"
    add_local_item(image, catalog, datetime="2024-06-01T10:00:00Z")
    model = {
        "weights": str(tiny_model_files["clip"]),
        "upsampler_weights": str(tiny_model_files["simfeatup"]),
    }
    killed = tmp_path / "killed.zarr"
    search = {"catalog": str(catalog), "collections": ["local"], "max_cloud": None}
    params = dict(PARAMS, search=search, store=str(killed), model=model)
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(params)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while _tiles_done(killed) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the flow process and its Dask workers
    finally:
        proc.wait(timeout=30)
    total = zarr.open_array(killed, path="tile_done", mode="r").size
    done_before = _tiles_done(killed)
    assert 2 <= done_before < total, "the run must be killed part-way"

    summary = run_flow(landcover, **dict(params, model=ModelOptions(**model)))
    assert summary["tiles"] == {"written": total - done_before}  # finished tiles not redone

    clean = tmp_path / "clean.zarr"
    run_flow(landcover, **dict(params, store=str(clean), model=ModelOptions(**model)))
    a = xr.open_zarr(killed, mask_and_scale=False)
    b = xr.open_zarr(clean, mask_and_scale=False)
    assert np.array_equal(a.landcover.values, b.landcover.values)
    assert np.array_equal(a.confidence.values, b.confidence.values)
