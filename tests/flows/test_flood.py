"""The flood flow end to end on synthetic Sentinel-1 RTC scenes, a real Prefect API and Dask."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
import xarray as xr
from rasterio.transform import from_origin
from scipy.ndimage import binary_dilation

from terrawatch.errors import InputError, NoScenesError
from terrawatch.flows.flood import flood
from terrawatch.flows.options import FloodModelOptions, FloodSearchOptions, TilingOptions
from terrawatch.tasks.flood.search import flood_windows, search_sar_window, water_indices
from tests.conftest import shared_data

CRS = "EPSG:32633"
RES = 10.0
ORIGIN = (500_000.0, 3_320_400.0)  # left, top of the synthetic scenes (lon 15 E, lat 30 N)
SIZE = 160  # pixels a side
EVENT = "2024-05-10"
RIVER = (slice(30, 42), slice(0, SIZE))  # dark before and after
FLOOD = (slice(80, 130), slice(40, 120))  # dark after the event only
LAND, WATER = 0.15, 0.003  # linear gamma0 VV: -8.2 dB and -25.2 dB
SCENES = {  # id: (datetime, orbit, flooded)
    "s1-pre-a": ("2024-05-01T05:00:00Z", "descending", False),
    "s1-pre-b": ("2024-05-06T05:00:00Z", "descending", False),
    "s1-post": ("2024-05-12T05:00:00Z", "descending", True),
}
FACTORY = "tests.flows.water_rule:build"


# --- synthetic RTC scenes -----------------------------------------------------------------------


def _gamma0(flooded: bool, seed: int) -> np.ndarray:
    """VV linear gamma0 with speckle (gamma, ENL 4.4): land, a river, the flood if ``flooded``."""
    vv = np.full((SIZE, SIZE), LAND, np.float32)
    vv[RIVER] = WATER
    if flooded:
        vv[FLOOD] = WATER
    speckle = np.random.default_rng(seed).gamma(4.4, 1 / 4.4, vv.shape).astype(np.float32)
    return vv * speckle


def _write_cog(path: Path, data: np.ndarray) -> Path:
    transform = from_origin(*ORIGIN, RES, RES)
    profile = dict(driver="COG", dtype="float32", count=1, height=SIZE, width=SIZE, crs=CRS,
                   transform=transform, nodata=-32768.0, blocksize=64)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def _footprint() -> tuple[dict, list[float]]:
    to_lonlat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    left, top = ORIGIN
    west, south, east, north = to_lonlat.transform_bounds(
        left, top - SIZE * RES, left + SIZE * RES, top
    )
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}, [west, south, east, north]


def rtc_item(item_id: str, when: str, orbit: str, flooded: bool, folder: Path, seed: int,
             pols: tuple[str, ...] = ("vv", "vh")) -> dict:  # fmt: skip
    """A Planetary Computer ``sentinel-1-rtc`` item (real template) on local synthetic COGs."""
    template = json.loads(shared_data("stac", "pc_sentinel-1-rtc_4items.json").read_text())[0]
    item = copy.deepcopy(template)
    geometry, bbox = _footprint()
    left, top = ORIGIN
    vv = _gamma0(flooded, seed)
    item.update(id=item_id, geometry=geometry, bbox=bbox, links=[])
    item["properties"].update({
        "datetime": when, "start_datetime": when, "end_datetime": when,
        "sat:orbit_state": orbit, "sar:polarizations": [p.upper() for p in pols],
        "proj:epsg": 32633, "proj:shape": [SIZE, SIZE],
        "proj:transform": [RES, 0.0, left, 0.0, -RES, top, 0.0, 0.0, 1.0],
        "proj:bbox": [left, top - SIZE * RES, left + SIZE * RES, top],
    })  # fmt: skip
    assets = {}
    for pol in pols:
        data = vv if pol == "vv" else vv * np.float32(0.2)
        asset = copy.deepcopy(template["assets"][pol])
        asset["href"] = str(_write_cog(folder / f"{item_id}-{pol}.tif", data))
        assets[pol] = asset
    item["assets"] = assets
    return item


def make_flood_catalog(root: Path, extra: dict | None = None) -> Path:
    """A local catalog of :data:`SCENES` (plus ``extra``: id -> (datetime, orbit, flooded))."""
    catalog, cogs = root / "catalog", root / "cogs"
    catalog.mkdir(parents=True)
    cogs.mkdir(exist_ok=True)
    for seed, (item_id, spec) in enumerate({**SCENES, **(extra or {})}.items()):
        *scene, pols = (*spec, ("vv", "vh")) if len(spec) == 3 else spec
        item = rtc_item(item_id, *scene, cogs, seed, pols)
        (catalog / f"{item_id}.json").write_text(json.dumps(item))
    return catalog


def flood_aoi() -> str:
    """Lon/lat box 150 m inside the scenes."""
    to_lonlat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    left, top = ORIGIN
    inset = 150.0
    box = to_lonlat.transform_bounds(
        left + inset, top - SIZE * RES + inset, left + SIZE * RES - inset, top - inset
    )
    return ",".join(f"{v:.6f}" for v in box)


def run_flood(dask_cluster, catalog: Path, store: Path, **overrides):
    """The real flow on the shared cluster with the water-rule double as the model."""
    from prefect_dask import DaskTaskRunner

    params = dict(
        aoi=flood_aoi(),
        event_date=EVENT,
        store=str(store),
        search=FloodSearchOptions(catalog=str(catalog), collections=["sentinel-1-rtc"]),
        tiling=TilingOptions(chunk=64, halo=16),
        model=FloodModelOptions(factory=FACTORY, upsampler="bilinear"),
    )
    runner = DaskTaskRunner(address=dask_cluster.scheduler_address)
    return flood.with_options(task_runner=runner)(**{**params, **overrides})


def _scene_mask(cube: xr.Dataset, region: tuple[slice, slice]) -> np.ndarray:
    """``region`` of the scenes (pixel rows/cols) as a mask on the cube's grid."""
    rows = np.floor((ORIGIN[1] - cube.y.values) / RES).astype(int)
    cols = np.floor((cube.x.values - ORIGIN[0]) / RES).astype(int)
    inside_rows = (rows >= region[0].start) & (rows < region[0].stop)
    inside_cols = (cols >= region[1].start) & (cols < region[1].stop)
    return inside_rows[:, None] & inside_cols[None, :]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return make_flood_catalog(tmp_path_factory.mktemp("flood"))


@pytest.fixture(scope="module")
def flood_run(prefect_api, dask_cluster, catalog, tmp_path_factory):
    """One real run: (summary, cube opened without CF decoding, store path)."""
    store = tmp_path_factory.mktemp("flood-cube") / "flood.zarr"
    summary = run_flood(dask_cluster, catalog, store)
    return summary, xr.open_zarr(store, decode_coords="all", mask_and_scale=False), store


# --- inputs (fast) ------------------------------------------------------------------------------


def test_windows_end_the_day_before_and_start_on_the_event():
    windows = flood_windows("2024-05-10", 12, 6)
    assert windows.pre == ("2024-04-28", "2024-05-09")
    assert windows.post == ("2024-05-10", "2024-05-16")


def test_malformed_event_date_is_refused():
    with pytest.raises(InputError, match="event_date must be an ISO date"):
        flood_windows("10/05/2024", 12, 6)


def test_water_classes_match_a_synonym():
    assert water_indices(["land", "lake,river", "road"], ["river"]) == (1,)


def test_unknown_water_class_is_refused():
    with pytest.raises(InputError, match=r"water_classes \['sea'\] are not among the classes"):
        water_indices(["water", "land"], ["sea"])


def test_orbit_keeps_one_direction(tmp_path):
    catalog = make_flood_catalog(
        tmp_path, {"s1-post-asc": ("2024-05-13T17:00:00Z", "ascending", True)}
    )
    found = search_sar_window(
        str(catalog), flood_aoi(), "post", ("2024-05-10", "2024-05-16"),
        ["sentinel-1-rtc"], orbit="descending",
    )  # fmt: skip
    assert found.ids == ("s1-post",)


def test_model_factory_builds_the_segmenter_at_the_same_api():
    from terrawatch.tasks.core.worker_model import ModelSpec

    model = ModelSpec(("water,river", "land"), factory=FACTORY, sensor="sar").load()
    assert model.classes.names == ("water", "land") and model.provenance()["sensor"] == "sar"


def test_unimportable_model_factory_is_a_clear_error():
    from terrawatch.tasks.core.worker_model import ModelSpec

    with pytest.raises(ValueError, match=r"factory 'no_such_module:build' cannot be imported"):
        ModelSpec(("water", "land"), factory="no_such_module:build").load()


# --- end to end (real processes) ------------------------------------------------------------------


@pytest.mark.slow
def test_flooded_covers_the_planted_region(flood_run):
    _, cube, _ = flood_run
    planted = _scene_mask(cube, FLOOD)
    flooded = cube.flooded.values[0] == 1
    assert planted.sum() > 3000
    assert flooded[planted].mean() >= 0.9


@pytest.mark.slow
def test_nothing_else_is_flooded(flood_run):
    _, cube, _ = flood_run
    near = binary_dilation(_scene_mask(cube, FLOOD), iterations=3)
    # the river's edge rows flicker: their speckle differs between the dates (as in real data)
    banks = [(slice(r - 1, r + 2), RIVER[1]) for r in (RIVER[0].start, RIVER[0].stop - 1)]
    near |= _scene_mask(cube, banks[0]) | _scene_mask(cube, banks[1])
    flooded = cube.flooded.values[0] == 1
    assert flooded[~near].mean() < 0.001


@pytest.mark.slow
def test_river_is_water_before_and_not_flooded(flood_run):
    _, cube, _ = flood_run
    river = _scene_mask(cube, (slice(RIVER[0].start + 2, RIVER[0].stop - 2), RIVER[1]))
    assert (cube.water_pre.values[0][river] == 1).mean() >= 0.95
    assert (cube.flooded.values[0][river] == 1).mean() < 0.05


@pytest.mark.slow
def test_every_pixel_is_decided_by_sar(flood_run):
    _, cube, _ = flood_run
    assert set(np.unique(cube.source_pre.values)) == {1}
    assert set(np.unique(cube.source_post.values)) == {1}
    assert cube.source_post.attrs["flag_meanings"] == "none sar optical"


@pytest.mark.slow
def test_cube_opens_with_crs_and_provenance(flood_run):
    _, _, store = flood_run
    cube = xr.open_zarr(store, decode_coords="all")
    assert cube.flooded.rio.crs.to_epsg() == 32633
    assert float(cube.x.diff("x")[0]) == RES
    assert str(cube.time.values[0])[:10] == EVENT
    assert cube.attrs["pre_window"] == ["2024-04-28", "2024-05-09"]
    assert cube.attrs["items_pre_sar"] == ["s1-pre-a", "s1-pre-b"]
    assert cube.attrs["items_post_sar"] == ["s1-post"]
    assert cube.attrs["water_classes"] == ["water"]
    assert cube.attrs["model"]["backbone"] == "water-rule"
    assert len(cube.attrs["model"]["clip_sha256"]) == 64
    assert cube.attrs["time_steps"][0]["pre"]["items"] == ["s1-pre-a", "s1-pre-b"]


@pytest.mark.slow
def test_flooded_area_and_picture_are_published(flood_run):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    summary, cube, _ = flood_run
    flooded_px = int((cube.flooded.values == 1).sum())
    assert summary["flooded_km2"] == pytest.approx(flooded_px * RES**2 / 1e6)
    assert Path(summary["picture"]).read_bytes()[:4] == b"\x89PNG"

    async def read(key: str):
        async with get_client() as client:
            flt = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            return await client.read_artifacts(artifact_filter=flt)

    table = asyncio.run(read("flood-flood-area"))
    picture = asyncio.run(read("flood-flood-picture"))
    assert table and "area_km2" in str(table[0].data)
    assert picture and "data:image/png;base64," in str(picture[0].data)
    # the run described the cube in STAC beside the store, linked to the scenes it used
    item = json.loads(
        Path(summary["stac"]).parent.joinpath(f"flood-{EVENT}", f"flood-{EVENT}.json").read_text()
    )
    sources = [link["title"] for link in item["links"] if link["rel"] == "derived_from"]
    assert sorted(sources) == ["s1-post", "s1-pre-a", "s1-pre-b"]
    assert item["properties"]["start_datetime"][:10] == "2024-04-28"


@pytest.mark.slow
def test_rerun_of_a_finished_event_writes_no_tile(flood_run, dask_cluster, catalog):
    first, _, store = flood_run
    summary = run_flood(dask_cluster, catalog, store)
    assert summary["tiles"] == {} and summary["tiles_total"] == first["tiles_total"]
    assert summary["flooded_km2"] == first["flooded_km2"]


@pytest.mark.slow
def test_no_sar_scene_before_the_event_fails_before_any_work(
    prefect_api, dask_cluster, catalog, tmp_path
):
    store = tmp_path / "none.zarr"
    with pytest.raises(NoScenesError, match=r"no SAR scenes in the pre-event window 2024-04-27"):
        run_flood(dask_cluster, catalog, store, event_date="2024-04-30", windows={"pre_days": 3})
    assert not store.exists()


@pytest.mark.slow
def test_mixed_orbits_in_a_window_are_refused_with_the_fix(prefect_api, dask_cluster, tmp_path):
    catalog = make_flood_catalog(
        tmp_path, {"s1-post-asc": ("2024-05-13T17:00:00Z", "ascending", True)}
    )
    store = tmp_path / "mixed.zarr"
    with pytest.raises(InputError, match=r"post-event window.*mix orbit directions.*--orbit"):
        run_flood(dask_cluster, catalog, store)
    assert not store.exists()


@pytest.mark.slow
def test_other_orbit_after_the_event_is_refused(prefect_api, dask_cluster, tmp_path):
    extra = {"s1-post": ("2024-05-12T17:00:00Z", "ascending", True)}
    catalog = make_flood_catalog(tmp_path, extra)
    store = tmp_path / "other-orbit.zarr"
    with pytest.raises(InputError, match="pre- and post-event SAR scenes are not comparable"):
        run_flood(dask_cluster, catalog, store)
    assert not store.exists()


@pytest.mark.slow
def test_mixed_polarisations_are_refused(prefect_api, dask_cluster, tmp_path):
    extra = {"s1-pre-c": ("2024-05-07T05:00:00Z", "descending", False, ("vv",))}
    catalog = make_flood_catalog(tmp_path, extra)
    store = tmp_path / "pols.zarr"
    with pytest.raises(InputError, match=r"pre-event window.*mix polarisation sets"):
        run_flood(dask_cluster, catalog, store)
    assert not store.exists()


def optical_geotiff(path: Path, width: int = 80) -> Path:
    """8-bit RGB over the scenes' left ``width`` columns, after the event: flood dark in red."""
    red = np.full((SIZE, width), 180, np.uint8)
    red[RIVER[0], :] = 20
    red[FLOOD[0], FLOOD[1].start : width] = 20
    rgb = np.stack([red, np.full_like(red, 120), np.full_like(red, 90)])
    profile = dict(driver="GTiff", width=width, height=SIZE, count=3, dtype="uint8", crs=CRS,
                   transform=from_origin(*ORIGIN, RES, RES), photometric="RGB")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb)
    return path


@pytest.mark.slow
def test_cloud_free_optical_pixels_win_over_sar(prefect_api, dask_cluster, tmp_path):
    from terrawatch.tasks.core.local_item import add_local_item

    catalog = make_flood_catalog(tmp_path)
    image = optical_geotiff(tmp_path / "optical.tif")
    add_local_item(image, catalog, datetime="2024-05-11T10:00:00Z", item_id="optical-post")
    store = tmp_path / "optical.zarr"
    search = FloodSearchOptions(
        catalog=str(catalog),
        collections=["sentinel-1-rtc"],
        optical=True,
        optical_collections=["local"],
        max_cloud=None,
    )
    run_flood(dask_cluster, catalog, store, search=search)  # fmt: skip
    cube = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    covered = _scene_mask(cube, (slice(0, SIZE), slice(0, 80)))
    assert (cube.source_post.values[0][covered] == 2).all()
    assert (cube.source_post.values[0][~covered] == 1).all()
    assert (cube.source_pre.values[0] == 1).all()
    assert (cube.flooded.values[0][_scene_mask(cube, FLOOD)] == 1).mean() >= 0.9
    assert cube.attrs["items_post_optical"] == ["optical-post"]


@pytest.mark.slow
def test_tiny_alignearth_model_writes_a_valid_cube(prefect_api, dask_cluster, catalog, tmp_path):
    from tests.models.distill_fixtures import (
        build_tiny_gelu_clip,
        save_open_clip_training_checkpoint,
    )

    weights = save_open_clip_training_checkpoint(
        build_tiny_gelu_clip(seed=3), tmp_path / "AlignEarth-SAR-ViT-B-16.pt"
    )
    store = tmp_path / "alignearth.zarr"
    model = FloodModelOptions(weights=str(weights), upsampler="bilinear", sensor="sar")
    summary = run_flood(dask_cluster, catalog, store, model=model)
    cube = xr.open_zarr(store, mask_and_scale=False)
    assert summary["tiles"] == {"written": summary["tiles_total"]}
    assert set(np.unique(cube.flooded.values)) <= {0, 1, 255}
    assert set(np.unique(cube.water_post.values)) <= {0, 1}
    assert cube.attrs["model"]["sensor"] == "sar"
