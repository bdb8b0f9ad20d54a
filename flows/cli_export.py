"""``terrawatch export``: a cube layer as a styled COG, class polygons, buildings or roads.

Only the standard library is imported at the top (``--help`` stays fast); the work is
:func:`terrawatch.tasks.core.export.export_layer`, the same code as the xarray accessor's.
"""

from __future__ import annotations

import argparse

from terrawatch.errors import InputError

OBJECT_KINDS = ("buildings", "roads")


def add_export_command(sub: argparse._SubParsersAction) -> None:
    """Register the ``export`` sub-command."""
    p = sub.add_parser(
        "export",
        help="export a cube layer: .tif (COG) or polygons/objects (.parquet, .gpkg, .geojson)",
        description="Export one categorical variable of a cube at one time step. The format "
        "follows the suffix of --to: .tif is a Cloud-Optimized GeoTIFF with mode overviews, "
        "colour table and class names; .parquet (GeoParquet), .gpkg and .geojson (WGS 84) hold "
        "one polygon per connected region of one class (holes kept, merged across chunk seams) "
        "with class, area_m2 and mean confidence, or with --objects building outlines or road "
        "centerlines.",
    )
    p.add_argument("store", help="cube: Zarr store path or fsspec URL")
    p.add_argument(
        "--var",
        help="variable to export (default: the cube's class variable, e.g. landcover; for "
        "vectors of a change cube 'transitions': changed regions with from/to classes)",
    )
    p.add_argument("--time", default="latest", help="time step: its ISO date, or 'latest'")
    p.add_argument("--to", required=True, help="output file; its suffix picks the format")
    p.add_argument(
        "--objects",
        choices=OBJECT_KINDS,
        help="vectors of objects instead of class polygons: building outlines (the 'building' "
        "class, regularised) or road centerlines (the 'road' class, a line graph)",
    )
    p.add_argument(
        "--simplify",
        type=_metres("--simplify"),
        default=0.0,
        help="simplification tolerance in metres; neighbouring polygons keep shared edges "
        "(default 0: pixel edges; buildings default to one pixel). Simplifies the whole "
        "coverage at once, so memory grows with the number of polygons",
    )
    p.add_argument(
        "--min-area",
        type=_metres("--min-area"),
        default=0.0,
        help="absorb regions smaller than this many square metres into their largest "
        "neighbour before tracing, so no gap is left (GDAL's sieve; islands in no data are "
        "dropped; default 0)",
    )
    p.add_argument(
        "--min-spur",
        type=_metres("--min-spur"),
        help="roads: prune dead-end spurs shorter than this many metres (default 10 pixels)",
    )
    p.add_argument(
        "--class",
        dest="class_names",
        action="append",
        metavar="NAME",
        help="with a per-class --var (e.g. probability, from landcover --probabilities): the "
        "class of the band to write (repeat it for several; default: every class, one band "
        "each, named after its class)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --to file")
    p.add_argument(
        "--stac",
        help="the cube's STAC folder, whose item for the step gets the file as an asset "
        "(default: STORE.stac beside the store, when it exists)",
    )
    p.set_defaults(handler=run_export_command)


def _metres(flag: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"give a number >= 0, got {text!r}") from None
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"{flag} must be >= 0, got {text!r}")
        return value

    return parse


def run_export_command(args: argparse.Namespace) -> int:
    """Check the target, open the layer, write it, and say what was written."""
    import logging

    from terrawatch.tasks.core.cube_stac import add_export_asset
    from terrawatch.tasks.core.export import VectorOptions, export_layer
    from terrawatch.tasks.core.export_files import output_format
    from terrawatch.tasks.core.export_source import open_layer

    kind = output_format(args.to, args.overwrite)  # before reading anything
    if kind == "cog" and args.objects:
        raise InputError(
            f"--objects {args.objects} writes vectors; give --to a .parquet, .gpkg or .geojson"
        )
    logging.getLogger("pyogrio").setLevel(logging.WARNING)  # its "Created N records" line
    if args.class_names or _per_class(args.store, args.var):
        return _export_class_layers(args, kind)
    layer = open_layer(args.store, args.var, args.time, vectors=kind == "vector")
    options = VectorOptions(simplify=args.simplify, min_area=args.min_area, min_spur=args.min_spur)
    path, count = export_layer(
        layer, args.to, objects=args.objects, options=options, overwrite=args.overwrite
    )
    what = "COG" if kind == "cog" else f"{count} {args.objects or 'polygons'}"
    print(f"wrote {path} ({what} of {layer.var} at {layer.time})")
    if add_export_asset(args.store, layer.time, str(path), args.stac):
        print(f"added it to the STAC item of {layer.time}")
    return 0


def _per_class(store: str, var: str | None) -> bool:
    from terrawatch.tasks.core.export_class_layers import is_per_class

    return is_per_class(store, var)


def _export_class_layers(args: argparse.Namespace, kind: str) -> int:
    """``--var probability [--class NAME ...] --to F.tif``: one band per class."""
    from terrawatch.tasks.core.cube_stac import add_export_asset
    from terrawatch.tasks.core.export_class_layers import (
        export_class_layers_cog,
        open_class_layers,
    )

    if args.var is None:
        raise InputError("--class picks bands of a per-class variable; add --var probability")
    if kind != "cog" or args.objects:
        raise InputError(
            f"--var {args.var}: per-class layers hold values per class, not class regions; give "
            "--to a .tif (one band per class)"
        )
    layers = open_class_layers(args.store, args.var, args.time, args.class_names)
    path = export_class_layers_cog(layers, args.to)
    print(f"wrote {path} (COG of {args.var} at {layers.time}, bands: {', '.join(layers.names)})")
    if add_export_asset(args.store, layers.time, str(path), args.stac):
        print(f"added it to the STAC item of {layers.time}")
    return 0
