"""The tile runner of every product: one tile (:func:`run_tile`) and all tiles (:func:`run_tiles`).

A product supplies only its maths and its cube kind (:class:`TileProduct`: read its inputs for a
window, compute the arrays of one tile from them and its model); :func:`run_tile` owns the rest:
the done-check, the windows with their halo, the all-nodata short-circuit (the kind's no-data tile,
no model), the model turn (:data:`tasks.core.worker_process.MODEL_TURN`), the crop to the core, the
region write with its ``tile_done`` record, and the stage timings (``read``, ``wait`` for the
model turn, ``model``, ``write``).

:func:`run_tiles` maps the tiles as plain Dask tasks from inside one Prefect task (the land-cover,
change and flood tile tasks: :func:`tasks.landcover.tile.segment_tiles`,
:func:`tasks.change.tile.change_tiles`, :func:`tasks.flood.tile.flood_tiles`). One Prefect task for
all tiles rather than one per tile: a Prefect task run costs several API round trips, about a
second per tile on a 2-core machine, which would double the run time of a small model.
Progress is still logged as tiles finish (count, tiles/s, Mpx/s; at most every
:data:`PROGRESS_SECONDS`) and kept in a progress artifact, resume stays per tile (the cube's
``tile_done`` record), and a tile that fails fails the task.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import KW_ONLY, dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from terrawatch.tasks.core.cube_store import is_tile_done, nodata_tile, write_cube_tile
from terrawatch.tasks.core.cube_types import CubeKind
from terrawatch.tasks.core.defaults import HALO
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.lost_workers import LostWorkerLog
from terrawatch.tasks.core.run_watch import RunStoppedError, RunWatch, tile_keys
from terrawatch.tasks.core.store_credentials import (
    StoreCredentials,
    resolve_store_credentials,
    use_store_credentials,
)
from terrawatch.tasks.core.worker_process import (
    MODEL_TURN,
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
    """Wall seconds per stage of a written tile (``read``, ``wait`` for the model turn,
    ``model``, ``write``): where a slow tile spent it."""


@dataclass(frozen=True)
class TileJob:
    """One output chunk of one time step: references only. Products add their inputs.

    ``halo`` and ``loader`` are keyword-only, so a product's own fields follow ``grid`` in
    positional order.
    """

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
    _: KW_ONLY
    halo: int = HALO
    """Extra pixels read around the chunk: context for windows at its border (and for masks
    and speckle filters that cross it)."""
    loader: str = "odc"
    """``odc`` or ``stackstac``."""
    lease: str | None = None
    """The flow's writer lease token (:func:`tasks.core.writer_lease.writer_token`): every write
    of the tile checks it, so the tiles of a run whose lease was taken over write nothing."""


@dataclass(frozen=True)
class TileWindow:
    """Where one tile lies: its core (the chunk) and the window read for it (core plus halo)."""

    core: tuple[slice, slice]
    """Rows and columns of the chunk in the grid."""
    outer: tuple[slice, slice]
    """Rows and columns of the core plus halo, clipped to the grid: what is read."""

    @classmethod
    def of(cls, job: TileJob) -> TileWindow:
        """The window of a job's tile."""
        return cls(*tile_windows(job.grid, job.tile, job.chunk, job.halo))

    @property
    def inner(self) -> tuple[slice, slice]:
        """The core as slices of an array read over :attr:`outer` (the crop after the model)."""
        return core_within(self.core, self.outer)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the core."""
        rows, cols = self.core
        return rows.stop - rows.start, cols.stop - cols.start

    @property
    def outer_shape(self) -> tuple[int, int]:
        """(height, width) of the window read."""
        rows, cols = self.outer
        return rows.stop - rows.start, cols.stop - cols.start


JobT = TypeVar("JobT", bound=TileJob)
SpecT = TypeVar("SpecT")
InputsT = TypeVar("InputsT")


@dataclass(frozen=True)
class TileProduct(Generic[JobT, SpecT, InputsT]):
    """A product's part of one tile: its cube kind and its maths; :func:`run_tile` does the rest."""

    kind: CubeKind
    """The cube the tiles go to (the variables ``compute`` returns, its no-data tile)."""
    read: Callable[[JobT, SpecT, TileWindow], tuple[InputsT, np.ndarray]]
    """``(job, spec, window)`` -> the inputs over ``window.outer`` and where they are valid
    (bool over ``window.outer``); a tile whose core has no valid pixel is not computed."""
    compute: Callable[[SpecT, InputsT], dict[str, np.ndarray]]
    """``(spec, inputs)`` -> an array per input variable of the kind over ``window.outer``.
    Runs holding the worker's model turn; gets its model from ``spec`` (loaded once per worker
    process, e.g. :func:`tasks.core.worker_model.worker_model`)."""


def run_tile(product: TileProduct[JobT, SpecT, Any], job: JobT, spec: SpecT) -> TileResult:
    """Read one tile with its halo, compute it with the model, crop to the core and write it.

    A tile already written (its ``tile_done`` is set) is skipped (``done-before``); one whose core
    has no valid input pixel gets the kind's no-data tile without running the model
    (``nodata``). Stage timings are kept for the written tiles.
    """
    started = time.perf_counter()
    if is_tile_done(job.store, job.time_index, job.tile):
        return TileResult(job.tile, "done-before", 0, time.perf_counter() - started)
    window = TileWindow.of(job)
    pixels = window.shape[0] * window.shape[1]
    inputs, valid = product.read(job, spec, window)
    read_done = time.perf_counter()
    kind = product.kind
    if not valid[window.inner].any():
        empty = nodata_tile(job.store, kind, window.shape)
        write_cube_tile(
            job.store, kind, job.time_index, job.tile, empty, job.chunk, lease=job.lease
        )
        return TileResult(job.tile, "nodata", pixels, time.perf_counter() - started)
    with MODEL_TURN:
        turn = time.perf_counter()
        arrays = product.compute(spec, inputs)
    model_done = time.perf_counter()
    core = {name: array[(..., *window.inner)] for name, array in arrays.items()}  # [.., y, x]
    write_cube_tile(job.store, kind, job.time_index, job.tile, core, job.chunk, lease=job.lease)
    finished = time.perf_counter()
    stages = (
        ("read", read_done - started),
        ("wait", turn - read_done),
        ("model", model_done - turn),
        ("write", finished - model_done),
    )
    return TileResult(job.tile, "written", pixels, finished - started, stages)


def run_tuned(
    job: Any,
    tile_fn: Callable[..., TileResult],
    spec: Any,
    credentials: StoreCredentials | None = None,
) -> TileResult:
    """``tile_fn(job, spec)`` on a worker tuned for models and reads (threads, heap, GDAL cache).

    Every tile kind gets the tuning before its first read, not only once a model is loaded, and
    the run's object-store credentials (:mod:`tasks.core.store_credentials`) before it opens the
    store: the worker's own environment holds none.
    """
    tune_worker_process()
    use_store_credentials(credentials)
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
        over the written tiles (``read``, ``wait``, ``model``, ``write``).
    """
    from distributed import worker_client
    from prefect import get_run_logger
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from prefect.runtime import flow_run

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
    run_id = str(flow_run.get_id() or "")
    credentials = resolve_store_credentials(getattr(jobs[0], "store", None))
    use_store_credentials(credentials)  # the watch reads the writer lease beside the store
    watch = RunWatch(run_id, getattr(jobs[0], "store", None), getattr(jobs[0], "lease", None))
    with worker_client() as client, LostWorkerLog(client, run_logger.warning, label) as lost:
        futures = client.map(
            run_tuned,
            jobs,
            tile_fn=tile_fn,
            spec=spec,
            credentials=credentials,
            key=tile_keys(run_id, len(jobs)),
            resources=resources,
        )
        lost.track(futures)
        try:
            _collect(client, futures, progress, watch)
        except RunStoppedError as stopped:
            client.cancel(futures, reason=str(stopped))
            run_logger.warning("%s: %d tiles cancelled", stopped, progress.total - progress.done)
            raise
        finally:
            watch.close()
        # the heap a run's tiles freed goes back to the OS once, when the workers fall idle
        client.run(release_free_heap, on_error="ignore")
    return {"statuses": progress.statuses, "stage_seconds": progress.stage_seconds}


def _collect(client: Any, futures: list[Any], progress: TileProgress, watch: RunWatch) -> None:
    """Count the tiles as they finish; cancel them and raise RunStoppedError when ``watch`` says
    stop.

    ``as_completed``, not a polling ``wait``: a ``wait`` per finished tile costs a pass over all
    pending futures, quadratic in a run's thousands of tiles. The watch runs in a thread of its
    own and cancels the futures, which ``as_completed`` then hands back cancelled.
    """
    from distributed import as_completed

    done, stopped = threading.Event(), []

    def look() -> None:
        while not done.wait(watch.every_seconds):
            reason = watch.look()
            if reason is not None:
                stopped.append(reason)
                client.cancel(futures, reason=str(reason))
                return

    # in this task's context: Prefect's settings (the API URL) live in context variables
    context = contextvars.copy_context()
    watcher = threading.Thread(target=context.run, args=(look,), name="run watch", daemon=True)
    watcher.start()
    try:
        for future in as_completed(futures):
            if stopped:
                raise stopped[0]
            try:
                result = future.result()
            except CancelledError as error:  # by the watch, or a cancellation or crash hook
                if stopped:
                    raise stopped[0] from None
                raise RunStoppedError(f"tiles cancelled from outside the run: {error}") from None
            progress.tile_done(result)
    finally:
        done.set()
        watcher.join()


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
