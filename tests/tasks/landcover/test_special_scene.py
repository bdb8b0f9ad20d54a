"""What ``landcover --refine special`` decides for a whole time step before its tiles run:
the bands every item has, that every band's reflectance scaling is known, and one RGB stretch
for the zero-shot pass (real GeoTIFFs, local STAC items, the tile task run in this process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import zarr
from rasterio.transform import from_origin

from terrawatch.errors import InputError
from terrawatch.models.special.training import SpecialSettings, predict_probabilities
from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.local_item import add_local_item
from terrawatch.tasks.core.worker_model import ModelSpec
from terrawatch.tasks.landcover.special import (
    check_band_scaling,
    create_scratch,
    scene_bands,
    special_jobs,
    train_scene,
    training_windows,
    zero_shot_tile,
)

BANDS = ("B02", "B03", "B04", "B08", "B11")
ORIGIN = (350000.0, 5650000.0)


def _item(tmp_path, name: str, data: np.ndarray, bands=BANDS, scale: float | None = None):
    path = tmp_path / f"{name}.tif"
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1],
                   count=len(bands), dtype=data.dtype.name, crs="EPSG:32632",
                   transform=from_origin(*ORIGIN, 10, 10))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = bands
        if scale is not None:
            dst.scales = (scale,) * len(bands)
            dst.offsets = (-0.1,) * len(bands)
    written = add_local_item(path, tmp_path / "catalog", datetime="2024-06-01T10:00:00Z",
                             item_id=name)  # fmt: skip
    return json.loads(written.read_text())


def test_the_bands_are_those_every_item_of_the_step_has(tmp_path):
    data = np.full((5, 8, 8), 0.2, np.float32)
    full = _item(tmp_path, "full", data)
    extra = ("B02", "B03", "B04", "B05", "B08")
    other = _item(tmp_path, "other", data, bands=extra)
    bands = scene_bands([full, other])
    assert bands.names == ("B02", "B03", "B04", "B08")  # B11 and B05 are not in both
    assert bands.wavelengths_nm == (490.0, 560.0, 665.0, 842.0)
    few = _item(tmp_path, "few", data[:4], bands=("B02", "B03", "B05", "B06"))
    with pytest.raises(InputError, match=r"share only \['B02', 'B03'\]"):
        scene_bands([full, few])


def test_integer_bands_without_scale_are_refused_before_any_tile(tmp_path):
    dn = np.full((5, 8, 8), 1500, np.uint16)
    raw = _item(tmp_path, "raw", dn)
    expected = r"no raster:bands scale/offset.*gdal_edit\.py -scale 0\.0001"
    with pytest.raises(InputError, match=expected):
        check_band_scaling([raw], scene_bands([raw]))
    scaled = _item(tmp_path, "scaled", dn, scale=1e-4)
    check_band_scaling([scaled], scene_bands([scaled]))


def test_the_zero_shot_pass_stretches_every_tile_alike(tmp_path):
    """A dark (water) tile beside a bright (soil) one: with one stretch for the step the dark
    tile stays dark for the segmenter (the brightness plug-in: dark, mid, bright classes);
    a stretch per tile (no halo here: each tile sees only itself) would spread each tile over
    the whole range, so about half of each tile would change class."""
    rng = np.random.default_rng(0)
    data = np.empty((5, 64, 128), np.float32)
    data[:, :, :64] = 0.03 + 0.005 * rng.standard_normal((5, 64, 64))  # water
    data[:, :, 64:] = 0.25 + 0.005 * rng.standard_normal((5, 64, 64))  # bright soil
    item = _item(tmp_path, "scene", data)
    x0, y1 = ORIGIN
    grid = GridSpec("EPSG:32632", 10.0, x0, y1 - 640, x0 + 1280, y1)
    store = str(tmp_path / "cube.zarr")
    scratch = create_scratch(store, 0, grid, 64)
    jobs = special_jobs(store, 0, ((0, 0), (0, 1)), 64, grid, (item,), halo=0, loader="odc",
                        lease=None, scratch=scratch)  # fmt: skip
    spec = ModelSpec(("water", "grass", "soil"), factory="tests.flows.brightness_rule:build")
    for job in jobs:
        assert zero_shot_tile(job, spec).status == "written"
    labels = zarr.open_group(scratch, mode="r")["labels"][:]
    assert (labels != NODATA).all()
    assert (labels[:, :64] == 0).mean() > 0.99 and (labels[:, 64:] == 2).mean() > 0.99


def test_training_holds_at_most_its_pixel_budget_drawn_from_every_tile(tmp_path):
    """Past ``training_pixels`` the training reads an equal window of every tile (so its memory
    does not grow with the scene) and still learns every class of the scene."""
    rng = np.random.default_rng(1)
    data = np.empty((5, 128, 256), np.float32)
    data[:, :, :128] = 0.03 + 0.005 * rng.standard_normal((5, 128, 128))
    data[:, :, 128:] = 0.25 + 0.005 * rng.standard_normal((5, 128, 128))
    item = _item(tmp_path, "scene", data)
    x0, y1 = ORIGIN
    grid = GridSpec("EPSG:32632", 10.0, x0, y1 - 1280, x0 + 2560, y1)
    store = str(tmp_path / "cube.zarr")
    scratch = create_scratch(store, 0, grid, 128)
    jobs = special_jobs(store, 0, ((0, 0), (0, 1)), 128, grid, (item,), halo=0, loader="odc",
                        lease=None, scratch=scratch)  # fmt: skip
    spec = ModelSpec(("water", "soil"), factory="tests.flows.brightness_rule:build")
    for job in jobs:
        zero_shot_tile(job, spec)

    assert [w for _, w in training_windows(jobs, 2 * 128 * 128, 0)] == [
        (slice(0, 128), slice(0, 128)),
        (slice(0, 128), slice(128, 256)),
    ]
    windows = training_windows(jobs, 2 * 100 * 100, 0)
    assert [job.tile for job, _ in windows] == [(0, 0), (0, 1)]
    for job, (rows, cols) in windows:
        assert rows.stop - rows.start == cols.stop - cols.start == 100
        assert cols.start >= 128 * job.tile[1] and cols.stop <= 128 * (job.tile[1] + 1)
    one = training_windows(jobs, 64 * 64, 0)  # below the smallest window: a subset of tiles
    assert len(one) == 1 and one[0][1][0].stop - one[0][1][0].start == 64
    # a --labels feature keeps its tile and sits inside the window
    for budget, anchor in ((64 * 64, (10, 250)), (2 * 100 * 100, (120, 5))):
        picked = training_windows(jobs, budget, 0, anchors=[anchor])
        rows, cols = next(w for job, w in picked if job.tile == (0, anchor[1] // 128))
        assert rows.start <= anchor[0] < rows.stop and cols.start <= anchor[1] < cols.stop

    settings = SpecialSettings(epochs=1, warmup_epochs=0, iterations=2, samples_per_class=50,
                               training_pixels=2 * 100 * 100)  # fmt: skip
    trained, record = train_scene(jobs, ["water", "soil"], settings)
    assert record["training_pixels_held"] == 2 * 100 * 100
    assert record["settings"]["training_pixels"] == 20000 and record["training_tiles"] == 2
    valid = np.ones(data.shape[1:], bool)
    predicted = predict_probabilities(trained.build(), trained.stretch_spectra(data, valid))
    labels = predicted.argmax(axis=0)
    assert (labels[:, :128] == 0).mean() > 0.9 and (labels[:, 128:] == 1).mean() > 0.9
