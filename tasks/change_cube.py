"""Change Zarr cube: one time step per image pair, change flag and from/to classes per pixel.

Store layout (one store per change query, region and CRS), dims ``(time, y, x)``; the
conventions are those of the land-cover cube (:mod:`tasks.cube`: Zarr v2 + consolidated
metadata, template first, chunk-aligned region writes, ``tile_done`` record, ``spatial_ref``):

- ``time``: the start of the *later* period (t2) of each pair; ``time_before`` (on ``time``)
  the start of the earlier period (t1).
- ``changed``: uint8, 1 = changed, 0 = unchanged, ``_FillValue`` 255 = no data at either date
  (or tile not written yet). One variable with a fill value rather than bool + a valid mask:
  ``xr.open_zarr(store)`` decodes it to float 1.0 / 0.0 / NaN, so ``changed.sum()`` counts
  changed pixels and ``changed.mean()`` is the changed share of the valid pixels;
  ``mask_and_scale=False`` keeps uint8.
- ``class_from`` / ``class_to``: uint8 class index at t1 / t2 of each changed pixel, CF
  ``flag_values``/``flag_meanings`` of the class table; ``_FillValue`` 255 wherever ``changed``
  is not 1 (unchanged or no data).
- ``tile_done``: uint8 ``(time, tile_row, tile_col)``, 1 once that tile's chunks are written.
- Group attributes: as the land-cover cube (class table, grid, ``proj:*``/``spatial:*``,
  software version, created) with title ``terrawatch change``; the latest run's provenance at
  top level (``change_query``, ``change_steps``, run id, item ids per date); ``time_steps``:
  one record per pair with ``time``/``end``/``items`` of t2, ``before`` (t1's time, end,
  items), the provenance and, after :func:`finalize_change_cube`, the pixel counts.

Pairs are appended in order of their t2 start; the same pair again resumes (only unfinished
tiles are listed); the same t2 with another t1 or other items is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import odc.geo.xr
import xarray as xr
import zarr
from odc.geo import CRS

from tasks._errors import InputError, StoreMismatchError
from tasks._grid import GridSpec
from tasks.cube import (
    _TIME_ENCODING,
    NODATA,
    ZARR_FORMAT,
    ClassTable,
    CubePlan,
    TimeStep,
    _all_tiles,
    _append_step,
    _check_chunk,
    _check_index,
    _check_provenance,
    _group_attrs,
    _landcover_attrs,
    _parse_time,
    _plan,
    _read_store,
    _record_index,
    _tile_region,
)

logger = logging.getLogger(__name__)

TITLE = "terrawatch change"
CHANGE_VARS = ("changed", "class_from", "class_to")
_CHANGED_ATTRS = {
    "long_name": "land change between the earlier (t1) and the later (t2) period",
    "flag_values": np.array([0, 1], np.uint8),
    "flag_meanings": "unchanged changed",
    "comment": "255 (_FillValue) = no valid pixel at t1 or t2, or tile not written yet",
}
_DONE_ATTRS = {
    "long_name": "tile completion record: 1 once the tile's chunks are written",
    "flag_values": [1],
    "flag_meanings": "done",
    "comment": "one element per chunk of changed/class_from/class_to; fill (0) = not written",
}


@dataclass(frozen=True)
class ChangeStep(TimeStep):
    """One pair: the later period (``time``, ``end``, ``items``) and the earlier one."""

    before: TimeStep
    """The earlier period (t1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.before, TimeStep):
            raise InputError(f"before must be a TimeStep, got {type(self.before).__name__}")
        if _parse_time(self.before.end, "before.end") >= self.time64:
            raise InputError(
                f"the earlier period ({self.before.time}..{self.before.end}) must end before the "
                f"later one starts ({self.time}); pass the earlier period as before"
            )

    @classmethod
    def of(cls, before: TimeStep, after: TimeStep) -> ChangeStep:
        """The pair (``before``, ``after``)."""
        return cls(after.time, after.end, after.items, before)

    def to_attrs(self) -> dict[str, Any]:
        """JSON form of the pair in the ``time_steps`` group attribute."""
        return {**super().to_attrs(), "before": self.before.to_attrs()}


def prepare_change_cube(
    store: str,
    grid: GridSpec,
    classes: ClassTable,
    step: ChangeStep,
    provenance: dict,
    chunk: int = 1024,
) -> CubePlan:
    """Create the store or add/resume a pair, and list the tiles still to write.

    Args:
        store: Local path or fsspec URL of the Zarr store.
        grid: Output grid shared by both dates.
        classes: Class table; ``class_from``/``class_to`` value ``i`` is ``classes.names[i]``.
        step: The pair to write.
        provenance: JSON-serialisable run metadata (change query, steps, run id, ...).
        chunk: Tile and Zarr chunk size in pixels.

    Raises:
        InputError: Bad ``chunk`` or ``provenance``.
        StoreMismatchError: The existing store is no change cube, has another grid, chunking
            or class table, holds this t2 with another t1 or items, or ends after ``step.time``.
            Nothing is written then.
    """
    _check_chunk(chunk)
    _check_provenance(provenance)
    n_tiles = tuple(grid.tiles(chunk).shape.yx)
    template = _template(grid, classes, step, chunk, n_tiles)
    existing = _read_store(store)
    if existing is None:
        template.attrs = {**_group_attrs(grid, classes, step, provenance), "title": TITLE}
        template.to_zarr(
            store, mode="w-", compute=False, zarr_format=ZARR_FORMAT, consolidated=True
        )
        logger.info("created change cube %s for %s (%d x %d tiles)", store, step.time, *n_tiles)
        return _plan(store, 0, chunk, n_tiles, _all_tiles(n_tiles))
    _check_store_matches(store, existing, grid, classes, chunk)
    times = existing["time"].values
    hits = np.flatnonzero(times == step.time64)
    if hits.size:
        return _resume(store, existing, int(hits[0]), step, chunk, n_tiles)
    if times.size and step.time64 < times[-1]:
        raise StoreMismatchError(
            f"the later period starts {step.time!r}, before the last pair in {store!r} "
            f"({np.datetime_as_string(times[-1], unit='D')}); pairs are appended in order of "
            "their later period. Write this pair to a new store (--store)."
        )
    _append_step(store, existing, template, step, provenance)
    logger.info("appended pair %s to change cube %s as index %d", step.time, store, times.size)
    return _plan(store, int(times.size), chunk, n_tiles, _all_tiles(n_tiles))


def write_change_tile(
    store: str,
    time_index: int,
    tile: tuple[int, int],
    changed: np.ndarray,
    class_from: np.ndarray,
    class_to: np.ndarray,
    chunk: int,
) -> None:
    """Write one tile of one pair (one Zarr chunk per variable), then mark it done.

    Args:
        store: Store prepared by :func:`prepare_change_cube`.
        time_index: Index of the pair (``CubePlan.time_index``).
        tile: ``(tile_row, tile_col)``.
        changed: ``uint8 [h, w]``: 1 changed, 0 unchanged, 255 no data; ``(h, w)`` is the
            tile's shape in the grid.
        class_from: ``uint8 [h, w]`` class at t1; forced to 255 where ``changed`` is not 1.
        class_to: ``uint8 [h, w]`` class at t2; forced to 255 where ``changed`` is not 1.
        chunk: Tile size in pixels; must equal the store's chunking.

    Raises:
        InputError: Index out of range, wrong chunk, shape, dtype or values; checked before
            anything is written.
    """
    meta = zarr.open_array(store, path="changed", mode="r")
    region = _tile_region(store, meta, time_index, tile, chunk)
    shape = (region["y"].stop - region["y"].start, region["x"].stop - region["x"].start)
    n_classes = len(zarr.open_array(store, path="class_from", mode="r").attrs["flag_values"])
    _check_tile_array("changed", changed, shape, 2)
    _check_tile_array("class_from", class_from, shape, n_classes)
    _check_tile_array("class_to", class_to, shape, n_classes)
    unchanged = changed != 1
    dims = ("time", "y", "x")
    data = xr.Dataset(
        {
            "changed": (dims, changed[None]),
            "class_from": (dims, np.where(unchanged, NODATA, class_from).astype(np.uint8)[None]),
            "class_to": (dims, np.where(unchanged, NODATA, class_to).astype(np.uint8)[None]),
        }
    )
    data.to_zarr(store, region=region, mode="r+", consolidated=False)
    zarr.open_array(store, path="tile_done", mode="r+")[(time_index, *tile)] = 1


@dataclass(frozen=True)
class ChangeCounts:
    """Pixel counts of one finished pair."""

    valid: int
    """Pixels valid at both dates."""
    changed: int
    """Changed pixels."""
    transitions: tuple[tuple[str, str, int], ...]
    """(class_from, class_to, pixels) per transition seen, most pixels first."""


def finalize_change_cube(store: str, time_index: int) -> ChangeCounts:
    """Check that a pair is complete, count its changes and record them; re-consolidate.

    Raises:
        InputError: ``time_index`` out of range.
        RuntimeError: Some tiles are not written yet (listed); rerun the flow to write them.
    """
    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    done = group["tile_done"]
    _check_index(store, done.shape, time_index, (0, 0))
    missing = np.argwhere(done[time_index] != 1)
    if missing.size:
        raise RuntimeError(
            f"pair {time_index} of {store!r} has {len(missing)} tile(s) not written yet, e.g. "
            f"{[tuple(map(int, t)) for t in missing[:5]]}; rerun the flow to write them"
        )
    names = [c["name"] for c in group.attrs["classes"]]
    counts = _count_changes(group, time_index, names)
    record = {
        "valid_pixels": counts.valid,
        "changed_pixels": counts.changed,
        "transition_pixel_counts": [list(t) for t in counts.transitions],
    }
    when = _read_store(store)["time"].values[time_index]
    records = [dict(r) for r in group.attrs.get("time_steps", [])]
    found = _record_index(records, when)
    if found is None:  # only after an interrupted append; keep the counts anyway
        records.append({"time": np.datetime_as_string(when, unit="s")})
        found = len(records) - 1
    if any(records[found].get(k) != v for k, v in record.items()):
        records[found].update(record)
        group.attrs["time_steps"] = records
    zarr.consolidate_metadata(store, zarr_format=ZARR_FORMAT)
    logger.info(
        "finalized change cube %s pair %d: %d changed px", store, time_index, counts.changed
    )
    return counts


def _count_changes(group: zarr.Group, time_index: int, names: list[str]) -> ChangeCounts:
    """Valid, changed and per-transition pixel counts, one chunk row at a time."""
    changed, cls_from, cls_to = (group[v] for v in CHANGE_VARS)
    hist = np.zeros(256 * 256, np.int64)
    valid = 0
    rows = changed.chunks[1]
    for y0 in range(0, changed.shape[1], rows):
        block = np.asarray(changed[time_index, y0 : y0 + rows, :])
        hit = block == 1
        valid += int((block != NODATA).sum())
        codes = np.asarray(cls_from[time_index, y0 : y0 + rows, :])[hit].astype(np.int64) * 256
        codes += np.asarray(cls_to[time_index, y0 : y0 + rows, :])[hit]
        hist += np.bincount(codes, minlength=hist.size)
    found = np.flatnonzero(hist)
    found = found[np.argsort(-hist[found], kind="stable")]
    transitions = tuple(
        (_class_name(names, int(c) // 256), _class_name(names, int(c) % 256), int(hist[c]))
        for c in found
    )
    return ChangeCounts(valid, int(hist.sum()), transitions)


def _class_name(names: list[str], value: int) -> str:
    return names[value] if value < len(names) else "no data"


# --- land-cover cubes as the source of a pair ------------------------------------------------


@dataclass(frozen=True)
class LandcoverPair:
    """What a change run takes from a land-cover cube: grid, classes and its last two periods."""

    grid: GridSpec
    """The cube's grid."""
    classes: ClassTable
    """The cube's class table."""
    chunk: int
    """The cube's chunk size."""
    step: ChangeStep
    """The last two time steps as a pair (items = the STAC ids recorded for each)."""


def read_landcover_pair(store: str) -> LandcoverPair:
    """The grid, classes and last two time steps of a land-cover cube (attributes only).

    Raises:
        FileNotFoundError: No store at ``store``.
        InputError: Not a land-cover cube, fewer than two time steps, or no record of them.
    """
    ds = _read_store(store)
    if ds is None:
        raise FileNotFoundError(
            f"from_cube={store!r}: no Zarr store there; give the path of a land-cover cube "
            "written by `terrawatch landcover`"
        )
    if "landcover" not in ds.variables or "grid" not in ds.attrs:
        raise InputError(
            f"from_cube={store!r} is not a terrawatch land-cover cube (no 'landcover' variable "
            "or 'grid' attribute); give a cube written by `terrawatch landcover`"
        )
    times = ds["time"].values
    if times.size < 2:
        raise InputError(
            f"from_cube={store!r} has {times.size} time step(s); a change run needs two. Run "
            "`terrawatch landcover` for a second period first, or pass before and after periods"
        )
    records = ds.attrs.get("time_steps", [])
    steps = []
    for when in times[-2:]:
        found = _record_index(records, when)
        if found is None:
            raise InputError(
                f"from_cube={store!r} has no time_steps record for "
                f"{np.datetime_as_string(when, unit='D')}; rerun that land-cover period first"
            )
        record = records[found]
        steps.append(TimeStep(record["time"][:10], record["end"][:10], tuple(record["items"])))
    classes = ClassTable.from_synonyms([c["synonyms"] for c in ds.attrs["classes"]])
    chunk = int(ds["landcover"].encoding["chunks"][1])
    return LandcoverPair(
        GridSpec.from_dict(ds.attrs["grid"]), classes, chunk, ChangeStep.of(*steps)
    )


# --- template and checks ---------------------------------------------------------------------


def _template(
    grid: GridSpec, classes: ClassTable, step: ChangeStep, chunk: int, n_tiles: tuple[int, ...]
) -> xr.Dataset:
    """One pair of the cube as lazy fill values, with final chunks, attrs and encoding."""
    coords: dict[str, Any] = dict(odc.geo.xr.xr_coords(grid.geobox, crs_coord_name="spatial_ref"))
    times = {
        "time": (step.time64, "start of the later period (t2)"),
        "time_before": (step.before.time64, "start of the earlier period (t1)"),
    }
    for name, (when, long_name) in times.items():
        value = np.array([when], dtype="datetime64[ns]")
        coords[name] = xr.Variable(
            "time", value, {"long_name": long_name}, encoding=dict(_TIME_ENCODING)
        )
    shape, chunks = (1, *grid.shape), (1, chunk, chunk)
    ds = xr.Dataset(coords=coords)
    class_attrs = _landcover_attrs(classes)
    variables = {
        "changed": _CHANGED_ATTRS,
        "class_from": {**class_attrs, "long_name": "class at t1 of changed pixels"},
        "class_to": {**class_attrs, "long_name": "class at t2 of changed pixels"},
    }
    for name, attrs in variables.items():
        fill = da.full(shape, NODATA, dtype=np.uint8, chunks=chunks)
        ds[name] = (("time", "y", "x"), fill, {**attrs, "grid_mapping": "spatial_ref"})
        ds[name].encoding = {"chunks": chunks, "_FillValue": NODATA}
    done = da.zeros((1, *n_tiles), dtype=np.uint8, chunks=1)
    ds["tile_done"] = (("time", "tile_row", "tile_col"), done, _DONE_ATTRS)
    ds["tile_done"].encoding = {"chunks": (1, 1, 1), "_FillValue": 0}
    return ds


def _check_store_matches(
    store: str, ds: xr.Dataset, grid: GridSpec, classes: ClassTable, chunk: int
) -> None:
    """Raise StoreMismatchError listing every difference between the store and the request."""
    missing = {*CHANGE_VARS, "tile_done", "time_before"} - set(ds.variables)
    if missing:
        raise StoreMismatchError(
            f"{store!r} is not a terrawatch change cube (missing {sorted(missing)!r}); pass a "
            "new --store path"
        )
    diffs = []
    stored_crs = ds.attrs.get("proj:wkt2")
    if stored_crs is None or CRS(stored_crs) != CRS(grid.crs):
        diffs.append(f"CRS {ds.attrs.get('proj:code') or stored_crs!r} vs {grid.crs!r}")
    transform = list(grid.geobox.affine)[:6]
    stored_transform = np.asarray(ds.attrs.get("spatial:transform", []), dtype=float)
    if stored_transform.shape != (6,) or not np.allclose(stored_transform, transform, rtol=1e-12):
        diffs.append(f"transform {ds.attrs.get('spatial:transform')!r} vs {transform!r}")
    if tuple(ds["changed"].shape[1:]) != tuple(grid.shape):
        diffs.append(f"shape (y, x) {tuple(ds['changed'].shape[1:])!r} vs {tuple(grid.shape)!r}")
    stored_chunk = tuple(ds["changed"].encoding.get("chunks", ()))[1:]
    if stored_chunk != (chunk, chunk):
        diffs.append(f"chunk {stored_chunk!r} vs {(chunk, chunk)!r}")
    stored = [(c["name"], tuple(c["synonyms"])) for c in ds.attrs.get("classes", [])]
    wanted = list(zip(classes.names, classes.synonyms, strict=True))
    if stored != wanted:
        diffs.append(f"classes {stored!r} vs {wanted!r}")
    if diffs:
        raise StoreMismatchError(
            f"existing change cube {store!r} does not match this run (store vs requested): "
            + "; ".join(diffs)
            + ". Write to a new store (--store), or rerun with the store's grid, chunk and classes "
            "(its 'grid' and 'classes' attributes)."
        )


def _resume(
    store: str, ds: xr.Dataset, index: int, step: ChangeStep, chunk: int, n_tiles: tuple[int, ...]
) -> CubePlan:
    """Plan for a pair already in the store: only the tiles whose record is not set."""
    records = ds.attrs.get("time_steps", [])
    found = _record_index(records, step.time64)
    record = records[found] if found is not None else {}
    wanted = step.to_attrs()
    stored = {k: record.get(k, wanted[k]) for k in wanted}
    if _normalise(stored) != _normalise(wanted):
        raise StoreMismatchError(
            f"a pair with the later period starting {step.time!r} is already in {store!r} as "
            f"{stored!r}, but this run asks for {wanted!r}; rerun with the recorded periods and "
            "items, or write to a new store"
        )
    done = np.asarray(ds["tile_done"][index].values) == 1
    todo = tuple((int(r), int(c)) for r, c in np.argwhere(~done))
    logger.info(
        "change cube %s pair %s: %d of %d tiles to do", store, step.time, len(todo), done.size
    )
    return _plan(store, index, chunk, n_tiles, todo)


def _normalise(record: dict[str, Any]) -> tuple:
    """Comparable form of a pair record: dates parsed, item lists as tuples."""
    before = record["before"]
    return (
        _parse_time(record["time"], "time"),
        _parse_time(record["end"], "end"),
        tuple(record["items"]),
        _parse_time(before["time"], "before.time"),
        _parse_time(before["end"], "before.end"),
        tuple(before["items"]),
    )


def _check_tile_array(name: str, array: np.ndarray, shape: tuple[int, int], n_values: int) -> None:
    """uint8 of the tile's shape holding 0..n_values-1 or the no-data value."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape != shape:
        raise InputError(
            f"{name} must be a uint8 numpy array of this tile's shape {shape!r}, got "
            f"{type(array).__name__} {getattr(array, 'dtype', None)} "
            f"{getattr(array, 'shape', None)!r}; crop to the tile and cast with .astype(np.uint8)"
        )
    bad = np.unique(array[(array >= n_values) & (array != NODATA)])
    if bad.size:
        raise InputError(
            f"{name} holds value(s) {bad[:10].tolist()!r}; allowed are 0..{n_values - 1} and "
            f"{NODATA} (no data)"
        )
