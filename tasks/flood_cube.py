"""Flood Zarr cube: water before and after an event, the flooded mask and the sensor per pixel.

Store layout (one store per region and CRS; events appended in date order), dims
``(time, y, x)``; conventions as the land-cover cube (:mod:`tasks.cube`: Zarr v2 + consolidated
metadata, template first, chunk-aligned region writes, ``tile_done`` record, ``spatial_ref``):

- ``time``: the event date; ``pre_start`` (on ``time``) the first day of the pre-event window
  and ``post_end`` the last day of the post-event window (the pre-event window ends the day
  before the event, the post-event window starts on it).
- ``water_pre`` / ``water_post``: uint8 1 = water, 0 = not water, ``_FillValue`` 255 = no
  valid image in the window (or tile not written yet). Water is any class of the run's
  ``water_classes`` (group attribute, and each event's provenance).
- ``flooded``: uint8 1 = water after the event where there was none before
  (``water_post & ~water_pre``), 0 = not flooded (no water after, or water before and after),
  255 = unknown: no image after the event, or water after it and no image before.
- ``source_pre`` / ``source_post``: uint8 sensor whose image decided the pixel: 0 none (no valid
  image), 1 SAR, 2 optical (a cloud-free optical pixel wins over SAR); ``_FillValue`` 255 =
  tile not written yet.
- ``tile_done``: uint8 ``(time, tile_row, tile_col)``, 1 once that tile's chunks are written.
- Group attributes: as the land-cover cube (class table, grid, ``proj:*``/``spatial:*``,
  software version, created), title ``terrawatch flood``; the latest run's provenance at top
  level (event date, windows, items per side and sensor, water classes, model ids and weight
  hashes, run id); ``time_steps``: one record per event with ``time``/``end``/``items`` of the
  post-event window, ``pre`` (its time, end, items), the provenance and, after
  :func:`finalize_flood_cube`, the pixel counts.

With CF decoding (the xarray default) the uint8 variables read as float with NaN for 255, so
``flooded.sum()`` counts flooded pixels; ``mask_and_scale=False`` keeps uint8.
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
    _parse_time,
    _plan,
    _read_store,
    _record_index,
    _tile_region,
)

logger = logging.getLogger(__name__)

TITLE = "terrawatch flood"
SOURCE_NONE, SOURCE_SAR, SOURCE_OPTICAL = 0, 1, 2
SOURCES = ("none", "sar", "optical")
"""Meaning of the ``source_*`` values 0, 1, 2."""
WATER_VARS = ("water_pre", "water_post")
SOURCE_VARS = ("source_pre", "source_post")
FLOOD_VARS = (*WATER_VARS, "flooded", *SOURCE_VARS)

_WATER_ATTRS = {
    "flag_values": np.array([0, 1], np.uint8),
    "flag_meanings": "not_water water",
    "comment": "water = a class of the group attribute water_classes; 255 (_FillValue) = no "
    "valid image in the window, or tile not written yet",
}
_FLOODED_ATTRS = {
    "long_name": "flooded: water after the event where there was none before",
    "flag_values": np.array([0, 1], np.uint8),
    "flag_meanings": "not_flooded flooded",
    "comment": "water_post & ~water_pre; 255 (_FillValue) = unknown: no image after the event, "
    "or water after it and no image before, or tile not written yet",
}
_SOURCE_ATTRS = {
    "flag_values": np.array([0, 1, 2], np.uint8),
    "flag_meanings": " ".join(SOURCES),
    "comment": "sensor whose image decided the pixel: 0 no valid image, 1 SAR, 2 optical "
    "(cloud-free optical wins over SAR); 255 (_FillValue) = tile not written yet",
}
_DONE_ATTRS = {
    "long_name": "tile completion record: 1 once the tile's chunks are written",
    "flag_values": [1],
    "flag_meanings": "done",
    "comment": "one element per chunk of the flood variables; fill (0) = not written yet",
}


@dataclass(frozen=True)
class FloodStep(TimeStep):
    """One event: the post-event window (``time`` = event date, ``end``, ``items``) and ``pre``."""

    pre: TimeStep
    """The pre-event window; it must end before the event date."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.pre, TimeStep):
            raise InputError(f"pre must be a TimeStep, got {type(self.pre).__name__}")
        if _parse_time(self.pre.end, "pre.end") >= self.time64:
            raise InputError(
                f"the pre-event window ({self.pre.time}..{self.pre.end}) must end before the "
                f"event date {self.time!r}; end it the day before the event"
            )

    def to_attrs(self) -> dict[str, Any]:
        """JSON form of the event in the ``time_steps`` group attribute."""
        return {**super().to_attrs(), "pre": self.pre.to_attrs()}


# --- per-pixel rules ------------------------------------------------------------------------


def water_mask(labels: np.ndarray, water: tuple[int, ...], source: np.ndarray) -> np.ndarray:
    """uint8 1 where ``labels`` is a water class, 0 where not, 255 where ``source`` is none."""
    out = np.isin(labels, np.asarray(water, dtype=labels.dtype)).astype(np.uint8)
    out[(source == SOURCE_NONE) | (labels == NODATA)] = NODATA
    return out


def flooded_mask(water_pre: np.ndarray, water_post: np.ndarray) -> np.ndarray:
    """``flooded`` from the two water masks (see the module docstring for the 255 cases)."""
    out = np.full(water_post.shape, NODATA, np.uint8)
    out[water_post == 0] = 0
    out[(water_post == 1) & (water_pre == 1)] = 0
    out[(water_post == 1) & (water_pre == 0)] = 1
    return out


# --- store ----------------------------------------------------------------------------------


def prepare_flood_cube(
    store: str,
    grid: GridSpec,
    classes: ClassTable,
    step: FloodStep,
    provenance: dict,
    chunk: int = 1024,
) -> CubePlan:
    """Create the store or add/resume an event, and list the tiles still to write.

    Args:
        store: Local path or fsspec URL of the Zarr store.
        grid: Output grid of both windows.
        classes: Class table of the segmenter (what ``water_classes`` index into).
        step: The event to write.
        provenance: JSON-serialisable run metadata (windows, items, water classes, models, ...).
        chunk: Tile and Zarr chunk size in pixels.

    Raises:
        InputError: Bad ``chunk`` or ``provenance``.
        StoreMismatchError: The existing store is no flood cube, has another grid, chunking or
            class table, holds this event with other windows or items, or ends after it.
            Nothing is written then.
    """
    _check_chunk(chunk)
    _check_provenance(provenance)
    n_tiles = tuple(grid.tiles(chunk).shape.yx)
    template = _template(grid, step, chunk, n_tiles)
    existing = _read_store(store)
    if existing is None:
        template.attrs = {**_group_attrs(grid, classes, step, provenance), "title": TITLE}
        template.to_zarr(
            store, mode="w-", compute=False, zarr_format=ZARR_FORMAT, consolidated=True
        )
        logger.info("created flood cube %s for %s (%d x %d tiles)", store, step.time, *n_tiles)
        return _plan(store, 0, chunk, n_tiles, _all_tiles(n_tiles))
    _check_store_matches(store, existing, grid, classes, chunk)
    times = existing["time"].values
    hits = np.flatnonzero(times == step.time64)
    if hits.size:
        return _resume(store, existing, int(hits[0]), step, chunk, n_tiles)
    if times.size and step.time64 < times[-1]:
        raise StoreMismatchError(
            f"event date {step.time!r} is before the last event in {store!r} "
            f"({np.datetime_as_string(times[-1], unit='D')}); events are appended in date "
            "order. Write this event to a new store (--store)."
        )
    _append_step(store, existing, template, step, provenance)
    logger.info("appended event %s to flood cube %s as index %d", step.time, store, times.size)
    return _plan(store, int(times.size), chunk, n_tiles, _all_tiles(n_tiles))


def write_flood_tile(
    store: str,
    time_index: int,
    tile: tuple[int, int],
    water_pre: np.ndarray,
    water_post: np.ndarray,
    source_pre: np.ndarray,
    source_post: np.ndarray,
    chunk: int,
) -> None:
    """Write one tile of one event (``flooded`` derived here), then mark it done.

    Args:
        store: Store prepared by :func:`prepare_flood_cube`.
        time_index: Index of the event (``CubePlan.time_index``).
        tile: ``(tile_row, tile_col)``.
        water_pre: ``uint8 [h, w]`` 0/1, 255 where ``source_pre`` is 0; ``(h, w)`` is the
            tile's shape in the grid.
        water_post: Same, after the event.
        source_pre: ``uint8 [h, w]`` 0 none, 1 SAR, 2 optical.
        source_post: Same, after the event.
        chunk: Tile size in pixels; must equal the store's chunking.

    Raises:
        InputError: Index out of range, wrong chunk, shape, dtype or values, or water and
            source disagree on where there is data; checked before anything is written.
    """
    meta = zarr.open_array(store, path="flooded", mode="r")
    region = _tile_region(store, meta, time_index, tile, chunk)
    shape = (region["y"].stop - region["y"].start, region["x"].stop - region["x"].start)
    arrays = {
        "water_pre": water_pre,
        "water_post": water_post,
        "source_pre": source_pre,
        "source_post": source_post,
    }
    for name, array in arrays.items():
        water = name in WATER_VARS
        _check_tile_array(name, array, shape, 2 if water else len(SOURCES), nodata_ok=water)
    for water, source in zip(WATER_VARS, SOURCE_VARS, strict=True):
        if np.any((arrays[water] == NODATA) != (arrays[source] == SOURCE_NONE)):
            raise InputError(
                f"{water} must be 255 exactly where {source} is 0 (no image); build them with "
                "water_mask(labels, water, source)"
            )
    arrays["flooded"] = flooded_mask(water_pre, water_post)
    dims = ("time", "y", "x")
    data = xr.Dataset({name: (dims, array[None]) for name, array in arrays.items()})
    data.to_zarr(store, region=region, mode="r+", consolidated=False)
    zarr.open_array(store, path="tile_done", mode="r+")[(time_index, *tile)] = 1


@dataclass(frozen=True)
class FloodCounts:
    """Pixel counts of one finished event."""

    flooded: int
    """Flooded pixels."""
    water_pre: int
    """Water before the event."""
    water_post: int
    """Water after the event."""
    observed_both: int
    """Pixels with a valid image before and after."""
    unknown: int
    """Water after the event with no image before (``flooded`` 255 there)."""
    sources_pre: dict[str, int]
    """Pixels per source sensor before the event (``none``, ``sar``, ``optical``)."""
    sources_post: dict[str, int]
    """Pixels per source sensor after the event."""

    def to_attrs(self) -> dict[str, Any]:
        """JSON form for the event's ``time_steps`` record."""
        return {
            "flooded_pixels": self.flooded,
            "water_pre_pixels": self.water_pre,
            "water_post_pixels": self.water_post,
            "observed_both_pixels": self.observed_both,
            "unknown_pixels": self.unknown,
            "source_pre_pixels": dict(self.sources_pre),
            "source_post_pixels": dict(self.sources_post),
        }


def finalize_flood_cube(store: str, time_index: int) -> FloodCounts:
    """Check that an event is complete, count its pixels and record them; re-consolidate.

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
            f"event {time_index} of {store!r} has {len(missing)} tile(s) not written yet, e.g. "
            f"{[tuple(map(int, t)) for t in missing[:5]]}; rerun the flow to write them"
        )
    counts = _count(group, time_index)
    when = _read_store(store)["time"].values[time_index]
    records = [dict(r) for r in group.attrs.get("time_steps", [])]
    found = _record_index(records, when)
    if found is None:  # only after an interrupted append; keep the counts anyway
        records.append({"time": np.datetime_as_string(when, unit="s")})
        found = len(records) - 1
    record = counts.to_attrs()
    if any(records[found].get(k) != v for k, v in record.items()):
        records[found].update(record)
        group.attrs["time_steps"] = records
    zarr.consolidate_metadata(store, zarr_format=ZARR_FORMAT)
    logger.info(
        "finalized flood cube %s event %d: %d flooded px", store, time_index, counts.flooded
    )
    return counts


def _count(group: zarr.Group, time_index: int) -> FloodCounts:
    """Pixel counts of one event, one chunk row at a time."""
    totals = dict.fromkeys(("flooded", "water_pre", "water_post", "both", "unknown"), 0)
    sources = {name: np.zeros(256, np.int64) for name in SOURCE_VARS}
    rows = group["flooded"].chunks[1]
    for y0 in range(0, group["flooded"].shape[1], rows):
        band = {name: np.asarray(group[name][time_index, y0 : y0 + rows, :]) for name in FLOOD_VARS}
        totals["flooded"] += int((band["flooded"] == 1).sum())
        totals["water_pre"] += int((band["water_pre"] == 1).sum())
        totals["water_post"] += int((band["water_post"] == 1).sum())
        both = (band["water_pre"] != NODATA) & (band["water_post"] != NODATA)
        totals["both"] += int(both.sum())
        totals["unknown"] += int(((band["water_post"] == 1) & (band["water_pre"] == NODATA)).sum())
        for name in SOURCE_VARS:
            sources[name] += np.bincount(band[name].ravel(), minlength=256)
    per_source = {
        name: {label: int(hist[i]) for i, label in enumerate(SOURCES)}
        for name, hist in sources.items()
    }
    return FloodCounts(
        totals["flooded"],
        totals["water_pre"],
        totals["water_post"],
        totals["both"],
        totals["unknown"],
        per_source["source_pre"],
        per_source["source_post"],
    )


# --- template and checks ---------------------------------------------------------------------


def _template(grid: GridSpec, step: FloodStep, chunk: int, n_tiles: tuple[int, ...]) -> xr.Dataset:
    """One event of the cube as lazy fill values, with final chunks, attrs and encoding."""
    coords: dict[str, Any] = dict(odc.geo.xr.xr_coords(grid.geobox, crs_coord_name="spatial_ref"))
    times = {
        "time": (step.time64, "event date (first day of the post-event window)"),
        "pre_start": (step.pre.time64, "first day of the pre-event window"),
        "post_end": (_parse_time(step.end, "end"), "last day of the post-event window"),
    }
    for name, (when, long_name) in times.items():
        value = np.array([when], dtype="datetime64[ns]")
        coords[name] = xr.Variable(
            "time", value, {"long_name": long_name}, encoding=dict(_TIME_ENCODING)
        )
    shape, chunks = (1, *grid.shape), (1, chunk, chunk)
    variables = {
        "water_pre": {**_WATER_ATTRS, "long_name": "water before the event"},
        "water_post": {**_WATER_ATTRS, "long_name": "water after the event"},
        "flooded": _FLOODED_ATTRS,
        "source_pre": {**_SOURCE_ATTRS, "long_name": "sensor of water_pre"},
        "source_post": {**_SOURCE_ATTRS, "long_name": "sensor of water_post"},
    }
    ds = xr.Dataset(coords=coords)
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
    missing = {*FLOOD_VARS, "tile_done", "pre_start"} - set(ds.variables)
    if missing:
        raise StoreMismatchError(
            f"{store!r} is not a terrawatch flood cube (missing {sorted(missing)!r}); pass a "
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
    if tuple(ds["flooded"].shape[1:]) != tuple(grid.shape):
        diffs.append(f"shape (y, x) {tuple(ds['flooded'].shape[1:])!r} vs {tuple(grid.shape)!r}")
    stored_chunk = tuple(ds["flooded"].encoding.get("chunks", ()))[1:]
    if stored_chunk != (chunk, chunk):
        diffs.append(f"chunk {stored_chunk!r} vs {(chunk, chunk)!r}")
    stored = [(c["name"], tuple(c["synonyms"])) for c in ds.attrs.get("classes", [])]
    wanted = list(zip(classes.names, classes.synonyms, strict=True))
    if stored != wanted:
        diffs.append(f"classes {stored!r} vs {wanted!r}")
    if diffs:
        raise StoreMismatchError(
            f"existing flood cube {store!r} does not match this run (store vs requested): "
            + "; ".join(diffs)
            + ". Write to a new store (--store), or rerun with the store's grid, chunk and classes "
            "(its 'grid' and 'classes' attributes)."
        )


def _resume(
    store: str, ds: xr.Dataset, index: int, step: FloodStep, chunk: int, n_tiles: tuple[int, ...]
) -> CubePlan:
    """Plan for an event already in the store: only the tiles whose record is not set."""
    records = ds.attrs.get("time_steps", [])
    found = _record_index(records, step.time64)
    record = records[found] if found is not None else {}
    wanted = step.to_attrs()
    stored = {k: record.get(k, wanted[k]) for k in wanted}
    if _normalise(stored) != _normalise(wanted):
        raise StoreMismatchError(
            f"event {step.time!r} is already in {store!r} as {stored!r}, but this run asks for "
            f"{wanted!r}; rerun with the recorded windows and items, or write to a new store"
        )
    done = np.asarray(ds["tile_done"][index].values) == 1
    todo = tuple((int(r), int(c)) for r, c in np.argwhere(~done))
    logger.info(
        "flood cube %s event %s: %d of %d tiles to do", store, step.time, len(todo), done.size
    )
    return _plan(store, index, chunk, n_tiles, todo)


def _normalise(record: dict[str, Any]) -> tuple:
    """Comparable form of an event record: dates parsed, item lists as tuples."""
    pre = record["pre"]
    return (
        _parse_time(record["time"], "time"),
        _parse_time(record["end"], "end"),
        tuple(record["items"]),
        _parse_time(pre["time"], "pre.time"),
        _parse_time(pre["end"], "pre.end"),
        tuple(pre["items"]),
    )


def _check_tile_array(
    name: str, array: np.ndarray, shape: tuple[int, int], n_values: int, nodata_ok: bool
) -> None:
    """uint8 of the tile's shape holding 0..n_values-1 (or the no-data value if allowed)."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape != shape:
        raise InputError(
            f"{name} must be a uint8 numpy array of this tile's shape {shape!r}, got "
            f"{type(array).__name__} {getattr(array, 'dtype', None)} "
            f"{getattr(array, 'shape', None)!r}; crop to the tile and cast with .astype(np.uint8)"
        )
    bad = np.unique(array[(array >= n_values) & ((array != NODATA) | (not nodata_ok))])
    if bad.size:
        allowed = f"0..{n_values - 1}" + (f" and {NODATA} (no data)" if nodata_ok else "")
        raise InputError(f"{name} holds value(s) {bad[:10].tolist()!r}; allowed are {allowed}")
