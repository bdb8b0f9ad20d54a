"""Tests for tasks.flood.cube: per-pixel rules, template, tile writes, resume, finalize."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor, also when this file runs alone)
import xarray as xr
import zarr

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.flood.cube import (
    FloodStep,
    finalize_flood_cube,
    flooded_mask,
    prepare_flood_cube,
    water_mask,
    write_flood_tile,
)
from terrawatch.tasks.landcover.cube import prepare_cube

GRID = GridSpec("EPSG:32633", 10.0, 500_000.0, 3_318_800.0, 501_000.0, 3_319_600.0)  # 80 x 100
CHUNK = 64
CLASSES = parse_class_names(["water,river,flood water", "land,field"])
STEP = FloodStep(
    "2024-05-10", "2024-05-16", ("s1-post",), TimeStep("2024-04-28", "2024-05-09", ("s1-pre",))
)
PROVENANCE = {"event_date": "2024-05-10", "water_classes": ["water"], "run_id": "r1"}


def _step(event: str, pre_items: tuple[str, ...] = ("s1-pre",)) -> FloodStep:
    day = np.datetime64(event, "D")
    return FloodStep(
        event,
        str(day + 6),
        ("s1-post",),
        TimeStep(str(day - 12), str(day - 1), pre_items),
    )


def _tile_arrays(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Before: water in the top rows; after: water in the top half; no image after, last col."""
    water_pre = np.zeros(shape, np.uint8)
    water_pre[:5] = 1
    water_post = np.zeros(shape, np.uint8)
    water_post[: shape[0] // 2] = 1
    source_pre = np.ones(shape, np.uint8)
    source_post = np.ones(shape, np.uint8)
    source_post[:, -1] = 0
    water_post[:, -1] = 255
    members = np.where(water_post == 255, 0, 1).astype(np.uint8)
    return dict(water_pre=water_pre, water_post=water_post, source_pre=source_pre,
                source_post=source_post, observed_water=water_post.copy(),
                reference_water=water_pre.copy(), exclusion=np.zeros(shape, np.uint8),
                likelihood=np.where(water_post == 255, 255, 90 * water_post).astype(np.uint8),
                source=members, observed_at=np.where(members, 1715490000, -1))  # fmt: skip


def _write_all(store: str, index: int = 0) -> None:
    for row in range(2):
        for col in range(2):
            height, width = min(CHUNK, 80 - row * CHUNK), min(CHUNK, 100 - col * CHUNK)
            write_flood_tile(store, index, (row, col), **_tile_arrays((height, width)), chunk=CHUNK)


@pytest.fixture
def store(tmp_path) -> str:
    path = str(tmp_path / "flood.zarr")
    prepare_flood_cube(path, GRID, CLASSES, STEP, PROVENANCE, CHUNK)
    return path


# --- per-pixel rules ------------------------------------------------------------------------


def test_water_mask_marks_water_classes_and_no_image():
    labels = np.array([[0, 1, 2, 255]], np.uint8)
    source = np.array([[1, 2, 0, 1]], np.uint8)
    assert water_mask(labels, (0, 2), source).tolist() == [[1, 0, 255, 255]]


@pytest.mark.parametrize(
    ("pre", "post", "expected"),
    [(0, 1, 1), (1, 1, 0), (0, 0, 0), (1, 0, 0), (255, 0, 0), (255, 1, 255), (0, 255, 255)],
)
def test_flooded_is_water_after_where_none_before(pre, post, expected):
    flooded = flooded_mask(np.array([pre], np.uint8), np.array([post], np.uint8))
    assert flooded.tolist() == [expected]


def test_pre_window_must_end_before_the_event():
    with pytest.raises(InputError, match="must end before the event date"):
        FloodStep("2024-05-10", "2024-05-16", ("a",), TimeStep("2024-05-01", "2024-05-10", ("b",)))


# --- store ----------------------------------------------------------------------------------


def test_new_cube_opens_with_crs_flags_windows_and_provenance(store):
    cube = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    assert cube.flooded.rio.crs.to_epsg() == 32633
    assert cube.flooded.shape == (1, 80, 100)
    assert (cube.flooded.values == 255).all()
    assert cube.source_pre.attrs["flag_meanings"] == "none sar optical"
    assert str(cube.pre_start.values[0])[:10] == "2024-04-28"
    assert str(cube.post_end.values[0])[:10] == "2024-05-16"
    assert cube.attrs["title"] == "terrawatch flood"
    assert cube.attrs["water_classes"] == ["water"]
    assert cube.attrs["time_steps"][0]["pre"]["items"] == ["s1-pre"]


def test_tile_write_derives_flooded_and_marks_the_tile_done(store):
    write_flood_tile(store, 0, (0, 0), **_tile_arrays((64, 64)), chunk=CHUNK)
    cube = xr.open_zarr(store, mask_and_scale=False)
    flooded = cube.flooded.values[0, :64, :64]
    assert (flooded[5:32, :63] == 1).all() and (flooded[:5, :63] == 0).all()
    assert (flooded[32:, :63] == 0).all() and (flooded[:, 63] == 255).all()
    assert cube.tile_done.values[0].tolist() == [[1, 0], [0, 0]]


def test_water_without_an_image_is_refused_before_writing(store):
    arrays = _tile_arrays((64, 64))
    arrays["source_pre"][0, 0] = 0
    with pytest.raises(InputError, match="water_pre must be 255 exactly where source_pre is 0"):
        write_flood_tile(store, 0, (0, 0), **arrays, chunk=CHUNK)
    assert zarr.open_array(store, path="tile_done", mode="r")[0, 0, 0] == 0


def test_unknown_source_value_is_refused(store):
    arrays = _tile_arrays((64, 64))
    arrays["source_post"][0, 0] = 255
    with pytest.raises(InputError, match=r"source_post holds value\(s\) \[255\]; allowed are 0..2"):
        write_flood_tile(store, 0, (0, 0), **arrays, chunk=CHUNK)


def test_rerun_of_the_event_lists_only_unwritten_tiles(store):
    write_flood_tile(store, 0, (1, 1), **_tile_arrays((16, 36)), chunk=CHUNK)
    plan = prepare_flood_cube(store, GRID, CLASSES, STEP, PROVENANCE, CHUNK)
    assert plan.time_index == 0 and plan.todo == ((0, 0), (0, 1), (1, 0))


def test_same_event_with_other_scenes_is_refused(store):
    with pytest.raises(StoreMismatchError, match="already in"):
        prepare_flood_cube(store, GRID, CLASSES, _step("2024-05-10", ("other",)), PROVENANCE, 64)


def test_later_event_is_appended(store):
    plan = prepare_flood_cube(store, GRID, CLASSES, _step("2024-06-20"), PROVENANCE, CHUNK)
    cube = xr.open_zarr(store, mask_and_scale=False)
    assert plan.time_index == 1 and len(plan.todo) == 4
    assert [str(t)[:10] for t in cube.pre_start.values] == ["2024-04-28", "2024-06-08"]


def test_earlier_event_is_refused(store):
    with pytest.raises(StoreMismatchError, match="events are appended in date order"):
        prepare_flood_cube(store, GRID, CLASSES, _step("2024-04-01"), PROVENANCE, CHUNK)


def test_other_grid_is_refused(store):
    other = GridSpec("EPSG:32633", 20.0, 500_000.0, 3_318_800.0, 501_000.0, 3_319_600.0)
    with pytest.raises(StoreMismatchError, match="transform"):
        prepare_flood_cube(store, other, CLASSES, STEP, PROVENANCE, CHUNK)


def test_land_cover_cube_is_not_a_flood_cube(tmp_path):
    path = str(tmp_path / "landcover.zarr")
    prepare_cube(path, GRID, CLASSES, TimeStep("2024-05-01", "2024-05-07", ("x",)), {}, CHUNK)
    with pytest.raises(StoreMismatchError, match="not a terrawatch flood cube"):
        prepare_flood_cube(path, GRID, CLASSES, STEP, PROVENANCE, CHUNK)


def test_finalize_counts_and_records_the_event(store):
    _write_all(store)
    counts = finalize_flood_cube(store, 0)
    # per tile (h x w): flooded rows 5..h/2 minus the last column, which has no image after
    expected = sum((h // 2 - 5) * (w - 1) for h in (64, 16) for w in (64, 36))
    assert counts.flooded == expected
    assert counts.sources_post == {"none": 160, "sar": 8000 - 160, "optical": 0}
    record = xr.open_zarr(store).attrs["time_steps"][0]
    assert record["flooded_pixels"] == expected


def test_finalize_of_an_incomplete_event_names_the_missing_tiles(store):
    write_flood_tile(store, 0, (0, 0), **_tile_arrays((64, 64)), chunk=CHUNK)
    with pytest.raises(RuntimeError, match=r"3 tile\(s\) not written yet"):
        finalize_flood_cube(store, 0)
