"""Tiles in flight overlap their reads and writes with the model, one forward pass at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client, LocalCluster
from rasterio.transform import from_origin

from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core.cube_store import is_tile_done
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.local_item import make_local_item
from terrawatch.tasks.core.worker_model import ModelSpec
from terrawatch.tasks.landcover.cube import prepare_cube
from terrawatch.tasks.landcover.tile import LandcoverTileJob, segment_tile
from tests.tasks.core.model_probe import peak_concurrent_forwards

CHUNK = 64


@pytest.fixture
def scene_item(tmp_path: Path) -> dict:
    """A 256 x 128 px RGB GeoTIFF at 1 m as a local STAC item."""
    path = tmp_path / "scene.tif"
    data = np.random.default_rng(0).integers(0, 255, (3, 128, 256), dtype=np.uint8)
    profile = dict(driver="GTiff", width=256, height=128, count=3, dtype="uint8")
    with rasterio.open(
        path, "w", crs="EPSG:32632", transform=from_origin(350000, 5650000, 1, 1), **profile
    ) as dst:
        dst.write(data)
    return make_local_item(path, datetime="2024-06-01T00:00:00Z")


def test_a_two_thread_worker_overlaps_tiles_but_runs_one_model_at_a_time(
    tmp_path: Path, scene_item: dict
) -> None:
    grid = GridSpec("EPSG:32632", 1.0, 350000.0, 5649872.0, 350256.0, 5650000.0)
    store = str(tmp_path / "cube.zarr")
    classes = parse_class_names(["land", "water"])
    step = TimeStep("2024-06-01", "2024-06-01", (scene_item["id"],))
    plan = prepare_cube(store, grid, classes, step, {"run_id": "t"}, chunk=CHUNK)
    spec = ModelSpec(classes=("land", "water"), factory="tests.tasks.core.model_probe:build")
    jobs = [
        LandcoverTileJob(store, 0, tile, CHUNK, grid, (scene_item,), halo=16) for tile in plan.todo
    ]

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        results = client.gather(client.map(segment_tile, jobs, spec=spec, pure=False))
        peaks = client.run(peak_concurrent_forwards)

    assert len(jobs) == 8 and all(result.status == "written" for result in results)
    assert list(peaks.values()) == [1]
    waits = [dict(result.stages)["wait"] for result in results]
    assert sum(waits) > 0.2  # a tile read while the other's model ran, then waited its turn
    assert all(is_tile_done(store, 0, job.tile) for job in jobs)
