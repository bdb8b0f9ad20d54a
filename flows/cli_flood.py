"""``terrawatch flood``: run the flood-response flow from the shell with a progress bar."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from terrawatch.errors import InputError
from terrawatch.flows.cli_common import (
    add_classes_options,
    add_grid_options,
    add_run_options,
    check_store_path,
    read_classes,
    run_flow_with_progress,
    validated,
)

FLAGS = {"event_date": "--date", "factory": "--model-factory"}
"""Flags not named as the flow parameter or option field they set (for error messages)."""


def add_flood_command(
    sub: argparse._SubParsersAction, add_model_options: Callable | None = None
) -> None:
    """Register the ``flood`` sub-command (model options as the other flow commands)."""
    p = sub.add_parser(
        "flood", help="flood extent around an event date from Sentinel-1 (Prefect flow)"
    )
    p.add_argument("--aoi", required=True, help="W,S,E,N in degrees, or a GeoJSON file")
    p.add_argument("--date", required=True, help="event date (ISO); the post-event window starts")
    p.add_argument("--pre-days", type=int, default=12, help="days before the event searched")
    p.add_argument("--post-days", type=int, default=6, help="days after the event date searched")
    add_classes_options(
        p,
        'comma-separated classes; "|" joins synonyms (default: '
        '"water|river|lake|flood water,land|field|building|road|tree")',
    )
    p.add_argument(
        "--water-classes", default="water", help="comma-separated classes that count as water"
    )
    p.add_argument(
        "--catalog",
        default="planetary-computer",
        help="planetary-computer (S1 RTC), earth-search (S1 GRD), a STAC API URL or a folder",
    )
    p.add_argument("--store", required=True, help="flood cube: Zarr store path or fsspec URL")
    p.add_argument("--collections", nargs="+", help="SAR collections (default per catalog)")
    p.add_argument("--orbit", choices=["ascending", "descending"], help="keep one orbit direction")
    p.add_argument("--polarizations", help="comma-separated, e.g. vv,vh (default: as needed)")
    p.add_argument("--speckle", default="lee", choices=["lee", "refined_lee", "none"])
    p.add_argument("--speckle-window", type=int, default=7, help="speckle window in pixels")
    p.add_argument("--composite", default="grey", choices=["grey", "dual"], help="SAR model input")
    p.add_argument("--optical", action="store_true", help="also use cloud-free Sentinel-2 scenes")
    p.add_argument("--optical-collections", nargs="+", help="optical collections")
    p.add_argument("--max-cloud", type=float, default=10.0, help="max cloud of optical, percent")
    p.add_argument("--max-items", type=int, default=20, help="max scenes per window and sensor")
    add_grid_options(p, "output pixel size in metres (default 10)")
    add_run_options(p, chunk=1024)
    if add_model_options is None:
        from terrawatch.flows.cli import _add_model_options as add_model_options
    add_model_options(p)
    group = p.add_argument_group("flood model")
    group.add_argument(
        "--sensor", default="sar", choices=["sar", "optical"], help="encoder for SAR composites"
    )
    group.add_argument("--optical-weights", help="CLIP checkpoint for optical scenes")
    group.add_argument("--model-factory", help="'package.module:callable' of your own segmenter")
    p.set_defaults(handler=run_flood_command)


def run_flood_command(args: argparse.Namespace) -> int:
    """Run the flow in this process; a thread polls the store's tile records for the bar."""
    from terrawatch.flows.cli import model_options
    from terrawatch.flows.flood import FloodModelOptions, flood

    params = flood_params(args)
    params["model"] = validated(
        FloodModelOptions,
        FLAGS,
        **model_options(args),
        sensor=args.sensor,
        optical_weights=args.optical_weights,
        factory=args.model_factory,
    )
    check_store_path(args.store)
    event = _preflight(args, params)
    return run_flow_with_progress(
        flood, params, args.address, args.store, event, "flood", flags=FLAGS
    )


def flood_params(args: argparse.Namespace) -> dict[str, Any]:
    """The flow parameters of the command line (without the model options)."""
    return dict(
        aoi=args.aoi,
        event_date=args.date,
        pre_days=args.pre_days,
        post_days=args.post_days,
        classes=_classes(args),
        water_classes=_names("--water-classes", args.water_classes),
        catalog=args.catalog,
        store=args.store,
        collections=args.collections,
        orbit=args.orbit,
        polarizations=_names("--polarizations", args.polarizations),
        speckle=None if args.speckle == "none" else args.speckle,
        speckle_window=args.speckle_window,
        composite=args.composite,
        optical=args.optical,
        optical_collections=args.optical_collections,
        max_cloud=args.max_cloud,
        max_items=args.max_items,
        resolution=args.resolution,
        crs=args.crs,
        chunk=args.chunk,
        halo=args.halo,
        loader=args.loader,
    )


def _classes(args: argparse.Namespace) -> list[str]:
    from terrawatch.tasks.flood.search import DEFAULT_CLASSES

    if not (args.classes or args.classes_file):
        return list(DEFAULT_CLASSES)
    return read_classes(args)


def _names(option: str, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise InputError(f"{option} needs at least one comma-separated name, got {value!r}")
    return names


def _preflight(args: argparse.Namespace, params: dict[str, Any]) -> str:
    """Fail in seconds, before a cluster starts; returns the event date.

    Checks the windows, classes and SAR options, both SAR searches (scenes present, one orbit
    and polarisation set on each side and across the two), and resolves the weights
    (downloaded once on first use into the weights directory the workers read from).
    """
    from terrawatch.tasks.core.sar import check_sar_items
    from terrawatch.tasks.core.sar_composite import SarOptions
    from terrawatch.tasks.flood.search import flood_windows, search_sar_window, water_indices

    windows = flood_windows(params["event_date"], params["pre_days"], params["post_days"])
    water_indices(params["classes"], params["water_classes"])
    pols = params["polarizations"]
    SarOptions(tuple(pols) if pols else None, params["speckle"], args.speckle_window)
    found = [
        search_sar_window(
            args.catalog, args.aoi, side, window, args.collections, args.max_items, args.orbit
        )
        for side, window in (("pre", windows.pre), ("post", windows.post))
    ]
    check_sar_items([*found[0].items, *found[1].items], pols)
    if not args.model_factory:
        _resolve_weights(args)
    return windows.event


def _resolve_weights(args: argparse.Namespace) -> None:
    from terrawatch.models.alignearth import sensor_profile
    from terrawatch.models.segearth import SIMFEATUP_WEIGHTS
    from terrawatch.models.weights import resolve_weights

    resolve_weights(sensor_profile(args.sensor, args.backbone).weights, args.weights)
    if args.upsampler == "simfeatup":
        resolve_weights(SIMFEATUP_WEIGHTS, args.upsampler_weights)
    if args.optical:
        resolve_weights(args.backbone, args.optical_weights)
