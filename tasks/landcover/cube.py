"""Land-cover Zarr cube: metadata-only template, chunk-aligned tile writes, completion record.

Store layout (one store per product, region and CRS), dims ``(time, y, x)``:

- ``landcover``: uint8 class index with CF ``flag_values``/``flag_meanings``, ``flag_colors``
  and a STAC ``classification:classes`` mirror; ``_FillValue`` 255 = no data (or not yet written).
- ``confidence``: uint8 ``round(100 * max class probability)`` in 0..100, ``_FillValue`` 255.
  uint8 rather than float16: half the bytes, exact round-trip, and the same no-data rule as
  ``landcover``.
- ``probability`` (only in stores made with ``--probabilities``, :data:`~tasks.landcover.
  probability.PROBABILITY_CUBE`): uint8 percent per class, dims ``(time, class, y, x)``, with a
  ``class`` coordinate of the class names.
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
may call :func:`write_tile` for distinct tiles. The schema is :data:`LANDCOVER_CUBE`; the store
code is the shared one (:mod:`tasks.core.cube_store`).
"""

from __future__ import annotations

import logging
from operator import attrgetter

import numpy as np
import zarr

from terrawatch.errors import InputError
from terrawatch.models.classes import ClassNames
from terrawatch.tasks.core.cube_store import (
    ZARR_FORMAT,
    is_tile_done,
    open_cube,
    open_finished_step,
    prepare_step,
    record_step,
    write_cube_tile,
)
from terrawatch.tasks.core.cube_types import (
    NODATA,
    CubeKind,
    CubePlan,
    CubeVariable,
    TimeCoord,
    TimeStep,
)
from terrawatch.tasks.core.grid import GridSpec

__all__ = [
    "LANDCOVER_CUBE",
    "NODATA",
    "ZARR_FORMAT",
    "CubePlan",
    "TimeStep",
    "finalize_cube",
    "is_tile_done",
    "open_cube",
    "prepare_cube",
    "write_tile",
]

logger = logging.getLogger(__name__)

_CONF_ATTRS = {
    "long_name": "classification confidence: 100 x maximum class probability",
    "units": "percent",
    "valid_range": [0, 100],
}


def _encode_confidence(name: str, confidence: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 percent from float probabilities (NaN = no data) or pass-through uint8."""
    conf = np.asarray(confidence)
    if conf.shape != shape:
        raise InputError(f"{name} shape {conf.shape!r} must equal the tile shape {shape!r}")
    if conf.dtype == np.uint8:
        if np.any((conf > 100) & (conf != NODATA)):
            raise InputError(
                f"uint8 {name} must be percent 0..100 or {NODATA} (no data), got max "
                f"{int(conf.max())}; pass float probabilities in 0..1 instead"
            )
        return conf.copy()
    if not np.issubdtype(conf.dtype, np.floating):
        raise InputError(
            f"{name} dtype {conf.dtype} is not supported; pass float probabilities in 0..1 "
            "or uint8 percent"
        )
    valid = ~np.isnan(conf)
    if np.any(valid & ((conf < 0) | (conf > 1))):
        raise InputError(
            f"{name} probabilities must lie in 0..1 (NaN = no data), got range "
            f"{np.nanmin(conf)!r}..{np.nanmax(conf)!r}"
        )
    out = np.full(shape, NODATA, np.uint8)
    out[valid] = np.rint(conf[valid].astype(np.float64) * 100)
    return out


def _confidence_follows_labels(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    arrays["confidence"][arrays["landcover"] == NODATA] = NODATA
    return arrays


LANDCOVER_CUBE = CubeKind(
    name="land-cover cube",
    title="terrawatch land cover",
    variables=(
        CubeVariable("landcover", {"long_name": "land cover class"}, classes=True, label="labels"),
        CubeVariable("confidence", _CONF_ATTRS, encode=_encode_confidence),
    ),
    times=(TimeCoord("time", attrgetter("time64")),),
    data_var="landcover",
    done_comment="one element per chunk of landcover/confidence; fill (0) = not written yet",
    label="store",
    log_name="cube",
    unit="step",
    out_of_order="step.time {time!r} is before the last time step in {store!r} ({last}); time "
    "steps are appended in order. Write this period to a new store (--store).",
    already_in="time step {time!r} is already in {store!r} with end {found[end]!r} and items "
    "{found[items]!r}, but this run asks for end {wanted[end]!r} and items {wanted[items]!r}; "
    "rerun with the recorded items, or write to a new store",
    finish=_confidence_follows_labels,
)
"""The land-cover cube: class index and confidence per pixel and step."""


def prepare_cube(
    store: str,
    grid: GridSpec,
    classes: ClassNames,
    step: TimeStep,
    provenance: dict,
    chunk: int = 1024,
    *,
    replace: bool = False,
    kind: CubeKind = LANDCOVER_CUBE,
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
        replace: Rewrite the step if the store has it (all tiles, new record); see
            :func:`~tasks.core.cube_store.prepare_step`.
        kind: The cube's variables (``tasks.landcover.special.SPECIAL_CUBE`` adds the zero-shot
            map of a ``--refine special`` run).

    Returns:
        The plan: time index, tile grid and the tiles not yet done.

    Raises:
        InputError: Bad ``chunk`` or ``provenance``.
        StoreMismatchError: The existing store has another grid, chunking or class table, holds this
            step unfinished with other items (see ``replace``), or ends after ``step.time``. Nothing
            is written then.
    """
    return prepare_step(store, grid, classes, step, provenance, chunk, kind, replace=replace)


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
    arrays = {"landcover": labels, "confidence": confidence}
    write_cube_tile(store, LANDCOVER_CUBE, time_index, tile, arrays, chunk)


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
    group = open_finished_step(store, time_index, "time index")
    names = [c["name"] for c in group.attrs["classes"]]
    hist = _histogram(group["landcover"], time_index)
    counts = {name: int(hist[i]) for i, name in enumerate(names)}
    record_step(store, group, time_index, {"class_pixel_counts": counts})
    logger.info("finalized cube %s time index %d: %r", store, time_index, counts)
    return counts


def _histogram(landcover: zarr.Array, time_index: int) -> np.ndarray:
    """Pixel count per label value of one time step, one chunk row at a time."""
    hist = np.zeros(256, np.int64)
    rows = landcover.chunks[1]
    for y0 in range(0, landcover.shape[1], rows):
        block = np.asarray(landcover[time_index, y0 : y0 + rows, :])
        hist += np.bincount(block.ravel(), minlength=256)
    return hist
