"""``terrawatch landcover``: run a flow from the shell with a progress bar."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def add_flow_commands(sub: argparse._SubParsersAction, add_model_options: Callable) -> None:
    """Register the flow sub-commands."""
    p = sub.add_parser("landcover", help="land-cover cube for an area and period (Prefect flow)")
    p.add_argument("--aoi", required=True, help="W,S,E,N in degrees, or a GeoJSON file")
    p.add_argument("--start", required=True, help="period start, ISO date")
    p.add_argument("--end", required=True, help="period end, ISO date (inclusive)")
    p.add_argument("--classes", help='comma-separated classes; "|" joins synonyms: "tree|forest"')
    p.add_argument("--classes-file", help="class-name file: one class per line, synonyms by comma")
    p.add_argument(
        "--catalog",
        default="earth-search",
        help="earth-search, planetary-computer, a STAC API URL or a local folder",
    )
    p.add_argument("--store", required=True, help="Zarr store path or fsspec URL")
    p.add_argument("--resolution", type=float, help="output pixel size in metres (inference GSD)")
    p.add_argument("--crs", help="output CRS, default the AOI's UTM zone")
    p.add_argument("--collections", nargs="+", help="STAC collections to search")
    p.add_argument("--max-cloud", type=float, default=20.0, help="max eo:cloud_cover, percent")
    p.add_argument("--max-items", type=int, default=50)
    p.add_argument("--chunk", type=int, default=1024, help="output chunk size in pixels")
    p.add_argument("--loader", default="odc", choices=["odc", "stackstac"])
    p.add_argument("--address", help="existing Dask scheduler, e.g. tcp://host:8786")
    add_model_options(p)
    p.set_defaults(handler=run_landcover_command)


def run_landcover_command(args: argparse.Namespace) -> int:
    """Run the flow in this process; a thread polls the store's tile records for the bar."""
    from flows._api import shared_local_api
    from flows._runner import dask_task_runner
    from flows.cli import model_options, parse_classes_option
    from flows.landcover import ModelOptions, landcover

    classes = parse_classes_option(args.classes, args.classes_file)
    if isinstance(classes, Path):
        from models.text import parse_class_names

        classes = [",".join(c) for c in parse_class_names(classes).classes]
    options = ModelOptions(**model_options(args))
    _preflight(args, classes)
    runner = dask_task_runner(args.address)
    stop = threading.Event()
    bar = threading.Thread(target=_progress_bar, args=(args.store, args.start, stop), daemon=True)
    bar.start()
    flow = landcover.with_options(task_runner=runner)
    params = dict(
        aoi=args.aoi,
        start=args.start,
        end=args.end,
        classes=classes,
        catalog=args.catalog,
        store=args.store,
        collections=args.collections,
        max_cloud=args.max_cloud,
        max_items=args.max_items,
        resolution=args.resolution,
        crs=args.crs,
        chunk=args.chunk,
        loader=args.loader,
        model=options,
    )
    try:
        with shared_local_api():
            summary = flow(**params)
    finally:
        stop.set()
        bar.join(timeout=5)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _preflight(args: argparse.Namespace, classes: list[str]) -> None:
    """Fail in seconds, before a cluster starts: bad input, unreachable catalog, no weights.

    The catalog search validates the AOI, dates and collections and reaches the catalog; the
    weights are resolved (downloaded once on first use, into the weights directory the
    workers read from).
    """
    from models.segearth import SIMFEATUP_WEIGHTS
    from models.text import parse_class_names
    from models.weights import resolve_weights
    from tasks.catalog import search_items

    parse_class_names(classes)
    search_items(
        args.catalog,
        args.aoi,
        args.start,
        args.end,
        args.collections,
        args.max_cloud,
        args.max_items,
    )
    resolve_weights(args.backbone, args.weights)
    if args.upsampler == "simfeatup":
        resolve_weights(SIMFEATUP_WEIGHTS, args.upsampler_weights)


def _progress_bar(store: str, start: str, stop: threading.Event) -> None:
    """tqdm bar over the ``tile_done`` record of the step being written."""
    from tqdm import tqdm

    bar: Any = None
    while not stop.wait(1.0):
        done, total = _tiles_done(store, start)
        if total and bar is None:
            bar = tqdm(total=total, unit="tile", desc="land cover")
        if bar is not None:
            bar.update(done - bar.n)
    if bar is not None:
        done, _ = _tiles_done(store, start)
        bar.update(done - bar.n)
        bar.close()


def _tiles_done(store: str, start: str) -> tuple[int, int]:
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
