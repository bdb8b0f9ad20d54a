"""Flood Zarr cube: water before and after an event, the flooded mask and the sensor per pixel.

Store layout (one store per region and CRS; events appended in date order), dims
``(time, y, x)``; conventions and code shared (:mod:`tasks.core.cube_store`: Zarr v2 + consolidated
metadata, template first, chunk-aligned region writes, ``tile_done`` record, ``spatial_ref``):

- ``time``: the event date; ``pre_start`` (on ``time``) the first day of the pre-event window
  and ``post_end`` the last day of the post-event window (the pre-event window ends the day
  before the event, the post-event window starts on it).
- ``water_pre`` / ``water_post``: uint8 1 = water, 0 = not water, ``_FillValue`` 255 = no
  valid image in the window (or tile not written yet): the consensus of the members on the
  latest image before the event and on the post-event images (``water_post`` equals
  ``observed_water``). For segmenters, water is any class of the run's ``water_classes``.
- ``observed_water``: uint8 1 = water after the event by the ensemble's consensus
  (:mod:`tasks.flood.consensus`), 0 = not water, 255 = no member observed the pixel.
- ``reference_water``: uint8 1 = normal water (water in most scenes of the reference window, or
  before the event for the model members alone; or water in a reference product of the catalog,
  :mod:`tasks.flood.reference_product`), 0 = not, 255 = never observed before.
- ``exclusion``: uint8 bit flags (CF ``flag_masks``) where SAR cannot see water arrive: 1 =
  permanently low backscatter (dark in every reference scene), 2 urban and 4 dense forest (from
  a ``--landcover-cube``), 8 layover and 16 radar shadow (from a DEM in the catalog,
  :mod:`tasks.flood.terrain`); 0 = none.
- ``likelihood``: uint8 0..100 water likelihood (members' agreement and margins), 255 = none.
- ``source``: uint8 bit flags of the members that observed the pixel (1 threshold, 2
  alignearth, 4 optical); 0 = none.
- ``observed_at``: int64 seconds since 1970-01-01 UTC (CF time) of the post-event scene that
  saw the pixel; -1 (``_FillValue``) = none.
- ``flooded``: uint8 1 = ``observed_water & ~reference_water & ~exclusion``, 0 = not flooded,
  255 = unknown: no observation after the event, or water after it and no observation before.
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
``flooded.sum()`` counts flooded pixels; ``mask_and_scale=False`` keeps uint8. The schema is
:data:`FLOOD_CUBE`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np
import zarr

from terrawatch.errors import InputError
from terrawatch.models.classes import ClassNames
from terrawatch.tasks.core.cube_store import (
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
    check_earlier_step,
    check_tile_dtype,
)
from terrawatch.tasks.core.grid import GridSpec

logger = logging.getLogger(__name__)

TITLE = "terrawatch flood"
SOURCE_NONE, SOURCE_SAR, SOURCE_OPTICAL = 0, 1, 2
SOURCES = ("none", "sar", "optical")
"""Meaning of the ``source_*`` values 0, 1, 2."""
WATER_VARS = ("water_pre", "water_post")
SOURCE_VARS = ("source_pre", "source_post")
FLOOD_VARS = (*WATER_VARS, "flooded", *SOURCE_VARS)
ENSEMBLE_VARS = ("observed_water", "reference_water", "exclusion", "likelihood", "source")
"""The ensemble's layers (all uint8), besides ``observed_at`` (int64)."""
MEMBER_MEANINGS = "threshold alignearth optical"
"""Meaning of the ``source`` bits 1, 2, 4 (:data:`tasks.flood.consensus.MEMBERS`)."""
EXCLUSION_MEANINGS = "low_backscatter urban dense_forest layover radar_shadow"
"""Meaning of the ``exclusion`` bits 1, 2, 4, 8, 16."""
NO_TIME = -1
"""``observed_at`` where no post-event scene saw the pixel."""

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

_OBSERVED_ATTRS = {
    "long_name": "water observed after the event (consensus of the members)",
    "flag_values": np.array([0, 1], np.uint8),
    "flag_meanings": "not_water water",
    "comment": "majority of the members that observed the pixel (source); 255 (_FillValue) = "
    "no member observed it, or tile not written yet",
}
_REFERENCE_ATTRS = {
    "long_name": "reference (normal) water before the event",
    "flag_values": np.array([0, 1], np.uint8),
    "flag_meanings": "not_reference_water reference_water",
    "comment": "threshold member: water in most SAR scenes of the reference window "
    "(reference_days); model members alone: water before the event; or water in a reference "
    "product of the catalog (JRC GSW occurrence >= 50 %, ESA WorldCover class 80; provenance "
    "reference_products); 255 (_FillValue) = never observed before the event",
}
_EXCLUSION_ATTRS = {
    "long_name": "where SAR cannot see flood water",
    "flag_masks": np.array([1, 2, 4, 8, 16], np.uint8),
    "flag_meanings": EXCLUSION_MEANINGS,
    "comment": "bit 1: below the water threshold in every reference scene (sand, tarmac, radar "
    "shadow, and permanent water); bits 2 and 4: urban and forest classes of the land-cover "
    "cube given (--landcover-cube); bits 8 and 16: layover and radar shadow from the catalog's "
    "DEM and the SAR viewing geometry; 0 = not excluded; 255 (_FillValue) = tile not written "
    "yet",
}
_LIKELIHOOD_ATTRS = {
    "long_name": "water likelihood after the event",
    "units": "percent",
    "valid_range": np.array([0, 100], np.uint8),
    "comment": "water probability pooled over the members that observed the pixel (sum of "
    "their log-odds): agreement and wide margins raise it, disagreement lowers it; 255 "
    "(_FillValue) = no member observed the pixel",
}
_MEMBERS_ATTRS = {
    "long_name": "ensemble members that observed the pixel",
    "flag_masks": np.array([1, 2, 4], np.uint8),
    "flag_meanings": MEMBER_MEANINGS,
    "comment": "0 = no member observed the pixel; 255 (_FillValue) = tile not written yet",
}
_TIME_ATTRS = {
    "long_name": "acquisition time of the post-event scene that observed the pixel",
    "units": "seconds since 1970-01-01 00:00:00",
    "calendar": "proleptic_gregorian",
    "comment": "-1 (_FillValue) = no post-event scene observed the pixel, or tile not written",
}


@dataclass(frozen=True)
class FloodStep(TimeStep):
    """One event: the post-event window (``time`` = event date, ``end``, ``items``) and ``pre``."""

    pre: TimeStep
    """The pre-event window; it must end before the event date."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_earlier_step(
            self,
            "pre",
            "the pre-event window ({earlier.time}..{earlier.end}) must end before the event date "
            "{step.time!r}; end it the day before the event",
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


def flooded_mask(
    water_pre: np.ndarray, water_post: np.ndarray, exclusion: np.ndarray | None = None
) -> np.ndarray:
    """``flooded`` = ``water_post & ~water_pre & ~exclusion`` (255 cases: module docstring).

    ``water_pre`` is the normal water (``reference_water``), ``water_post`` the water observed
    after the event; an excluded pixel is never flooded.
    """
    out = np.full(water_post.shape, NODATA, np.uint8)
    out[water_post == 0] = 0
    out[(water_post == 1) & (water_pre == 1)] = 0
    out[(water_post == 1) & (water_pre == 0)] = 1
    if exclusion is not None:
        out[(exclusion != 0) & (water_post != NODATA)] = 0
    return out


def _flooded_from_water(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check that water and source agree on where there is an image; add ``flooded``."""
    for water, source in zip(WATER_VARS, SOURCE_VARS, strict=True):
        if np.any((arrays[water] == NODATA) != (arrays[source] == SOURCE_NONE)):
            raise InputError(
                f"{water} must be 255 exactly where {source} is 0 (no image); build them with "
                "water_mask(labels, water, source)"
            )
    observed, members = arrays["observed_water"], arrays["source"]
    if np.any((observed == NODATA) != (members == 0)):
        raise InputError(
            "observed_water must be 255 exactly where source is 0 (no member observed the pixel)"
        )
    flooded = flooded_mask(arrays["reference_water"], observed, arrays["exclusion"])
    return {**arrays, "flooded": flooded}


def _encode_time(name: str, array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``observed_at``: int64 seconds since 1970, -1 where no scene saw the pixel."""
    check_tile_dtype(name, array, shape, "int64")
    if np.any(array < NO_TIME):
        raise InputError(f"{name} holds negative times; use -1 where no scene saw the pixel")
    return array


# --- store ----------------------------------------------------------------------------------

_WATER_PRE, _WATER_POST = "water before the event", "water after the event"
FLOOD_CUBE = CubeKind(
    name="flood cube",
    title=TITLE,
    variables=(
        CubeVariable("water_pre", {**_WATER_ATTRS, "long_name": _WATER_PRE}, values=2),
        CubeVariable("water_post", {**_WATER_ATTRS, "long_name": _WATER_POST}, values=2),
        CubeVariable("flooded", _FLOODED_ATTRS, derived=True),
        CubeVariable(
            "source_pre",
            {**_SOURCE_ATTRS, "long_name": "sensor of water_pre"},
            values=len(SOURCES),
            nodata_ok=False,
            nodata=SOURCE_NONE,
        ),
        CubeVariable(
            "source_post",
            {**_SOURCE_ATTRS, "long_name": "sensor of water_post"},
            values=len(SOURCES),
            nodata_ok=False,
            nodata=SOURCE_NONE,
        ),
        CubeVariable("observed_water", _OBSERVED_ATTRS, values=2),
        CubeVariable("reference_water", _REFERENCE_ATTRS, values=2),
        CubeVariable("exclusion", _EXCLUSION_ATTRS, values=32, nodata=0),
        CubeVariable("likelihood", _LIKELIHOOD_ATTRS, values=101),
        CubeVariable("source", _MEMBERS_ATTRS, values=8, nodata_ok=False, nodata=0),
        CubeVariable(
            "observed_at",
            _TIME_ATTRS,
            encode=_encode_time,
            dtype="int64",
            fill_value=NO_TIME,
            nodata=NO_TIME,
        ),
    ),
    times=(
        TimeCoord(
            "time",
            attrgetter("time64"),
            {"long_name": "event date (first day of the post-event window)"},
        ),
        TimeCoord(
            "pre_start",
            attrgetter("pre.time64"),
            {"long_name": "first day of the pre-event window"},
        ),
        TimeCoord(
            "post_end", attrgetter("end64"), {"long_name": "last day of the post-event window"}
        ),
    ),
    data_var="flooded",
    done_comment="one element per chunk of the flood variables; fill (0) = not written yet",
    label="flood cube",
    log_name="flood cube",
    unit="event",
    out_of_order="event date {time!r} is before the last event in {store!r} ({last}); events are "
    "appended in date order. Write this event to a new store (--store).",
    already_in="event {time!r} is already in {store!r} as {stored!r}, but this run asks for "
    "{wanted!r}; rerun with the recorded windows and items, or write to a new store",
    finish=_flooded_from_water,
)
"""The flood cube: water before and after, flooded and the source sensor per pixel and event."""


def prepare_flood_cube(
    store: str,
    grid: GridSpec,
    classes: ClassNames,
    step: FloodStep,
    provenance: dict,
    chunk: int = 1024,
    *,
    replace: bool = False,
) -> CubePlan:
    """Create the store or add/resume an event, and list the tiles still to write.

    Args:
        store: Local path or fsspec URL of the Zarr store.
        grid: Output grid of both windows.
        classes: Class table of the segmenter (what ``water_classes`` index into).
        step: The event to write.
        provenance: JSON-serialisable run metadata (windows, items, water classes, models, ...).
        chunk: Tile and Zarr chunk size in pixels.
        replace: Rewrite the step if the store has it (all tiles, new record); see
            :func:`~tasks.core.cube_store.prepare_step`.

    Raises:
        InputError: Bad ``chunk`` or ``provenance``.
        StoreMismatchError: The existing store is no flood cube, has another grid, chunking or class
            table, holds this event unfinished with other windows or items (see ``replace``), or
            ends after it. Nothing is written then.
    """
    return prepare_step(store, grid, classes, step, provenance, chunk, FLOOD_CUBE, replace=replace)


def write_flood_tile(
    store: str,
    time_index: int,
    tile: tuple[int, int],
    water_pre: np.ndarray,
    water_post: np.ndarray,
    source_pre: np.ndarray,
    source_post: np.ndarray,
    chunk: int,
    **ensemble: np.ndarray,
) -> None:
    """Write one tile of one event (``flooded`` derived here), then mark it done.

    ``ensemble`` holds the ensemble's layers (``observed_water``, ``reference_water``,
    ``exclusion``, ``likelihood``, ``source``, ``observed_at``; see the module docstring).

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
    arrays = {
        "water_pre": water_pre,
        "water_post": water_post,
        "source_pre": source_pre,
        "source_post": source_post,
        **ensemble,
    }
    write_cube_tile(store, FLOOD_CUBE, time_index, tile, arrays, chunk)


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
    group = open_finished_step(store, time_index, "event")
    counts = _count(group, time_index)
    record_step(store, group, time_index, counts.to_attrs())
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
