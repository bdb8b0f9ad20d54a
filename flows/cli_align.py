"""``terrawatch align-sar``: distil a SAR encoder on an area from the shell, with progress bars."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

from terrawatch.errors import InputError
from terrawatch.flows.cli_common import (
    AOI_HELP,
    add_option_group,
    read_options,
    validated_params,
)
from terrawatch.flows.options import (
    ChipOptions,
    GridOptions,
    PairSearchOptions,
    RunOptions,
    SarInputOptions,
    TrainingOptions,
)

SETTING_OPTIONS = ("lr", "weight_decay", "temperature", "weight_infonce", "weight_cls",
                   "weight_region")  # fmt: skip
"""Distillation settings with their own option (``--lr``...); ``--setting NAME=VALUE`` for any."""

ALIGN_FLAGS = {"dataset": "--chips"}
"""The option not named as its field (for error messages)."""


def add_align_command(sub: argparse._SubParsersAction) -> None:
    """Register the ``align-sar`` sub-command."""
    p = sub.add_parser(
        "align-sar", help="distil a SAR image encoder (AlignEarth) from optical CLIP on an area"
    )
    p.add_argument("--aoi", required=True, help=AOI_HELP)
    p.add_argument("--start", required=True, help="optical period start, ISO date")
    p.add_argument("--end", required=True, help="optical period end, ISO date (inclusive)")
    p.add_argument("--out", required=True, help="checkpoint directory (resumed when present)")
    add_option_group(p, PairSearchOptions, "search")
    add_option_group(p, TrainingOptions, "training", exclude={"settings"})
    group = p.add_argument_group("distillation settings")
    for name in SETTING_OPTIONS:
        group.add_argument(f"--{name.replace('_', '-')}", type=float, help=f"setting {name}")
    group.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any DistillSettings value, e.g. regions=7 (repeatable)",
    )
    add_option_group(p, ChipOptions, "chips")
    add_option_group(p, GridOptions, "grid")
    add_option_group(p, SarInputOptions, "sar")
    add_option_group(p, RunOptions, "run")
    p.set_defaults(handler=run_align_command, param_flags=ALIGN_FLAGS)


def run_align_command(args: argparse.Namespace) -> int:
    """Check the inputs as the flow does (before any cluster starts), then run the flow here.

    A thread shows ``progress.json``.
    """
    from terrawatch.flows import console, interrupt
    from terrawatch.flows.align_sar import align_sar, align_sar_inputs
    from terrawatch.flows.dask_tls import check_dask_tls
    from terrawatch.flows.local_api import shared_local_api
    from terrawatch.flows.runner import dask_task_runner

    params = align_params(args)
    validated_params(align_sar, params, ALIGN_FLAGS)
    align_sar_inputs(**params)
    address = read_options(args, RunOptions).address
    check_dask_tls(address)
    runner = dask_task_runner(address)
    stop = threading.Event()
    progress = Path(args.out) / "progress.json"
    since = time.time()
    bar = threading.Thread(target=_progress_bar, args=(progress, since, stop), daemon=True)
    if console.shows_progress():
        bar.start()
    try:
        with shared_local_api():
            hooks = [interrupt.reclaim_sigterm]
            summary = align_sar.with_options(task_runner=runner, on_running=hooks)(**params)
    finally:
        stop.set()
        if bar.is_alive():
            bar.join(timeout=5)
    console.print_summary(summary)
    return 0


def align_params(args: argparse.Namespace) -> dict[str, Any]:
    """The flow parameters of the command line.

    Raises:
        InputError: a malformed ``--setting`` or list option.
    """
    return dict(
        aoi=args.aoi,
        start=args.start,
        end=args.end,
        out=args.out,
        search=read_options(args, PairSearchOptions),
        grid=read_options(args, GridOptions),
        sar=read_options(args, SarInputOptions),
        chips=read_options(args, ChipOptions),
        training=read_options(args, TrainingOptions, settings=_settings(args) or None),
    )


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
