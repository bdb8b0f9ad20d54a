"""``terrawatch landcover``: run a flow from the shell with a progress bar."""

from __future__ import annotations

import argparse
from typing import Any

from terrawatch.flows.cli_common import (
    AOI_HELP,
    add_classes_options,
    add_option_group,
    check_store_path,
    read_classes,
    read_options,
    run_flow_with_progress,
    validated_params,
)
from terrawatch.flows.options import (
    GridOptions,
    LandcoverModelOptions,
    RunOptions,
    SearchOptions,
    TilingOptions,
)


def add_flow_commands(sub: argparse._SubParsersAction) -> None:
    """Register the flow sub-commands."""
    p = sub.add_parser("landcover", help="land-cover cube for an area and period (Prefect flow)")
    p.add_argument("--aoi", required=True, help=AOI_HELP)
    p.add_argument("--start", required=True, help="period start, ISO date")
    p.add_argument("--end", required=True, help="period end, ISO date (inclusive)")
    add_classes_options(p)
    p.add_argument("--store", required=True, help="Zarr store path or fsspec URL")
    add_option_group(p, SearchOptions, "search")
    add_option_group(p, GridOptions, "grid")
    add_option_group(p, TilingOptions, "tiling")
    add_option_group(p, LandcoverModelOptions, "model")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="show the scenes, grid, tiles, weights and a time estimate; load, start and write "
        "nothing",
    )
    add_option_group(p, RunOptions, "run")
    p.set_defaults(handler=run_landcover_command)


def landcover_params(args: argparse.Namespace) -> dict[str, Any]:
    """The flow's parameters from the command line."""
    return dict(
        aoi=args.aoi,
        classes=read_classes(args),
        start=args.start,
        end=args.end,
        store=args.store,
        search=read_options(args, SearchOptions),
        grid=read_options(args, GridOptions),
        tiling=read_options(args, TilingOptions),
        model=read_options(args, LandcoverModelOptions),
    )


def run_landcover_command(args: argparse.Namespace) -> int:
    """Check the inputs as the flow does (before any cluster starts), then run the flow here.

    A thread polls the store's tile records for the progress bar.
    """
    from terrawatch.flows.landcover import landcover, landcover_inputs

    params = landcover_params(args)
    check_store_path(args.store)
    validated_params(landcover, params)
    inputs = landcover_inputs(**params)
    if args.dry_run:
        from terrawatch.flows import cli_dry_run as dry

        tiling, grid = params["tiling"], params["grid"]
        return dry.report(
            "landcover", [("", inputs.scenes)],
            dry.grid_of(inputs.scenes.items, args.aoi, grid.resolution, grid.crs),
            tiling.chunk, tiling.halo, args.store, inputs.start,
            dry.segmenter_weights(params["model"]),
        )  # fmt: skip
    address = read_options(args, RunOptions).address
    return run_flow_with_progress(landcover, params, address, args.store, args.start, "land cover")
