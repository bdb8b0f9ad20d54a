"""The flood flow with no model weights at all: the threshold member alone, on a synthetic event.

The event (:mod:`tests.flows.flood_event`) has realistic SAR statistics: gamma speckle with
ENL 4.4, an incidence-angle gradient, a lake, a river, a dark sand field and a radar-shadow
strip, and a planted flood that includes the fields next to the lake. The run goes through
the real flow (search, plan with scene thresholds, Dask tiles, Zarr cube, publishing).
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from scipy.ndimage import binary_erosion

from terrawatch.flows.flood import flood
from terrawatch.flows.options import FloodModelOptions, FloodSearchOptions, TilingOptions
from tests.flows.flood_event import EVENT, csi, ridge_columns, write_dem, write_event

SIZE = 200


@pytest.fixture(scope="module")
def event_run(prefect_api, dask_cluster, tmp_path_factory):
    """One run with an empty weights directory: (event, cube without CF decoding, summary)."""
    from prefect_dask import DaskTaskRunner

    root = tmp_path_factory.mktemp("flood-event")
    event = write_event(root, SIZE)
    write_dem(root, event)  # a ridge whose west face is the shadow strip
    store = root / "flood.zarr"
    runner = DaskTaskRunner(address=dask_cluster.scheduler_address)
    summary = flood.with_options(task_runner=runner)(
        aoi=event.aoi(inset=40.0),
        event_date=EVENT,
        store=str(store),
        search=FloodSearchOptions(catalog=str(root / "catalog"), collections=["sentinel-1-rtc"]),
        tiling=TilingOptions(chunk=96, halo=16),
        model=FloodModelOptions(upsampler="bilinear"),
    )
    cube = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    return event, cube, summary


def _mask(event, cube, mask: np.ndarray, erode: int = 0) -> np.ndarray:
    if erode:
        mask = binary_erosion(mask, iterations=erode)
    return event.on_grid(mask, cube.x.values, cube.y.values)


@pytest.mark.slow
def test_without_weights_the_planted_flood_is_found(event_run):
    event, cube, _ = event_run
    flooded = cube.flooded.values[0] == 1
    planted = _mask(event, cube, event.flood)
    assert planted.sum() > 3000
    assert csi(flooded, planted) >= 0.8


@pytest.mark.slow
def test_lake_and_river_are_reference_water_not_flood(event_run):
    event, cube, _ = event_run
    for feature in (event.lake, event.river):
        inside = _mask(event, cube, feature, erode=2)
        assert (cube.reference_water.values[0][inside] == 1).mean() >= 0.98
        assert (cube.flooded.values[0][inside] == 1).mean() <= 0.01
        assert (cube.observed_water.values[0][inside] == 1).mean() >= 0.98


@pytest.mark.slow
def test_sand_and_shadow_are_excluded_not_flood(event_run):
    event, cube, _ = event_run
    for feature in (event.sand, event.shadow):
        inside = _mask(event, cube, feature, erode=1)
        assert ((cube.exclusion.values[0][inside] & 1) == 1).mean() >= 0.98
        assert (cube.flooded.values[0][inside] == 1).mean() <= 0.01
    assert cube.exclusion.attrs["flag_meanings"] == (
        "low_backscatter urban dense_forest layover radar_shadow"
    )
    assert list(cube.exclusion.attrs["flag_masks"]) == [1, 2, 4, 8, 16]


@pytest.mark.slow
def test_the_dem_flags_the_shadow_strip_and_the_ridge_front_by_their_own_bits(event_run):
    """The catalog's DEM and the descending pass's geometry (looking west-north-west at 37.5
    degrees): the ridge's west face (the dark strip) is radar shadow, its east face layover."""
    event, cube, _ = event_run
    exclusion = cube.exclusion.values[0]
    shadow = _mask(event, cube, event.shadow, erode=1)
    assert ((exclusion[shadow] & 16) == 16).all()
    _, east = ridge_columns(event)
    front = np.zeros_like(event.shadow)
    front[:, east[1:-1]] = True
    covered = _mask(event, cube, front) & (cube.source.values[0] != 0)
    assert covered.sum() > 100 and ((exclusion[covered] & 8) == 8).all()
    flat = _mask(event, cube, event.sand | event.flood, erode=1)
    assert ((exclusion[flat] & (8 | 16)) == 0).all()
    assert cube.attrs["terrain"]["dem_items"] == ["dem-ridge"]
    assert cube.attrs["terrain"]["look_azimuth_deg"] == 283.0


@pytest.mark.slow
def test_threshold_alone_ran_and_the_cube_says_so(event_run):
    _, cube, summary = event_run
    assert cube.attrs["members"] == ["threshold"]
    assert "no segmenter weights" in cube.attrs["members_note"]
    assert set(np.unique(cube.source.values[0])) == {1}
    assert len(cube.attrs["items_reference_sar"]) == 5
    methods = {r["vv"]["method"] for r in cube.attrs["scene_thresholds"]}
    assert methods == {"split-otsu"}
    assert summary["flooded_km2"] > 0


@pytest.mark.slow
def test_likelihood_is_high_inside_the_flood_and_low_on_land(event_run):
    event, cube, _ = event_run
    likelihood = cube.likelihood.values[0]
    inside = _mask(event, cube, event.flood, erode=3)
    land = _mask(event, cube, ~(event.flood | event.water | event.sand | event.shadow), erode=3)
    assert np.median(likelihood[inside]) >= 90
    assert np.median(likelihood[land]) <= 10


@pytest.mark.slow
def test_observed_at_is_the_post_scene_time(event_run):
    _, _, summary = event_run
    cube = xr.open_zarr(summary["store"])
    times = np.unique(cube.observed_at.values[0])
    assert [str(t)[:16] for t in times] == ["2024-05-12T05:00"]


@pytest.mark.slow
def test_polygons_footprint_and_report_are_written_beside_the_store(event_run):
    import geopandas as gpd
    import rasterio.features

    from terrawatch.tasks.flood.report import NOTE

    _, cube, summary = event_run
    files = summary["files"]
    polygons = gpd.read_parquet(files["polygons_geoparquet"])
    assert polygons.crs.to_epsg() == 4326
    assert len(gpd.read_file(files["polygons_geojson"])) == len(polygons)
    assert (polygons.area_ha >= 0.5).all()
    back = polygons.to_crs(cube.rio.crs)
    transform = cube.rio.transform()
    burnt = rasterio.features.rasterize(back.geometry, out_shape=cube.flooded.shape[1:],
                                        transform=transform).astype(bool)  # fmt: skip
    flooded = cube.flooded.values[0] == 1
    assert (burnt != flooded).mean() < 0.01  # only specks below the mapping unit differ
    shape = gpd.read_file(files["footprint_geojson"])
    assert shape.crs.to_epsg() == 4326 and shape.observed_km2.iloc[0] > 3.0
    page = open(files["report_html"], encoding="utf-8").read()
    assert NOTE in page and "s1-post" in page and "split-otsu" in page
    rows = {r["quantity"]: r["area_km2"] for r in summary["report"]}
    assert rows["flooded"] == pytest.approx(flooded.sum() * 1e-4)


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed")
def test_report_renders_offline_in_headless_chromium(event_run, tmp_path):
    """The page's map image decodes and its table renders, with the network off."""
    _, _, summary = event_run
    script = (
        "document.title = [document.getElementById('map').naturalWidth,"
        " document.querySelectorAll('#areas td').length].join(',')"
    )
    page = open(summary["files"]["report_html"], encoding="utf-8").read()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", f"<script>onload=()=>{{{script}}}</script></body>"))
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         "--virtual-time-budget=5000", "--proxy-server=127.0.0.1:9", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    title = out.stdout.split("<title>")[1].split("</title>")[0]
    width, cells = (int(v) for v in title.split(","))
    assert width > 100 and cells >= 10


def _landcover_cube(path: str, event) -> str:
    """A land-cover cube over the event at 20 m: cropland, and buildings over the flood patch."""
    from terrawatch.models.classes import parse_class_names
    from terrawatch.tasks.core.cube_types import TimeStep
    from terrawatch.tasks.core.grid import GridSpec
    from terrawatch.tasks.landcover.cube import prepare_cube, write_tile

    left, top = event.origin
    span = event.size * 10.0
    grid = GridSpec("EPSG:32633", 20.0, left, top - span, left + span, top)
    classes = parse_class_names(["building,urban", "cropland"])
    plan = prepare_cube(path, grid, classes, TimeStep("2024-04-01", "2024-04-30", ("s2",)), {},
                        128)  # fmt: skip
    labels = np.ones(grid.shape, np.uint8)
    labels[40:70, 60:90] = 0  # covers the planted patch (rows 0.45-0.62, cols 0.62-0.85)
    write_tile(path, plan.time_index, (0, 0), labels, np.full(grid.shape, 0.9), 128)
    return path


@pytest.mark.slow
def test_a_second_member_votes_and_agreement_raises_likelihood(
    event_run, prefect_api, dask_cluster, tmp_path
):
    """The water-rule stand-in at the model API as ``alignearth``: both members vote; a
    land-cover cube's buildings are excluded."""
    from prefect_dask import DaskTaskRunner

    event, alone, _ = event_run
    root = tmp_path
    write_event(root, SIZE)
    landcover = _landcover_cube(str(root / "landcover.zarr"), event)
    runner = DaskTaskRunner(address=dask_cluster.scheduler_address)
    summary = flood.with_options(task_runner=runner)(
        aoi=event.aoi(inset=40.0),
        event_date=EVENT,
        store=str(root / "two.zarr"),
        search=FloodSearchOptions(
            catalog=str(root / "catalog"), collections=["sentinel-1-rtc"], landcover_cube=landcover
        ),
        tiling=TilingOptions(chunk=96, halo=16),
        model=FloodModelOptions(factory="tests.flows.water_rule:build", upsampler="bilinear"),
    )
    two = xr.open_zarr(root / "two.zarr", mask_and_scale=False)
    assert two.attrs["members"] == ["threshold", "alignearth"]
    assert set(np.unique(two.source.values[0])) == {3}
    urban = np.zeros((SIZE, SIZE), bool)
    urban[80:140, 120:180] = True  # the land-cover cube's buildings on the 10 m scene grid
    in_town = _mask(event, two, urban)
    assert ((two.exclusion.values[0][in_town] & 2) == 2).all()
    assert (two.flooded.values[0][in_town] == 0).all()
    page = open(summary["files"]["report_html"], encoding="utf-8").read()
    assert "Flooded per land-cover class" in page and "cropland" in page
    # where the threshold member alone was not sure of the flood, the agreeing rule raises it
    planted = _mask(event, two, event.flood)
    unsure = planted & (alone.likelihood.values[0] < 100) & (two.observed_water.values[0] == 1)
    assert unsure.sum() > 20
    assert two.likelihood.values[0][unsure].mean() > alone.likelihood.values[0][unsure].mean()
    outside_town = _mask(event, two, event.flood & ~urban)
    assert csi(two.flooded.values[0] == 1, outside_town) >= 0.8
