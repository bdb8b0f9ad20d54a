"""Tests of tasks.landcover.cube: template, tile writes, append, rerun and mismatch rules on real
stores."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
import zarr

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.models.classes import ClassNames, parse_class_names
from terrawatch.tasks.core.cube_store import is_tile_done, open_cube
from terrawatch.tasks.core.cube_types import (
    NODATA,
    TimeStep,
    check_cube_classes,
    class_attrs,
    class_colors,
)
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.landcover.cube import finalize_cube, prepare_cube, write_tile

CHUNK = 128
GRID = GridSpec("EPSG:32629", 10.0, 500_000.0, 4_000_000.0, 502_500.0, 4_003_000.0)  # 300 x 250 px
CLASSES = parse_class_names(["background", "bare land,bareland", "water,river"])
STEP = TimeStep("2024-06-01", "2024-06-30", ("S2A_1", "S2B_2"))
STEP2 = TimeStep("2024-07-01", "2024-07-31", ("S2A_3",))
PROVENANCE = {"run_id": "run-1", "prompts": ["background", "bare land,bareland"], "model": "m"}


def _truth(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Full-grid labels (with a no-data band) and float confidence."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES.names), GRID.shape, dtype=np.uint8)
    labels[:7] = NODATA
    return labels, rng.random(GRID.shape, dtype=np.float32)


def _tile(array: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    row, col = tile
    return array[row * CHUNK : (row + 1) * CHUNK, col * CHUNK : (col + 1) * CHUNK]


def _write(store: str, time_index: int, tiles, seed: int = 0) -> None:
    labels, conf = _truth(seed)
    for tile in tiles:
        write_tile(store, time_index, tile, _tile(labels, tile), _tile(conf, tile), CHUNK)


def _snapshot(store: str) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file in the store (hidden metadata files included)."""
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
    """A new store prepared for STEP (template only)."""
    path = str(tmp_path / "cube.zarr")
    prepare_cube(path, GRID, CLASSES, STEP, PROVENANCE, chunk=CHUNK)
    return path


@pytest.fixture
def full_store(store: str) -> str:
    """STEP completely written and finalized."""
    _write(store, 0, prepare_cube(store, GRID, CLASSES, STEP, PROVENANCE, chunk=CHUNK).todo)
    finalize_cube(store, 0)
    return store


# --- template -------------------------------------------------------------------------------


def test_new_store_plan_lists_every_tile_of_the_partial_grid(tmp_path: Path):
    plan = prepare_cube(str(tmp_path / "c.zarr"), GRID, CLASSES, STEP, PROVENANCE, chunk=CHUNK)
    assert (plan.time_index, plan.n_tiles, plan.already_complete) == (0, (3, 2), False)
    assert plan.todo == ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1))


def test_template_writes_metadata_but_no_data_chunks(store: str):
    files = set(_snapshot(store))
    for var in ("landcover", "confidence", "tile_done"):
        assert {f for f in files if f.startswith(var + os.sep)} == {
            f"{var}/.zarray".replace("/", os.sep),
            f"{var}/.zattrs".replace("/", os.sep),
        }


def test_template_chunks_are_one_by_chunk_by_chunk(store: str):
    ds = xr.open_zarr(store)
    assert ds.landcover.encoding["chunks"] == (1, CHUNK, CHUNK)
    assert ds.confidence.data.chunksize == (1, CHUNK, CHUNK)
    assert ds.tile_done.encoding["chunks"] == (1, 1, 1)


def test_unwritten_pixels_read_as_no_data(store: str):
    raw = open_cube(store, mask_and_scale=False)
    assert raw.landcover.dtype == np.uint8
    assert (raw.landcover.values == NODATA).all()
    assert np.isnan(open_cube(store).landcover.values).all()


# --- round trip -----------------------------------------------------------------------------


def test_labels_round_trip(full_store: str):
    labels, _ = _truth()
    ds = xr.open_zarr(full_store, decode_coords="all", mask_and_scale=False)
    expected = xr.DataArray(labels[None], dims=("time", "y", "x"))
    xr.testing.assert_equal(ds.landcover.drop_vars(list(ds.landcover.coords)), expected)


def test_confidence_is_rounded_percent_and_no_data_follows_labels(full_store: str):
    labels, conf = _truth()
    expected = np.rint(conf.astype(np.float64) * 100).astype(np.uint8)
    expected[labels == NODATA] = NODATA
    ds = xr.open_zarr(full_store, mask_and_scale=False)
    np.testing.assert_array_equal(ds.confidence.values[0], expected)


def test_crs_transform_and_coordinates_are_readable_by_rioxarray(full_store: str):
    ds = xr.open_zarr(full_store, decode_coords="all")
    assert ds.landcover.rio.crs.to_epsg() == 32629
    assert ds.landcover.rio.transform() == GRID.geobox.affine
    assert ds.landcover.attrs.get("grid_mapping", ds.landcover.encoding.get("grid_mapping")) == (
        "spatial_ref"
    )
    coords = GRID.geobox.coordinates
    np.testing.assert_array_equal(ds.x.values, coords["x"].values)
    np.testing.assert_array_equal(ds.y.values, coords["y"].values)


def test_geozarr_style_group_attrs(full_store: str):
    attrs = xr.open_zarr(full_store).attrs
    assert attrs["proj:code"] == "EPSG:32629"
    assert attrs["spatial:transform"] == [10.0, 0.0, 500000.0, 0.0, -10.0, 4003000.0]
    assert attrs["spatial:dimensions"] == ["y", "x"]


def test_cf_flags_fill_value_and_colors(full_store: str):
    ds = xr.open_zarr(full_store)
    lc = ds.landcover
    assert lc.attrs["flag_values"] == [0, 1, 2]
    assert lc.attrs["flag_meanings"] == "background bare_land water"
    assert lc.encoding["_FillValue"] == NODATA
    assert ds.confidence.encoding["_FillValue"] == NODATA
    assert lc.attrs["flag_colors"].split() == list(class_colors(CLASSES))
    assert [c["name"] for c in lc.attrs["classification:classes"]] == [
        "background",
        "bare_land",
        "water",
    ]


def test_class_list_reads_back_from_the_cube_as_the_value_written(full_store: str):
    assert ClassNames.from_attrs(xr.open_zarr(full_store).attrs["classes"]) == CLASSES


def test_time_coordinate_is_datetime64(full_store: str):
    ds = xr.open_zarr(full_store)
    assert ds.time.dtype == np.dtype("datetime64[ns]")
    assert ds.time.values.tolist() == [np.datetime64("2024-06-01", "ns").astype(int)]


def test_provenance_attrs(full_store: str):
    attrs = xr.open_zarr(full_store).attrs
    assert attrs["classes"][1] == {
        "value": 1,
        "name": "bare land",
        "synonyms": ["bare land", "bareland"],
        "color": class_colors(CLASSES)[1],
    }
    assert (attrs["run_id"], attrs["prompts"], attrs["model"]) == (
        "run-1",
        PROVENANCE["prompts"],
        "m",
    )
    assert {"software_version", "created"} <= set(attrs)
    record = attrs["time_steps"][0]
    assert (record["time"], record["end"], record["items"]) == (
        "2024-06-01",
        "2024-06-30",
        ["S2A_1", "S2B_2"],
    )
    assert record["provenance"] == PROVENANCE


def test_finalize_returns_and_records_class_pixel_counts(store: str):
    _write(store, 0, prepare_cube(store, GRID, CLASSES, STEP, PROVENANCE, chunk=CHUNK).todo)
    counts = finalize_cube(store, 0)
    labels, _ = _truth()
    assert counts == {n: int((labels == i).sum()) for i, n in enumerate(CLASSES.names)}
    assert xr.open_zarr(store).attrs["time_steps"][0]["class_pixel_counts"] == counts


def test_finalize_refuses_incomplete_step(store: str):
    _write(store, 0, [(0, 0)])
    with pytest.raises(RuntimeError, match=r"5 tile\(s\) not written yet"):
        finalize_cube(store, 0)


# --- append and mismatch ---------------------------------------------------------------------


def test_append_second_time_step(full_store: str):
    plan = prepare_cube(full_store, GRID, CLASSES, STEP2, {"run_id": "run-2"}, chunk=CHUNK)
    assert (plan.time_index, len(plan.todo)) == (1, 6)
    _write(full_store, 1, plan.todo, seed=1)
    finalize_cube(full_store, 1)
    ds = open_cube(full_store, mask_and_scale=False)
    assert ds.time.values.tolist() == [
        np.datetime64(t, "ns").astype(int) for t in ("2024-06-01", "2024-07-01")
    ]
    np.testing.assert_array_equal(ds.landcover.values[0], _truth(0)[0])
    np.testing.assert_array_equal(ds.landcover.values[1], _truth(1)[0])
    assert [r["provenance"]["run_id"] for r in ds.attrs["time_steps"]] == ["run-1", "run-2"]
    assert ds.attrs["run_id"] == "run-2"


def test_append_is_visible_to_plain_consolidated_open(full_store: str):
    prepare_cube(full_store, GRID, CLASSES, STEP2, PROVENANCE, chunk=CHUNK)
    assert xr.open_zarr(full_store, consolidated=True).sizes["time"] == 2


def test_append_does_not_touch_first_step_chunks(full_store: str):
    before = {k: v for k, v in _snapshot(full_store).items() if not Path(k).name.startswith(".")}
    prepare_cube(full_store, GRID, CLASSES, STEP2, PROVENANCE, chunk=CHUNK)
    after = _snapshot(full_store)
    assert {k: after[k] for k in before} == before


_OTHER_GRID = GridSpec("EPSG:32630", 10.0, 500_000.0, 4_000_000.0, 502_500.0, 4_003_000.0)
_SHIFTED = GridSpec("EPSG:32629", 10.0, 500_010.0, 4_000_000.0, 502_510.0, 4_003_000.0)
_BIGGER = GridSpec("EPSG:32629", 10.0, 500_000.0, 4_000_000.0, 503_000.0, 4_003_000.0)
_OTHER_CLASSES = parse_class_names(["background", "bare land", "water,river"])


@pytest.mark.parametrize(
    ("grid", "classes", "chunk", "match"),
    [
        (_OTHER_GRID, CLASSES, CHUNK, r"CRS 'EPSG:32629' vs 'EPSG:32630'"),
        (_SHIFTED, CLASSES, CHUNK, r"transform \[10.0, 0.0, 500000.0"),
        (_BIGGER, CLASSES, CHUNK, r"shape \(y, x\) \(300, 250\) vs \(300, 300\)"),
        (GRID, _OTHER_CLASSES, CHUNK, r"--classes '.*' vs 'background,bare land,water\|river'"),
        (GRID, CLASSES, 64, r"--chunk 128 vs 64"),
    ],
    ids=["crs", "transform", "shape", "classes", "chunk"],
)
def test_mismatch_raises_and_leaves_store_byte_identical(full_store, grid, classes, chunk, match):
    before = _snapshot(full_store)
    with pytest.raises(StoreMismatchError, match=match):
        prepare_cube(full_store, grid, classes, STEP2, PROVENANCE, chunk=chunk)
    assert _snapshot(full_store) == before


def test_mismatch_message_names_the_fix(full_store: str):
    with pytest.raises(StoreMismatchError, match=r"Write to a new store \(--store\)"):
        prepare_cube(full_store, _OTHER_GRID, CLASSES, STEP2, PROVENANCE, chunk=CHUNK)


def test_older_time_step_is_refused_without_writing(full_store: str):
    prepare_cube(full_store, GRID, CLASSES, STEP2, PROVENANCE, chunk=CHUNK)
    before = _snapshot(full_store)
    older = TimeStep("2024-06-15", "2024-06-20", ("x",))
    with pytest.raises(StoreMismatchError, match=r"before the last time step .*2024-07-01"):
        prepare_cube(full_store, GRID, CLASSES, older, PROVENANCE, chunk=CHUNK)
    assert _snapshot(full_store) == before


def test_unfinished_step_with_other_items_is_refused_without_writing(store: str):
    _write(store, 0, [(0, 0)])
    before = _snapshot(store)
    other = TimeStep(STEP.time, STEP.end, ("S2A_1",))
    with pytest.raises(
        StoreMismatchError,
        match=r"already in .* with end '2024-06-30' and items .* 1 written tile\(s\) came from "
        r"the recorded scenes; rerun with --replace",
    ):
        prepare_cube(store, GRID, CLASSES, other, PROVENANCE, chunk=CHUNK)
    assert _snapshot(store) == before


def test_non_cube_store_is_refused(tmp_path: Path):
    path = str(tmp_path / "other.zarr")
    xr.Dataset({"a": ("x", np.zeros(3))}).to_zarr(path, zarr_format=2)
    with pytest.raises(StoreMismatchError, match=r"not a terrawatch land-cover cube"):
        prepare_cube(path, GRID, CLASSES, STEP, PROVENANCE, chunk=CHUNK)


# --- rerun semantics -------------------------------------------------------------------------


def test_rerun_lists_only_unfinished_tiles(store: str):
    _write(store, 0, [(0, 1), (2, 1)])
    plan = prepare_cube(store, GRID, CLASSES, STEP, PROVENANCE, chunk=CHUNK)
    assert (plan.time_index, plan.todo) == (0, ((0, 0), (1, 0), (1, 1), (2, 0)))
    assert xr.open_zarr(store).sizes["time"] == 1


def test_already_complete_rerun_modifies_nothing(full_store: str):
    before = _snapshot(full_store)
    plan = prepare_cube(full_store, GRID, CLASSES, STEP, {"run_id": "run-9"}, chunk=CHUNK)
    assert (plan.already_complete, plan.todo) == (True, ())
    assert _snapshot(full_store) == before


def test_finished_step_with_other_items_is_kept_and_the_ignored_ids_logged(full_store, caplog):
    before = _snapshot(full_store)
    other = TimeStep(STEP.time, STEP.end, ("S2A_1", "S2C_9"))
    plan = prepare_cube(full_store, GRID, CLASSES, other, {"run_id": "run-2"}, chunk=CHUNK)
    assert (plan.time_index, plan.already_complete, plan.todo) == (0, True, ())
    assert _snapshot(full_store) == before
    [line] = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert "ignored new ['S2C_9'] and missing ['S2B_2']" in line and "--replace" in line
    assert xr.open_zarr(full_store).attrs["time_steps"][0]["items"] == list(STEP.items)


def _files(store: str, prefix: str) -> dict[str, str]:
    """sha256 of the chunk files of one time index (``prefix`` like ``"1."``)."""
    return {k: v[0] for k, v in _snapshot(store).items() if Path(k).name.startswith(prefix)}


def _two_steps(store: str) -> str:
    """STEP (seed 0) and STEP2 (seed 1) written and finalized."""
    _write(store, 1, prepare_cube(store, GRID, CLASSES, STEP2, PROVENANCE, chunk=CHUNK).todo, 1)
    finalize_cube(store, 1)
    return store


NEW_STEP = TimeStep(STEP.time, STEP.end, ("S2A_1", "S2C_9"))


def test_replace_rewrites_an_earlier_step_and_leaves_the_later_one(full_store: str):
    store = _two_steps(full_store)
    later = _files(store, "1.")
    plan = prepare_cube(store, GRID, CLASSES, NEW_STEP, {"run_id": "r"}, chunk=CHUNK, replace=True)
    assert (plan.time_index, plan.already_complete, len(plan.todo)) == (0, False, 6)
    assert not zarr.open_array(store, path="tile_done", mode="r")[0].any()
    _write(store, 0, plan.todo, seed=2)
    finalize_cube(store, 0)
    cube = xr.open_zarr(store, mask_and_scale=False)
    assert np.array_equal(cube.landcover[0].values, _truth(2)[0])
    assert np.array_equal(cube.landcover[1].values, _truth(1)[0])
    assert _files(store, "1.") == later
    first, second = cube.attrs["time_steps"]
    assert first["items"] == list(NEW_STEP.items) and first["provenance"] == {"run_id": "r"}
    assert second["items"] == list(STEP2.items) and second["provenance"] == PROVENANCE
    assert cube.attrs["run_id"] == "r"


def test_replace_of_a_step_with_the_same_items_writes_every_tile_again(full_store: str):
    plan = prepare_cube(full_store, GRID, CLASSES, STEP, PROVENANCE, chunk=CHUNK, replace=True)
    assert len(plan.todo) == 6


@pytest.mark.parametrize("again", [False, True], ids=["plain-rerun", "replace-again"])
def test_interrupted_replace_finishes_on_rerun_with_new_tiles_only(full_store: str, again: bool):
    plan = prepare_cube(full_store, GRID, CLASSES, NEW_STEP, PROVENANCE, chunk=CHUNK, replace=True)
    _write(full_store, 0, plan.todo[:2], seed=2)  # killed after two tiles
    with pytest.raises(StoreMismatchError, match="--replace"):  # the old scenes cannot resume
        prepare_cube(full_store, GRID, CLASSES, STEP, PROVENANCE, chunk=CHUNK)
    rerun = prepare_cube(
        full_store, GRID, CLASSES, NEW_STEP, PROVENANCE, chunk=CHUNK, replace=again
    )
    assert rerun.todo == (plan.todo if again else plan.todo[2:])
    _write(full_store, 0, rerun.todo, seed=2)
    finalize_cube(full_store, 0)
    cube = xr.open_zarr(full_store, mask_and_scale=False)
    assert np.array_equal(cube.landcover[0].values, _truth(2)[0])


def test_tile_with_data_but_no_record_is_redone_identically(store: str):
    _write(store, 0, [(1, 1)])
    chunk_file = Path(store, "landcover", "0.1.1")
    written = chunk_file.read_bytes()
    zarr.open_array(store, path="tile_done", mode="r+")[0, 1, 1] = 0  # as if it crashed here
    plan = prepare_cube(store, GRID, CLASSES, STEP, PROVENANCE, chunk=CHUNK)
    assert (1, 1) in plan.todo
    _write(store, 0, [(1, 1)])
    assert chunk_file.read_bytes() == written


def test_is_tile_done_follows_the_record(store: str):
    _write(store, 0, [(2, 0)])
    assert is_tile_done(store, 0, (2, 0))
    assert not is_tile_done(store, 0, (0, 0))


def test_parallel_writes_equal_serial_writes(tmp_path: Path):
    serial, parallel = str(tmp_path / "serial.zarr"), str(tmp_path / "parallel.zarr")
    for path in (serial, parallel):
        plan = prepare_cube(path, GRID, CLASSES, STEP, PROVENANCE, chunk=CHUNK)
    _write(serial, 0, plan.todo)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda tile: _write(parallel, 0, [tile]), plan.todo))
    a, b = (open_cube(p, mask_and_scale=False) for p in (serial, parallel))
    xr.testing.assert_equal(
        a[["landcover", "confidence", "tile_done"]], b[["landcover", "confidence", "tile_done"]]
    )
    chunks = [k for k in _snapshot(serial) if not Path(k).name.startswith(".")]
    assert all(Path(serial, k).read_bytes() == Path(parallel, k).read_bytes() for k in chunks)


# --- input checks ----------------------------------------------------------------------------


def test_write_tile_rejects_wrong_shape_before_writing(store: str):
    labels, conf = _truth()
    before = _snapshot(store)
    with pytest.raises(InputError, match=r"tile's shape \(44, 122\)"):
        write_tile(store, 0, (2, 1), labels[:128, :128], conf[:128, :128], CHUNK)
    assert _snapshot(store) == before


def test_write_tile_rejects_non_uint8_labels(store: str):
    labels, conf = _truth()
    with pytest.raises(InputError, match=r"labels must be a uint8 numpy array"):
        write_tile(
            store, 0, (0, 0), _tile(labels, (0, 0)).astype(np.int64), _tile(conf, (0, 0)), CHUNK
        )


def test_write_tile_rejects_unknown_class_ids(store: str):
    labels = np.full((CHUNK, CHUNK), 7, np.uint8)
    with pytest.raises(InputError, match=r"value\(s\) \[7\] but the cube has 3 classes"):
        write_tile(store, 0, (0, 0), labels, np.zeros((CHUNK, CHUNK), np.float32), CHUNK)


def test_write_tile_rejects_probabilities_above_one(store: str):
    labels = np.zeros((CHUNK, CHUNK), np.uint8)
    with pytest.raises(InputError, match=r"must lie in 0..1"):
        write_tile(store, 0, (0, 0), labels, np.full((CHUNK, CHUNK), 1.5, np.float32), CHUNK)


def test_write_tile_rejects_other_chunk_size(store: str):
    labels = np.zeros((64, 64), np.uint8)
    with pytest.raises(InputError, match=r"chunk=64 but .* is chunked \(128, 128\)"):
        write_tile(store, 0, (0, 0), labels, labels, 64)


@pytest.mark.parametrize(
    ("time_index", "tile", "match"),
    [(1, (0, 0), r"time_index 1 is out of range"), (0, (3, 0), r"tile \(3, 0\) is outside")],
)
def test_write_tile_rejects_out_of_range_index(store: str, time_index, tile, match):
    labels = np.zeros((CHUNK, CHUNK), np.uint8)
    with pytest.raises(InputError, match=match):
        write_tile(store, time_index, tile, labels, labels, CHUNK)


def test_provenance_must_be_json(tmp_path: Path):
    with pytest.raises(InputError, match=r"provenance must be JSON-serialisable"):
        prepare_cube(
            str(tmp_path / "c.zarr"), GRID, CLASSES, STEP, {"path": Path("x")}, chunk=CHUNK
        )
    assert not (tmp_path / "c.zarr").exists()


def test_provenance_may_not_override_cube_attrs(tmp_path: Path):
    with pytest.raises(InputError, match=r"provenance keys \['classes'\] clash"):
        prepare_cube(str(tmp_path / "c.zarr"), GRID, CLASSES, STEP, {"classes": []}, chunk=CHUNK)


# --- value objects ---------------------------------------------------------------------------


def test_class_flags():
    attrs = class_attrs(parse_class_names(["tree cover", "built-up", "a+b@c.d"]))
    assert attrs["flag_values"].dtype == np.uint8
    assert attrs["flag_values"].tolist() == [0, 1, 2]
    assert attrs["flag_meanings"] == "tree_cover built-up a+b@c.d"  # CF 1.9 allows _.+-@
    assert all(c.startswith("#") and len(c) == 7 for c in attrs["flag_colors"].split())


def test_class_names_that_collide_as_flag_words_get_unique_words():
    classes = parse_class_names(["bare land", "bare_land"])
    check_cube_classes(classes)
    assert class_attrs(classes)["flag_meanings"] == "bare_land bare_land_1"


def test_time_step_rejects_end_before_start():
    with pytest.raises(InputError, match=r"step.end '2024-05-01' is before step.time"):
        TimeStep("2024-06-01", "2024-05-01", ("a",))


def test_time_step_rejects_non_iso_time():
    with pytest.raises(InputError, match=r"step.time must be an ISO date"):
        TimeStep("June 2024", "2024-06-30", ("a",))
