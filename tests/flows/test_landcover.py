"""The land-cover flow end to end on real imagery, a real Prefect API and a real Dask cluster."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.flows.landcover import landcover
from terrawatch.flows.options import GridOptions, ModelOptions, SearchOptions, TilingOptions
from terrawatch.tasks.core.catalog import search_items
from terrawatch.tasks.core.local_item import add_local_item
from tests.conftest import shared_data

S2_ITEM = "earthsearch-v1_sentinel-2-l2a_S2A_29RKH_20200219_0_L2A.LOCAL-DERIVED.item.json"
CLASSES = ["water,sea", "sand,desert", "vegetation", "building,town"]
pytestmark = pytest.mark.slow


@pytest.fixture
def model(tiny_model_files) -> ModelOptions:
    return ModelOptions(
        weights=str(tiny_model_files["clip"]), upsampler_weights=str(tiny_model_files["simfeatup"])
    )


@pytest.fixture
def koeln_catalog(tmp_path) -> Path:
    image = shared_data("optical", "oem_koeln_50.tif")
    catalog = tmp_path / "catalog"
    add_local_item(image, catalog, datetime="2024-06-01T10:00:00Z", item_id="koeln-june")
    add_local_item(image, catalog, datetime="2024-07-01T10:00:00Z", item_id="koeln-july")
    return catalog


def _koeln(run_flow, catalog: Path, store: Path, model: ModelOptions, month: str = "06", **kw):
    """Run the flow on the Köln catalog; keyword arguments override the defaults."""
    params = dict(
        aoi="6.8085,50.9595,6.8130,50.9625",
        start=f"2024-{month}-01",
        end=f"2024-{month}-02",
        classes=CLASSES,
        store=str(store),
        search={"catalog": str(catalog), "collections": ["local"], "max_cloud": None},
        grid={"resolution": 2.0},
        tiling={"chunk": 64},
        model=model,
    )
    return run_flow(landcover, **{**params, **kw})


def _chunk_files(store: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def test_sentinel2_cube_has_crs_flags_provenance_and_extent(run_flow, tmp_path, model):
    catalog = shared_data("stac")
    item = json.loads((catalog / S2_ITEM).read_text())
    west, south = item["bbox"][:2]
    aoi = [west + 0.3, south + 0.3, west + 0.6, south + 0.6]
    store = tmp_path / "s2.zarr"
    summary = run_flow(
        landcover,
        aoi=aoi,
        start="2020-02-19",
        end="2020-02-19",
        classes=CLASSES,
        store=str(store),
        search=SearchOptions(catalog=str(catalog), collections=["sentinel-2-l2a"], max_cloud=None),
        grid=GridOptions(resolution=500.0),
        tiling=TilingOptions(chunk=64),
        model=model,
    )
    cube = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    assert cube.landcover.rio.crs.to_epsg() == 32629
    assert cube.landcover.dims == ("time", "y", "x") and cube.sizes["time"] == 1
    assert float(cube.x.diff("x")[0]) == 500.0
    assert cube.landcover.attrs["flag_meanings"] == "water sand vegetation building"
    assert list(cube.landcover.attrs["flag_values"]) == [0, 1, 2, 3]
    values = cube.landcover.values
    assert set(np.unique(values)) <= {0, 1, 2, 3, 255} and (values != 255).mean() > 0.9
    assert cube.attrs["time_steps"][0]["items"] == [item["id"]]
    assert len(cube.attrs["clip_sha256"]) == 64
    assert summary["tiles"] == {"written": summary["tiles_total"]}
    assert sum(row["area_km2"] for row in summary["areas"]) > 0


def test_local_geotiff_cube_matches_the_input_grid(run_flow, tmp_path, koeln_catalog, model):
    store = tmp_path / "koeln.zarr"
    _koeln(run_flow, koeln_catalog, store, model)
    cube = xr.open_zarr(store, decode_coords="all")
    assert cube.landcover.rio.crs.to_epsg() == 32632
    left, bottom, right, top = cube.landcover.rio.bounds()
    assert left >= 346000 and top <= 5648000 and right <= 346500 and bottom >= 5647500
    assert cube.attrs["time_steps"][0]["items"] == ["koeln-june"]


def test_second_period_appends_a_time_step(run_flow, tmp_path, koeln_catalog, model):
    store = tmp_path / "koeln.zarr"
    _koeln(run_flow, koeln_catalog, store, model, "06")
    _koeln(run_flow, koeln_catalog, store, model, "07")
    cube = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    assert [str(t)[:10] for t in cube.time.values] == ["2024-06-01", "2024-07-01"]
    assert np.array_equal(cube.landcover[0].values, cube.landcover[1].values)  # same image


def test_rerun_of_a_finished_period_is_a_no_op(run_flow, tmp_path, koeln_catalog, model):
    store = tmp_path / "koeln.zarr"
    _koeln(run_flow, koeln_catalog, store, model)
    before = _chunk_files(store)
    summary = _koeln(run_flow, koeln_catalog, store, model)
    assert summary["tiles"] == {} and summary["tiles_total"] == 9
    after = _chunk_files(store)
    assert {k: v for k, v in after.items() if "landcover/" in k} == {
        k: v for k, v in before.items() if "landcover/" in k
    }
    assert xr.open_zarr(store).sizes["time"] == 1


def test_inverted_bbox_fails_before_any_work(run_flow, tmp_path, model):
    with pytest.raises(InputError, match="empty or inverted"):
        run_flow(
            landcover,
            aoi=[7.0, 51.0, 6.9, 50.9],
            start="2024-06-01",
            end="2024-06-02",
            classes=CLASSES,
            store=str(tmp_path / "x.zarr"),
            search={"catalog": str(tmp_path)},
            model=model,
        )
    assert not (tmp_path / "x.zarr").exists()


def test_store_with_other_classes_is_refused_and_left_intact(
    run_flow, tmp_path, koeln_catalog, model
):
    store = tmp_path / "koeln.zarr"
    _koeln(run_flow, koeln_catalog, store, model)
    before = _chunk_files(store)
    with pytest.raises(StoreMismatchError, match="class"):
        _koeln(run_flow, koeln_catalog, store, model, "07", classes=["water", "road"])
    assert _chunk_files(store) == before


def test_tiles_without_data_are_skipped_and_filled(run_flow, tmp_path, koeln_catalog, model):
    store = tmp_path / "wide.zarr"
    summary = _koeln(
        run_flow, koeln_catalog, store, model, aoi="6.8060,50.9580,6.8130,50.9625",
        grid={"resolution": 4.0},
    )  # fmt: skip
    assert summary["tiles"].get("nodata", 0) >= 1 and summary["tiles"].get("written", 0) >= 1
    cube = xr.open_zarr(store, mask_and_scale=False)
    assert (cube.landcover.values == 255).any() and (cube.landcover.values != 255).any()


def test_flow_publishes_class_areas_and_a_quicklook(run_flow, tmp_path, koeln_catalog, model):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    store = tmp_path / "published.zarr"
    summary = _koeln(run_flow, koeln_catalog, store, model)
    assert Path(summary["quicklook"]).read_bytes()[:4] == b"\x89PNG"

    async def read(key: str):
        async with get_client() as client:
            flt = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            return await client.read_artifacts(artifact_filter=flt)

    import asyncio

    table = asyncio.run(read("published-areas"))
    picture = asyncio.run(read("published-quicklook"))
    assert table and "area_km2" in str(table[0].data)
    assert picture and "data:image/png;base64," in str(picture[0].data)
    # the run described the cube in STAC beside the store, a catalog the flows can search
    assert summary["stac"] == f"{store}.stac/collection.json"
    found = search_items(
        f"{store}.stac", "6.8085,50.9595,6.8130,50.9625", "2024-06-01", "2024-06-02"
    )
    assert found.ids == ("published-2024-06-01",)
    assert found.items[0]["properties"]["terrawatch:provenance"]["items"] == ["koeln-june"]
    assert [link["title"] for link in found.items[0]["links"] if link["rel"] == "derived_from"] == [
        "koeln-june"
    ]
