"""``terrawatch change``: run the change flow from the shell with a progress bar."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from typing import Any

from terrawatch.errors import InputError
from terrawatch.flows.cli_common import (
    add_catalog_options,
    add_classes_options,
    add_run_options,
    check_store_path,
    read_classes,
    run_flow_with_progress,
    validated,
)


def add_change_command(sub: argparse._SubParsersAction, add_model_options: Callable) -> None:
    """Register the ``change`` sub-command."""
    p = sub.add_parser("change", help="change cube for an area between two periods (Prefect flow)")
    p.add_argument("--aoi", help="W,S,E,N in degrees, or a GeoJSON file (default with --from-cube)")
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
    p.add_argument("--targets", help="comma-separated classes to watch (default: all but class 0)")
    p.add_argument("--from-classes", help="only changes from these classes (comma-separated)")
    p.add_argument("--to-classes", help="only changes to these classes (comma-separated)")
    p.add_argument("--mode", default="mci", choices=["mci", "imc"])
    p.add_argument("--theta", type=float, default=145.0, help="change angle in degrees")
    p.add_argument(
        "--rule",
        default=None,
        choices=["instance", "landcover"],
        help="default: instance with --proposer sam, landcover with superpixels",
    )
    p.add_argument("--proposer", default="superpixel", choices=["superpixel", "sam"])
    p.add_argument("--comparator", default="clip", choices=["clip", "dinov2"])
    p.add_argument("--proposer-weights", help="SAM checkpoint path")
    p.add_argument("--comparator-weights", help="DINOv2 checkpoint path")
    add_catalog_options(
        p, "change cube: Zarr store path or fsspec URL", "output pixel size in metres"
    )
    add_run_options(p, chunk=512)
    add_model_options(p)
    p.set_defaults(handler=run_change_command)


def run_change_command(args: argparse.Namespace) -> int:
    """Run the flow in this process; a thread polls the store's tile records for the bar."""
    from terrawatch.flows.change import change
    from terrawatch.flows.cli import model_options
    from terrawatch.flows.landcover import ModelOptions

    params = change_params(args)
    params["model"] = validated(ModelOptions, **model_options(args))
    check_store_path(args.store)
    after_start = _preflight(args, params)
    return run_flow_with_progress(change, params, args.address, args.store, after_start, "change")


def change_params(args: argparse.Namespace) -> dict[str, Any]:
    """The flow parameters of the command line (without the model options)."""
    classes = None
    if args.classes or args.classes_file or not args.from_cube:
        classes = read_classes(args)
    if not args.from_cube and not args.aoi:
        raise InputError(
            "give --aoi (with --before START/END and --after START/END, or neither for the last "
            "month vs the same month a year earlier), or --from-cube LANDCOVER.zarr"
        )
    return dict(
        aoi=args.aoi,
        classes=classes,
        before=_period("--before", args.before),
        after=_period("--after", args.after),
        from_cube=args.from_cube,
        catalog=args.catalog,
        store=args.store,
        targets=_names(args.targets),
        from_classes=_names(args.from_classes),
        to_classes=_names(args.to_classes),
        mode=args.mode,
        theta=args.theta,
        rule=args.rule,
        proposer=args.proposer,
        comparator=args.comparator,
        proposer_weights=args.proposer_weights,
        comparator_weights=args.comparator_weights,
        collections=args.collections,
        max_cloud=args.max_cloud,
        max_items=args.max_items,
        resolution=args.resolution,
        crs=args.crs,
        chunk=args.chunk,
        halo=args.halo,
        loader=args.loader,
    )


def _period(option: str, value: str | None) -> list[str] | None:
    if value is None:
        return None
    parts = [p.strip() for p in value.split("/")]
    if len(parts) != 2 or not all(parts):
        raise InputError(
            f"{option} must be START/END in ISO dates, e.g. 2024-06-01/2024-06-30, got {value!r}"
        )
    return parts


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _preflight(args: argparse.Namespace, params: dict[str, Any]) -> str:
    """Fail in seconds, before a cluster starts; returns the later period's start.

    Checks the class query, the periods, both catalog searches (not with ``--from-cube``: the
    flow picks the cube's recorded items) and the weights (resolved, i.e. downloaded once on
    first use into the weights directory the workers read from).
    """
    from terrawatch.flows.change import resolve_periods
    from terrawatch.models.change import ChangeSettings
    from terrawatch.tasks.change.cube import read_landcover_pair
    from terrawatch.tasks.change.tile import class_query
    from terrawatch.tasks.core.catalog import search_items

    classes = params["classes"]
    if args.from_cube:
        pair = read_landcover_pair(args.from_cube)
        classes = classes or [",".join(words) for words in pair.classes.synonyms]
    class_query(classes, params["targets"], params["from_classes"], params["to_classes"])
    ChangeSettings(mode=args.mode, theta_deg=args.theta, rule=args.rule or "landcover")
    if args.from_cube:
        after_start = pair.step.time
    else:
        periods = resolve_periods(params["before"], params["after"], date.today())
        for start, end in periods:
            search_items(
                args.catalog, args.aoi, start, end, args.collections, args.max_cloud, args.max_items
            )
        after_start = periods[1][0]
    _resolve_weights(args)
    return after_start


def _resolve_weights(args: argparse.Namespace) -> None:
    from terrawatch.models.features import DINOV2_WEIGHTS
    from terrawatch.models.hf_weights import resolve_hf_model
    from terrawatch.models.sam import SAM_WEIGHTS
    from terrawatch.models.segearth import SIMFEATUP_WEIGHTS
    from terrawatch.models.weights import resolve_weights

    resolve_weights(args.backbone, args.weights)
    if args.upsampler == "simfeatup":
        resolve_weights(SIMFEATUP_WEIGHTS, args.upsampler_weights)
    if args.proposer == "sam":
        resolve_hf_model(SAM_WEIGHTS, args.proposer_weights)
    if args.comparator == "dinov2":
        resolve_hf_model(DINOV2_WEIGHTS, args.comparator_weights)
