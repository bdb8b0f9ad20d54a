"""What the terminal shows: output options on every command, log routing, the run summary."""

from __future__ import annotations

import json
import logging

import pytest

from terrawatch.errors import InputError
from terrawatch.flows import console
from terrawatch.flows.cli import build_parser
from terrawatch.flows.summary import rounded, summary_json, summary_text

LANDCOVER = ["landcover", "--aoi", "6.8,50.9,6.9,51.0", "--start", "2024-06-01"]
LANDCOVER += ["--end", "2024-06-02", "--classes", "water", "--store", "cube.zarr"]

SUMMARY = {
    "store": "cube.zarr",
    "time": "2024-06-01",
    "tiles": {"written": 3, "nodata": 1},
    "tiles_total": 4,
    "already_complete": False,
    "stage_seconds": {"model": 12.345678901234},
    "areas": [
        {"class": "water", "pixels": 17424, "area_km2": 1.7424000000000002, "share_percent": 25.0},
        {"class": "building", "pixels": 0, "area_km2": 0.0, "share_percent": 0.0},
    ],
    "quicklook": "cube.zarr.quicklook-2024-06-01.png",
}


@pytest.fixture(autouse=True)
def _restore_logging():
    """Each test configures the root logger as a command does; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    console.configure_logging(console.NORMAL)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.captureWarnings(False)


def test_output_options_work_after_the_command_options():
    args = build_parser().parse_args([*LANDCOVER, "-q", "--json", "--log-file", "run.log"])
    assert (args.quiet, args.json, args.log_file) == (True, True, "run.log")
    assert console.verbosity_of(args) == console.QUIET


def test_verbose_before_the_command_is_not_reset_by_its_default():
    args = build_parser().parse_args(["-v", *LANDCOVER])
    assert console.verbosity_of(args) == console.VERBOSE


def test_every_leaf_command_takes_quiet_and_only_flow_commands_take_json():
    parser = build_parser()
    for argv in (["catalog", "add", "x.tif", "--catalog", "c", "-q"], ["weights", "list", "-q"]):
        assert parser.parse_args(argv).quiet is True
    with pytest.raises(SystemExit):
        parser.parse_args(["weights", "list", "--json"])


def test_default_terminal_shows_own_warnings_but_no_library_info(capsys):
    console.configure_logging(console.NORMAL)
    logging.getLogger("distributed.scheduler").info("State start")
    logging.getLogger("distributed.nanny").warning("Worker process still alive")
    logging.getLogger("terrawatch.tasks.core.catalog").info("found 1 item")
    logging.getLogger("terrawatch.tasks.core.catalog").warning("item x dropped")
    assert capsys.readouterr().err == "warning: item x dropped\n"


def test_verbose_terminal_shows_library_info_with_its_logger(capsys):
    console.configure_logging(console.VERBOSE)
    logging.getLogger("distributed.scheduler").info("State start")
    assert capsys.readouterr().err == "INFO distributed.scheduler: State start\n"


def test_quiet_terminal_shows_errors_only(capsys):
    console.configure_logging(console.QUIET)
    logging.getLogger("terrawatch.flows").warning("not shown")
    logging.getLogger("terrawatch.flows").error("shown")
    assert capsys.readouterr().err == "error: shown\n"


def test_log_file_gets_library_info_the_terminal_does_not_show(tmp_path, capsys):
    log_file = tmp_path / "run.log"
    console.configure_logging(console.NORMAL, str(log_file))
    logging.getLogger("distributed.scheduler").info("State start")
    assert capsys.readouterr().err == ""
    assert "INFO distributed.scheduler: State start" in log_file.read_text()


def test_unwritable_log_file_is_an_input_error_naming_the_flag(tmp_path):
    with pytest.raises(InputError, match=r"--log-file .*no_such_dir"):
        console.configure_logging(console.NORMAL, str(tmp_path / "no_such_dir" / "run.log"))


def test_json_summary_rounds_floats():
    text = summary_json(SUMMARY)
    assert "1.7424000000000002" not in text
    data = json.loads(text)
    assert data["areas"][0]["area_km2"] == 1.7424
    assert data["stage_seconds"]["model"] == 12.345679
    assert rounded([0.1 + 0.2, {"a": (1.0 / 3.0,)}]) == [0.3, {"a": [0.333333]}]


def test_human_summary_names_store_step_tiles_areas_and_elapsed():
    text = summary_text(SUMMARY, elapsed_s=75.4)
    assert text.splitlines() == [
        "store:   cube.zarr",
        "time:    2024-06-01",
        "tiles:   3 written, 1 nodata (of 4)",
        "area per class:",
        "  water     1.7424 km²  (25.0%)",
        "  building  0.0000 km²  (0.0%)",
        "quicklook: cube.zarr.quicklook-2024-06-01.png",
        "elapsed: 1 min 15 s",
    ]


@pytest.mark.parametrize(
    ("argv", "shown"),
    [([], "human"), (["-q"], "nothing"), (["--json"], "json"), (["-q", "--json"], "json")],
)
def test_summary_follows_quiet_and_json(argv, shown, capsys):
    console.configure_output(build_parser().parse_args([*LANDCOVER, *argv]))
    console.print_summary(SUMMARY)
    out = capsys.readouterr().out
    if shown == "nothing":
        assert out == ""
    elif shown == "json":
        assert json.loads(out)["areas"][0]["area_km2"] == 1.7424
    else:
        assert out.startswith("store:   cube.zarr\n") and "elapsed: " in out
