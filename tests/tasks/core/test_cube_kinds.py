"""Every cube kind round-trips through the shared store and tile runner on real Zarr stores:
template from the kind's schema, tile writes (crop to the core, no-data tiles without the model),
done record, resume, append of a later step, and refusal of another grid, class table or kind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
import zarr

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.models.classes import ClassNames, parse_class_names
from terrawatch.tasks.change.cube import CHANGE_CUBE, ChangeStep
from terrawatch.tasks.core.cube_store import is_tile_done, prepare_step, write_cube_tile
from terrawatch.tasks.core.cube_types import NODATA, CubeKind, TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.tile_runner import TileProduct, TileWindow, run_tile
from terrawatch.tasks.flood.cube import FLOOD_CUBE, FloodStep, flooded_mask
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE

CHUNK, HALO = 64, 16
GRID = GridSpec("EPSG:32632", 10.0, 350_000.0, 5_640_000.0, 351_800.0, 5_641_400.0)  # 140 x 180 px
TILES = [(row, col) for row in range(3) for col in range(3)]
CLASSES = parse_class_names(["background", "building,roof", "water,river"])
OTHER_CLASSES = parse_class_names(["background", "building", "water,river"])
OTHER_GRID = GridSpec("EPSG:32632", 10.0, 350_010.0, 5_640_000.0, 351_810.0, 5_641_400.0)
PROVENANCE = {"run_id": "run-1"}

VALID = np.ones(GRID.shape, bool)
VALID[:CHUNK, 2 * CHUNK :] = False  # tile (0, 2) has no valid input pixel: a no-data tile
VALID[40:45, 10:20] = False  # and a few invalid pixels inside written tiles
NODATA_TILE = (0, 2)


def _landcover(rng: np.random.Generator) -> dict[str, np.ndarray]:
    labels = rng.integers(0, len(CLASSES.names), GRID.shape, dtype=np.uint8)
    labels[~VALID] = NODATA
    confidence = rng.integers(0, 101, GRID.shape, dtype=np.uint8)
    confidence[labels == NODATA] = NODATA
    return {"landcover": labels, "confidence": confidence}


def _change(rng: np.random.Generator) -> dict[str, np.ndarray]:
    changed = rng.integers(0, 2, GRID.shape, dtype=np.uint8)
    changed[~VALID] = NODATA
    arrays = {"changed": changed}
    for name in ("class_from", "class_to"):
        classes = rng.integers(0, len(CLASSES.names), GRID.shape, dtype=np.uint8)
        classes[changed != 1] = NODATA
        arrays[name] = classes
    return arrays


def _flood(rng: np.random.Generator) -> dict[str, np.ndarray]:
    arrays = {}
    for side in ("pre", "post"):
        source = rng.integers(0, 3, GRID.shape, dtype=np.uint8)  # none, SAR, optical
        source[~VALID] = 0
        water = rng.integers(0, 2, GRID.shape, dtype=np.uint8)
        water[source == 0] = NODATA
        arrays[f"water_{side}"], arrays[f"source_{side}"] = water, source
    members = rng.integers(0, 8, GRID.shape, dtype=np.uint8)  # bit flags of the members
    members[~VALID] = 0
    observed = rng.integers(0, 2, GRID.shape, dtype=np.uint8)
    observed[members == 0] = NODATA
    arrays["observed_water"], arrays["source"] = observed, members
    arrays["reference_water"] = rng.integers(0, 2, GRID.shape, dtype=np.uint8)
    arrays["exclusion"] = rng.integers(0, 8, GRID.shape, dtype=np.uint8)
    arrays["likelihood"] = rng.integers(0, 101, GRID.shape, dtype=np.uint8)
    for name, nodata in (("reference_water", NODATA), ("exclusion", 0), ("likelihood", NODATA)):
        arrays[name][~VALID] = nodata  # as the kind's no-data tile holds them
    observed_at = rng.integers(1_700_000_000, 1_800_000_000, GRID.shape, dtype=np.int64)
    observed_at[members == 0] = -1
    arrays["observed_at"] = observed_at
    return arrays


def _with_flooded(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    flooded = flooded_mask(arrays["reference_water"], arrays["observed_water"], arrays["exclusion"])
    return {**arrays, "flooded": flooded}


@dataclass(frozen=True)
class Case:
    """One cube kind with two steps in order and tile arrays in its stored form."""

    kind: CubeKind
    first: TimeStep
    later: TimeStep
    truth: Callable[[np.random.Generator], dict[str, np.ndarray]]
    """Full-grid input arrays, the kind's no-data tile where there is no valid input pixel."""
    stored: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] = lambda arrays: arrays
    """Every variable as stored, from the inputs (adds the derived variables)."""


def _pair(year: int, month: int) -> ChangeStep:
    before = TimeStep(f"{year - 1}-{month:02d}-01", f"{year - 1}-{month:02d}-28", ("t1",))
    return ChangeStep.of(
        before, TimeStep(f"{year}-{month:02d}-01", f"{year}-{month:02d}-28", ("t2",))
    )


def _event(day: str) -> FloodStep:
    event = np.datetime64(day, "D")
    pre = TimeStep(str(event - 12), str(event - 1), ("s1-pre",))
    return FloodStep(day, str(event + 6), ("s1-post",), pre)


CASES = {
    "landcover": Case(
        LANDCOVER_CUBE,
        TimeStep("2024-06-01", "2024-06-30", ("a",)),
        TimeStep("2024-07-01", "2024-07-31", ("b",)),
        _landcover,
    ),
    "change": Case(CHANGE_CUBE, _pair(2024, 6), _pair(2024, 7), _change),
    "flood": Case(FLOOD_CUBE, _event("2024-05-10"), _event("2024-06-20"), _flood, _with_flooded),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@dataclass(frozen=True)
class Job:
    """The fields the runner reads of a product's tile job."""

    store: str
    time_index: int
    tile: tuple[int, int]
    chunk: int = CHUNK
    grid: GridSpec = GRID
    halo: int = HALO
    lease: str | None = None


def _product(kind: CubeKind, truth: dict[str, np.ndarray]) -> TileProduct:
    """The maths of a product that knows its answer: reads it over the window, returns it.

    Its spec is a list that records each window the model would have run on.
    """

    def read(job: Job, spec: list, window: TileWindow) -> tuple[dict, np.ndarray]:
        return {name: array[window.outer] for name, array in truth.items()}, VALID[window.outer]

    def compute(spec: list, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec.append(next(iter(inputs.values())).shape)
        return inputs

    return TileProduct(kind, read, compute)


def _run(case: Case, store: str, time_index: int, tiles, seed: int = 0) -> tuple[dict, list]:
    truth = case.truth(np.random.default_rng(seed))
    product, calls = _product(case.kind, truth), []
    results = {t: run_tile(product, Job(store, time_index, t), calls) for t in tiles}
    return {t: r.status for t, r in results.items()}, calls


def _prepare(case: Case, store: str, step: TimeStep, grid=GRID, classes=CLASSES):
    return prepare_step(store, grid, classes, step, PROVENANCE, CHUNK, case.kind)


def _raw(store: str, name: str) -> np.ndarray:
    """A variable as stored (xarray would decode CF times such as ``observed_at``)."""
    return zarr.open_array(store, path=name, mode="r")[...]


def _snapshot(store: str) -> dict[str, str]:
    return {
        str(Path(root, name).relative_to(store)): hashlib.sha256(
            Path(root, name).read_bytes()
        ).hexdigest()
        for root, _, files in os.walk(store)
        for name in files
    }


def _data_chunks(case: Case, store: str) -> dict[str, str]:
    names = {v.name for v in case.kind.variables}
    return {k: v for k, v in _snapshot(store).items() if k.split(os.sep)[0] in names}


@pytest.fixture
def store(tmp_path: Path, case: Case) -> str:
    path = str(tmp_path / "cube.zarr")
    _prepare(case, path, case.first)
    return path


# --- template -------------------------------------------------------------------------------


def test_template_holds_the_kind_schema_and_no_data_chunks(case: Case, store: str):
    cube = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    assert cube.attrs["title"] == case.kind.title
    assert set(case.kind.required) <= set(cube.variables)
    for var in case.kind.variables:
        data = cube[var.name]
        raw = zarr.open_array(store, path=var.name, mode="r")  # CF times decode to datetimes
        assert (data.dims, raw.dtype, data.shape) == (("time", "y", "x"), var.dtype, (1, 140, 180))
        assert data.encoding["chunks"] == (1, CHUNK, CHUNK)
        assert raw.fill_value == var.fill_value
        assert (raw[...] == var.fill_value).all()
        assert data.attrs.get("long_name") == var.attrs.get("long_name")
        if var.classes:
            assert data.attrs["flag_meanings"] == "background building water"
        assert data.rio.crs.to_epsg() == 32632
    assert cube.tile_done.values.tolist() == [[[0] * 3] * 3]
    for coord in case.kind.times:
        assert cube[coord.name].values[0] == coord.value(case.first)
    written = {f.split(os.sep)[0] for f in _snapshot(store) if not Path(f).name.startswith(".")}
    assert written.isdisjoint({*(v.name for v in case.kind.variables), "tile_done"})


# --- tiles ----------------------------------------------------------------------------------


def test_tiles_round_trip_through_the_runner(case: Case, store: str):
    statuses, calls = _run(case, store, 0, TILES)
    assert statuses == {t: "nodata" if t == NODATA_TILE else "written" for t in TILES}
    assert len(calls) == len(TILES) - 1  # no model for the no-data tile
    assert (92, 96) in calls  # tile (1, 1) with its halo, clipped at the grid's last row
    cube = xr.open_zarr(store, mask_and_scale=False)
    for name, array in case.stored(case.truth(np.random.default_rng(0))).items():
        np.testing.assert_array_equal(_raw(store, name)[0], array, err_msg=name)
    assert (cube.tile_done.values == 1).all()


def test_tile_arrays_are_checked_before_anything_is_written(case: Case, store: str):
    before = _snapshot(store)
    arrays = case.kind.nodata_tile((CHUNK, CHUNK))
    first = case.kind.inputs[0].name
    with pytest.raises(InputError, match=f"{case.kind.inputs[0].label or first} must be a uint8"):
        write_cube_tile(
            store, case.kind, 0, (0, 0), {**arrays, first: arrays[first].astype(int)}, CHUNK
        )
    with pytest.raises(InputError, match="tile takes arrays"):
        write_cube_tile(store, case.kind, 0, (0, 0), {first: arrays[first]}, CHUNK)
    assert _snapshot(store) == before


# --- resume ---------------------------------------------------------------------------------


def test_rerun_lists_and_runs_only_unwritten_tiles(case: Case, store: str):
    _run(case, store, 0, [(0, 0), (2, 1)])
    written = _snapshot(store)
    plan = _prepare(case, store, case.first)
    assert (plan.time_index, plan.already_complete) == (0, False)
    assert plan.todo == tuple(t for t in TILES if t not in ((0, 0), (2, 1)))
    statuses, calls = _run(case, store, 0, [(0, 0), (2, 1)])
    assert statuses == {(0, 0): "done-before", (2, 1): "done-before"} and calls == []
    assert _snapshot(store) == written
    _run(case, store, 0, plan.todo)
    assert all(is_tile_done(store, 0, t) for t in TILES)
    assert _prepare(case, store, case.first).already_complete


def test_tile_with_data_but_no_done_record_is_written_again(case: Case, store: str):
    _run(case, store, 0, [(1, 1)])
    zarr.open_array(store, path="tile_done", mode="r+")[0, 1, 1] = 0  # as if it crashed here
    written = _data_chunks(case, store)
    assert (1, 1) in _prepare(case, store, case.first).todo
    assert _run(case, store, 0, [(1, 1)])[0] == {(1, 1): "written"}
    assert _data_chunks(case, store) == written
    assert is_tile_done(store, 0, (1, 1))


# --- append ---------------------------------------------------------------------------------


def test_later_step_is_appended_and_written(case: Case, store: str):
    _run(case, store, 0, TILES)
    first = {k: v for k, v in _data_chunks(case, store).items() if not Path(k).name.startswith(".")}
    plan = _prepare(case, store, case.later)
    assert (plan.time_index, plan.todo) == (1, tuple(TILES))
    _run(case, store, 1, TILES, seed=1)
    after = _snapshot(store)
    assert {k: after[k] for k in first} == first
    cube = xr.open_zarr(store, mask_and_scale=False)  # consolidated: re-consolidated by append
    for coord in case.kind.times:
        expected = np.array([coord.value(case.first), coord.value(case.later)], "datetime64[ns]")
        np.testing.assert_array_equal(cube[coord.name].values, expected)
    for name, array in case.stored(case.truth(np.random.default_rng(1))).items():
        np.testing.assert_array_equal(_raw(store, name)[1], array, err_msg=name)
    assert len(cube.attrs["time_steps"]) == 2


def test_older_step_is_refused_without_writing(case: Case, tmp_path: Path):
    path = str(tmp_path / "later.zarr")
    _prepare(case, path, case.later)
    before = _snapshot(path)
    with pytest.raises(StoreMismatchError, match="appended in"):
        _prepare(case, path, case.first)
    assert _snapshot(path) == before


# --- mismatch -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "classes", "match"),
    [(OTHER_GRID, CLASSES, "transform"), (GRID, OTHER_CLASSES, "classes")],
    ids=["grid", "classes"],
)
def test_other_grid_or_classes_are_refused_without_writing(
    case: Case, store: str, grid: GridSpec, classes: ClassNames, match: str
):
    _run(case, store, 0, [(0, 0)])
    before = _snapshot(store)
    with pytest.raises(StoreMismatchError, match=match):
        _prepare(case, store, case.later, grid=grid, classes=classes)
    assert _snapshot(store) == before


def test_a_store_of_another_kind_is_refused(case: Case, tmp_path: Path):
    for name, other in CASES.items():
        if other.kind is case.kind:
            continue
        path = str(tmp_path / f"{name}.zarr")
        _prepare(other, path, other.first)
        with pytest.raises(StoreMismatchError, match=f"not a terrawatch {case.kind.name}"):
            _prepare(case, path, case.first)


def test_appending_to_a_flood_store_made_before_new_exclusion_bits_describes_them(tmp_path: Path):
    """A store written when ``exclusion`` had bits 1, 2, 4 gets the later bits' description
    when the next event is appended, so no stored pixel carries an undescribed bit."""
    case = CASES["flood"]
    path = str(tmp_path / "flood.zarr")
    _prepare(case, path, case.first)
    old = zarr.open_array(path, path="exclusion", mode="r+")
    words = old.attrs["flag_meanings"].split()
    old.attrs.update({"flag_masks": [1, 2, 4], "flag_meanings": " ".join(words[:3])})
    zarr.consolidate_metadata(path)
    _prepare(case, path, case.later)
    cube = xr.open_zarr(path, mask_and_scale=False)
    assert [int(m) for m in cube["exclusion"].attrs["flag_masks"]] == [1, 2, 4, 8, 16]
    assert cube["exclusion"].attrs["flag_meanings"].split() == words
