"""Help that teaches: every option's default shown, real examples at the end of each command.

Applied once to the finished parser tree (:func:`finish_help`), so the commands declare only
their options and the defaults cannot drift from what ``--help`` says: the formatter prints
each action's own default. Standard library only (``terrawatch --help`` stays fast).
"""

from __future__ import annotations

import argparse

EXAMPLES: dict[tuple[str, ...], tuple[str, ...]] = {
    (): (
        'terrawatch segment scene.tif --classes "water|river,building,tree|forest" '
        "--out labels.tif --png labels.png",
        "terrawatch landcover --aoi 6.90,50.90,6.96,50.94 --start 2024-06-01 --end 2024-06-30 "
        '--classes "water|river,building|roof,road,tree|forest,cropland" --store cologne.zarr',
        "terrawatch weights list",
    ),
    ("doctor",): (
        "terrawatch doctor",
        "terrawatch doctor --catalog ./catalog --json",
    ),
    ("export",): (
        "terrawatch export cologne.zarr --to landcover.tif",
        "terrawatch export cologne.zarr --var landcover --time 2024-06-01 --to polygons.gpkg "
        "--simplify 5 --min-area 200",
        "terrawatch export cologne.zarr --objects roads --to roads.geojson",
    ),
    ("segment",): (
        'terrawatch segment scene.tif --classes "water|river,building,road,tree|forest" '
        "--out labels.tif --png labels.png",
        "terrawatch segment sentinel2.tif --bands 4,3,2 --classes water,cropland,forest "
        "--out s2_labels.tif",
        "terrawatch segment photo.jpg --classes-file classes.txt --out labels.tif --resize none",
    ),
    ("catalog",): (
        "terrawatch catalog add orthophoto.tif --catalog ./catalog --datetime 2024-06-01",
    ),
    ("catalog", "add"): (
        "terrawatch catalog add orthophoto.tif --catalog ./catalog --datetime 2024-06-01",
        "terrawatch catalog add orthophoto.tif --catalog ./catalog --collection drone --overwrite",
    ),
    ("weights",): ("terrawatch weights list", "terrawatch weights fetch ViT-B-16"),
    ("weights", "list"): (
        "terrawatch weights list",
        "TERRAWATCH_WEIGHTS_DIR=/data/weights terrawatch weights list",
    ),
    ("weights", "fetch"): (
        "terrawatch weights fetch ViT-B-16 simfeatup-jbu-one-million-aid",
        "TERRAWATCH_WEIGHTS_DIR=/media/usb/weights terrawatch weights fetch ViT-B-16 "
        "simfeatup-jbu-one-million-aid",
    ),
    ("landcover",): (
        "terrawatch landcover --aoi 6.90,50.90,6.96,50.94 --start 2024-06-01 --end 2024-06-30 "
        '--classes "water|river,building|roof,road,tree|forest,cropland" --store cologne.zarr',
        "terrawatch landcover --catalog ./catalog --collections local --aoi W,S,E,N "
        "--start 2024-06-01 --end 2024-06-01 --classes water,building,road,tree --store local.zarr",
        "terrawatch landcover --aoi area.geojson --start 2024-07-01 --end 2024-07-31 "
        "--classes-file classes.txt --store cologne.zarr --max-cloud 10 --chunk 512",
    ),
    ("change",): (
        "terrawatch change --aoi 6.90,50.90,6.96,50.94 --before 2023-06-01/2023-06-30 "
        '--after 2024-06-01/2024-06-30 --classes "building,tree|forest,cropland" '
        "--store cologne-change.zarr",
        "terrawatch change --from-cube cologne.zarr --store cologne-change.zarr",
    ),
    ("flood",): (
        "terrawatch flood --aoi 6.90,50.90,6.96,50.94 --date 2024-06-02 --store flood.zarr",
        "terrawatch flood --aoi area.geojson --date 2024-06-02 --pre-days 24 --post-days 6 "
        "--store flood.zarr --no-optical",
    ),
    ("align-sar",): (
        "terrawatch align-sar --aoi 6.85,50.85,7.05,50.98 --start 2024-05-01 --end 2024-06-30 "
        "--out sar-encoder/",
    ),
}
"""Each command's examples (the key is the command path); commands that run as written."""


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends ``(default: X)`` to each option that has a default and does not say it yet.

    Nothing is added for a switch that is off or a value that is unset (None), where the help
    text says what happens instead. Descriptions and epilogs keep their line breaks.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or default == []
            or not action.option_strings
            or isinstance(action, argparse._HelpAction | argparse._VersionAction)
        ):
            return text
        return f"{text} (default: %(default)s)"


def finish_help(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> None:
    """Give every parser of the tree the defaults formatter and its examples epilog."""
    parser.formatter_class = DefaultsHelpFormatter
    examples = EXAMPLES.get(path)
    if examples:
        block = "examples:\n" + "\n".join(f"  {line}" for line in examples)
        parser.epilog = f"{parser.epilog}\n\n{block}" if parser.epilog else block
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                finish_help(sub, (*path, name))


def command_list(parser: argparse.ArgumentParser) -> str:
    """``terrawatch`` alone: each command with its one line, and where to read more."""
    lines = ["usage: terrawatch [-h] [--version] [-v] [--debug] COMMAND ...", "", "commands:"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                lines.append(f"  {choice.dest:12s}{choice.help}")
    lines += ["", "Run `terrawatch COMMAND --help` for a command's options and examples,"]
    lines += ["`terrawatch --help` for the exit codes."]
    return "\n".join(lines)
