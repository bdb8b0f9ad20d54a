"""Benchmark the land-cover flow end to end against the model alone on the same windows.

A synthetic RGB scene is written as a COG (default 8192² px at 1 m), catalogued with
``terrawatch catalog add``, and segmented by the real flow (Prefect ephemeral API, Dask
LocalCluster, local Zarr) with a random-weight model of the real architecture: on CPU a small
CLIP (2 workers x 1 thread, bilinear upsampling), on a GPU ViT-B/16 with SimFeatUp (one
2-thread worker on one GPU, advertising a ``GPU`` resource, as LocalCUDACluster and the deploy
manifests run them). The model-only figure runs the same model (``predict``) on the same
number of windows, split over as many processes as the cluster has workers (the faster of two
runs, so that a slow moment of the machine cannot flatter the ratio). The AOI is the scene's
inner lon/lat box, so the grid holds no nodata margin. The flow runs twice on each cluster:
cold (fresh workers import torch and load the model inside the timing) and warm (the same run
again, as on a persistent cluster). Also reports peak RSS per worker at two scene
sizes, after the cold run (it must not grow with the scene). One summary line::

    python bench/pipeline.py [--sizes 4096 8192] [--chunk 1024] [--device cpu|cuda]
                             [--model small|vit-b-16] [--workers N] [--threads N]

On cuda the default sizes are 2048 and 4096, so that this and ``bench/segment.py --device
cuda`` together fit in 10 minutes on one GPU.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_scene(path: Path, size: int, seed: int = 0) -> None:
    """A smooth random RGB uint8 COG in EPSG:32632 at 1 m (fields-like blobs plus texture)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, size=(3, size // 256 + 2, size // 256 + 2), dtype=np.uint8)
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32632",
        transform=from_origin(350000, 5650000, 1.0, 1.0),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        photometric="RGB",
    )
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 1024):
            rows = np.arange(row, min(row + 1024, size)) // 256
            block = coarse[:, rows][:, :, np.arange(size) // 256]
            noise = rng.integers(0, 40, size=block.shape, dtype=np.uint8)
            dst.write(block // 2 + noise, window=((row, row + len(rows)), (0, size)))
        dst.build_overviews([2, 4, 8], Resampling.average)


MODEL_SIZES: dict[str, dict[str, int]] = {
    # 2 layers, width 128, 32-d: keeps a CPU run to minutes
    "small": dict(embed=32, layers=2, width=128, text_width=64, text_heads=1, text_layers=2),
    # OpenAI's ViT-B/16 shapes (random weights): the GPU benchmark
    "vit-b-16": dict(embed=512, layers=12, width=768, text_width=512, text_heads=8, text_layers=12),
}
"""CLIP sizes the benchmark can build; the weights are random, the checkpoint formats real."""


def model_files(folder: Path, size: str = "small") -> dict[str, Path]:
    """A random CLIP of ``size`` (:data:`MODEL_SIZES`) and SimFeatUp in the real formats."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, convert_weights_to_fp16

    from terrawatch.models.simfeatup import JBUOne, save_simfeatup_checkpoint

    shape = MODEL_SIZES[size]
    torch.manual_seed(0)
    clip = CLIP(
        shape["embed"],
        CLIPVisionCfg(layers=shape["layers"], width=shape["width"], patch_size=16, image_size=224),
        CLIPTextCfg(
            context_length=77,
            vocab_size=49408,
            width=shape["text_width"],
            heads=shape["text_heads"],
            layers=shape["text_layers"],
        ),
        quick_gelu=True,
    )
    convert_weights_to_fp16(clip)
    files = {"clip": folder / f"{size}-ViT-B-16.pt", "simfeatup": folder / f"{size}-simfeatup.ckpt"}
    torch.save(clip.state_dict(), files["clip"])
    save_simfeatup_checkpoint(JBUOne(feat_dim=shape["embed"]), files["simfeatup"])
    return files


CLASSES = ["water", "field", "tree", "road"]


def run_landcover(
    runner: Any, aoi: list[float], catalog: Path, store: Path, chunk: int, files: dict
) -> dict:
    """The benchmarks' land-cover run: the real flow on ``runner`` with the model in ``files``."""
    from terrawatch.flows.landcover import landcover
    from terrawatch.flows.options import GridOptions, ModelOptions, SearchOptions, TilingOptions

    return landcover.with_options(task_runner=runner)(
        aoi=aoi,
        start="2024-06-01",
        end="2024-06-01",
        classes=CLASSES,
        store=str(store),
        search=SearchOptions(catalog=str(catalog), collections=["local"], max_cloud=None),
        grid=GridOptions(resolution=1.0, crs="EPSG:32632"),
        tiling=TilingOptions(chunk=chunk),
        model=ModelOptions(
            weights=str(files["clip"]),
            upsampler=files["upsampler"],
            upsampler_weights=str(files["simfeatup"]),
        ),
    )


def run_flow(
    scene: Path, folder: Path, files: dict, chunk: int, workers: int, threads: int, gpu: bool
):
    """Run the real flow cold, then warm, on one cluster (GPU workers with ``gpu``).

    Returns:
        (cold seconds, windows, grid pixels, peak RSS per worker in GB, seconds per written
        tile per stage in the warm run, warm seconds).
    """
    from distributed import Client
    from prefect_dask import DaskTaskRunner

    from terrawatch.flows.local_api import shared_local_api
    from terrawatch.flows.runner import local_cluster
    from terrawatch.tasks.core.local_item import add_local_item

    catalog = folder / f"catalog-{scene.stem}"
    add_local_item(scene, catalog, datetime="2024-06-01T00:00:00Z")
    size = int(scene.stem.split("-")[-1])
    aoi = _scene_aoi(size)
    with (
        shared_local_api(),
        local_cluster(  # the flow's own default cluster, with these sizes
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            dashboard_address=None,
            # as dask_cuda's LocalCUDACluster does: one GPU per worker, tiles ask for it
            resources={"GPU": 1} if gpu else None,
        ) as cluster,
    ):
        runner = DaskTaskRunner(address=cluster.scheduler_address)

        def timed_run(store: Path) -> tuple[float, dict]:
            started = time.perf_counter()
            summary = run_landcover(runner, aoi, catalog, store, chunk, files)
            return time.perf_counter() - started, summary

        # cold: fresh worker processes import torch and load the model inside the timing
        seconds, _ = timed_run(folder / f"cube-{size}.zarr")
        with Client(cluster) as client:
            rss = client.run(peak_rss_gb)
        # warm: the same run again on the same workers (a persistent cluster's steady state)
        warm_seconds, warm_summary = timed_run(folder / f"cube-{size}-warm.zarr")
    windows, pixels = _windows_of_grid(folder / f"cube-{size}.zarr", chunk)
    # the warm run's stages: the cold run's first tiles also wait for imports and loading
    written = max(1, warm_summary["tiles"].get("written", 0))
    stages = {name: total / written for name, total in warm_summary["stage_seconds"].items()}
    return seconds, windows, pixels, max(rss.values()), stages, warm_seconds


def peak_rss_gb() -> float:
    """Peak resident memory of this process since it started, in GB.

    Linux's ``VmHWM``, not ``ru_maxrss``: a spawned worker is forked from this benchmark
    process, and its ``ru_maxrss`` keeps the peak from before the ``exec``, that is this
    process's RSS, which grows with the scene it has just written (a child spawned beside a
    600 MB array reported ``ru_maxrss`` 627 MB and ``VmHWM`` 28 MB). By ``ru_maxrss`` the
    workers peaked at 1.25 GB (4096²) and 1.47 GB (8192²); by ``VmHWM`` in the next run at
    1.23 and 1.35 GB.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
    return int(kilobytes) / 1024**2


def _scene_aoi(size: int) -> list[float]:
    """A lon/lat AOI whose output grid lies inside the scene (no tiles of nodata margin)."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(32632, 4326, always_xy=True)
    corners = [
        to_lonlat.transform(350000 + x, 5650000 - y) for x in (2, size - 2) for y in (2, size - 2)
    ]
    lons, lats = sorted(c[0] for c in corners), sorted(c[1] for c in corners)
    # the inner box of the scene's (slightly rotated) footprint in lon/lat
    return [lons[1], lats[1], lons[2], lats[2]]


def _windows_of_grid(store: Path, chunk: int) -> tuple[int, int]:
    """Model windows the flow ran (per tile, its read: core + halo) and pixels of the grid."""
    import xarray as xr

    from terrawatch.models.sliding import plan_windows
    from terrawatch.tasks.core.grid import GridSpec
    from terrawatch.tasks.core.tile_runner import tile_windows

    cube = xr.open_zarr(store, decode_coords="all")
    height, width = cube.sizes["y"], cube.sizes["x"]
    grid = GridSpec("EPSG:32632", 1.0, 0.0, 0.0, float(width), float(height))
    rows, cols = grid.tiles(chunk).shape.yx
    windows = 0
    for row in range(rows):
        for col in range(cols):
            _, outer = tile_windows(grid, (row, col), chunk, 112)
            shape = (outer[0].stop - outer[0].start, outer[1].stop - outer[1].start)
            windows += len(plan_windows(1, *shape, 224, 112))
    return windows, height * width


def model_only(files: dict, windows: int, workers: int, threads: int, device: str) -> float:
    """Wall seconds for the same model on ``windows`` windows, laid out as the cluster is.

    ``workers`` processes x ``threads`` torch threads (as many as each Dask worker has), each
    with its share of the windows, started together after loading the model on ``device``
    (``cpu`` or ``cuda``): the pipeline's compute without its reads,
    writes and orchestration (on CPU, one process with ``workers`` threads was slower and
    noisier: 320-393 win/s over three runs, against ~400 win/s for two single-thread
    processes).
    """
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(workers), context.Queue()
    share = -(-windows // workers)
    processes = [
        context.Process(
            target=_model_only_worker,
            args=(files, share, threads, device, barrier, results),
        )
        for _ in range(workers)
    ]
    # LocalCluster leaves the nanny's MALLOC_TRIM_THRESHOLD_ in this process's environment,
    # which would halve torch's speed in the children (see tasks/core/worker_process.py): plain
    # processes, as a user's own script would run the model
    trim = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    try:
        for process in processes:
            process.start()
    finally:
        if trim is not None:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = trim
    spans = [results.get() for _ in processes]
    for process in processes:
        process.join()
    return max(end for _, end in spans) - min(start for start, _ in spans)


def _model_only_worker(
    files: dict, windows: int, threads: int, device: str, barrier: Any, results: Any
) -> None:
    """One model-only process: load, warm up, wait for the others, run ``windows`` windows.

    Labels and confidences come back to the host, as :func:`tasks.core.worker_model.segment_array`
    does.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from terrawatch.models.segearth import SegEarthOV

    torch.set_num_threads(threads)
    model = SegEarthOV.from_pretrained(
        weights=files["clip"],
        upsampler=files["upsampler"],
        upsampler_weights=files["simfeatup"],
        device=device,
        resize_long_side=None,
    )
    model.set_classes(CLASSES)

    def predict(image: torch.Tensor) -> None:
        labels, confidence = model.predict(image)
        labels.cpu(), confidence.float().cpu()

    image = torch.rand(1, 3, 1248, 1248)  # one chunk plus halo: 11 x 11 = 121 windows
    per_image = 121
    predict(image[:, :, :448, :448])  # warm-up
    barrier.wait()
    started = time.time()
    done = 0
    while done + per_image <= windows:
        predict(image)
        done += per_image
    if done < windows:  # the remainder as a smaller image, so both sides count alike
        predict(torch.rand(1, 3, 224, 224 + 112 * (windows - done - 1)))
    results.put((started, time.time()))


def main() -> None:
    gpus = torch.cuda.device_count()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="scene sizes in px; default 4096 8192 on cpu, 2048 4096 on cuda (with "
        "bench/segment.py well within 10 minutes on one GPU: ViT-B/16 + SimFeatUp at 4096² is "
        "about 1.3k windows per run, and the flow runs twice per size)",
    )
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument(
        "--device",
        default="cuda" if gpus else "cpu",
        choices=["cpu", "cuda"],
        help="cuda: one 2-thread worker on the first GPU, advertising a GPU resource that the "
        "tiles ask for (as LocalCUDACluster and the deploy manifests run them); default: cuda "
        "when torch sees a GPU",
    )
    parser.add_argument(
        "--model",
        choices=sorted(MODEL_SIZES),
        help="random-weight CLIP size; default vit-b-16 on cuda, small on cpu",
    )
    parser.add_argument("--workers", type=int, help="default 1 on cuda (one GPU), 2 on cpu")
    parser.add_argument(
        "--threads",
        type=int,
        help="Dask threads per worker (torch threads too on cpu); with 2, one tile's reads and "
        "writes overlap another's model in each worker; default 2 on cuda, 1 on cpu",
    )
    parser.add_argument(
        "--upsampler",
        choices=["bilinear", "simfeatup"],
        help="default simfeatup on cuda (the published setting), bilinear on cpu, which keeps "
        "the run to minutes (SimFeatUp's kernels cost ~0.2 s per window on one core whatever "
        "the model size)",
    )
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and not gpus:
        parser.error("--device cuda: torch sees no GPU here")
    model = args.model or ("vit-b-16" if cuda else "small")
    workers = args.workers or (1 if cuda else 2)
    threads = args.threads or (2 if cuda else 1)
    upsampler = args.upsampler or ("simfeatup" if cuda else "bilinear")
    args.sizes = args.sizes or ([2048, 4096] if cuda else [4096, 8192])
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if cuda:  # the flow's tiles ask for the workers' GPU resource
        os.environ["TERRAWATCH_GPU_WORKERS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["TERRAWATCH_TEXT_CACHE"] = str(folder / "text-cache")
        files = dict(model_files(folder, model), upsampler=upsampler)
        results = {}
        for size in args.sizes:
            scene = folder / f"scene-{size}.tif"
            write_scene(scene, size)
            results[size] = run_flow(scene, folder, files, args.chunk, workers, threads, cuda)
        size = max(args.sizes)
        seconds, windows, pixels, _, stages, warm_seconds = results[size]
        # the faster of two model-only runs: on this shared machine one run alone varied from
        # 347 to 437 win/s between benchmark runs, which moved the ratio as much
        model_seconds = min(
            model_only(files, windows, workers, threads, args.device) for _ in range(2)
        )
    km2 = pixels / 1e6
    rss = ", ".join(f"{s}²: {results[s][3]:.2f} GB" for s in args.sizes)
    print(
        f"pipeline {size}² px ({windows} windows, {model} model on {args.device}, {workers} "
        f"workers x {threads} thread(s), {upsampler}): "
        f"{km2 / seconds:.3f} km²/s, {pixels / seconds / 1e6:.3f} Mpx/s, "
        f"{windows / seconds:.1f} win/s end to end vs {windows / model_seconds:.1f} win/s model "
        f"only; ratio {model_seconds / seconds:.2f} (cold workers), "
        f"{model_seconds / warm_seconds:.2f} (warm workers, {windows / warm_seconds:.1f} win/s); "
        "per tile in the warm workers "
        + ", ".join(f"{name} {value:.2f} s" for name, value in stages.items())
        + f"; peak RSS per worker {rss}"
    )


if __name__ == "__main__":
    main()
