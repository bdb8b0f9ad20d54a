"""Run tile jobs as plain Dask tasks from inside one Prefect task, with progress per tile.

Shared by the land-cover, change and flood tile tasks (:func:`tasks.infer.segment_tiles`,
:func:`tasks.change.change_tiles`, :func:`tasks.flood.flood_tiles`). One Prefect task for all
tiles rather than one per tile: a Prefect task run costs several API round trips, about a
second per tile on a 2-core machine, which would double the run time of a small model.
Progress is still logged per tile (count, tiles/s, Mpx/s) and kept in a progress artifact,
resume stays per tile (the cube's ``tile_done`` record), and a tile that fails fails the task.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks._worker_process import tune_worker_process

GPU_PER_TILE = 0.5
"""The ``GPU`` resource a tile asks for: two tiles in flight per GPU worker.

One runs on the GPU (:data:`tasks._worker_process.MODEL_TURN` keeps forward passes one at a
time) while the other reads or writes, so the GPU does not wait for the I/O; the worker needs
two Dask threads for it (the local CUDA cluster and the deploy manifests start them so).
"""


@dataclass(frozen=True)
class TileResult:
    """What happened to one tile."""

    tile: tuple[int, int]
    """(tile_row, tile_col)."""
    status: str
    """``written``, ``nodata`` (no valid pixel: model skipped) or ``done-before`` (rerun)."""
    pixels: int
    """Pixels in the chunk core."""
    seconds: float
    """Wall time of the task."""
    stages: tuple[tuple[str, float], ...] = ()
    """Wall seconds per stage (``read``, ``model``, ``write``): where a slow tile spent it."""


def run_tuned(job: Any, tile_fn: Callable[..., TileResult], spec: Any) -> TileResult:
    """``tile_fn(job, spec)`` on a worker tuned for models and reads (threads, heap, GDAL cache).

    Every tile kind gets the tuning before its first read, not only once a model is loaded.
    """
    tune_worker_process()
    return tile_fn(job, spec)


def run_tiles(
    tile_fn: Callable[..., TileResult],
    jobs: list[Any],
    spec: Any,
    gpu: bool = False,
    *,
    label: str = "tile",
    description: str = "tiles",
) -> dict[str, dict[str, float]]:
    """Map ``tile_fn(job, spec=spec)`` over ``jobs`` on the flow's cluster; log as they finish.

    Must run inside a Prefect task on a Dask worker (submitted through the flow's
    DaskTaskRunner): it takes a client from the worker (:func:`distributed.worker_client`,
    which secedes, so this worker's thread runs tiles too).

    Args:
        tile_fn: Module-level function of one job and ``spec``, run on the workers.
        jobs: One job per tile still to write.
        spec: The model (or detector) spec, loaded once per worker process by ``tile_fn``.
        gpu: Ask Dask for :data:`GPU_PER_TILE` of a ``GPU`` resource per tile (workers must
            advertise it).
        label: What a tile is called in the log lines, e.g. ``"change tile"``.
        description: Description of the progress artifact, e.g. ``"change tiles"``.

    Returns:
        ``statuses``: tile counts per status; ``stage_seconds``: wall seconds per stage summed
        over the tiles.
    """
    from distributed import as_completed, worker_client
    from prefect import get_run_logger
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    run_logger = get_run_logger()
    statuses: dict[str, int] = {}
    stage_seconds: dict[str, float] = {}
    if not jobs:
        return {"statuses": statuses, "stage_seconds": stage_seconds}
    progress = create_progress_artifact(0.0, description=description)
    resources = {"GPU": GPU_PER_TILE} if gpu else None
    started, pixels = time.perf_counter(), 0
    with worker_client() as client:
        futures = client.map(
            run_tuned, jobs, tile_fn=tile_fn, spec=spec, pure=False, resources=resources
        )
        for done, future in enumerate(as_completed(futures), start=1):
            result = future.result()
            statuses[result.status] = statuses.get(result.status, 0) + 1
            for stage, seconds in result.stages:
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + seconds
            pixels += result.pixels
            elapsed = max(time.perf_counter() - started, 1e-9)
            run_logger.info(
                "%s %s %s: %d/%d done, %.2f tiles/s, %.2f Mpx/s",
                label,
                result.tile,
                result.status,
                done,
                len(jobs),
                done / elapsed,
                pixels / elapsed / 1e6,
            )
            update_progress_artifact(progress, 100.0 * done / len(jobs))
    return {"statuses": statuses, "stage_seconds": stage_seconds}
