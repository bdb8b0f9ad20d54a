"""Land-cover Zarr cube: metadata-only template, chunk-aligned tile writes, completion record.

Store layout (one store per product, region and CRS), dims ``(time, y, x)``:

- ``landcover``: uint8 class index with CF ``flag_values``/``flag_meanings``, ``flag_colors``
  and a STAC ``classification:classes`` mirror; ``_FillValue`` 255 = no data (or not yet written).
- ``confidence``: uint8 ``round(100 * max class probability)`` in 0..100, ``_FillValue`` 255.
  uint8 rather than float16: half the bytes, exact round-trip, and the same no-data rule as
  ``landcover``.
- ``tile_done``: uint8 ``(time, tile_row, tile_col)``, one element per Zarr chunk of the data
  (chunks of 1, so concurrent writers never share one), set to 1 only after that tile's data
  chunks are written; 0 (its ``_FillValue``) means not written yet.
- ``spatial_ref`` (rioxarray/CF grid mapping, ``grid_mapping`` on each data variable), ``x``/``y``
  pixel centres of ``grid.geobox``, ``time`` the period start (int64 seconds since 1970 on disk).
- Group attributes: class table with synonyms, GeoZarr-style ``proj:code``/``spatial:*``, the
  grid, software version, creation time, the latest run's ``provenance`` keys at top level, and
  ``time_steps`` (one record per step: time, end, items, created, provenance, and after
  :func:`finalize_cube` the class pixel counts).

Zarr format (:data:`ZARR_FORMAT`): v2 with consolidated metadata. Plain
``xr.open_zarr(store, decode_coords="all")`` then opens without a warning and with one metadata
read on object storage, and GDAL and zarr-python 2 can read the cube. Writers never trust the
consolidated copy: every writer-side read uses ``consolidated=False`` and every metadata change
re-consolidates (:func:`finalize_cube` always does), so an interrupted append only leaves a
stale cache that the next finalize repairs. With CF decoding (the xarray default) ``landcover``
and ``confidence`` read as float with NaN for no data, and ``tile_done`` as NaN/1; open with
``mask_and_scale=False`` (:func:`open_cube` has the switch) to keep uint8.

Time steps are appended in order: a step older than the store's last one is refused (write it to
a new store); a step already present is resumed (only unfinished tiles are listed to do).
One process at a time may call :func:`prepare_cube`/:func:`finalize_cube` on a store; any number
may call :func:`write_tile` for distinct tiles.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import dask.array as da
import numpy as np
import odc.geo.xr
import rioxarray  # noqa: F401  (registers the .rio accessor on opened cubes)
import xarray as xr
import zarr
from odc.geo import CRS

from tasks._errors import InputError, StoreMismatchError
from tasks._grid import GridSpec

logger = logging.getLogger(__name__)

ZARR_FORMAT = 2
"""Zarr format of every cube (v2 + consolidated metadata; see the module docstring)."""
NODATA = 255
"""Fill value of ``landcover`` and ``confidence``: no data, or tile not written yet."""
_TIME_ENCODING = {
    "units": "seconds since 1970-01-01",
    "calendar": "proleptic_gregorian",
    "dtype": "int64",
}
_RESERVED_ATTRS = frozenset(
    {"title", "Conventions", "classes", "grid", "proj:code", "proj:wkt2", "spatial:dimensions",
     "spatial:transform", "spatial:shape", "spatial:bbox", "software", "software_version",
     "created", "time_steps"}
)  # fmt: skip


@dataclass(frozen=True)
class ClassTable:
    """The class list of a cube: label value ``i`` is ``names[i]``."""

    names: tuple[str, ...]
    """One display name per class, e.g. ``("background", "bareland", ...)``."""
    synonyms: tuple[tuple[str, ...], ...]
    """Prompt words per class; the first one is the display name."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "synonyms", tuple(tuple(s) for s in self.synonyms))
        _check_classes(self.names, self.synonyms)
        words = self._words()
        if len(set(words)) != len(words):
            raise InputError(
                f"class names {self.names!r} give duplicate CF flag words {words!r} "
                "(spaces become '_', other symbols are dropped); rename the classes"
            )

    @classmethod
    def from_synonyms(cls, synonyms: list[list[str]] | tuple[tuple[str, ...], ...]) -> ClassTable:
        """Build the table from prompt words per class (first word = display name)."""
        return cls(tuple(s[0] if s else "" for s in synonyms), tuple(tuple(s) for s in synonyms))

    @property
    def flag_values(self) -> np.ndarray:
        """CF ``flag_values``: ``uint8`` 0..n-1."""
        return np.arange(len(self.names), dtype=np.uint8)

    @property
    def flag_meanings(self) -> str:
        """CF ``flag_meanings``: blank-separated CF-safe words, one per class."""
        return " ".join(self._words())

    @property
    def colors(self) -> tuple[str, ...]:
        """Hex colour per class, the same as the quicklooks (:func:`tasks.render.class_colors`)."""
        from tasks.render import class_colors  # lazy: matplotlib is not needed to write tiles

        return tuple(class_colors(self.names))

    def to_attrs(self) -> list[dict[str, Any]]:
        """JSON form stored in the group attribute ``classes``."""
        return [
            {"value": i, "name": n, "synonyms": list(s), "color": c}
            for i, (n, s, c) in enumerate(zip(self.names, self.synonyms, self.colors, strict=True))
        ]

    def _words(self) -> list[str]:
        return [re.sub(r"[^0-9A-Za-z_-]", "", re.sub(r"\s+", "_", n.strip())) for n in self.names]


@dataclass(frozen=True)
class TimeStep:
    """One period of the cube."""

    time: str
    """ISO date of the period start: the ``time`` coordinate value."""
    end: str
    """ISO date of the period end."""
    items: tuple[str, ...]
    """STAC item ids used for this step."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        start, end = _parse_time(self.time, "step.time"), _parse_time(self.end, "step.end")
        if end < start:
            raise InputError(f"step.end {self.end!r} is before step.time {self.time!r}; swap them")
        if not all(isinstance(i, str) and i for i in self.items):
            raise InputError(f"step.items must be non-empty strings (STAC ids), got {self.items!r}")

    @property
    def time64(self) -> np.datetime64:
        """The time coordinate value."""
        return _parse_time(self.time, "step.time")

    def to_attrs(self) -> dict[str, Any]:
        """JSON form of the step in the ``time_steps`` group attribute."""
        return {"time": self.time, "end": self.end, "items": list(self.items)}


@dataclass(frozen=True)
class CubePlan:
    """What :func:`prepare_cube` left to do for one time step."""

    store: str
    """Store path or fsspec URL."""
    time_index: int
    """Index of the step on the ``time`` axis."""
    chunk: int
    """Zarr chunk (tile) size in pixels."""
    n_tiles: tuple[int, int]
    """(rows, cols) of tiles (chunks)."""
    todo: tuple[tuple[int, int], ...]
    """(tile_row, tile_col) still to write, row-major."""
    already_complete: bool
    """True when every tile of the step is written (nothing to do, store untouched)."""


def prepare_cube(
    store: str,
    grid: GridSpec,
    classes: ClassTable,
    step: TimeStep,
    provenance: dict,
    chunk: int = 1024,
) -> CubePlan:
    """Create the store or add/resume a time step, and list the tiles still to write.

    Args:
        store: Local path or fsspec URL of the Zarr store.
        grid: Output grid (CRS, resolution in CRS units, bounds).
        classes: Class table; label value ``i`` means ``classes.names[i]``.
        step: The time step to write.
        provenance: JSON-serialisable run metadata (prompts, templates, model ids, weight hashes,
            run id, ...), stored at top level and in the step's ``time_steps`` record.
        chunk: Tile and Zarr chunk size in pixels (1 x chunk x chunk per chunk).

    Returns:
        The plan: time index, tile grid and the tiles not yet done.

    Raises:
        InputError: Bad ``chunk`` or ``provenance``.
        StoreMismatchError: The existing store has another grid, chunking or class table, holds
            this step with other items, or ends after ``step.time``. Nothing is written then.
    """
    _check_chunk(chunk)
    _check_provenance(provenance)
    n_tiles = tuple(grid.tiles(chunk).shape.yx)
    template = _template(grid, classes, step, chunk, n_tiles)
    existing = _read_store(store)
    if existing is None:
        template.attrs = _group_attrs(grid, classes, step, provenance)
        template.to_zarr(
            store, mode="w-", compute=False, zarr_format=ZARR_FORMAT, consolidated=True
        )
        logger.info("created cube %s for %s (%d x %d tiles)", store, step.time, *n_tiles)
        return _plan(store, 0, chunk, n_tiles, _all_tiles(n_tiles))
    _check_store_matches(store, existing, grid, classes, chunk)
    times = existing["time"].values
    hits = np.flatnonzero(times == step.time64)
    if hits.size:
        return _resume(store, existing, int(hits[0]), step, chunk, n_tiles)
    if times.size and step.time64 < times[-1]:
        raise StoreMismatchError(
            f"step.time {step.time!r} is before the last time step in {store!r} "
            f"({np.datetime_as_string(times[-1], unit='D')}); time steps are appended in order. "
            "Write this period to a new store (--store)."
        )
    _append_step(store, existing, template, step, provenance)
    logger.info("appended %s to cube %s as time index %d", step.time, store, times.size)
    return _plan(store, int(times.size), chunk, n_tiles, _all_tiles(n_tiles))


def write_tile(
    store: str,
    time_index: int,
    tile: tuple[int, int],
    labels: np.ndarray,
    confidence: np.ndarray,
    chunk: int,
) -> None:
    """Write one tile (exactly one Zarr chunk per variable), then mark it done.

    Args:
        store: Store path or URL prepared by :func:`prepare_cube`.
        time_index: Index on the ``time`` axis (``CubePlan.time_index``).
        tile: ``(tile_row, tile_col)``.
        labels: ``uint8`` class ids ``[h, w]``, 255 = no data; ``(h, w)`` is the tile's shape in
            the grid (smaller than ``chunk`` on the last row/column).
        confidence: Same shape; either float maximum class probability in 0..1 (NaN = no data)
            or already-encoded ``uint8`` in 0..100 (255 = no data). Forced to 255 where
            ``labels`` is no data.
        chunk: Tile size in pixels; must equal the store's chunking.

    Raises:
        InputError: Tile or time index out of range, wrong chunk, shape, dtype or value range.
            Checked before anything is written.
    """
    meta = zarr.open_array(store, path="landcover", mode="r")
    region = _tile_region(store, meta, time_index, tile, chunk)
    shape = (region["y"].stop - region["y"].start, region["x"].stop - region["x"].start)
    _check_labels(labels, shape, len(meta.attrs.get("flag_values", [])))
    conf = _encode_confidence(confidence, shape)
    conf[labels == NODATA] = NODATA
    dims = ("time", "y", "x")
    data = xr.Dataset({"landcover": (dims, labels[None]), "confidence": (dims, conf[None])})
    data.to_zarr(store, region=region, mode="r+", consolidated=False)
    zarr.open_array(store, path="tile_done", mode="r+")[(time_index, *tile)] = 1


def is_tile_done(store: str, time_index: int, tile: tuple[int, int]) -> bool:
    """Whether the tile's data is completely written (its completion record is set).

    Raises:
        InputError: ``time_index`` or ``tile`` out of range.
    """
    done = zarr.open_array(store, path="tile_done", mode="r")
    _check_index(store, done.shape, time_index, tile)
    return bool(done[(time_index, *tile)] == 1)


def finalize_cube(store: str, time_index: int) -> dict[str, int]:
    """Check that a time step is complete and record its class pixel counts.

    Writes ``class_pixel_counts`` into the step's ``time_steps`` record and re-consolidates the
    metadata (healing any stale consolidated copy).

    Returns:
        Pixel count per class name for that step (no-data pixels are not counted).

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
            f"time index {time_index} of {store!r} has {len(missing)} tile(s) not written yet, "
            f"e.g. {[tuple(map(int, t)) for t in missing[:5]]}; rerun the flow to write them"
        )
    names = [c["name"] for c in group.attrs["classes"]]
    hist = _histogram(group["landcover"], time_index)
    counts = {name: int(hist[i]) for i, name in enumerate(names)}
    when = _read_store(store)["time"].values[time_index]
    records = [dict(r) for r in group.attrs.get("time_steps", [])]
    found = _record_index(records, when)
    if found is None:  # only after an interrupted append; keep the counts anyway
        records.append({"time": np.datetime_as_string(when, unit="s")})
        found = len(records) - 1
    if records[found].get("class_pixel_counts") != counts:
        records[found]["class_pixel_counts"] = counts
        group.attrs["time_steps"] = records
    zarr.consolidate_metadata(store, zarr_format=ZARR_FORMAT)
    logger.info("finalized cube %s time index %d: %r", store, time_index, counts)
    return counts


def open_cube(store: str, *, mask_and_scale: bool = True) -> xr.Dataset:
    """Open a cube lazily with its CRS decoded (``.rio.crs`` works).

    Args:
        store: Store path or URL.
        mask_and_scale: CF decoding; True turns fill values into NaN (float), False keeps uint8.
    """
    return xr.open_zarr(store, decode_coords="all", mask_and_scale=mask_and_scale)


# --- template and attributes ---------------------------------------------------------------


def _template(
    grid: GridSpec, classes: ClassTable, step: TimeStep, chunk: int, n_tiles: tuple[int, ...]
) -> xr.Dataset:
    """One time step of the cube as lazy fill values, with final chunks, attrs and encoding."""
    coords: dict[str, Any] = dict(odc.geo.xr.xr_coords(grid.geobox, crs_coord_name="spatial_ref"))
    time = np.array([step.time64], dtype="datetime64[ns]")
    coords["time"] = xr.Variable("time", time, encoding=dict(_TIME_ENCODING))
    shape, chunks = (1, *grid.shape), (1, chunk, chunk)
    ds = xr.Dataset(coords=coords)
    for name, attrs in (("landcover", _landcover_attrs(classes)), ("confidence", _CONF_ATTRS)):
        fill = da.full(shape, NODATA, dtype=np.uint8, chunks=chunks)
        ds[name] = (("time", "y", "x"), fill, attrs)
        ds[name].attrs["grid_mapping"] = "spatial_ref"
        ds[name].encoding = {"chunks": chunks, "_FillValue": NODATA}
    done = da.zeros((1, *n_tiles), dtype=np.uint8, chunks=1)
    ds["tile_done"] = (("time", "tile_row", "tile_col"), done, _DONE_ATTRS)
    ds["tile_done"].encoding = {"chunks": (1, 1, 1), "_FillValue": 0}
    return ds


_CONF_ATTRS = {
    "long_name": "classification confidence: 100 x maximum class probability",
    "units": "percent",
    "valid_range": [0, 100],
}
_DONE_ATTRS = {
    "long_name": "tile completion record: 1 once the tile's chunks are written",
    "flag_values": [1],
    "flag_meanings": "done",
    "comment": "one element per chunk of landcover/confidence; fill (0) = not written yet",
}


def _landcover_attrs(classes: ClassTable) -> dict[str, Any]:
    colors = classes.colors
    stac = [
        {"value": i, "name": w, "description": n, "color_hint": c.lstrip("#").upper()}
        for i, (w, n, c) in enumerate(zip(classes._words(), classes.names, colors, strict=True))
    ]
    return {
        "long_name": "land cover class",
        "flag_values": classes.flag_values,
        "flag_meanings": classes.flag_meanings,
        "flag_colors": " ".join(colors),
        "classification:classes": stac,
    }


def _group_attrs(
    grid: GridSpec, classes: ClassTable, step: TimeStep, provenance: dict
) -> dict[str, Any]:
    """Group attributes of a new store."""
    geobox, crs = grid.geobox, CRS(grid.crs)
    affine = geobox.affine
    return {
        **provenance,
        "title": "terrawatch land cover",
        "Conventions": "CF-1.10",
        "classes": classes.to_attrs(),
        "grid": grid.to_dict(),
        "proj:code": f"EPSG:{crs.epsg}" if crs.epsg else None,
        "proj:wkt2": crs.to_wkt(),
        "spatial:dimensions": ["y", "x"],
        "spatial:transform": [affine.a, affine.b, affine.c, affine.d, affine.e, affine.f],
        "spatial:shape": list(grid.shape),
        "spatial:bbox": list(geobox.extent.boundingbox),
        "software": "terrawatch",
        "software_version": _software_version(),
        "created": _now(),
        "time_steps": [_step_record(step, provenance)],
    }


def _step_record(step: TimeStep, provenance: dict) -> dict[str, Any]:
    return {**step.to_attrs(), "created": _now(), "provenance": provenance}


def _software_version() -> str:
    try:
        return version("terrawatch")
    except PackageNotFoundError:  # running from a source checkout that is not installed
        return "unknown (not installed)"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- existing stores -------------------------------------------------------------------------


def _read_store(store: str) -> xr.Dataset | None:
    """The store's metadata (lazy, not consolidated), or None when there is no store."""
    try:
        return xr.open_zarr(store, consolidated=False, chunks=None, mask_and_scale=False)
    except FileNotFoundError:
        return None


def _check_store_matches(
    store: str, ds: xr.Dataset, grid: GridSpec, classes: ClassTable, chunk: int
) -> None:
    """Raise StoreMismatchError listing every difference between the store and the request."""
    missing = {"landcover", "confidence", "tile_done"} - set(ds.variables)
    if missing:
        raise StoreMismatchError(
            f"{store!r} is not a terrawatch land-cover cube (missing {sorted(missing)!r}); "
            "pass a new --store path"
        )
    diffs = []
    stored_crs = ds.attrs.get("proj:wkt2")
    if stored_crs is None or CRS(stored_crs) != CRS(grid.crs):
        diffs.append(f"CRS {ds.attrs.get('proj:code') or stored_crs!r} vs {grid.crs!r}")
    transform = list(grid.geobox.affine)[:6]
    stored_transform = np.asarray(ds.attrs.get("spatial:transform", []), dtype=float)
    if stored_transform.shape != (6,) or not np.allclose(stored_transform, transform, rtol=1e-12):
        diffs.append(f"transform {ds.attrs.get('spatial:transform')!r} vs {transform!r}")
    if tuple(ds["landcover"].shape[1:]) != tuple(grid.shape):
        diffs.append(f"shape (y, x) {tuple(ds['landcover'].shape[1:])!r} vs {tuple(grid.shape)!r}")
    stored_chunk = tuple(ds["landcover"].encoding.get("chunks", ()))[1:]
    if stored_chunk != (chunk, chunk):
        diffs.append(f"chunk {stored_chunk!r} vs {(chunk, chunk)!r}")
    stored = [(c["name"], tuple(c["synonyms"])) for c in ds.attrs.get("classes", [])]
    wanted = list(zip(classes.names, classes.synonyms, strict=True))
    if stored != wanted:
        diffs.append(f"classes {stored!r} vs {wanted!r}")
    if diffs:
        raise StoreMismatchError(
            f"existing store {store!r} does not match this run (store vs requested): "
            + "; ".join(diffs)
            + ". Write to a new store (--store), or rerun with the store's grid, chunk and classes "
            "(its 'grid' and 'classes' attributes)."
        )


def _resume(
    store: str, ds: xr.Dataset, index: int, step: TimeStep, chunk: int, n_tiles: tuple[int, ...]
) -> CubePlan:
    """Plan for a step already in the store: only the tiles whose record is not set."""
    records = ds.attrs.get("time_steps", [])
    found = _record_index(records, step.time64)
    record = records[found] if found is not None else {}
    same = _parse_time(record.get("end", step.end), "end") == _parse_time(step.end, "step.end")
    if not same or record.get("items", list(step.items)) != list(step.items):
        raise StoreMismatchError(
            f"time step {step.time!r} is already in {store!r} with end {record.get('end')!r} and "
            f"items {record.get('items')!r}, but this run asks for end {step.end!r} and items "
            f"{list(step.items)!r}; rerun with the recorded items, or write to a new store"
        )
    done = np.asarray(ds["tile_done"][index].values) == 1
    todo = tuple((int(r), int(c)) for r, c in np.argwhere(~done))
    logger.info("cube %s step %s: %d of %d tiles to do", store, step.time, len(todo), done.size)
    return _plan(store, index, chunk, n_tiles, todo)


def _append_step(
    store: str, ds: xr.Dataset, template: xr.Dataset, step: TimeStep, provenance: dict
) -> None:
    """Append one lazy time step (metadata only) and its record, re-consolidating."""
    template = template.drop_vars(["x", "y"])
    times = ds["time"].values
    records = [  # drop a record left by an append that failed before the resize
        r for r in ds.attrs.get("time_steps", []) if (times == _parse_time(r["time"], "time")).any()
    ]
    kept = {k: v for k, v in ds.attrs.items() if k in _RESERVED_ATTRS}
    kept["time_steps"] = [*records, _step_record(step, provenance)]
    template.attrs = {**provenance, **kept}
    # "a-": resize the time axis only; variables without a time dim are left untouched
    template.to_zarr(store, mode="a-", append_dim="time", compute=False, consolidated=True)


# --- tiles -----------------------------------------------------------------------------------


def _tile_region(
    store: str, meta: zarr.Array, time_index: int, tile: tuple[int, int], chunk: int
) -> dict[str, slice]:
    """The region of one tile, after checking chunk, time index and tile against the store."""
    if tuple(meta.chunks[1:]) != (chunk, chunk):
        raise InputError(
            f"chunk={chunk!r} but {store!r} is chunked {tuple(meta.chunks[1:])!r}; pass the "
            "plan's chunk (CubePlan.chunk)"
        )
    n_tiles = tuple(math.ceil(n / chunk) for n in meta.shape[1:])
    _check_index(store, (meta.shape[0], *n_tiles), time_index, tile)
    (row, col), (height, width) = tile, meta.shape[1:]
    return {
        "time": slice(time_index, time_index + 1),
        "y": slice(row * chunk, min((row + 1) * chunk, height)),
        "x": slice(col * chunk, min((col + 1) * chunk, width)),
    }


def _check_index(
    store: str, shape: tuple[int, ...], time_index: int, tile: tuple[int, int]
) -> None:
    """Check a (time_index, tile) against a ``tile_done``-shaped (time, rows, cols)."""
    if not 0 <= time_index < shape[0]:
        raise InputError(
            f"time_index {time_index!r} is out of range for {store!r}, which has {shape[0]} time "
            "step(s); use CubePlan.time_index from prepare_cube"
        )
    if len(tile) != 2 or not all(0 <= t < n for t, n in zip(tile, shape[1:], strict=True)):
        raise InputError(
            f"tile {tile!r} is outside the {tuple(shape[1:])!r} (rows, cols) tiles of {store!r}; "
            "use a tile from CubePlan.todo"
        )


def _check_labels(labels: np.ndarray, shape: tuple[int, int], n_classes: int) -> None:
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.shape != shape:
        raise InputError(
            f"labels must be a uint8 numpy array of this tile's shape {shape!r}, got "
            f"{type(labels).__name__} {getattr(labels, 'dtype', None)} "
            f"{getattr(labels, 'shape', None)!r}; crop to the tile and cast with .astype(np.uint8)"
        )
    bad = np.unique(labels[(labels >= n_classes) & (labels != NODATA)])
    if bad.size:
        raise InputError(
            f"labels hold value(s) {bad[:10].tolist()!r} but the cube has {n_classes} classes "
            f"(0..{n_classes - 1}) and no-data {NODATA}; map them to class ids or {NODATA}"
        )


def _encode_confidence(confidence: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 percent from float probabilities (NaN = no data) or pass-through uint8."""
    conf = np.asarray(confidence)
    if conf.shape != shape:
        raise InputError(f"confidence shape {conf.shape!r} must equal the tile shape {shape!r}")
    if conf.dtype == np.uint8:
        if np.any((conf > 100) & (conf != NODATA)):
            raise InputError(
                f"uint8 confidence must be percent 0..100 or {NODATA} (no data), got max "
                f"{int(conf.max())}; pass float probabilities in 0..1 instead"
            )
        return conf.copy()
    if not np.issubdtype(conf.dtype, np.floating):
        raise InputError(
            f"confidence dtype {conf.dtype} is not supported; pass float probabilities in 0..1 "
            "or uint8 percent"
        )
    valid = ~np.isnan(conf)
    if np.any(valid & ((conf < 0) | (conf > 1))):
        raise InputError(
            f"confidence probabilities must lie in 0..1 (NaN = no data), got range "
            f"{np.nanmin(conf)!r}..{np.nanmax(conf)!r}"
        )
    out = np.full(shape, NODATA, np.uint8)
    out[valid] = np.rint(conf[valid].astype(np.float64) * 100)
    return out


def _histogram(landcover: zarr.Array, time_index: int) -> np.ndarray:
    """Pixel count per label value of one time step, one chunk row at a time."""
    hist = np.zeros(256, np.int64)
    rows = landcover.chunks[1]
    for y0 in range(0, landcover.shape[1], rows):
        block = np.asarray(landcover[time_index, y0 : y0 + rows, :])
        hist += np.bincount(block.ravel(), minlength=256)
    return hist


# --- small checks ----------------------------------------------------------------------------


def _plan(store: str, index: int, chunk: int, n_tiles: tuple[int, ...], todo: tuple) -> CubePlan:
    rows, cols = n_tiles
    return CubePlan(store, index, chunk, (rows, cols), tuple(todo), already_complete=not todo)


def _all_tiles(n_tiles: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    return tuple((r, c) for r in range(n_tiles[0]) for c in range(n_tiles[1]))


def _record_index(records: list[dict], when: np.datetime64) -> int | None:
    """Position of the ``time_steps`` record of time ``when``, or None."""
    for i, record in enumerate(records):
        if _parse_time(record["time"], "time_steps[].time") == when:
            return i
    return None


def _check_chunk(chunk: int) -> None:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 16:
        raise InputError(f"chunk must be an int >= 16 (pixels per tile side), got {chunk!r}")


def _check_provenance(provenance: dict) -> None:
    if not isinstance(provenance, dict):
        raise InputError(f"provenance must be a dict, got {type(provenance).__name__}")
    clash = sorted(_RESERVED_ATTRS & set(provenance))
    if clash:
        raise InputError(
            f"provenance keys {clash!r} clash with cube attributes; rename them "
            f"(reserved: {sorted(_RESERVED_ATTRS)!r})"
        )
    try:
        json.dumps(provenance, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"provenance must be JSON-serialisable (str, numbers, lists, dicts): {err}; convert "
            "paths and arrays to str/list"
        ) from err


def _check_classes(names: tuple[str, ...], synonyms: tuple[tuple[str, ...], ...]) -> None:
    if not 1 <= len(names) < NODATA:
        raise InputError(f"classes: need 1..{NODATA - 1} names (255 = no data), got {len(names)}")
    if not all(isinstance(n, str) and n.strip() for n in names) or len(set(names)) != len(names):
        raise InputError(f"class names must be unique non-empty strings, got {names!r}")
    if len(synonyms) != len(names):
        raise InputError(
            f"classes: {len(names)} names but {len(synonyms)} synonym lists; give one per class"
        )
    for name, words in zip(names, synonyms, strict=True):
        if not words or words[0] != name or not all(isinstance(w, str) and w for w in words):
            raise InputError(
                f"synonyms for class {name!r} must be non-empty strings starting with the name "
                f"itself, got {words!r}"
            )


def _parse_time(value: str, name: str) -> np.datetime64:
    """ISO date or datetime (a time zone is converted to UTC) as naive ``datetime64[ns]``."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be an ISO date like '2024-06-01', got {value!r}") from err
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(when, "ns")
