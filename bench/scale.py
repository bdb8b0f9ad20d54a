"""Benchmark scale-out: the same land-cover run on 1 and on 2 Dask worker processes.

The run is bench/pipeline.py's (its scene and model helpers): a synthetic RGB COG (default
8192² px at 1 m) catalogued with ``terrawatch catalog add``'s code, segmented by the real flow
(Prefect ephemeral API, the flows' own LocalCluster of worker processes with one thread each,
local Zarr) with a small random-weight model of the real architecture on CPU. The workers have
imported the pipeline before the clock starts, as on a long-running cluster, and a warm-up run
on a one-tile scene fills the OS and text caches first. Each measured run writes its own cube.
One summary line::

    python bench/scale.py [--size 8192] [--chunk 1024] [--upsampler bilinear]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pipeline import _scene_aoi, model_files, run_landcover, write_scene

TARGET = 1.6
"""Speed-up the issue asks of 2 workers on 2 cores."""


def _warm_worker() -> None:
    """Import what a tile task needs, as the workers of a long-running cluster already have."""
    import prefect.task_engine  # noqa: F401


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def free_cores(n: int = 20_000_000) -> float:
    """Parallel speed-up of 2 busy processes right now: about 2.0 on two idle cores.

    Printed beside the result, because a machine shared with other jobs caps the speed-up of
    any run, however it is parallelised.
    """
    import multiprocessing

    started = time.perf_counter()
    _spin(n)
    one = time.perf_counter() - started
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_spin, [1, 1])  # both processes up
        started = time.perf_counter()
        pool.map(_spin, [n, n])
        two = time.perf_counter() - started
    return 2 * one / two


def timed_run(scene: Path, root: Path, files: dict, chunk: int, workers: int) -> float:
    """Seconds of one flow run on ``workers`` warm one-thread worker processes (own cube)."""
    from distributed import Client
    from prefect_dask import DaskTaskRunner

    from terrawatch.flows.runner import local_cluster
    from terrawatch.tasks.core.local_item import add_local_item

    folder = root / f"run-{scene.stem}-{workers}w"
    add_local_item(scene, folder / "catalog", datetime="2024-06-01T00:00:00Z")
    size = int(scene.stem.split("-")[-1])
    with (
        local_cluster(  # the flow's own default cluster, with these sizes
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm_worker)
        started = time.perf_counter()
        runner = DaskTaskRunner(address=cluster.scheduler_address)
        run_landcover(
            runner, _scene_aoi(size), folder / "catalog", folder / "cube.zarr", chunk, files
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=8192, help="scene side in pixels (1 m)")
    parser.add_argument("--chunk", type=int, default=1024, help="tile side in pixels")
    parser.add_argument(
        "--upsampler",
        default="bilinear",
        choices=["bilinear", "simfeatup"],
        help="bilinear keeps the single-worker CPU run to about a minute (SimFeatUp: ~0.2 s "
        "per window on one core)",
    )
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from terrawatch.flows.local_api import shared_local_api

    with tempfile.TemporaryDirectory() as tmp, shared_local_api():
        root = Path(tmp)
        os.environ["TERRAWATCH_TEXT_CACHE"] = str(root / "text-cache")
        files = dict(model_files(root, "small"), upsampler=args.upsampler)
        warmup = root / f"scene-{args.chunk}.tif"
        write_scene(warmup, args.chunk)
        timed_run(warmup, root, files, args.chunk, 2)
        scene = root / f"scene-{args.size}.tif"
        write_scene(scene, args.size)
        cores_before = free_cores()
        one = timed_run(scene, root, files, args.chunk, 1)
        two = timed_run(scene, root, files, args.chunk, 2)
        cores = min(cores_before, free_cores())
    side = -(-args.size // args.chunk)
    tiles = side * side
    speedup = one / two
    print(
        f"scale {args.size}² px ({tiles} tiles of {args.chunk}², {args.upsampler}, "
        f"{os.cpu_count()} cores): 1 worker x 1 thread {one:.1f} s, 2 workers x 1 thread "
        f"{two:.1f} s; speed-up {speedup:.2f}x (target >= {TARGET}x: "
        f"{'met' if speedup >= TARGET else 'NOT met'}); free cores measured before/after "
        f"{cores:.2f} of {os.cpu_count()}"
    )


if __name__ == "__main__":
    main()
