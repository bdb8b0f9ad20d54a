"""The change flow end to end on a real image pair, a real Prefect API and a real Dask cluster."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
import xarray as xr
from PIL import Image
from rasterio.transform import from_origin

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.flows.change import change, resolve_periods
from terrawatch.flows.landcover import landcover
from terrawatch.flows.options import (
    ChangeOptions,
    ChangeTilingOptions,
    GridOptions,
    ModelOptions,
    SearchOptions,
)
from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.local_item import add_local_item
from terrawatch.tasks.landcover.cube import prepare_cube
from tests.conftest import shared_data

pytestmark = pytest.mark.slow
CLASSES = ["background", "building,house", "road", "tree"]
ORIGIN = (346_000.0, 5_648_000.0)  # made-up EPSG:32632 placement of the 256 x 256 px pair
RES = 0.5
BEFORE = ["2023-06-01", "2023-06-30"]
AFTER = ["2024-06-01", "2024-06-30"]


def write_pair_geotiff(name: str, path: Path, res: float = RES) -> Path:
    """``pair256_<name>.png`` as an EPSG:32632 GeoTIFF at ``ORIGIN`` (resampled to ``res``)."""
    image = Image.open(shared_data("change", f"pair256_{name}.png")).convert("RGB")
    size = round(256 * RES / res)
    rgb = np.asarray(image.resize((size, size), Image.Resampling.BOX)).transpose(2, 0, 1)
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8")
    with rasterio.open(
        path, "w", **profile, crs="EPSG:32632", transform=from_origin(*ORIGIN, res, res),
        photometric="RGB",
    ) as dst:  # fmt: skip
        dst.write(rgb)
    return path


def make_pair_catalog(root: Path, t2_res: float = RES) -> Path:
    """A local catalog: t1 in June 2023, t2 in June 2024, both on one made-up grid."""
    catalog = root / "catalog"
    for name, when, res in (("t1", "2023-06-10", RES), ("t2", "2024-06-10", t2_res)):
        tif = write_pair_geotiff(name, root / f"pair_{name}.tif", res)
        add_local_item(tif, catalog, datetime=f"{when}T10:00:00Z", item_id=f"pair-{name}")
    return catalog


def pair_aoi() -> str:
    """Lon/lat box 8 m inside the pair's footprint."""
    to_lonlat = pyproj.Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    left, top = ORIGIN
    box = to_lonlat.transform_bounds(left + 8, top - 120, left + 120, top - 8)
    return ",".join(f"{v:.6f}" for v in box)


@pytest.fixture(scope="module")
def model(tiny_model_files) -> ModelOptions:
    """The tiny CLIP with the bilinear upsampler: 20x faster than SimFeatUp on CPU."""
    return ModelOptions(weights=str(tiny_model_files["clip"]), upsampler="bilinear")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return make_pair_catalog(tmp_path_factory.mktemp("pair"))


def _change(run_flow, catalog: Path, store: Path, model: ModelOptions, **kw):
    """Run the change flow on the pair; keyword arguments override the defaults."""
    params = dict(
        aoi=pair_aoi(),
        classes=CLASSES,
        before=BEFORE,
        after=AFTER,
        store=str(store),
        search=_search(catalog),
        grid=GridOptions(resolution=RES, crs="EPSG:32632"),
        tiling=ChangeTilingOptions(chunk=128, halo=32),
        model=model,
    )
    return run_flow(change, **{**params, **kw})


def _search(catalog: Path) -> SearchOptions:
    return SearchOptions(catalog=str(catalog), collections=["local"], max_cloud=None)


def _files(store: Path, data_only: bool = True) -> dict[str, str]:
    """sha256 per file of the store (only the data chunks with ``data_only``)."""
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file() and (not data_only or p.parent.name in {"changed", "class_from", "class_to"})
    }


@pytest.fixture(scope="module")
def finished(prefect_api, dask_cluster, tmp_path_factory, catalog, model) -> tuple[Path, dict]:
    """One finished run shared by the tests that only read its results."""
    from prefect_dask import DaskTaskRunner

    def run_flow(flow, **params):
        runner = DaskTaskRunner(address=dask_cluster.scheduler_address)
        return flow.with_options(task_runner=runner)(**params)

    store = tmp_path_factory.mktemp("finished") / "change.zarr"
    return store, _change(run_flow, catalog, store, model)


def test_pair_cube_has_crs_flags_shapes_and_values(finished):
    store, summary = finished
    cube = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    assert cube.changed.rio.crs.to_epsg() == 32632
    assert cube.changed.dims == ("time", "y", "x") and cube.sizes["time"] == 1
    assert float(cube.x.diff("x")[0]) == RES and cube.sizes["y"] > 200
    left, bottom, right, top = cube.changed.rio.bounds()
    assert left >= ORIGIN[0] and top <= ORIGIN[1] and right <= ORIGIN[0] + 128
    assert bottom >= ORIGIN[1] - 128
    assert cube.class_to.attrs["flag_meanings"] == "background building road tree"
    changed = cube.changed[0].values
    assert set(np.unique(changed)) <= {0, 1} and changed.any()
    assert summary["tiles"] == {"written": 4} and summary["tiles_total"] == 4
    assert summary["changed_km2"] > 0 and summary["transitions"]


def test_pair_cube_records_query_steps_items_and_periods(finished):
    store, _ = finished
    cube = xr.open_zarr(store, decode_coords="all")
    attrs = cube.attrs
    assert attrs["change_query"]["targets"] == ["building", "road", "tree"]
    assert attrs["change_query"]["theta_deg"] == 145.0
    assert attrs["change_steps"]["proposer"]["name"] == "superpixel"
    assert len(attrs["change_steps"]["identifier"]["clip_sha256"]) == 64
    record = attrs["time_steps"][0]
    assert record["items"] == ["pair-t2"] and record["before"]["items"] == ["pair-t1"]
    assert str(cube.time.values[0])[:10] == "2024-06-01"
    assert str(cube.time_before.values[0])[:10] == "2023-06-01"


def test_quicklook_png_is_written_beside_the_store(finished):
    _, summary = finished
    path = Path(summary["quicklook"])
    assert path.name.endswith("change-2023-06-01-2024-06-01.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stac_beside_the_store_describes_the_pair_and_is_a_catalog(finished):
    store, summary = finished
    assert summary["stac"] == f"{store}.stac/collection.json"
    items = [json.loads(p.read_text()) for p in Path(f"{store}.stac").glob("*/*.json")]
    assert [i["id"] for i in items] == ["change-2024-06-01"]
    props = items[0]["properties"]
    assert props["start_datetime"][:10] == "2023-06-01"  # the pair's earlier period is covered
    assert set(props["cube:variables"]) == {"changed", "class_from", "class_to"}
    sources = [link["title"] for link in items[0]["links"] if link["rel"] == "derived_from"]
    assert sorted(sources) == ["pair-t1", "pair-t2"]


def test_flow_publishes_a_transition_table_and_a_quicklook_artifact(finished):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read(key: str):
        async with get_client() as client:
            flt = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            return await client.read_artifacts(artifact_filter=flt)

    table = asyncio.run(read("change-changes"))
    picture = asyncio.run(read("change-quicklook"))
    assert table and "class_from" in str(table[0].data)
    assert picture and "data:image/png;base64," in str(picture[0].data)


def test_rerun_of_a_finished_pair_is_a_no_op(run_flow, finished, catalog, model):
    store, _ = finished
    before = _files(store)
    summary = _change(run_flow, catalog, store, model)
    assert summary["tiles"] == {}
    assert _files(store) == before


def test_store_with_other_classes_is_refused_and_left_intact(run_flow, finished, catalog, model):
    store, _ = finished
    before = _files(store, data_only=False)
    with pytest.raises(StoreMismatchError, match="classes"):
        _change(run_flow, catalog, store, model, classes=["background", "water"])
    assert _files(store, data_only=False) == before


def test_from_cube_compares_the_last_two_land_cover_periods(run_flow, tmp_path, catalog, model):
    landcover_store = tmp_path / "landcover.zarr"
    for start, end in (BEFORE, AFTER):
        run_flow(
            landcover, aoi=pair_aoi(), start=start, end=end, classes=CLASSES,
            store=str(landcover_store), search=_search(catalog),
            grid={"resolution": RES, "crs": "EPSG:32632"}, tiling={"chunk": 128}, model=model,
        )  # fmt: skip
    store = tmp_path / "from-cube.zarr"
    summary = run_flow(
        change,
        from_cube=str(landcover_store),
        store=str(store),
        search={"catalog": str(catalog)},
        tiling={"chunk": 128, "halo": 32},
        model=model,
    )
    cube = xr.open_zarr(store, decode_coords="all")
    landcover_cube = xr.open_zarr(landcover_store, decode_coords="all")
    assert cube.attrs["grid"] == landcover_cube.attrs["grid"]
    assert cube.attrs["classes"] == landcover_cube.attrs["classes"]
    assert (summary["time_before"], summary["time"]) == (BEFORE[0], AFTER[0])
    assert cube.attrs["time_steps"][0]["before"]["items"] == ["pair-t1"]


def test_from_cube_with_one_time_step_is_refused(run_flow, tmp_path, catalog, model):
    landcover_store = tmp_path / "one-step.zarr"
    classes = parse_class_names(["background", "building"])
    grid = GridSpec("EPSG:32632", RES, 346_004.5, 5_647_877.0, 346_123.0, 5_647_994.5)
    prepare_cube(str(landcover_store), grid, classes, TimeStep(*AFTER, ("pair-t2",)), {}, 128)
    with pytest.raises(InputError, match="has 1 time step"):
        run_flow(
            change, from_cube=str(landcover_store), search={"catalog": str(catalog)}, model=model
        )


def test_dates_on_different_grids_are_refused_naming_both(run_flow, tmp_path, model):
    catalog = make_pair_catalog(tmp_path, t2_res=1.0)
    store = tmp_path / "x.zarr"
    both = r"different grids: before EPSG:32632, 0\.5 units/px.* after EPSG:32632, 1 units/px"
    with pytest.raises(InputError, match=both):
        _change(run_flow, catalog, store, model)
    assert not store.exists()


def test_query_without_a_target_class_is_refused(run_flow, tmp_path, catalog, model):
    store = tmp_path / "x.zarr"
    with pytest.raises(InputError, match="no target class"):
        _change(run_flow, catalog, store, model, classes=["background"])
    assert not store.exists()


def test_empty_target_list_is_refused(run_flow, tmp_path, catalog, model):
    with pytest.raises(InputError, match=r"targets=\[\] holds no class"):
        _change(run_flow, catalog, tmp_path / "x.zarr", model, detection={"targets": []})


def test_unknown_class_name_in_the_query_is_refused(run_flow, tmp_path, catalog, model):
    with pytest.raises(InputError, match=r"to_classes has unknown class name\(s\) \['airport'\]"):
        detection = ChangeOptions(to_classes=["airport"])
        _change(run_flow, catalog, tmp_path / "x.zarr", model, detection=detection)


def test_periods_out_of_order_are_refused(run_flow, tmp_path, catalog, model):
    with pytest.raises(InputError, match="must end before the later one starts"):
        _change(run_flow, catalog, tmp_path / "x.zarr", model, before=AFTER, after=BEFORE)


def test_scheduled_periods_are_last_month_and_the_same_month_a_year_earlier():
    from datetime import date

    assert resolve_periods(None, None, date(2024, 3, 2)) == (
        ("2023-02-01", "2023-02-28"),
        ("2024-02-01", "2024-02-29"),
    )


def test_auto_chooses_sam_and_dinov2_when_both_are_in_the_weights_dir_and_records_it(
    tmp_path, catalog, model, monkeypatch, caplog
):
    """The flow's inputs step and plan (no tiles: the choice is made and recorded there)."""
    from terrawatch.flows.change import change_inputs
    from terrawatch.tasks.change.plan import plan_change
    from tests.models.change_fixtures import save_tiny_dinov2, save_tiny_sam

    weights = tmp_path / "weights"
    save_tiny_sam(weights / "sam-vit-huge")
    save_tiny_dinov2(weights / "dinov2-base")
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(weights))
    store = tmp_path / "change.zarr"
    grid = GridOptions(resolution=RES, crs="EPSG:32632")
    with caplog.at_level("INFO", logger="terrawatch.flows.change"):
        inputs = change_inputs(
            pair_aoi(), CLASSES, BEFORE, AFTER, None, str(store), ChangeOptions(),
            _search(catalog), grid, ChangeTilingOptions(chunk=128), model,
        )  # fmt: skip
    assert "change steps: sam + dinov2 (auto: SAM" in caplog.text
    spec = inputs.spec
    assert (spec.proposer, spec.comparator) == ("sam", "dinov2")
    assert spec.settings.rule == "instance"  # SAM masks get the instance rule
    plan_change(
        *inputs.scenes, inputs.periods, spec, str(store), aoi=inputs.aoi, resolution=RES,
        crs="EPSG:32632", chunk=128, run_id="auto-test",
    )  # fmt: skip
    attrs = xr.open_zarr(store).attrs
    assert attrs["change_steps"]["proposer"]["name"] == "sam"
    assert attrs["change_steps"]["proposer"]["weights"] == "sam-vit-huge"
    assert attrs["change_steps"]["features"]["name"] == "dinov2"
    choice = attrs["change_query"]["step_choice"]
    assert choice["requested_proposer"] == choice["requested_comparator"] == "auto"
    assert "published DynamicEarth method SAM + DINOv2" in choice["reason"]


def test_auto_without_sam_and_dinov2_records_the_fallback_and_why(finished):
    store, _ = finished
    choice = xr.open_zarr(store).attrs["change_query"]["step_choice"]
    assert (choice["proposer"], choice["comparator"]) == ("superpixel", "clip")
    assert "sam-vit-huge (looked in" in choice["reason"]
