"""``terrawatch landcover``: run a flow from the shell with a progress bar."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from terrawatch.flows.cli_common import (
    add_catalog_options,
    add_classes_options,
    add_run_options,
    check_store_path,
    read_classes,
    run_flow_with_progress,
    validated,
)


def add_flow_commands(sub: argparse._SubParsersAction, add_model_options: Callable) -> None:
    """Register the flow sub-commands."""
    p = sub.add_parser("landcover", help="land-cover cube for an area and period (Prefect flow)")
    p.add_argument("--aoi", required=True, help="W,S,E,N in degrees, or a GeoJSON file")
    p.add_argument("--start", required=True, help="period start, ISO date")
    p.add_argument("--end", required=True, help="period end, ISO date (inclusive)")
    add_classes_options(p)
    add_catalog_options(
        p, "Zarr store path or fsspec URL", "output pixel size in metres (inference GSD)"
    )
    add_run_options(p, chunk=1024, halo=False)
    add_model_options(p)
    p.set_defaults(handler=run_landcover_command)


def run_landcover_command(args: argparse.Namespace) -> int:
    """Run the flow in this process; a thread polls the store's tile records for the bar."""
    from terrawatch.flows.cli import model_options
    from terrawatch.flows.landcover import ModelOptions, landcover

    classes = read_classes(args)
    options = validated(ModelOptions, **model_options(args))
    check_store_path(args.store)
    _preflight(args, classes)
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
    return run_flow_with_progress(
        landcover, params, args.address, args.store, args.start, "land cover"
    )


def _preflight(args: argparse.Namespace, classes: list[str]) -> None:
    """Fail in seconds, before a cluster starts: bad input, unreachable catalog, no weights.

    The catalog search validates the AOI, dates and collections and reaches the catalog; the
    weights are resolved (downloaded once on first use, into the weights directory the
    workers read from).
    """
    from terrawatch.models.segearth import SIMFEATUP_WEIGHTS
    from terrawatch.models.text import parse_class_names
    from terrawatch.models.weights import resolve_weights
    from terrawatch.tasks.core.catalog import search_items

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
