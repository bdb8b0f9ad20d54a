"""Flood mapping on tiles: plan an event, then water before/after per chunk and the tile task.

Mirrors :mod:`tasks.landcover.plan` and :mod:`tasks.landcover.tile` for a pair of windows around an
event date (:mod:`tasks.flood.search`: the pre-event window ``[event - pre_days, event)``, the
post-event window ``[event, event + post_days]`` and their searches; its names stay importable from
here). Each side is a Sentinel-1 composite (optionally overridden by cloud-free optical
pixels); water is any class of a configurable water set, and ``flooded = water_post &
~water_pre`` (:mod:`tasks.flood.cube`). Tasks get references only; segmenters are loaded once
per worker process (:func:`tasks.core.worker_model.worker_model`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.tasks.core.cube_store import is_tile_done
from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.core.defaults import HALO
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.load import read_composite
from terrawatch.tasks.core.sar_composite import SarOptions, read_sar_composite
from terrawatch.tasks.core.tile_runner import TileResult, core_within, run_tiles, tile_windows
from terrawatch.tasks.core.worker_model import ModelSpec, segment_array, worker_model
from terrawatch.tasks.core.worker_process import MODEL_TURN
from terrawatch.tasks.flood.cube import (
    SOURCE_NONE,
    SOURCE_OPTICAL,
    SOURCE_SAR,
    water_mask,
    write_flood_tile,
)
from terrawatch.tasks.flood.plan import FloodSpec, Scenes


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
    halo: int = HALO
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


def flood_tiles(
    jobs: list[FloodTileJob], spec: FloodSpec, gpu: bool = False
) -> dict[str, dict[str, float]]:
    """Run every tile as a plain Dask task on the flow's cluster; log progress as they finish.

    Must run on a Dask worker (submit it through the flow's DaskTaskRunner); one Prefect task
    for all tiles, as :func:`tasks.landcover.tile.segment_tiles` and for the same reason.

    Returns:
        ``statuses``: tile counts per status; ``stage_seconds``: wall seconds per stage
        (``read``, ``model``, ``write``) summed over the tiles.
    """
    return run_tiles(flood_tile, jobs, spec, gpu, label="flood tile", description="flood tiles")


flood_tiles_task = task(flood_tiles, name="flood-tiles", cache_policy=NO_CACHE)
