"""Flood mapping on tiles: plan an event, then water before/after per chunk and the tile task.

Mirrors :mod:`tasks.plan` and :mod:`tasks.infer` for a pair of windows around an event date
(:mod:`tasks.flood_search`: the pre-event window ``[event - pre_days, event)``, the post-event
window ``[event, event + post_days]`` and their searches; its names stay importable from
here). Each side is a Sentinel-1 composite (optionally overridden by cloud-free optical
pixels); water is any class of a configurable water set, and ``flooded = water_post &
~water_pre`` (:mod:`tasks.flood_cube`). Tasks get references only; segmenters are loaded once
per worker process (:func:`tasks.infer.worker_model`).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks._errors import InputError
from tasks._grid import GridSpec
from tasks._worker_process import MODEL_TURN
from tasks.catalog import SearchResult, parse_aoi
from tasks.composite import best_pixel_composite
from tasks.cube import NODATA, ClassTable, CubePlan, TimeStep, is_tile_done
from tasks.flood_cube import (
    SOURCE_NONE,
    SOURCE_OPTICAL,
    SOURCE_SAR,
    FloodStep,
    prepare_flood_cube,
    water_mask,
    write_flood_tile,
)
from tasks.flood_search import (  # noqa: F401  (re-exported: flows, tests, tasks.chips)
    DEFAULT_CLASSES,
    DEFAULT_WATER_CLASSES,
    OPTICAL_COLLECTIONS,
    FloodWindows,
    SarOptions,
    Side,
    default_sar_collections,
    flood_windows,
    search_optical_window,
    search_optical_window_task,
    search_sar_window,
    search_sar_window_task,
    water_indices,
)
from tasks.infer import (
    RGB_BANDS,
    ModelSpec,
    core_within,
    read_composite,
    segment_array,
    tile_windows,
    worker_model,
)
from tasks.load import check_readable
from tasks.output_grid import default_resolution, grid_for_aoi
from tasks.plan import best_first
from tasks.sar import SarSummary, check_sar_items, check_sar_readable, load_sar, sar_composite
from tasks.tile_runner import TileResult, run_tiles

logger = logging.getLogger(__name__)

# --- plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloodSpec:
    """The segmenters of a flood run and the water classes; hashable."""

    sar: ModelSpec
    """Segmenter of the SAR composites (``sensor="sar"``: AlignEarth)."""
    water: tuple[int, ...]
    """Indices of the water classes in ``sar.classes``."""
    optical: ModelSpec | None = None
    """Segmenter of optical scenes (same classes), when optical scenes are used."""


@dataclass(frozen=True)
class Scenes:
    """The scenes of one side, in reading priority."""

    sar: tuple[dict, ...]
    """SAR items, by time."""
    optical: tuple[dict, ...] = ()
    """Cloud-free optical items, least cloudy first; empty for SAR only."""


@dataclass(frozen=True)
class FloodPlan:
    """What the tile tasks need: references only."""

    cube: CubePlan
    """Store, event index and tiles still to write."""
    grid: GridSpec
    """Output grid."""
    pre: Scenes
    """Scenes before the event."""
    post: Scenes
    """Scenes after the event."""
    sar: SarOptions
    """SAR options with the polarisations resolved."""
    summary: SarSummary
    """Orbit direction, polarisations and geometry common to all SAR scenes."""


def plan_flood(
    pre: SearchResult,
    post: SearchResult,
    windows: FloodWindows,
    spec: FloodSpec,
    sar: SarOptions,
    store: str,
    aoi: Any,
    pre_optical: SearchResult | None = None,
    post_optical: SearchResult | None = None,
    resolution: float | None = None,
    crs: str | None = None,
    chunk: int = 1024,
    run_id: str | None = None,
) -> FloodPlan:
    """Check both sides, derive the grid, open every asset, warm the models, prepare the cube.

    Raises:
        InputError: the two sides mix orbit directions, polarisations or geometries (they must
            be comparable), a bad chunk or grid, or an item lacks a band.
        FileNotFoundError, ValueError: an asset cannot be read.
    """
    if chunk < 64:
        raise InputError(f"chunk must be >= 64 pixels, got {chunk!r}")
    try:
        summary = check_sar_items([*pre.items, *post.items], sar.polarizations)
    except InputError as err:
        raise InputError(
            f"the pre- and post-event SAR scenes are not comparable, so water changes would be "
            f"geometry changes: {err}"
        ) from err
    sar = sar.resolved(summary)
    _, bbox = parse_aoi(aoi)
    first = post.items[0]
    grid = grid_for_aoi(
        bbox, resolution or default_resolution(first.get("collection", ""), first), crs
    )
    check_sar_readable([*pre.items, *post.items], sar.polarizations)
    optical = [best_first(r.items) if r else () for r in (pre_optical, post_optical)]
    if any(optical):
        check_readable([*optical[0], *optical[1]], RGB_BANDS)
    models, classes = _warm_models(spec, any(optical))
    sides = (Scenes(pre.items, optical[0]), Scenes(post.items, optical[1]))
    searches = (pre, post, pre_optical, post_optical)
    provenance = _provenance(windows, sides, classes, spec, sar, summary, models, searches)
    provenance["run_id"] = run_id or uuid.uuid4().hex
    step = FloodStep(
        windows.event,
        windows.post[1],
        _ids(sides[1]),
        TimeStep(windows.pre[0], windows.pre[1], _ids(sides[0])),
    )
    cube = prepare_flood_cube(store, grid, classes, step, provenance, chunk)
    logger.info(
        "flood grid %s %dx%d px at %g; %d of %d tiles to do",
        grid.crs,
        *grid.shape,
        grid.resolution,
        len(cube.todo),
        cube.n_tiles[0] * cube.n_tiles[1],
    )
    return FloodPlan(cube, grid, sides[0], sides[1], sar, summary)


def _warm_models(spec: FloodSpec, optical: bool) -> tuple[dict[str, Any], ClassTable]:
    """Load the segmenters here (weights resolved, prompts encoded and cached) and the classes."""
    models = {"model": worker_model(spec.sar)}
    if spec.optical is not None and optical:
        models["model_optical"] = worker_model(spec.optical)
    names = models["model"].classes
    classes = ClassTable(names=names.names, synonyms=tuple(tuple(s) for s in names.classes))
    return models, classes


def _ids(scenes: Scenes) -> tuple[str, ...]:
    return tuple(i["id"] for i in (*scenes.sar, *scenes.optical))


def _provenance(
    windows: FloodWindows,
    sides: tuple[Scenes, Scenes],
    classes: ClassTable,
    spec: FloodSpec,
    sar: SarOptions,
    summary: SarSummary,
    models: dict[str, Any],
    searches: tuple[SearchResult | None, ...],
) -> dict[str, Any]:
    """Event, windows, items per side and sensor, water classes, models (JSON-safe)."""
    model_info = {
        key: {k: v for k, v in model.provenance().items() if k != "classes"}
        for key, model in models.items()
    }
    info = {
        "event_date": windows.event,
        "pre_window": list(windows.pre),
        "post_window": list(windows.post),
        "items_pre_sar": [i["id"] for i in sides[0].sar],
        "items_post_sar": [i["id"] for i in sides[1].sar],
        "items_pre_optical": [i["id"] for i in sides[0].optical],
        "items_post_optical": [i["id"] for i in sides[1].optical],
        "dropped_items": [list(d) for r in searches if r is not None for d in r.dropped],
        "water_classes": [classes.names[i] for i in spec.water],
        "catalog": searches[1].catalog if searches[1] is not None else None,
        "orbit_state": summary.orbit_state,
        "sar_polarizations": list(sar.polarizations or ()),
        "sar_geometry": "grd_radar_geometry" if summary.radar_geometry else "rtc",
        "sar_composite": sar.composite,
        "speckle_filter": sar.speckle or "none",
        "speckle_window": sar.speckle_window,
        **model_info,
    }
    return json.loads(json.dumps(info, default=str))


plan_flood_task = task(plan_flood, name="plan-flood", cache_policy=NO_CACHE)


# --- tiles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloodTileJob:
    """One output chunk of one event: references only."""

    store: str
    """Flood cube path or URL."""
    time_index: int
    """Event index in the store."""
    tile: tuple[int, int]
    """(tile_row, tile_col) in chunk units."""
    chunk: int
    """Chunk size in pixels."""
    grid: GridSpec
    """The full output grid."""
    pre: Scenes
    """Scenes before the event."""
    post: Scenes
    """Scenes after the event."""
    sar: SarOptions
    """SAR composite options (polarisations resolved)."""
    halo: int = 112
    """Extra pixels read around the chunk: context for the segmenter and the speckle filter."""
    loader: str = "odc"
    """``odc`` or ``stackstac``."""


def flood_tile(job: FloodTileJob, spec: FloodSpec) -> TileResult:
    """Read and segment both sides of one chunk (with the halo), crop and write."""
    started = time.perf_counter()
    if is_tile_done(job.store, job.time_index, job.tile):
        return TileResult(job.tile, "done-before", 0, time.perf_counter() - started)
    core, outer = tile_windows(job.grid, job.tile, job.chunk, job.halo)
    inner = core_within(core, outer)
    stages = {"read": 0.0, "model": 0.0}
    sides = []
    for scenes, latest_first in ((job.pre, True), (job.post, False)):
        labels, source = observe(job, scenes, outer, inner, spec, latest_first, stages)
        sides.append((water_mask(labels, spec.water, source), source))
    written = time.perf_counter()
    (water_pre, source_pre), (water_post, source_post) = sides
    write_flood_tile(
        job.store, job.time_index, job.tile, water_pre, water_post, source_pre, source_post,
        job.chunk,
    )  # fmt: skip
    finished = time.perf_counter()
    status = "written" if (source_pre.any() or source_post.any()) else "nodata"
    pixels = source_pre.size
    timing = (*stages.items(), ("write", finished - written))
    return TileResult(job.tile, status, pixels, finished - started, timing)


def observe(
    job: FloodTileJob,
    scenes: Scenes,
    outer: tuple[slice, slice],
    inner: tuple[slice, ...],
    spec: FloodSpec,
    latest_first: bool,
    stages: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels and source sensor of one side, cropped to the chunk core.

    Cloud-free optical pixels win; SAR fills the rest. The model runs on the whole window
    (core and halo), and only when the core has a pixel for it.
    """
    shape = (outer[0].stop - outer[0].start, outer[1].stop - outer[1].start)
    labels = np.full(shape, NODATA, np.uint8)
    source = np.full(shape, SOURCE_NONE, np.uint8)
    if scenes.optical and spec.optical is not None:
        tick = time.perf_counter()
        rgb, valid = read_composite(scenes.optical, job.grid, outer, job.loader)
        stages["read"] += time.perf_counter() - tick
        _segment_into(labels, source, spec.optical, rgb, valid, inner, SOURCE_OPTICAL, stages)
    if not (source[inner] != SOURCE_NONE).all():
        tick = time.perf_counter()
        rgb, valid = read_sar_composite(scenes.sar, job.grid, outer, job.sar, job.loader,
                                        latest_first=latest_first)  # fmt: skip
        stages["read"] += time.perf_counter() - tick
        valid &= source == SOURCE_NONE
        _segment_into(labels, source, spec.sar, rgb, valid, inner, SOURCE_SAR, stages)
    return labels[inner], source[inner]


def _segment_into(
    labels: np.ndarray,
    source: np.ndarray,
    model: ModelSpec,
    rgb: np.ndarray,
    valid: np.ndarray,
    inner: tuple[slice, ...],
    sensor: int,
    stages: dict[str, float],
) -> None:
    """Segment ``rgb``; fill ``labels``/``source`` where ``valid`` (skipped: none in the core)."""
    if not valid[inner].any():
        return
    tick = time.perf_counter()
    with MODEL_TURN:
        found, _ = segment_array(worker_model(model), rgb, valid)
    stages["model"] += time.perf_counter() - tick
    labels[valid] = found[valid]
    source[valid] = sensor


def read_sar_composite(
    items: tuple[dict, ...],
    grid: GridSpec,
    window: tuple[slice, slice],
    options: SarOptions,
    loader: str = "odc",
    latest_first: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """SAR composite ``[3, h, w]`` in 0..1 and validity ``[h, w]`` of a grid window.

    Per pixel the first valid acquisition day in time order wins, or in reverse time order with
    ``latest_first``: the pre-event side uses the latest image before the event, the post-event
    side the earliest after it, so both stay as close to the event as the data allow.
    """
    subgrid = GridSpec.from_geobox(grid.geobox[window])
    ds = load_sar(
        list(items),
        subgrid,
        options.polarizations or ("vv",),
        loader=loader,  # type: ignore[arg-type]
        speckle=options.speckle,  # type: ignore[arg-type]
        window=options.speckle_window,
        chunks=None,  # eager: no dask graph for one tile, no threads beside the worker's own
    )
    rgb = sar_composite(ds, options.composite)
    if latest_first:
        rgb = rgb.isel(time=slice(None, None, -1))
    composite = best_pixel_composite(rgb)
    return composite["rgb"].values.astype(np.float32), composite["valid"].values.astype(bool)


def flood_tiles(
    jobs: list[FloodTileJob], spec: FloodSpec, gpu: bool = False
) -> dict[str, dict[str, float]]:
    """Run every tile as a plain Dask task on the flow's cluster; log progress as they finish.

    Must run on a Dask worker (submit it through the flow's DaskTaskRunner); one Prefect task
    for all tiles, as :func:`tasks.infer.segment_tiles` and for the same reason.

    Returns:
        ``statuses``: tile counts per status; ``stage_seconds``: wall seconds per stage
        (``read``, ``model``, ``write``) summed over the tiles.
    """
    return run_tiles(flood_tile, jobs, spec, gpu, label="flood tile", description="flood tiles")


flood_tiles_task = task(flood_tiles, name="flood-tiles", cache_policy=NO_CACHE)
