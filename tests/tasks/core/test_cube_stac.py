"""STAC descriptions of real cubes of every kind: pystac loads them, their datacube and
classification fields match the cube, and the folder works as a terrawatch local catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import pytest
import zarr
from pystac.validation.stac_validator import JsonSchemaSTACValidator

from terrawatch.tasks.change.cube import CHANGE_CUBE, ChangeStep
from terrawatch.tasks.core.catalog import search_items
from terrawatch.tasks.core.cube_stac import add_export_asset, describe_cube
from terrawatch.tasks.core.cube_store import open_cube
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.export import export_layer
from terrawatch.tasks.core.export_source import open_layer
from terrawatch.tasks.flood.cube import FLOOD_CUBE, FloodStep
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE
from tests.tasks.core.test_export import (
    STEP,
    _blobs,
    _change_arrays,
    _flood_arrays,
    _write_cube,
)

LONLAT_BOX = [6.868, 50.893, 6.871, 50.895]  # inside the grid (EPSG:32632, 350 km E, 5640 km N)


def _landcover(path: Path) -> tuple[str, str, str]:
    labels = _blobs()
    arrays = {"landcover": labels, "confidence": np.where(labels == 255, 255, 70).astype("u1")}
    return _write_cube(path, LANDCOVER_CUBE, STEP, arrays), "2024-06-01", "2024-06-30"


def _change(path: Path) -> tuple[str, str, str]:
    step = ChangeStep.of(TimeStep("2023-06-01", "2023-06-28", ("t1",)), STEP)
    return _write_cube(path, CHANGE_CUBE, step, _change_arrays()), "2023-06-01", "2024-06-30"


def _flood(path: Path) -> tuple[str, str, str]:
    pre = TimeStep("2024-05-01", "2024-05-09", ("s1-pre",))
    step = FloodStep("2024-05-10", "2024-05-16", ("s1-post",), pre)
    return _write_cube(path, FLOOD_CUBE, step, _flood_arrays()), "2024-05-01", "2024-05-16"


@pytest.mark.parametrize(
    "make", [_landcover, _change, _flood], ids=["landcover", "change", "flood"]
)
def test_each_cube_kind_round_trips_through_pystac_and_a_local_catalog(
    tmp_path: Path, make
) -> None:
    store, start, end = make(tmp_path / "cube.zarr")
    path = describe_cube(store)
    assert path == f"{store}.stac/collection.json"
    collection = pystac.Collection.from_file(path)
    core = JsonSchemaSTACValidator()  # pystac ships the core schemas (extensions need a network)
    core.validate_core(collection.to_dict(), pystac.STACObjectType.COLLECTION, "1.1.0")
    items = list(collection.get_items())
    assert len(items) == 1
    item = items[0]
    core.validate_core(item.to_dict(), pystac.STACObjectType.ITEM, "1.1.0")
    cube = open_cube(store, mask_and_scale=False)
    data_vars = {n for n, v in cube.data_vars.items() if v.dims == ("time", "y", "x")}
    assert set(item.properties["cube:variables"]) == data_vars
    assert set(collection.extra_fields["cube:variables"]) == data_vars
    for name in data_vars:
        entry = item.properties["cube:variables"][name]
        fill = zarr.open_array(store, path=name, mode="r").fill_value  # -1 for CF times
        assert entry["dimensions"] == ["time", "y", "x"] and entry["nodata"] == fill
        if "flag_values" in cube[name].attrs:
            assert entry["values"] == list(cube[name].attrs["flag_values"])
    dims = item.properties["cube:dimensions"]
    assert dims["x"]["extent"] == [350_000.0, 350_400.0] and dims["y"]["step"] == -2.0
    assert dims["x"]["reference_system"] == 32632
    assert dims["time"]["values"] == [f"{cube.time.values[0]!s:.10}T00:00:00Z"]
    classes = item.properties["classification:classes"]
    assert [(c["value"], c["description"]) for c in classes] == [
        (c["value"], c["name"]) for c in cube.attrs["classes"]
    ]
    assert [c["color_hint"] for c in classes] == [
        c["color"].lstrip("#").upper() for c in cube.attrs["classes"]
    ]
    for name in data_vars & {"landcover", "class_from", "class_to"}:
        assert cube[name].attrs["classification:classes"] == classes
        assert item.properties["cube:variables"][name]["classification:classes"] == classes
    for name in data_vars & {"changed", "flooded"}:
        flags = item.properties["cube:variables"][name]["classification:classes"]
        assert [c["name"] for c in flags] == cube[name].attrs["flag_meanings"].split()
    asset = item.assets["data"]
    assert Path(asset.get_absolute_href()).resolve() == Path(store).resolve()
    assert asset.media_type == "application/vnd+zarr"
    assert asset.extra_fields["proj:code"] == "EPSG:32632"
    assert asset.extra_fields["proj:transform"] == list(cube.attrs["spatial:transform"])
    assert item.properties["processing:software"]["terrawatch"]
    assert item.properties["terrawatch:provenance"]["run_id"] == "r"
    assert item.properties["start_datetime"][:10] == start
    assert item.properties["end_datetime"][:10] == end
    assert {"datacube", "classification", "projection", "raster", "processing"} <= {
        url.split("/")[3] for url in item.stac_extensions
    }
    west, south, east, north = item.bbox
    assert west < LONLAT_BOX[0] < LONLAT_BOX[2] < east and south < LONLAT_BOX[1] < north
    found = search_items(f"{store}.stac", LONLAT_BOX, start, end)  # the flows' own search
    assert found.ids == (item.id,)
    assert Path(found.items[0]["assets"]["data"]["href"]).resolve() == Path(store).resolve()


def test_a_second_step_adds_an_item_and_exports_are_kept(tmp_path: Path) -> None:
    store, _, _ = _landcover(tmp_path / "cube.zarr")
    stac = tmp_path / "catalog"
    describe_cube(store, str(stac))
    layer = open_layer(store)
    tif, _ = export_layer(layer, tmp_path / "landcover.tif")
    assert add_export_asset(store, layer.time, str(tif), str(stac))
    assert not add_export_asset(store, "2030-01-01", str(tif), str(stac))  # no such item
    july = TimeStep("2024-07-01", "2024-07-31", ("b",))
    labels = _blobs(2)
    _write_cube(
        Path(store),
        LANDCOVER_CUBE,
        july,
        {"landcover": labels, "confidence": np.where(labels == 255, 255, 60).astype("u1")},
    )
    describe_cube(store, str(stac))
    collection = pystac.Collection.from_file(str(stac / "collection.json"))
    items = sorted(collection.get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == ["cube-2024-06-01", "cube-2024-07-01"]
    june = items[0]
    assert Path(june.assets["export-landcover.tif"].get_absolute_href()) == tif.resolve()
    assert "cloud-optimized" in june.assets["export-landcover.tif"].media_type
    extent = collection.extent.temporal.intervals[0]
    assert [str(t)[:10] for t in extent] == ["2024-06-01", "2024-07-31"]
    assert collection.extra_fields["cube:dimensions"]["time"]["values"][1][:10] == "2024-07-01"
