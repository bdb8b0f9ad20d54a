"""Run tile jobs as plain Dask tasks from inside one Prefect task, with progress as they finish.

Shared by the land-cover, change and flood tile tasks (:func:`tasks.landcover.tile.segment_tiles`,
:func:`tasks.change.tile.change_tiles`, :func:`tasks.flood.tile.flood_tiles`). One Prefect task for
all tiles rather than one per tile: a Prefect task run costs several API round trips, about a
second per tile on a 2-core machine, which would double the run time of a small model.
Progress is still logged as tiles finish (count, tiles/s, Mpx/s; at most every
:data:`PROGRESS_SECONDS`) and kept in a progress artifact, resume stays per tile (the cube's
``tile_done`` record), and a tile that fails fails the task.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.worker_process import (
    release_free_heap,
    tune_worker_process,
)

GPU_PER_TILE = 0.5
"""The ``GPU`` resource a tile asks for: two tiles in flight per GPU worker.

One runs on the GPU (:data:`tasks.core.worker_process.MODEL_TURN` keeps forward passes one at a
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


PROGRESS_SECONDS = 5.0
"""Least time between two progress log lines (and progress artifact updates) of a tile run.

A line per tile flooded the run's log on fast runs (a GPU writes several tiles a second) and
cost an API call per tile for the artifact; the first and the last tile are always logged.
"""


class TileProgress:
    """Counts finished tiles and reports progress (count, tiles/s, Mpx/s) at a bounded rate."""

    def __init__(
        self,
        total: int,
        log: Callable[[str], object],
        update_percent: Callable[[float], object],
        every_seconds: float = PROGRESS_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.total, self.done, self.pixels = total, 0, 0
        self.statuses: dict[str, int] = {}
        self.stage_seconds: dict[str, float] = {}
        self._log, self._update_percent = log, update_percent
        self._every, self._clock = every_seconds, clock
        self._started = clock()
        self._last_report: float | None = None

    def tile_done(self, result: TileResult) -> None:
        """Count ``result``; log a line and update the artifact if one is due."""
        self.done += 1
        self.pixels += result.pixels
        self.statuses[result.status] = self.statuses.get(result.status, 0) + 1
        for stage, seconds in result.stages:
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
        now = self._clock()
        due = self._last_report is None or now - self._last_report >= self._every
        if not due and self.done < self.total:
            return
        self._last_report = now
        elapsed = max(now - self._started, 1e-9)
        self._log(
            f"{result.tile} {result.status}: {self.done}/{self.total} done, "
            f"{self.done / elapsed:.2f} tiles/s, {self.pixels / elapsed / 1e6:.2f} Mpx/s"
        )
        self._update_percent(100.0 * self.done / self.total)


def run_tiles(
    tile_fn: Callable[..., TileResult],
    jobs: list[Any],
    spec: Any,
    gpu: bool = False,
    *,
    label: str = "tile",
    description: str = "tiles",
) -> dict[str, dict[str, float]]:
    """Map ``tile_fn(job, spec=spec)`` over ``jobs`` on the flow's cluster; report progress.

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

    if not jobs:
        return {"statuses": {}, "stage_seconds": {}}
    run_logger = get_run_logger()
    artifact = create_progress_artifact(0.0, description=description)
    progress = TileProgress(
        len(jobs),
        lambda line: run_logger.info("%s %s", label, line),
        lambda percent: update_progress_artifact(artifact, percent),
    )
    resources = {"GPU": GPU_PER_TILE} if gpu else None
    with worker_client() as client:
        futures = client.map(
            run_tuned, jobs, tile_fn=tile_fn, spec=spec, pure=False, resources=resources
        )
        for future in as_completed(futures):
            progress.tile_done(future.result())
        # the heap a run's tiles freed goes back to the OS once, when the workers fall idle
        client.run(release_free_heap, on_error="ignore")
    return {"statuses": progress.statuses, "stage_seconds": progress.stage_seconds}


def tile_windows(
    grid: GridSpec, tile: tuple[int, int], chunk: int, halo: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Pixel windows (rows, cols) of a tile's core and of core plus halo, clipped to the grid."""
    height, width = grid.shape
    row0, col0 = tile[0] * chunk, tile[1] * chunk
    core = (slice(row0, min(row0 + chunk, height)), slice(col0, min(col0 + chunk, width)))
    outer = (
        slice(max(core[0].start - halo, 0), min(core[0].stop + halo, height)),
        slice(max(core[1].start - halo, 0), min(core[1].stop + halo, width)),
    )
    return core, outer


def core_within(core: tuple[slice, slice], outer: tuple[slice, slice]) -> tuple[slice, slice]:
    """The core window as slices of an array read over ``outer`` (the crop after the model)."""
    rows, cols = (
        slice(c.start - o.start, c.stop - o.start) for c, o in zip(core, outer, strict=True)
    )
    return rows, cols
