"""Pieces shared by the flow commands (landcover, change, flood): options, classes, progress bar.

Each command runs its flow in this process on a Dask task runner
(:func:`run_flow_with_progress`) while a thread polls the store's ``tile_done`` record of the
step being written and draws a tqdm bar.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

CLASSES_HELP = 'comma-separated classes; "|" joins synonyms: "tree|forest"'
CATALOG_HELP = "earth-search, planetary-computer, a STAC API URL or a local folder"


def add_classes_options(parser: argparse.ArgumentParser, classes_help: str = CLASSES_HELP) -> None:
    """``--classes`` and ``--classes-file`` (read them with :func:`read_classes`)."""
    parser.add_argument("--classes", help=classes_help)
    parser.add_argument(
        "--classes-file", help="class-name file: one class per line, synonyms by comma"
    )


def add_catalog_options(
    parser: argparse.ArgumentParser, store_help: str, resolution_help: str
) -> None:
    """Catalog, store, grid and search options of the optical flow commands."""
    parser.add_argument("--catalog", default="earth-search", help=CATALOG_HELP)
    parser.add_argument("--store", required=True, help=store_help)
    add_grid_options(parser, resolution_help)
    parser.add_argument("--collections", nargs="+", help="STAC collections to search")
    parser.add_argument("--max-cloud", type=float, default=20.0, help="max eo:cloud_cover, percent")
    parser.add_argument("--max-items", type=int, default=50)


def add_grid_options(parser: argparse.ArgumentParser, resolution_help: str) -> None:
    """``--resolution`` and ``--crs`` of the output grid."""
    parser.add_argument("--resolution", type=float, help=resolution_help)
    parser.add_argument("--crs", help="output CRS, default the AOI's UTM zone")


def add_run_options(parser: argparse.ArgumentParser, chunk: int, halo: bool = True) -> None:
    """Chunk (and halo) size, loader and Dask scheduler."""
    parser.add_argument("--chunk", type=int, default=chunk, help="output chunk size in pixels")
    if halo:
        parser.add_argument(
            "--halo", type=int, default=112, help="context pixels around each chunk"
        )
    parser.add_argument("--loader", default="odc", choices=["odc", "stackstac"])
    parser.add_argument("--address", help="existing Dask scheduler, e.g. tcp://host:8786")


def read_classes(args: argparse.Namespace) -> list[str]:
    """The class entries of ``--classes`` or ``--classes-file`` (commas join synonyms)."""
    from terrawatch.flows.cli import parse_classes_option

    classes = parse_classes_option(args.classes, args.classes_file)
    if isinstance(classes, Path):
        from terrawatch.models.text import parse_class_names

        classes = [",".join(c) for c in parse_class_names(classes).classes]
    return classes


def run_flow_with_progress(
    flow: Any, params: dict[str, Any], address: str | None, store: str, start: str, desc: str
) -> int:
    """Run ``flow(**params)`` here on a Dask task runner with a tile progress bar; print it.

    Args:
        flow: The Prefect flow.
        params: Its parameters.
        address: Existing Dask scheduler, or None for a local cluster.
        store: The Zarr store the flow writes (polled for the bar).
        start: ISO date of the step being written (its ``time`` value).
        desc: Label of the bar.

    Returns:
        0; the flow's summary is printed as JSON.
    """
    from terrawatch.flows.local_api import shared_local_api
    from terrawatch.flows.runner import dask_task_runner

    runner = dask_task_runner(address)
    stop = threading.Event()
    bar = threading.Thread(target=progress_bar, args=(store, start, stop, desc), daemon=True)
    bar.start()
    try:
        with shared_local_api():
            summary = flow.with_options(task_runner=runner)(**params)
    finally:
        stop.set()
        bar.join(timeout=5)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def progress_bar(store: str, start: str, stop: threading.Event, desc: str) -> None:
    """tqdm bar over the ``tile_done`` record of the step starting ``start``, until ``stop``."""
    from tqdm import tqdm

    bar: Any = None
    while not stop.wait(1.0):
        done, total = tiles_done(store, start)
        if total and bar is None:
            bar = tqdm(total=total, unit="tile", desc=desc)
        if bar is not None:
            bar.update(done - bar.n)
    if bar is not None:
        done, _ = tiles_done(store, start)
        bar.update(done - bar.n)
        bar.close()


def tiles_done(store: str, start: str) -> tuple[int, int]:
    """(written, all) tiles of the step starting ``start``; (0, 0) before it exists."""
    try:
        import zarr

        group = zarr.open_group(store, mode="r", use_consolidated=False)
        times = group["time"][:]
        units = group["time"].attrs.get("units", "")
        done = group["tile_done"]
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return 0, 0
    index = _time_index(times, units, start)
    if index is None:
        return 0, 0
    record = np.asarray(done[index])
    return int((record == 1).sum()), int(record.size)


def _time_index(times: np.ndarray, units: str, start: str) -> int | None:
    if not units.startswith("seconds since 1970-01-01"):
        return len(times) - 1 if len(times) else None
    target = np.datetime64(start[:10], "s").astype("int64")
    hits = np.flatnonzero(times.astype("int64") == target)
    return int(hits[0]) if hits.size else None
