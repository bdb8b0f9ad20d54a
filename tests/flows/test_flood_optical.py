"""What a catalog adds to a weights-free flood run: Sentinel-2 and a reference water product.

The synthetic SAR event of :mod:`tests.flows.flood_event` gets a Sentinel-2 L2A scene the day
after the event with a cloud (SCL 9) and its shadow (SCL 3) over part of the planted flood,
and a JRC Global Surface Water occurrence item whose seasonal wetland covers part of it.
The flow runs with its defaults (``--method auto``, optical scenes searched) and an empty
weights directory: the threshold member and the optical member's spectral rule both vote, and
the catalog's reference product joins ``reference_water``.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.ndimage import binary_dilation, binary_erosion

from terrawatch.flows.flood import flood
from terrawatch.flows.options import FloodModelOptions, FloodSearchOptions, TilingOptions
from terrawatch.tasks.flood.optical_member import water_probability
from tests.flows.flood_event import (
    EVENT,
    S2_REFLECTANCE,
    csi,
    wetland_regions,
    write_event,
    write_gsw,
    write_optical_scene,
)

SIZE = 160
S2_TIME = "2024-05-11T10:30:00"


def _cloud(size: int) -> np.ndarray:
    """A cloud over the left part of the flood patch and the land above it."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    return (yy > 0.40) & (yy < 0.56) & (xx > 0.60) & (xx < 0.74)


@pytest.fixture(scope="module")
def optical_run(prefect_api, dask_cluster, tmp_path_factory):
    from prefect_dask import DaskTaskRunner

    root = tmp_path_factory.mktemp("flood-optical")
    event = write_event(root, SIZE)
    write_optical_scene(root, event, _cloud(SIZE), f"{S2_TIME}Z")
    write_gsw(root, event)
    runner = DaskTaskRunner(address=dask_cluster.scheduler_address)
    summary = flood.with_options(task_runner=runner)(
        aoi=event.aoi(inset=40.0),
        event_date=EVENT,
        store=str(root / "flood.zarr"),
        search=FloodSearchOptions(catalog=str(root / "catalog"), collections=["sentinel-1-rtc"]),
        tiling=TilingOptions(chunk=64, halo=16),
        model=FloodModelOptions(upsampler="bilinear"),
    )
    cube = xr.open_zarr(root / "flood.zarr", decode_coords="all", mask_and_scale=False)
    return event, cube, summary


def _on_grid(event, cube, mask, erode: int = 2) -> np.ndarray:
    if erode:
        mask = binary_erosion(mask, iterations=erode)
    return event.on_grid(mask, cube.x.values, cube.y.values)


def test_a_cloud_would_pass_for_water_without_the_scl_mask():
    """Why the member needs SCL: a bright cloud's MNDWI is positive."""
    green, nir, swir = (np.float32(v) for v in S2_REFLECTANCE["cloud"])
    assert water_probability(np.array(green), np.array(nir), np.array(swir)) > 0.5


@pytest.mark.slow
def test_optical_member_runs_without_weights_and_the_cube_says_which(optical_run):
    _, cube, summary = optical_run
    assert cube.attrs["members"] == ["threshold", "optical"]
    assert "NDWI/MNDWI" in cube.attrs["members_note"]
    assert "no segmenter weights" in cube.attrs["members_note"]
    member = cube.attrs["optical_member"]
    assert member["segmenter"] is None
    assert member["spectral"]["items_post"] == ["s2-post"]
    assert member["spectral"]["ndwi_threshold"] == 0.0
    assert cube.attrs["items_post_optical"] == ["s2-post"]
    assert summary["members"] == ["threshold", "optical"]


@pytest.mark.slow
def test_cloud_pixels_are_not_observed_by_the_optical_member(optical_run):
    event, cube, _ = optical_run
    cloud = _on_grid(event, cube, _cloud(SIZE))
    clear = _on_grid(event, cube, ~_cloud(SIZE), erode=8)
    source = cube.source.values[0]
    assert (source[cloud] == 1).all()  # the threshold member alone
    assert (source[clear] == 5).mean() >= 0.99  # threshold and optical
    assert (cube.source_post.values[0][clear] == 2).mean() >= 0.99  # optical saw it
    land_under_cloud = cloud & ~_on_grid(event, cube, binary_dilation(event.flood, iterations=2))
    assert land_under_cloud.sum() > 50
    assert (cube.observed_water.values[0][land_under_cloud] == 0).all()


@pytest.mark.slow
def test_the_flood_is_found_and_agreement_raises_likelihood(optical_run):
    event, cube, _ = optical_run
    flooded = cube.flooded.values[0] == 1
    seasonal, _ = wetland_regions(SIZE)  # normal water by the reference product
    assert csi(flooded, _on_grid(event, cube, event.flood & ~seasonal, erode=0)) >= 0.8
    likelihood = cube.likelihood.values[0]
    flood_px = _on_grid(event, cube, event.flood)
    cloud = _on_grid(event, cube, _cloud(SIZE))
    alone, both = flood_px & cloud, flood_px & ~cloud
    assert alone.sum() > 100 and both.sum() > 1000
    unsure_alone = (likelihood[alone] < 100).mean()
    assert unsure_alone > 0  # speckle leaves the threshold member unsure on some pixels
    assert (likelihood[both] < 100).mean() < unsure_alone
    assert (cube.observed_water.values[0][both] == 1).mean() >= 0.99


@pytest.mark.slow
def test_observed_at_is_the_earliest_scene_that_saw_the_pixel(optical_run):
    event, _, summary = optical_run
    cube = xr.open_zarr(summary["store"])
    at = cube.observed_at.values[0].astype("datetime64[m]")
    cloud = _on_grid(event, cube, _cloud(SIZE))
    clear = _on_grid(event, cube, ~_cloud(SIZE), erode=8)
    assert (at[clear] == np.datetime64(S2_TIME, "m")).all()  # optical, the day after the event
    assert (at[cloud] == np.datetime64("2024-05-12T05:00", "m")).all()  # SAR


@pytest.mark.slow
def test_the_catalogs_reference_water_product_joins_reference_water(optical_run):
    """GSW occurrence >= 50 %: the seasonal wetland is normal water, so not flooded; the rarely
    wet part (30 %) stays flood."""
    event, cube, summary = optical_run
    seasonal, rare = wetland_regions(SIZE)
    seasonal, rare = _on_grid(event, cube, seasonal), _on_grid(event, cube, rare)
    reference, flooded = cube.reference_water.values[0], cube.flooded.values[0]
    assert seasonal.sum() > 50 and rare.sum() > 50
    assert (reference[seasonal] == 1).all() and (flooded[seasonal] == 0).all()
    assert (cube.observed_water.values[0][seasonal] == 1).mean() >= 0.98  # water it is
    assert (flooded[rare] == 1).mean() >= 0.98
    assert cube.attrs["reference_products"] == [
        {"product": "jrc-gsw", "rule": "jrc-gsw occurrence >= 50", "items": ["gsw-event"]}
    ]
    page = open(summary["files"]["report_html"], encoding="utf-8").read()
    assert "reference water product: jrc-gsw occurrence &gt;= 50" in page
    assert "optical member: NDWI" in page
    assert "<td>optical</td><td>s2-post</td>" in page  # the scenes table lists it
