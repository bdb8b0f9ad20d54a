"""``terrawatch flood``: run the flood-response flow from the shell with a progress bar."""

from __future__ import annotations

import argparse
from typing import Any

from terrawatch.flows.cli_common import (
    AOI_HELP,
    CLASSES_HELP,
    add_classes_options,
    add_option_group,
    check_store_path,
    read_classes,
    read_options,
    run_flow_with_progress,
    validated_params,
)
from terrawatch.flows.options import (
    FloodModelOptions,
    FloodOutputOptions,
    FloodSearchOptions,
    FloodWindowOptions,
    GridOptions,
    RunOptions,
    SarInputOptions,
    TilingOptions,
)
from terrawatch.tasks.flood import DEFAULT_CLASSES, DEFAULT_WATER_CLASSES

FLAGS = {"event_date": "--date", "factory": "--model-factory"}
"""Flags not named as the flow parameter or option field they set (for error messages)."""


def add_flood_command(sub: argparse._SubParsersAction) -> None:
    """Register the ``flood`` sub-command."""
    p = sub.add_parser(
        "flood", help="flood extent around an event date from Sentinel-1 (Prefect flow)"
    )
    p.add_argument("--aoi", required=True, help=AOI_HELP)
    p.add_argument("--date", required=True, help="event date (ISO); the post-event window starts")
    classes = ",".join(c.replace(",", "|") for c in DEFAULT_CLASSES)
    add_classes_options(p, f'{CLASSES_HELP} (default: "{classes}")')
    p.add_argument(
        "--water-classes",
        help=f"comma-separated classes that count as water (default: "
        f"{','.join(DEFAULT_WATER_CLASSES)})",
    )
    p.add_argument("--store", required=True, help="flood cube: Zarr store path or fsspec URL")
    add_option_group(p, FloodWindowOptions, "windows")
    add_option_group(p, FloodSearchOptions, "search")
    # optical scenes are searched by default now (--no-optical turns them off); an old command
    # line's --optical asks for the default and keeps working
    p.add_argument("--optical", dest="optical", action="store_true", help=argparse.SUPPRESS)
    add_option_group(p, SarInputOptions, "sar")
    add_option_group(p, GridOptions, "grid")
    add_option_group(p, TilingOptions, "tiling")
    add_option_group(p, FloodModelOptions, "model")
    add_option_group(p, FloodOutputOptions, "outputs")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="show the scenes, grid, tiles, weights and a time estimate; load, start and write "
        "nothing",
    )
    add_option_group(p, RunOptions, "run")
    p.set_defaults(handler=run_flood_command, param_flags=FLAGS)


def flood_params(args: argparse.Namespace) -> dict[str, Any]:
    """The flow's parameters from the command line."""
    water = None
    if args.water_classes is not None:
        water = [v.strip() for v in args.water_classes.split(",") if v.strip()]
    return dict(
        aoi=args.aoi,
        event_date=args.date,
        classes=read_classes(args) if args.classes or args.classes_file else None,
        water_classes=water,
        store=args.store,
        windows=read_options(args, FloodWindowOptions),
        search=read_options(args, FloodSearchOptions),
        sar=read_options(args, SarInputOptions),
        grid=read_options(args, GridOptions),
        tiling=read_options(args, TilingOptions),
        model=read_options(args, FloodModelOptions),
        outputs=read_options(args, FloodOutputOptions),
    )


def run_flood_command(args: argparse.Namespace) -> int:
    """Check the inputs as the flow does (before any cluster starts), then run the flow here.

    A thread polls the store's tile records for the progress bar.
    """
    from terrawatch.flows.flood import flood, flood_inputs

    params = flood_params(args)
    check_store_path(args.store)
    validated_params(flood, params, FLAGS)
    inputs = flood_inputs(**params)
    if args.dry_run:
        from terrawatch.flows import cli_dry_run as dry

        tiling, grid = params["tiling"], params["grid"]
        layout = dry.grid_of(inputs.post.items, args.aoi, grid.resolution, grid.crs)
        scenes = [(" pre-event", inputs.pre), (" post-event", inputs.post)]
        weights = dry.flood_weights(params["model"], inputs.spec.optical is not None)
        return dry.report(
            "flood", scenes, layout, tiling.chunk, tiling.halo, args.store,
            inputs.windows.event, weights,
        )  # fmt: skip
    address = read_options(args, RunOptions).address
    return run_flow_with_progress(flood, params, address, args.store, inputs.windows.event, "flood")
