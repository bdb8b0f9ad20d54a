"""The ``terrawatch`` command: segment one image, manage local catalogs and weights, run flows.

``--help`` of every command answers without importing torch, Prefect, Dask or xarray: the
command modules import only the standard library at the top, and each handler imports what its
work needs (``bench/cli.py`` times it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from terrawatch import __version__
from terrawatch.errors import InputError, TerrawatchError, exit_codes

if TYPE_CHECKING:
    from terrawatch.models.classes import ClassNames


def parse_classes_option(classes: str | None, classes_file: str | None) -> ClassNames:
    """The class list of ``--classes "water,building,tree|forest"`` (``|`` joins synonyms) or
    ``--classes-file``, parsed once; the commands hand it on as it is."""
    from terrawatch.models.classes import parse_class_names

    if bool(classes) == bool(classes_file):
        raise InputError(
            'give exactly one of --classes "water,building,..." or --classes-file FILE'
        )
    if classes_file:
        return parse_class_names(Path(classes_file))
    entries = [entry.strip() for entry in classes.split(",")]
    if not all(entries):
        raise InputError(f"--classes has an empty class name: {classes!r}")
    return parse_class_names([",".join(w.strip() for w in e.split("|")) for e in entries])


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from terrawatch.flows.cli_common import add_option_group
    from terrawatch.flows.options import ModelOptions

    add_option_group(parser, ModelOptions, "model")


def model_options(args: argparse.Namespace) -> dict[str, object]:
    """The values of the model option group, by the names the model APIs use."""
    from terrawatch.flows.cli_common import read_options
    from terrawatch.flows.options import ModelOptions

    return read_options(args, ModelOptions).model_dump(exclude={"device"})


def check_model_weights(args: argparse.Namespace) -> None:
    """The model group's checkpoints, all checked before any model loads (all missing named)."""
    from terrawatch.flows.cli_common import read_options
    from terrawatch.flows.options import ModelOptions
    from terrawatch.models.weights_check import all_missing_weights

    with all_missing_weights():
        read_options(args, ModelOptions).resolve_weights()


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment", help="segment one image (GeoTIFF, PNG, JPEG) with open vocabulary"
    )
    p.add_argument("image", help="input raster")
    p.add_argument("--classes", help='comma-separated classes; "|" joins synonyms: "tree|forest"')
    p.add_argument("--classes-file", help="class-name file: one class per line, synonyms by comma")
    p.add_argument("--out", required=True, help="output label GeoTIFF (uint8, colour table)")
    p.add_argument("--png", help="optional coloured preview PNG with legend")
    p.add_argument(
        "--bands",
        type=_band_indexes,
        help="1-based R,G,B band indexes of a multiband raster, e.g. 4,3,2",
    )
    p.add_argument(
        "--resize",
        default="448",
        type=_long_side,
        help="long side the model sees, in pixels (default 448 as published); 'none' "
        "keeps the native resolution",
    )
    _add_model_options(p)
    from terrawatch.flows.cli_special import add_refine_options

    add_refine_options(p)
    p.set_defaults(handler=_run_segment)


def _band_indexes(text: str) -> list[int]:
    """``--bands 4,3,2``: integers (the image reader checks them against the file)."""
    try:
        return [int(band) for band in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"give 1-based band indexes separated by commas, e.g. 4,3,2, got {text!r}"
        ) from None


def _long_side(text: str) -> int | None:
    """``--resize 448`` or ``none`` (the model checks the value)."""
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"give a number of pixels or 'none', got {text!r}"
        ) from None


def _run_segment(args: argparse.Namespace) -> int:
    from terrawatch.models.segearth import SegEarthOV
    from terrawatch.tasks.core.image_io import (
        read_rgb_image,
        write_label_geotiff,
        write_preview_png,
    )
    from terrawatch.tasks.core.render import class_colors
    from terrawatch.tasks.core.worker_model import segment_array

    classes = parse_classes_option(args.classes, args.classes_file)
    if getattr(args, "refine", "none") == "special":
        from terrawatch.flows.cli_special import run_special_segment

        return run_special_segment(args, classes, model_options(args))
    image = read_rgb_image(args.image, bands=args.bands)
    check_model_weights(args)
    model = SegEarthOV.from_pretrained(
        device=args.device, resize_long_side=args.resize, **model_options(args)
    )
    classes = model.set_classes(classes)
    names = classes.names
    labels, _ = segment_array(model, image.rgb, image.valid)
    colors = class_colors(classes.synonyms)  # by meaning of any synonym: "tree|forest"
    write_label_geotiff(args.out, labels, names, image.profile, colors=colors)
    if args.png:
        write_preview_png(
            args.png, labels, names, colors=colors, rgb=image.rgb, title=Path(args.image).name,
            profile=image.profile,
        )  # fmt: skip
    print(f"wrote {args.out}" + (f" and {args.png}" if args.png else ""))
    return 0


def _add_catalog(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="local STAC catalogs")
    csub = p.add_subparsers(dest="catalog_command", required=True)
    add = csub.add_parser("add", help="turn a local GeoTIFF into a STAC item in a catalog folder")
    add.add_argument("image", help="GeoTIFF (or PNG/JPEG with --crs and --bounds) to add")
    add.add_argument("--catalog", required=True, help="catalog folder (created if missing)")
    add.add_argument("--datetime", help="acquisition time (ISO 8601); default: TIFF tag or mtime")
    add.add_argument("--collection", default="local", help="the item's STAC collection")
    add.add_argument("--overwrite", action="store_true", help="replace an item with the same id")
    add.add_argument(
        "--crs",
        help="for an image without georeference: its CRS, e.g. EPSG:25832 (with --bounds; a "
        "georeferenced GeoTIFF copy is written into the catalog folder)",
    )
    add.add_argument("--bounds", help="with --crs: the image's extent W,S,E,N in --crs units")
    add.set_defaults(handler=_run_catalog_add, param_flags={"catalog_dir": "--catalog"})


def _run_catalog_add(args: argparse.Namespace) -> int:
    import json

    from terrawatch.tasks.core.local_item import add_local_item

    image = args.image
    if args.crs or args.bounds:
        if not (args.crs and args.bounds):
            raise InputError("--crs and --bounds go together: give both, or neither")
        from terrawatch.tasks.core.georeference import georeferenced_copy

        image = georeferenced_copy(image, args.crs, args.bounds, args.catalog, args.overwrite)
    path = add_local_item(
        image,
        args.catalog,
        datetime=args.datetime,
        collection=args.collection,
        overwrite=args.overwrite,
    )
    item = json.loads(path.read_text())
    aoi = ",".join(f"{value:.6f}" for value in item["bbox"])
    day = item["properties"]["datetime"][:10]
    print(f"wrote {path}")
    print(f"bbox (W,S,E,N in degrees): {aoi}")
    print(
        f"next: terrawatch landcover --catalog {args.catalog} --collections {item['collection']}"
        f" --aoi {aoi} --start {day} --end {day} --classes ... --store cube.zarr"
    )
    return 0


def _add_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list or fetch model weights")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    wsub.add_parser("list", help="known checkpoints and where they are").set_defaults(
        handler=_run_weights_list
    )
    fetch = wsub.add_parser("fetch", help="download a checkpoint into the weights directory")
    fetch.add_argument("name", nargs="+", help="registry names, as `weights list` shows them")
    fetch.set_defaults(handler=_run_weights_fetch)


def _run_weights_list(args: argparse.Namespace) -> int:
    """Each known checkpoint, where it is and whether it is usable (whole, and the published
    file where the registry knows its checksum); a corrupt one fails the command."""
    from terrawatch.errors import WeightsCorruptError
    from terrawatch.models.hf_weights import HF_REGISTRY, WEIGHTS_FILE, is_model_dir
    from terrawatch.models.weights import REGISTRY, file_sha256, weights_dir
    from terrawatch.models.weights_check import weights_file_problem

    corrupt: list[str] = []
    for entry in REGISTRY.values():
        path = weights_dir() / entry.filename
        state, note = ("present", "") if path.is_file() else ("missing", "")
        problem = weights_file_problem(path) if path.is_file() else None
        if problem:
            state, note = "corrupt", f"  {problem}"
            corrupt.append(entry.name)
        elif state == "present" and entry.sha256_prefix:
            if not file_sha256(path).startswith(entry.sha256_prefix):
                note = "  not the published file (its SHA-256 differs from the registry's)"
        print(f"{entry.name:32s} {state:8s} {path}  ({entry.size}; {entry.description}){note}")
    for hf in HF_REGISTRY.values():  # change detection: Hugging Face model folders
        path = weights_dir() / hf.name
        state, note = ("present", "") if is_model_dir(path) else ("missing", "")
        problem = weights_file_problem(path / WEIGHTS_FILE) if state == "present" else None
        if problem:
            state, note = "corrupt", f"  {WEIGHTS_FILE}: {problem}"
            corrupt.append(hf.name)
        print(f"{hf.name:32s} {state:8s} {path}/  ({hf.size}; {hf.description}){note}")
    if corrupt:
        raise WeightsCorruptError(
            f"corrupt weights: {', '.join(corrupt)} (see the list above). To fix: delete them "
            f"and run `terrawatch weights fetch {' '.join(corrupt)}`"
        )
    return 0


def _run_weights_fetch(args: argparse.Namespace) -> int:
    from terrawatch.models.hf_weights import HF_REGISTRY, fetch
    from terrawatch.models.weights import REGISTRY, resolve_weights

    unknown = [n for n in args.name if n not in REGISTRY and n not in HF_REGISTRY]
    if unknown:
        raise InputError(
            f"unknown weights {unknown}; known: {sorted(REGISTRY) + sorted(HF_REGISTRY)} "
            "(see `terrawatch weights list`)"
        )
    for name in args.name:
        print(f"{name}: {fetch(name) if name in HF_REGISTRY else resolve_weights(name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="terrawatch",
        description="Open-vocabulary land-cover, change and flood monitoring of EO imagery:\n"
        "segment one image, manage local catalogs and weights, run the flows.",
        epilog=_exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"terrawatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_segment(sub)
    _add_catalog(sub)
    _add_weights(sub)
    from terrawatch.flows.cli_align import add_align_command
    from terrawatch.flows.cli_change import add_change_command
    from terrawatch.flows.cli_export import add_export_command
    from terrawatch.flows.cli_flood import add_flood_command
    from terrawatch.flows.cli_flows import add_flow_commands
    from terrawatch.flows.doctor import add_doctor_command

    add_flow_commands(sub)
    add_change_command(sub)
    add_flood_command(sub)
    add_align_command(sub)
    add_doctor_command(sub)
    add_export_command(sub)
    _add_output_options(sub)
    from terrawatch.flows.cli_help import finish_help

    finish_help(parser)
    return parser


SUMMARY_COMMANDS = ("landcover", "change", "flood", "align-sar")
"""The commands that end with a run summary (``--json``)."""


def _add_output_options(sub: argparse._SubParsersAction) -> None:
    """``-q/-v/--log-file`` on every command (``--json`` where a summary is printed)."""
    from terrawatch.flows.console import add_output_options

    for name, parser in sub.choices.items():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for action in nested:
                _add_output_options(action)
        else:
            add_output_options(parser, summary=name in SUMMARY_COMMANDS)


def _exit_codes_epilog() -> str:
    lines = [f"  {code}  {meaning}" for code, meaning in exit_codes().items()]
    return "exit codes (terrawatch.errors):\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``terrawatch`` console script.

    A :class:`~terrawatch.errors.TerrawatchError` (something the user can fix) is printed as one
    line, ``terrawatch COMMAND: error: MESSAGE``, and its ``exit_code`` returned; any other
    exception is a bug and propagates with its traceback.
    """
    from terrawatch.flows.cli_failures import user_error_tracebacks_hidden
    from terrawatch.flows.cli_words import command_flags, in_user_words, typed_values
    from terrawatch.flows.console import configure_output
    from terrawatch.flows.interrupt import exit_on_signals

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    add_debug_option(parser)
    args = parser.parse_args(argv)
    if args.command is None:  # `terrawatch` alone: the commands, one line each
        from terrawatch.flows.cli_help import command_list

        print(command_list(parser))
        return 0
    try:
        configure_output(args)
        with (
            exit_on_signals(args.command, getattr(args, "store", None)),
            user_error_tracebacks_hidden(debug=args.debug),
        ):
            return args.handler(args)
    except TerrawatchError as err:
        if args.debug:
            import traceback

            traceback.print_exc()
        flags = command_flags(parser, argv)
        message = in_user_words(str(err), flags, typed_values(argv, flags))
        message = " ".join(message.split())  # one line, whatever the message holds
        print(f"terrawatch {args.command}: error: {message}", file=sys.stderr)
        return err.exit_code


def add_debug_option(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """``--debug`` before or after the command: a user's error shows its traceback too."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="on an error: print its traceback and Prefect's reports of it as well",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_debug_option(sub, top=False)


if __name__ == "__main__":
    raise SystemExit(main())
