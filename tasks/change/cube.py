"""Change Zarr cube: one time step per image pair, change flag and from/to classes per pixel.

Store layout (one store per change query, region and CRS), dims ``(time, y, x)``; the
conventions and code are the shared ones (:mod:`tasks.core.cube_store`: Zarr v2 + consolidated
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
tiles are listed); the same t2 with another t1 or other items is refused. The schema is
:data:`CHANGE_CUBE`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np
import zarr

from terrawatch.errors import InputError, InputNotFoundError
from terrawatch.models.classes import ClassNames
from terrawatch.tasks.core.cube_store import (
    open_finished_step,
    prepare_step,
    read_store,
    record_index,
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
    check_earlier_step,
)
from terrawatch.tasks.core.grid import GridSpec

logger = logging.getLogger(__name__)

TITLE = "terrawatch change"
CHANGE_VARS = ("changed", "class_from", "class_to")
_CHANGED_ATTRS = {
    "long_name": "land change between the earlier (t1) and the later (t2) period",
    "flag_values": np.array([0, 1], np.uint8),
    "flag_meanings": "unchanged changed",
    "comment": "255 (_FillValue) = no valid pixel at t1 or t2, or tile not written yet",
}


def _classes_of_changed_pixels(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    unchanged = arrays["changed"] != 1
    return {
        "changed": arrays["changed"],
        "class_from": np.where(unchanged, NODATA, arrays["class_from"]).astype(np.uint8),
        "class_to": np.where(unchanged, NODATA, arrays["class_to"]).astype(np.uint8),
    }


CHANGE_CUBE = CubeKind(
    name="change cube",
    title=TITLE,
    variables=(
        CubeVariable("changed", _CHANGED_ATTRS, values=2),
        CubeVariable("class_from", {"long_name": "class at t1 of changed pixels"}, classes=True),
        CubeVariable("class_to", {"long_name": "class at t2 of changed pixels"}, classes=True),
    ),
    times=(
        TimeCoord("time", attrgetter("time64"), {"long_name": "start of the later period (t2)"}),
        TimeCoord(
            "time_before",
            attrgetter("before.time64"),
            {"long_name": "start of the earlier period (t1)"},
        ),
    ),
    data_var="changed",
    done_comment="one element per chunk of changed/class_from/class_to; fill (0) = not written",
    label="change cube",
    log_name="change cube",
    unit="pair",
    out_of_order="the later period starts {time!r}, before the last pair in {store!r} ({last}); "
    "pairs are appended in order of their later period. Write this pair to a new store (--store).",
    already_in="a pair with the later period starting {time!r} is already in {store!r} as "
    "{stored!r}, but this run asks for {wanted!r}; rerun with the recorded periods and items, or "
    "write to a new store",
    finish=_classes_of_changed_pixels,
)
"""The change cube: change flag and from/to classes per pixel and pair."""


@dataclass(frozen=True)
class ChangeStep(TimeStep):
    """One pair: the later period (``time``, ``end``, ``items``) and the earlier one."""

    before: TimeStep
    """The earlier period (t1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_earlier_step(
            self,
            "before",
            "the earlier period ({earlier.time}..{earlier.end}) must end before the later one "
            "starts ({step.time}); pass the earlier period as before",
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
    classes: ClassNames,
    step: ChangeStep,
    provenance: dict,
    chunk: int = 1024,
    *,
    replace: bool = False,
) -> CubePlan:
    """Create the store or add/resume a pair, and list the tiles still to write.

    Args:
        store: Local path or fsspec URL of the Zarr store.
        grid: Output grid shared by both dates.
        classes: Class table; ``class_from``/``class_to`` value ``i`` is ``classes.names[i]``.
        step: The pair to write.
        provenance: JSON-serialisable run metadata (change query, steps, run id, ...).
        chunk: Tile and Zarr chunk size in pixels.
        replace: Rewrite the step if the store has it (all tiles, new record); see
            :func:`~tasks.core.cube_store.prepare_step`.

    Raises:
        InputError: Bad ``chunk`` or ``provenance``.
        StoreMismatchError: The existing store is no change cube, has another grid, chunking or
            class table, holds this t2 unfinished with another t1 or items (see ``replace``), or
            ends after ``step.time``. Nothing is written then.
    """
    return prepare_step(store, grid, classes, step, provenance, chunk, CHANGE_CUBE, replace=replace)


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
    arrays = {"changed": changed, "class_from": class_from, "class_to": class_to}
    write_cube_tile(store, CHANGE_CUBE, time_index, tile, arrays, chunk)


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
    group = open_finished_step(store, time_index, "pair")
    names = [c["name"] for c in group.attrs["classes"]]
    counts = _count_changes(group, time_index, names)
    record = {
        "valid_pixels": counts.valid,
        "changed_pixels": counts.changed,
        "transition_pixel_counts": [list(t) for t in counts.transitions],
    }
    record_step(store, group, time_index, record)
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
    classes: ClassNames
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
    ds = read_store(store)
    if ds is None:
        raise InputNotFoundError(
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
        found = record_index(records, when)
        if found is None:
            raise InputError(
                f"from_cube={store!r} has no time_steps record for "
                f"{np.datetime_as_string(when, unit='D')}; rerun that land-cover period first"
            )
        record = records[found]
        steps.append(TimeStep(record["time"][:10], record["end"][:10], tuple(record["items"])))
    classes = ClassNames.from_attrs(ds.attrs["classes"])
    chunk = int(ds["landcover"].encoding["chunks"][1])
    return LandcoverPair(
        GridSpec.from_dict(ds.attrs["grid"]), classes, chunk, ChangeStep.of(*steps)
    )
