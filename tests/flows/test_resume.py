"""A land-cover run killed mid-way (its processes SIGKILLed), then rerun, equals a clean run."""

from __future__ import annotations

import hashlib
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


def start_landcover_run(
    tmp_path: Path, tiny_model_files: dict, prefect_api: str, store: Path
) -> tuple[subprocess.Popen, dict, dict]:
    """A land-cover run over a local catalog in its own process group (to SIGKILL it with its
    Dask workers); returns the process, the flow's parameters and the tiny model's files."""
    image = shared_data("optical", "oem_koeln_50.tif")
    catalog = tmp_path / "catalog"
    add_local_item(image, catalog, datetime="2024-06-01T10:00:00Z")
    model = {
        "weights": str(tiny_model_files["clip"]),
        "upsampler_weights": str(tiny_model_files["simfeatup"]),
    }
    search = {"catalog": str(catalog), "collections": ["local"], "max_cloud": None}
    params = dict(PARAMS, search=search, store=str(store), model=model)
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(params)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, params, model


def test_killed_run_resumes_to_the_same_cube(run_flow, prefect_api, tmp_path, tiny_model_files):
    killed = tmp_path / "killed.zarr"
    proc, params, model = start_landcover_run(tmp_path, tiny_model_files, prefect_api, killed)
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


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _data_files(store: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every data and tile-record chunk file."""
    return {
        str(p.relative_to(store)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.parent.name in ("landcover", "confidence", "tile_done")
    }


def test_rerun_with_new_scenes_keeps_the_step_and_replace_rewrites_it(
    run_flow, tmp_path, tiny_model_files
):
    image = shared_data("optical", "oem_koeln_50.tif")
    catalog = tmp_path / "catalog"
    add_local_item(image, catalog, datetime="2024-06-01T10:00:00Z", item_id="koeln-a")
    model = ModelOptions(
        weights=str(tiny_model_files["clip"]), upsampler_weights=str(tiny_model_files["simfeatup"])
    )
    store = tmp_path / "cube.zarr"
    search = {"catalog": str(catalog), "collections": ["local"], "max_cloud": None}
    params = dict(PARAMS, search=search, store=str(store), model=model)
    first = run_flow(landcover, **params)
    assert first["already_complete"] is False
    before = _data_files(store)

    add_local_item(image, catalog, datetime="2024-06-01T11:00:00Z", item_id="koeln-b")
    again = run_flow(landcover, **params)  # the catalog now returns another scene
    assert again["already_complete"] is True and again["tiles"] == {}
    assert _data_files(store) == before
    assert xr.open_zarr(store).attrs["time_steps"][0]["items"] == ["koeln-a"]

    replaced = run_flow(landcover, **dict(params, tiling=dict(PARAMS["tiling"], replace=True)))
    assert replaced["tiles"] == {"written": replaced["tiles_total"]}
    assert sorted(xr.open_zarr(store).attrs["time_steps"][0]["items"]) == ["koeln-a", "koeln-b"]


def test_replace_flag_reaches_the_flow_parameters():
    from terrawatch.flows.cli import build_parser
    from terrawatch.flows.cli_common import validated_params
    from terrawatch.flows.cli_flows import landcover_params

    base = ["landcover", "--aoi", PARAMS["aoi"], "--start", "2024-06-01", "--end", "2024-06-02"]
    base += ["--classes", "water,tree", "--store", "cube.zarr"]
    for argv, wanted in ((base, False), ([*base, "--replace"], True)):
        params = landcover_params(build_parser().parse_args(argv))
        assert params["tiling"].replace is wanted
        assert validated_params(landcover, params)["tiling"].replace is wanted
