"""``terrawatch change``: run the change flow from the shell with a progress bar."""

from __future__ import annotations

import argparse
from typing import Any

from terrawatch.errors import InputError
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
    ChangeOptions,
    ChangeTilingOptions,
    GridOptions,
    ModelOptions,
    RunOptions,
    SearchOptions,
)


def add_change_command(sub: argparse._SubParsersAction) -> None:
    """Register the ``change`` sub-command."""
    p = sub.add_parser(
        "change", help="change between two images, or a change cube for an area (Prefect flow)"
    )
    p.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="two images of the same size (IMAGE1 IMAGE2) instead of --aoi or --from-cube: "
        "change between them, written to --out",
    )
    p.add_argument(
        "--out", help="with two images: change GeoTIFF (bands changed, class_from, class_to)"
    )
    p.add_argument("--png", help="with two images: coloured preview PNG of the change")
    p.add_argument("--aoi", help=f"{AOI_HELP} (default with --from-cube: the cube's extent)")
    p.add_argument(
        "--before",
        help="earlier period START/END (ISO dates, inclusive); without --before and --after: "
        "the last full month vs the same month a year earlier",
    )
    p.add_argument("--after", help="later period START/END (ISO dates, inclusive)")
    p.add_argument(
        "--from-cube",
        help="land-cover cube whose grid, classes and last two periods make the pair",
    )
    add_classes_options(p)
    p.add_argument("--store", help="change cube: Zarr store path or fsspec URL (flow runs)")
    add_option_group(p, ChangeOptions, "change")
    add_option_group(p, SearchOptions, "search")
    add_option_group(p, GridOptions, "grid")
    add_option_group(p, ChangeTilingOptions, "tiling")
    add_option_group(p, ModelOptions, "model")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="show the scenes, grid, tiles, weights and a time estimate; load, start and write "
        "nothing",
    )
    add_option_group(p, RunOptions, "run")
    p.set_defaults(handler=run_change_command)


def change_params(args: argparse.Namespace) -> dict[str, Any]:
    """The flow's parameters from the command line (classes: the cube's with --from-cube)."""
    classes = None
    if args.classes or args.classes_file or not args.from_cube:
        classes = read_classes(args)
    return dict(
        aoi=args.aoi,
        classes=classes,
        before=args.before,
        after=args.after,
        from_cube=args.from_cube,
        store=args.store,
        detection=read_options(args, ChangeOptions),
        search=read_options(args, SearchOptions),
        grid=read_options(args, GridOptions),
        tiling=read_options(args, ChangeTilingOptions),
        model=read_options(args, ModelOptions),
    )


def run_change_command(args: argparse.Namespace) -> int:
    """Check the inputs as the flow does (before any cluster starts), then run the flow here.

    A thread polls the store's tile records for the progress bar.
    """
    if args.images:
        from terrawatch.flows.cli_change_images import run_image_pair

        return run_image_pair(args)
    if args.out or args.png:
        raise InputError("--out and --png go with two images: terrawatch change IMAGE1 IMAGE2 ...")
    if not args.store:
        raise InputError(
            "give --store PATH for the change cube (with --aoi or --from-cube), or two images: "
            "terrawatch change IMAGE1 IMAGE2 --classes ... --out change.tif"
        )
    from terrawatch.flows.change import change, change_inputs

    params = change_params(args)
    check_store_path(args.store)
    validated_params(change, params)
    inputs = change_inputs(**params)
    after_start = inputs.periods[1][0]
    if args.dry_run:
        from terrawatch.flows import cli_dry_run as dry

        tiling, grid = params["tiling"], params["grid"]
        before, after = inputs.scenes
        layout = inputs.grid or dry.grid_of(after.items, inputs.aoi, grid.resolution, grid.crs)
        weights = dry.change_weights(params["model"], params["detection"])
        return dry.report(
            "change", [(" before", before), (" after", after)], layout, tiling.chunk,
            tiling.halo, args.store, after_start, weights,
        )  # fmt: skip
    address = read_options(args, RunOptions).address
    return run_flow_with_progress(change, params, address, args.store, after_start, "change")
