"""``landcover --refine special`` over a multi-tile scene: two passes, one training, no seams.

A small Sentinel-2-like GeoTIFF (bands B02, B03, B04, B08, B11 with their centre wavelengths,
recorded by ``catalog add``) with three planted materials in blobs that cross the tile borders.
The zero-shot segmenter is the brightness plug-in (:mod:`tests.flows.brightness_rule`); the rest
runs for real: local STAC search, the Prefect flow on the Dask cluster, both passes, the
training and the Zarr cube.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from scipy import ndimage

from terrawatch.errors import InputError
from terrawatch.flows.landcover import landcover
from terrawatch.flows.options import LandcoverModelOptions
from terrawatch.tasks.core.local_item import add_local_item

pytestmark = pytest.mark.slow

BANDS = ("B02", "B03", "B04", "B08", "B11")
MATERIALS = np.array(  # DN per band (x 1e-4 reflectance): dark water, vegetation, bare soil
    [[300, 250, 200, 100, 50], [650, 900, 650, 3500, 1800], [900, 1100, 1300, 1800, 2800]],
    np.float32,
)
CLASSES = ["water", "vegetation", "bare soil"]
SIZE, CHUNK, ORIGIN = 120, 64, (350000.0, 5650000.0)
FACTORY = "tests.flows.brightness_rule:build"


def _truth() -> np.ndarray:
    """Three materials in smooth blobs (terciles of a smoothed random field)."""
    field = ndimage.gaussian_filter(np.random.default_rng(3).normal(size=(SIZE, SIZE)), 8)
    return np.digitize(field, np.quantile(field, [1 / 3, 2 / 3])).astype(np.uint8)


def _write_scene(path: Path, bands: tuple[str, ...] = BANDS) -> None:
    truth = _truth()
    noise = np.random.default_rng(4).normal(0, 60, (len(BANDS), SIZE, SIZE))
    dn = np.clip(MATERIALS[truth].transpose(2, 0, 1) + noise, 1, 10000)
    data = (dn * 1e-4).astype(np.float32)  # reflectance: float needs no scale in the item
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=len(bands), dtype="float32")
    transform = from_origin(*ORIGIN, 10, 10)
    with rasterio.open(path, "w", **profile, crs="EPSG:32632", transform=transform) as dst:
        dst.write(data[: len(bands)])
        dst.descriptions = bands


def _aoi() -> list[float]:
    """The scene less 25 m on each side, in degrees (the grid is the AOI's UTM zone, 10 m)."""
    x0, y1 = ORIGIN
    bounds = (x0 + 25, y1 - SIZE * 10 + 25, x0 + SIZE * 10 - 25, y1 - 25)
    return list(transform_bounds("EPSG:32632", "EPSG:4326", *bounds))


def _params(catalog: Path, store: Path) -> dict:
    return dict(
        aoi=_aoi(),
        start="2024-06-01",
        end="2024-06-02",
        classes=CLASSES,
        store=str(store),
        search={"catalog": str(catalog), "collections": ["local"], "max_cloud": None},
        grid={"resolution": 10.0},
        tiling={"chunk": CHUNK},
        model=LandcoverModelOptions(
            refine="special", refine_epochs=2, factory=FACTORY, upsampler="bilinear"
        ),
    )


def _disagreement(labels: np.ndarray, border: bool) -> float:
    """Share of valid neighbour pairs (along x and y) with different labels, across tile
    borders (``border``) or inside tiles."""
    rates = []
    for axis in (0, 1):
        a = np.moveaxis(labels, axis, 0)
        left, right = a[:-1], a[1:]
        crosses = (np.arange(1, a.shape[0]) % CHUNK == 0)[:, None]
        pick = np.broadcast_to(crosses if border else ~crosses, left.shape)
        pick = pick & (left != 255) & (right != 255)
        rates.append((left[pick] != right[pick]).mean())
    return float(np.mean(rates))


def test_refine_special_trains_once_writes_both_maps_without_seams(run_flow, tmp_path):
    image = tmp_path / "s2.tif"
    _write_scene(image)
    catalog = tmp_path / "catalog"
    add_local_item(image, catalog, datetime="2024-06-01T10:00:00Z", item_id="scene")
    store = tmp_path / "special.zarr"
    run_flow(landcover, **_params(catalog, store))

    ds = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    refined = ds["landcover"].isel(time=0).values
    zero_shot = ds["landcover_zero_shot"].isel(time=0).values
    assert ds["landcover"].chunks[1][0] == CHUNK and min(refined.shape) > CHUNK  # 2 x 2 tiles
    valid = refined != 255
    assert valid.mean() > 0.9 and ((zero_shot != 255) == valid).all()
    assert set(np.unique(refined[valid])) == {0, 1, 2}
    assert ds["confidence_zero_shot"].isel(time=0).values[valid].max() <= 100

    # one classifier for the scene: its labels change across tile borders no more often than
    # inside the tiles (a per-tile classifier, or a per-tile stretch, would add seams)
    assert _disagreement(refined, border=True) <= 1.5 * _disagreement(refined, border=False)

    record = ds.attrs["refinement"]
    assert record == ds.attrs["time_steps"][0]["refinement"]
    assert record["training_tiles"] == int(np.prod(ds["tile_done"].shape[1:]))
    assert record["bands"] == list(BANDS) and record["band_wavelengths_nm"][0] < 500
    assert record["settings"]["classifier"] == "fcn" and len(record["history"]) == 2
    assert record["settings"]["warmup_epochs"] == 1  # --refine-epochs 2: one warm-up epoch
    assert all(np.isfinite(epoch["loss"]) for epoch in record["history"])
    assert ds.attrs["refine"] == "special"
    assert not list(tmp_path.glob("*.special-t*.zarr"))  # the scratch of pass 1 is gone


def test_refine_special_with_too_few_bands_fails_before_any_work(run_flow, tmp_path):
    image = tmp_path / "rgb.tif"
    _write_scene(image, bands=("B02", "B03", "B04"))
    catalog = tmp_path / "catalog"
    add_local_item(image, catalog, datetime="2024-06-01T10:00:00Z", item_id="rgb")
    store = tmp_path / "special.zarr"
    with pytest.raises(InputError, match="--refine special needs at least 4 bands"):
        run_flow(landcover, **_params(catalog, store))
    assert not store.exists()
