"""Land-cover maths of one tile: read the composite over the chunk and its halo, segment it.

The tile runner (:func:`tasks.core.tile_runner.run_tile`) does the rest (done-check, windows,
no-data tiles, model turn, crop, write, timings). Each task gets references only (grid, item
dicts, store path, a model spec); the model is loaded once per worker process
(:func:`tasks.core.worker_model.worker_model`), never passed as an argument. The model sees the
grid at the grid's own resolution (no long-side resize inside a chunk), so the grid resolution
is the inference ground sampling distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.tasks.core.load import read_composite
from terrawatch.tasks.core.tile_runner import (
    TileJob,
    TileProduct,
    TileResult,
    TileWindow,
    run_tile,
    run_tiles,
)
from terrawatch.tasks.core.worker_model import ModelSpec, segment_array, worker_model
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE
from terrawatch.tasks.landcover.probability import (
    PROBABILITY,
    PROBABILITY_CUBE,
    segment_with_probabilities,
)


@dataclass(frozen=True)
class LandcoverTileJob(TileJob):
    """One output chunk of one period: references only."""

    items: tuple[dict, ...]
    """STAC items of the period, best first (least cloudy)."""
    probabilities: bool = False
    """Also write the per-class ``probability`` (:mod:`tasks.landcover.probability`)."""


Composite = tuple[np.ndarray, np.ndarray]
"""RGB ``[3, h, w]`` in 0..1 and its valid mask ``[h, w]`` over the tile's window."""


def _read(
    job: LandcoverTileJob, spec: ModelSpec, window: TileWindow
) -> tuple[Composite, np.ndarray]:
    rgb, valid = read_composite(job.items, job.grid, window.outer, job.loader)
    return (rgb, valid), valid


def _segment(spec: ModelSpec, composite: Composite) -> dict[str, np.ndarray]:
    labels, confidence = segment_array(worker_model(spec), *composite)
    return {"landcover": labels, "confidence": confidence}


def _segment_with_probabilities(spec: ModelSpec, composite: Composite) -> dict[str, np.ndarray]:
    labels, confidence, scores = segment_with_probabilities(worker_model(spec), *composite)
    return {"landcover": labels, "confidence": confidence, PROBABILITY: scores}


LANDCOVER_TILE = TileProduct(LANDCOVER_CUBE, _read, _segment)
"""Land cover for the tile runner: a composite in, labels and confidence out."""
PROBABILITY_TILE = TileProduct(PROBABILITY_CUBE, _read, _segment_with_probabilities)
"""Land cover with ``--probabilities``: labels, confidence and per-class probabilities out."""


def segment_tile(job: LandcoverTileJob, spec: ModelSpec) -> TileResult:
    """Read the chunk with its halo, segment it, crop to the core and write it."""
    return run_tile(PROBABILITY_TILE if job.probabilities else LANDCOVER_TILE, job, spec)


def segment_tiles(
    jobs: list[LandcoverTileJob], spec: ModelSpec, gpu: bool = False
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
