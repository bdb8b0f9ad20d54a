"""tasks.change.cube: schema, CRS, flags, provenance, resume and mismatch on real stores."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.change.cube import (
    ChangeStep,
    finalize_change_cube,
    prepare_change_cube,
    read_landcover_pair,
    write_change_tile,
)
from terrawatch.tasks.core.cube_store import is_tile_done
from terrawatch.tasks.core.cube_types import NODATA, TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.landcover.cube import prepare_cube

CHUNK = 128
GRID = GridSpec("EPSG:32632", 10.0, 350_000.0, 5_640_000.0, 352_500.0, 5_643_000.0)  # 300 x 250
CLASSES = parse_class_names(["background", "building,roof", "water,river"])
JUNE = ChangeStep.of(
    TimeStep("2023-06-01", "2023-06-30", ("S2A_2023",)),
    TimeStep("2024-06-01", "2024-06-30", ("S2B_2024a", "S2B_2024b")),
)
JULY = ChangeStep.of(
    TimeStep("2023-07-01", "2023-07-31", ("S2A_2023_07",)),
    TimeStep("2024-07-01", "2024-07-31", ("S2A_2024_07",)),
)
PROVENANCE = {
    "run_id": "run-1",
    "change_query": {"targets": ["building"], "theta_deg": 145.0, "mode": "mci"},
    "change_steps": {"proposer": {"name": "superpixel"}},
}


def _truth() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-grid changed (with a no-data band), class_from and class_to."""
    changed = np.zeros(GRID.shape, np.uint8)
    changed[50:80, 20:60] = 1  # 1200 px building -> water
    changed[200:210, 100:110] = 1  # 100 px water -> building
    changed[:5] = NODATA
    class_from = np.zeros(GRID.shape, np.uint8)
    class_to = np.zeros(GRID.shape, np.uint8)
    class_from[50:80, 20:60], class_to[50:80, 20:60] = 1, 2
    class_from[200:210, 100:110], class_to[200:210, 100:110] = 2, 1
    return changed, class_from, class_to


def _tile(array: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    row, col = tile
    return array[row * CHUNK : (row + 1) * CHUNK, col * CHUNK : (col + 1) * CHUNK]


def _write(store: str, time_index: int, tiles) -> None:
    arrays = _truth()
    for tile in tiles:
        write_change_tile(store, time_index, tile, *(_tile(a, tile) for a in arrays), CHUNK)


def _snapshot(store: str) -> dict[str, tuple[str, int]]:
    out = {}
    for root, _, files in os.walk(store):
        for name in files:
            path = Path(root, name)
            out[str(path.relative_to(store))] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                path.stat().st_mtime_ns,
            )
    return out


@pytest.fixture
def store(tmp_path: Path) -> str:
    path = str(tmp_path / "change.zarr")
    prepare_change_cube(path, GRID, CLASSES, JUNE, PROVENANCE, chunk=CHUNK)
    return path


@pytest.fixture
def full_store(store: str) -> str:
    _write(store, 0, prepare_change_cube(store, GRID, CLASSES, JUNE, PROVENANCE, CHUNK).todo)
    finalize_change_cube(store, 0)
    return store


def test_schema_dims_dtypes_and_chunks(full_store: str):
    cube = xr.open_zarr(full_store, decode_coords="all", mask_and_scale=False)
    for name in ("changed", "class_from", "class_to"):
        assert cube[name].dims == ("time", "y", "x")
        assert cube[name].dtype == np.uint8
        assert cube[name].encoding["chunks"] == (1, CHUNK, CHUNK)
    assert cube.sizes["time"] == 1 and (cube.sizes["y"], cube.sizes["x"]) == GRID.shape


def test_default_decoding_gives_float_with_nan_for_no_data(full_store: str):
    cube = xr.open_zarr(full_store, decode_coords="all")
    changed = cube.changed[0].values
    assert np.isnan(changed[:5]).all()
    assert int(np.nansum(changed)) == 1300
    assert np.isnan(cube.class_from[0].values[100, 100])  # unchanged: no class


def test_crs_and_coordinates_are_readable_by_rioxarray(full_store: str):
    cube = xr.open_zarr(full_store, decode_coords="all")
    assert cube.changed.rio.crs.to_epsg() == 32632
    assert cube.class_to.rio.bounds() == (GRID.left, GRID.bottom, GRID.right, GRID.top)
    assert float(cube.x[0]) == GRID.left + 5.0


def test_flags_of_changed_and_classes(full_store: str):
    cube = xr.open_zarr(full_store)
    assert list(cube.changed.attrs["flag_values"]) == [0, 1]
    assert cube.changed.attrs["flag_meanings"] == "unchanged changed"
    for name in ("class_from", "class_to"):
        assert list(cube[name].attrs["flag_values"]) == [0, 1, 2]
        assert cube[name].attrs["flag_meanings"] == "background building water"
        assert cube[name].encoding["_FillValue"] == NODATA


def test_time_is_the_later_period_and_time_before_the_earlier(full_store: str):
    cube = xr.open_zarr(full_store)
    assert str(cube.time.values[0])[:10] == "2024-06-01"
    assert str(cube.time_before.values[0])[:10] == "2023-06-01"


def test_provenance_and_pair_record(full_store: str):
    attrs = xr.open_zarr(full_store).attrs
    assert attrs["title"] == "terrawatch change"
    assert attrs["change_query"]["theta_deg"] == 145.0 and attrs["run_id"] == "run-1"
    assert [c["synonyms"] for c in attrs["classes"]][1] == ["building", "roof"]
    record = attrs["time_steps"][0]
    assert record["items"] == ["S2B_2024a", "S2B_2024b"]
    assert record["before"] == {"time": "2023-06-01", "end": "2023-06-30", "items": ["S2A_2023"]}
    assert record["provenance"]["change_steps"] == {"proposer": {"name": "superpixel"}}


def test_finalize_records_valid_changed_and_transition_counts(full_store: str):
    record = xr.open_zarr(full_store).attrs["time_steps"][0]
    assert record["valid_pixels"] == 295 * 250
    assert record["changed_pixels"] == 1300
    assert record["transition_pixel_counts"] == [
        ["building", "water", 1200],
        ["water", "building", 100],
    ]


def test_class_is_no_data_where_not_changed(store: str):
    ones = np.ones((CHUNK, CHUNK), np.uint8)
    write_change_tile(store, 0, (0, 0), np.zeros_like(ones), ones, ones * 2, CHUNK)
    cube = xr.open_zarr(store, mask_and_scale=False)
    assert (cube.class_from[0, :CHUNK, :CHUNK].values == NODATA).all()


def test_finalize_refuses_incomplete_pair(store: str):
    _write(store, 0, [(0, 0)])
    with pytest.raises(RuntimeError, match="5 tile"):
        finalize_change_cube(store, 0)


def test_rerun_lists_only_unfinished_tiles(store: str):
    _write(store, 0, [(0, 0), (1, 1)])
    plan = prepare_change_cube(store, GRID, CLASSES, JUNE, PROVENANCE, CHUNK)
    assert plan.time_index == 0 and set(plan.todo) == {(0, 1), (1, 0), (2, 0), (2, 1)}
    assert is_tile_done(store, 0, (1, 1))


def test_rerun_of_a_finished_pair_modifies_nothing(full_store: str):
    before = _snapshot(full_store)
    plan = prepare_change_cube(full_store, GRID, CLASSES, JUNE, PROVENANCE, CHUNK)
    assert plan.already_complete and plan.todo == ()
    assert _snapshot(full_store) == before


def test_next_pair_is_appended(full_store: str):
    plan = prepare_change_cube(full_store, GRID, CLASSES, JULY, PROVENANCE, CHUNK)
    assert plan.time_index == 1 and len(plan.todo) == 6
    cube = xr.open_zarr(full_store, mask_and_scale=False)
    assert [str(t)[:10] for t in cube.time_before.values] == ["2023-06-01", "2023-07-01"]
    assert (cube.changed[1].values == NODATA).all()
    assert len(cube.attrs["time_steps"]) == 2


def test_older_pair_is_refused(tmp_path: Path):
    path = str(tmp_path / "change.zarr")
    prepare_change_cube(path, GRID, CLASSES, JULY, PROVENANCE, CHUNK)
    before = _snapshot(path)
    with pytest.raises(StoreMismatchError, match="appended in order"):
        prepare_change_cube(path, GRID, CLASSES, JUNE, PROVENANCE, CHUNK)
    assert _snapshot(path) == before


def test_finished_pair_with_another_earlier_period_is_kept(full_store: str, caplog):
    other = ChangeStep.of(TimeStep("2022-06-01", "2022-06-30", ("S2A_2022",)), JUNE)
    before = _snapshot(full_store)
    plan = prepare_change_cube(full_store, GRID, CLASSES, other, PROVENANCE, CHUNK)
    assert (plan.already_complete, plan.todo) == (True, ())
    assert _snapshot(full_store) == before
    assert "ignored new ['S2A_2022']" in caplog.text and "--replace" in caplog.text


def test_unfinished_pair_with_another_earlier_period_is_refused(store: str):
    other = ChangeStep.of(TimeStep("2022-06-01", "2022-06-30", ("S2A_2022",)), JUNE)
    with pytest.raises(StoreMismatchError, match=r"already in .*--replace"):
        prepare_change_cube(store, GRID, CLASSES, other, PROVENANCE, CHUNK)


@pytest.mark.parametrize(
    ("grid", "classes", "chunk", "match"),
    [
        (GridSpec("EPSG:32633", 10.0, 350_000.0, 5_640_000.0, 352_500.0, 5_643_000.0), None, None,
         "CRS"),
        (GridSpec("EPSG:32632", 20.0, 350_000.0, 5_640_000.0, 352_500.0, 5_643_000.0), None, None,
         "transform"),
        (None, parse_class_names(["background", "road"]), None, "classes"),
        (None, None, 64, "chunk"),
    ],
)  # fmt: skip
def test_mismatch_raises_and_leaves_the_store_byte_identical(
    full_store, grid, classes, chunk, match
):
    before = _snapshot(full_store)
    with pytest.raises(StoreMismatchError, match=match):
        prepare_change_cube(
            full_store, grid or GRID, classes or CLASSES, JULY, PROVENANCE, chunk or CHUNK
        )
    assert _snapshot(full_store) == before


def test_land_cover_cube_is_not_taken_for_a_change_cube(tmp_path: Path):
    path = str(tmp_path / "landcover.zarr")
    prepare_cube(path, GRID, CLASSES, JUNE.before, {"run_id": "x"}, chunk=CHUNK)
    with pytest.raises(StoreMismatchError, match="not a terrawatch change cube"):
        prepare_change_cube(path, GRID, CLASSES, JUNE, PROVENANCE, CHUNK)


def test_write_rejects_values_other_than_0_1_and_no_data(store: str):
    bad = np.full((CHUNK, CHUNK), 2, np.uint8)
    zeros = np.zeros_like(bad)
    with pytest.raises(InputError, match=r"changed holds value\(s\) \[2\]"):
        write_change_tile(store, 0, (0, 0), bad, zeros, zeros, CHUNK)
    assert not is_tile_done(store, 0, (0, 0))


def test_write_rejects_unknown_class_ids(store: str):
    ones = np.ones((CHUNK, CHUNK), np.uint8)
    with pytest.raises(InputError, match=r"class_to holds value\(s\) \[7\]"):
        write_change_tile(store, 0, (0, 0), ones, ones, ones * 7, CHUNK)


def test_write_rejects_a_wrong_shape(store: str):
    small = np.zeros((10, 10), np.uint8)
    with pytest.raises(InputError, match="tile's shape"):
        write_change_tile(store, 0, (0, 0), small, small, small, CHUNK)


def test_pair_must_be_in_order():
    with pytest.raises(InputError, match="must end before the later one starts"):
        ChangeStep.of(JUNE, JUNE.before)


def test_provenance_must_not_override_cube_attributes(tmp_path: Path):
    with pytest.raises(InputError, match="clash"):
        prepare_change_cube(str(tmp_path / "x.zarr"), GRID, CLASSES, JUNE, {"classes": 1}, CHUNK)
    assert not (tmp_path / "x.zarr").exists()


@pytest.fixture
def landcover_store(tmp_path: Path) -> str:
    path = str(tmp_path / "landcover.zarr")
    prepare_cube(path, GRID, CLASSES, JUNE.before, {"run_id": "a"}, chunk=CHUNK)
    return path


def test_land_cover_pair_is_its_last_two_steps(landcover_store: str):
    prepare_cube(landcover_store, GRID, CLASSES, JULY.before, {"run_id": "b"}, chunk=CHUNK)
    prepare_cube(landcover_store, GRID, CLASSES, JUNE, {"run_id": "c"}, chunk=CHUNK)
    pair = read_landcover_pair(landcover_store)
    assert pair.grid == GRID and pair.classes == CLASSES and pair.chunk == CHUNK
    assert pair.step == ChangeStep.of(JULY.before, TimeStep(JUNE.time, JUNE.end, JUNE.items))


def test_land_cover_cube_with_one_step_is_refused(landcover_store: str):
    with pytest.raises(InputError, match="has 1 time step"):
        read_landcover_pair(landcover_store)


def test_missing_land_cover_cube_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no Zarr store"):
        read_landcover_pair(str(tmp_path / "nope.zarr"))


def test_change_cube_is_not_a_land_cover_cube(full_store: str):
    with pytest.raises(InputError, match="not a terrawatch land-cover cube"):
        read_landcover_pair(full_store)
