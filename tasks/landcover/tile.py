"""Land-cover maths of one tile: read the chunk with its halo, segment it, write the core.

Each task gets references only (grid, item dicts, store path, a model spec); the model is
loaded once per worker process (:func:`tasks.core.worker_model.worker_model`), never passed
as an argument. The model sees the grid at the grid's own resolution (no long-side resize
inside a chunk), so the grid resolution is the inference ground sampling distance.
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
from terrawatch.tasks.core.tile_runner import TileResult, core_within, run_tiles, tile_windows
from terrawatch.tasks.core.worker_model import ModelSpec, segment_array, worker_model
from terrawatch.tasks.core.worker_process import (
    MODEL_TURN,
)
from terrawatch.tasks.landcover.cube import write_tile


@dataclass(frozen=True)
class TileJob:
    """One output chunk to produce: references only."""

    store: str
    """Zarr store path or URL."""
    time_index: int
    """Time step index in the store."""
    tile: tuple[int, int]
    """(tile_row, tile_col) in chunk units."""
    chunk: int
    """Chunk size in pixels."""
    grid: GridSpec
    """The full output grid."""
    items: tuple[dict, ...]
    """STAC items of the period, best first (least cloudy)."""
    halo: int = HALO
    """Extra pixels read around the chunk so windows at its border see context."""
    loader: str = "odc"
    """``odc`` or ``stackstac``."""


def segment_tile(job: TileJob, spec: ModelSpec) -> TileResult:
    """Read the chunk with its halo, segment it, crop to the core and write it."""
    started = time.perf_counter()
    if is_tile_done(job.store, job.time_index, job.tile):
        return TileResult(job.tile, "done-before", 0, time.perf_counter() - started)
    core, outer = tile_windows(job.grid, job.tile, job.chunk, job.halo)
    rgb, valid = read_composite(job.items, job.grid, outer, job.loader)
    read_done = time.perf_counter()
    inner = core_within(core, outer)
    shape = (core[0].stop - core[0].start, core[1].stop - core[1].start)
    if not valid[inner].any():
        empty = np.full(shape, NODATA, np.uint8)
        write_tile(job.store, job.time_index, job.tile, empty, empty, job.chunk)
        return TileResult(job.tile, "nodata", shape[0] * shape[1], time.perf_counter() - started)
    with MODEL_TURN:
        turn = time.perf_counter()
        labels, confidence = segment_array(worker_model(spec), rgb, valid)
    model_done = time.perf_counter()
    write_tile(job.store, job.time_index, job.tile, labels[inner], confidence[inner], job.chunk)
    finished = time.perf_counter()
    stages = (
        ("read", read_done - started),
        ("wait", turn - read_done),
        ("model", model_done - turn),
        ("write", finished - model_done),
    )
    return TileResult(job.tile, "written", shape[0] * shape[1], finished - started, stages)


def segment_tiles(
    jobs: list[TileJob], spec: ModelSpec, gpu: bool = False
) -> dict[str, dict[str, float]]:
    """Run every tile as a plain Dask task on the flow's cluster; log progress as they finish.

    Must run on a Dask worker (submit it through the flow's DaskTaskRunner).

    One Prefect task for all tiles rather than one per tile (see :mod:`tasks.core.tile_runner`):
    progress is still logged as tiles finish (count, tiles/s, Mpx/s), resume stays per tile (the
    cube's completion record), and a tile that fails fails the task.

    Args:
        jobs: One job per tile still to write.
        spec: Model to load once per worker process.
        gpu: Ask Dask for a ``GPU`` resource per tile (workers must advertise it).

    Returns:
        ``statuses``: tile counts per status; ``stage_seconds``: wall seconds per stage
        (``read``, ``wait`` for the worker's model, ``model``, ``write``) summed over the
        written tiles.
    """
    return run_tiles(segment_tile, jobs, spec, gpu, label="tile", description="land-cover tiles")


segment_tiles_task = task(segment_tiles, name="segment-tiles", cache_policy=NO_CACHE)
