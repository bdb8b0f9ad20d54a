"""``terrawatch align-sar``: distil a SAR encoder on an area from the shell, with progress bars."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from terrawatch.errors import InputError
from terrawatch.flows.cli_common import validated, validated_params

SETTING_OPTIONS = ("lr", "weight_decay", "temperature", "weight_infonce", "weight_cls",
                   "weight_region")  # fmt: skip
"""Distillation settings with their own option (``--lr``...); ``--setting NAME=VALUE`` for any."""

CHIP_FLAGS = {"dataset": "--chips"}
"""The chip option not named as its ``ChipOptions`` field (for error messages)."""


def add_align_command(
    sub: argparse._SubParsersAction, add_model_options: Callable | None = None
) -> None:
    """Register the ``align-sar`` sub-command.

    ``add_model_options`` is accepted for the same call as the other flow commands but not
    used: the segmenter options do not apply (the teacher is CLIP ViT-B/16, ``--weights`` names
    its file and ``--batch-size`` counts chip pairs per step).
    """
    p = sub.add_parser(
        "align-sar", help="distil a SAR image encoder (AlignEarth) from optical CLIP on an area"
    )
    p.add_argument("--aoi", required=True, help="W,S,E,N in degrees, or a GeoJSON file")
    p.add_argument("--start", required=True, help="optical period start, ISO date")
    p.add_argument("--end", required=True, help="optical period end, ISO date (inclusive)")
    p.add_argument(
        "--catalog",
        default="planetary-computer",
        help="planetary-computer, earth-search, a STAC API URL or a local folder",
    )
    p.add_argument("--out", required=True, help="checkpoint directory (resumed when present)")
    p.add_argument("--optical-collections", nargs="+", help="default sentinel-2-l2a")
    p.add_argument("--sar-collections", nargs="+", help="default sentinel-1-rtc on PC, else grd")
    p.add_argument("--max-days", type=float, default=3.0, help="max optical-SAR gap, days")
    p.add_argument("--chip", type=int, default=224, help="chip side in pixels")
    p.add_argument("--address", help="existing Dask scheduler, e.g. tcp://host:8786")
    _add_training_options(p)
    _add_chip_options(p)
    p.set_defaults(handler=run_align_command)


def _add_training_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("training")
    group.add_argument("--steps", type=int, default=1000, help="train until this step")
    group.add_argument("--batch-size", type=int, default=64, help="chip pairs per step")
    group.add_argument("--weights", help="teacher CLIP checkpoint (default: weights dir)")
    for name in SETTING_OPTIONS:
        group.add_argument(f"--{name.replace('_', '-')}", type=float, help=f"setting {name}")
    group.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any DistillSettings value, e.g. regions=7 (repeatable)",
    )
    group.add_argument("--no-resume", action="store_true", help="refuse to continue checkpoints")
    group.add_argument("--eval-every", type=int, default=100, help="held-out cosine every N")
    group.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    group.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    group.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    group.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")


def _add_chip_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("chips")
    group.add_argument("--chips", help="chip dataset path (default OUT/chips.zarr)")
    group.add_argument("--stride", type=int, help="pixels between chips (default: --chip)")
    group.add_argument("--min-valid", type=float, default=0.9, help="least valid fraction")
    group.add_argument("--holdout", type=float, default=0.1, help="held-out location fraction")
    group.add_argument("--resolution", type=float, help="pixel size in metres (default 10)")
    group.add_argument("--crs", help="grid CRS, default the AOI's UTM zone")
    group.add_argument("--max-cloud", type=float, default=20.0, help="max optical cloud, %%")
    group.add_argument("--max-items", type=int, default=50, help="most scenes per sensor")
    group.add_argument("--orbit", choices=["ascending", "descending"], help="one SAR orbit")
    group.add_argument("--polarizations", help="comma-separated, e.g. vv,vh (default: needed)")
    group.add_argument("--speckle", default="lee", choices=["lee", "refined_lee", "none"])
    group.add_argument("--speckle-window", type=int, default=7, help="speckle window, pixels")
    group.add_argument("--composite", default="grey", choices=["grey", "dual"])
    group.add_argument("--loader", default="odc", choices=["odc", "stackstac"])


def run_align_command(args: argparse.Namespace) -> int:
    """Check everything cheap first, then run the flow; a thread shows ``progress.json``."""
    from terrawatch.flows.align_sar import align_sar
    from terrawatch.flows.local_api import shared_local_api
    from terrawatch.flows.runner import dask_task_runner

    params = align_params(args)
    validated_params(align_sar, params, CHIP_FLAGS)
    _preflight(params)
    runner = dask_task_runner(args.address)
    stop = threading.Event()
    progress = Path(args.out) / "progress.json"
    since = time.time()
    bar = threading.Thread(target=_progress_bar, args=(progress, since, stop), daemon=True)
    bar.start()
    try:
        with shared_local_api():
            summary = align_sar.with_options(task_runner=runner)(**params)
    finally:
        stop.set()
        bar.join(timeout=5)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def align_params(args: argparse.Namespace) -> dict[str, Any]:
    """The flow parameters of the command line.

    Raises:
        InputError: a malformed ``--setting`` or ``--polarizations``, or bad chip options.
    """
    from terrawatch.flows.align_sar import ChipOptions

    chips = validated(
        ChipOptions, CHIP_FLAGS, dataset=args.chips, stride=args.stride,
        min_valid=args.min_valid, holdout=args.holdout,
        resolution=args.resolution, crs=args.crs, max_cloud=args.max_cloud,
        max_items=args.max_items, orbit=args.orbit, polarizations=_polarizations(args),
        speckle=None if args.speckle == "none" else args.speckle,
        speckle_window=args.speckle_window, composite=args.composite, loader=args.loader,
    )  # fmt: skip
    return dict(
        aoi=args.aoi, start=args.start, end=args.end, catalog=args.catalog,
        optical_collections=args.optical_collections, sar_collections=args.sar_collections,
        max_days=args.max_days, chip=args.chip, out=args.out, steps=args.steps,
        batch_size=args.batch_size, weights=args.weights, settings=_settings(args) or None,
        resume=not args.no_resume, eval_every=args.eval_every, save_every=args.save_every,
        seed=args.seed, device=args.device, threads=args.threads, chips=chips,
    )  # fmt: skip


def _settings(args: argparse.Namespace) -> dict[str, float]:
    settings = {name: getattr(args, name) for name in SETTING_OPTIONS}
    settings = {name: value for name, value in settings.items() if value is not None}
    for entry in args.setting:
        name, sep, value = entry.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None:
            raise InputError(f"--setting must be NAME=NUMBER (e.g. lr=1e-4), got {entry!r}")
        settings[name.strip()] = number
    return settings


def _polarizations(args: argparse.Namespace) -> list[str] | None:
    if args.polarizations is None:
        return None
    names = [v.strip() for v in args.polarizations.split(",") if v.strip()]
    if not names:
        raise InputError(f"--polarizations needs comma-separated names, got {args.polarizations!r}")
    return names


def _preflight(params: dict[str, Any]) -> None:
    """Fail in seconds, before a cluster starts: options, settings, teacher weights, pairs.

    Unless a matching chip dataset exists (then nothing is searched), both catalog searches
    run and the scenes are paired, so "no pair within max_days" shows up here.
    """
    from terrawatch.models.weights import resolve_weights
    from terrawatch.tasks.alignearth.chips import pair_scenes
    from terrawatch.tasks.alignearth.dataset import find_chip_dataset
    from terrawatch.tasks.alignearth.train import TrainJob
    from terrawatch.tasks.core.catalog import search_items

    options = params["chips"]
    request = options.request(
        aoi=params["aoi"], start=params["start"], end=params["end"], catalog=params["catalog"],
        optical_collections=params["optical_collections"], max_days=params["max_days"],
        sar_collections=params["sar_collections"], chip=params["chip"],
    )  # fmt: skip
    dataset = options.dataset or str(Path(params["out"]) / "chips.zarr")
    job = TrainJob(
        chips=dataset,
        out=params["out"],
        steps=params["steps"],
        batch_size=params["batch_size"],
        weights=params["weights"],
        settings=tuple(sorted((params["settings"] or {}).items())),
        eval_every=params["eval_every"],
        save_every=params["save_every"],
        threads=params["threads"],
    )
    job.check_chip(params["chip"])
    resolve_weights("ViT-B-16", params["weights"])
    if find_chip_dataset(dataset, request) is not None:
        return
    optical = search_items(
        request.catalog,
        request.aoi,
        request.start,
        request.end,
        request.optical_collections,
        options.max_cloud,
        options.max_items,
    )
    sar = search_items(request.catalog, request.aoi, *request.sar_window(),
                       request.sar_collections, None, options.max_items)  # fmt: skip
    pair_scenes(optical.items, sar.items, request.max_days, request.orbit)


def _progress_bar(path: Path, since: float, stop: threading.Event) -> None:
    """tqdm bars over the chip jobs, then the training steps, from ``progress.json``.

    Records written before ``since`` (an earlier run's) are ignored.
    """
    from tqdm import tqdm

    bar: Any = None
    phase = None
    while True:
        finished = stop.wait(1.0)
        record = _read_progress(path, since)
        if record is not None and record.get("phase") != phase:
            if bar is not None:
                bar.close()
            phase = record.get("phase")
            unit = "job" if phase == "chips" else "step"
            bar = tqdm(total=record["total"], unit=unit, desc=f"align-sar {phase}")
        if bar is not None and record is not None:
            bar.update(record["done"] - bar.n)
            if "loss" in record:
                bar.set_postfix(
                    loss=f"{record['loss']:.4f}", chips_s=f"{record['chips_per_s']:.1f}"
                )
        if finished:
            break
    if bar is not None:
        bar.close()


def _read_progress(path: Path, since: float) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    keys = {"phase", "done", "total", "time"}
    return record if keys <= set(record) and record["time"] >= since else None
