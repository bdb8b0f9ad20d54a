"""The command line's error contract and its fast ``--help``.

A :class:`~terrawatch.errors.TerrawatchError` (something the user can fix) is one line on
stderr and its documented exit code; any other exception is a bug and keeps its traceback.
``--help`` of every command imports none of the heavy libraries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect import flow

from terrawatch import errors
from terrawatch.errors import (
    CatalogUnreachableError,
    InputError,
    InputNotFoundError,
    NoScenesError,
    OutputExistsError,
    TerrawatchError,
    UnknownSettingError,
)
from terrawatch.flows import cli
from terrawatch.flows.cli_common import validated_params
from terrawatch.flows.landcover import ModelOptions

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "prefect", "dask", "distributed", "xarray", "zarr", "rasterio", "open_clip",
         "transformers")  # fmt: skip
"""What ``--help`` must not import (each costs seconds on a cold start)."""

FAMILY = [
    TerrawatchError,
    InputError,
    InputNotFoundError,
    OutputExistsError,
    UnknownSettingError,
    NoScenesError,
    errors.StoreMismatchError,
    errors.WeightsNotFoundError,
    errors.WeightsCorruptError,
    CatalogUnreachableError,
    errors.UntrustedCheckpointError,
]

WITH_COMMAND = """
import argparse, sys
from terrawatch.flows import cli

build = cli.build_parser

def with_command():
    parser = build()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.add_parser("boom").set_defaults(handler=lambda args: {{}}["missing"])
    return parser

cli.build_parser = with_command
sys.exit(cli.main({argv!r}))
"""
"""A script that registers ``terrawatch boom`` (a handler with a KeyError bug) and runs main."""


def _console_script() -> str:
    command = Path(sys.executable).parent / "terrawatch"
    if not command.exists():
        pytest.skip("terrawatch is not installed beside this Python (pip install -e .)")
    return str(command)


@pytest.fixture
def main_with(monkeypatch) -> Callable[[Callable[[argparse.Namespace], int]], Callable]:
    """``cli.main`` with a ``boom`` sub-command whose handler is the given function."""

    def register(handler: Callable[[argparse.Namespace], int]) -> Callable:
        build = cli.build_parser

        def build_with_boom() -> argparse.ArgumentParser:
            parser = build()
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            sub.add_parser("boom").set_defaults(handler=handler)
            return parser

        monkeypatch.setattr(cli, "build_parser", build_with_boom)
        return cli.main

    return register


@pytest.mark.parametrize("kind", FAMILY, ids=lambda kind: kind.__name__)
def test_a_family_error_is_one_line_and_its_exit_code(kind, main_with, capsys):
    def handler(args: argparse.Namespace) -> int:
        raise kind("the catalog folder is empty;\n  add imagery with `terrawatch catalog add`")

    assert main_with(handler)(["boom"]) == kind.exit_code
    err = capsys.readouterr().err
    assert err == (
        "terrawatch boom: error: the catalog folder is empty; add imagery with "
        "`terrawatch catalog add`\n"
    )


def test_every_family_member_has_a_documented_exit_code():
    codes = errors.exit_codes()
    assert {kind.exit_code for kind in FAMILY} == set(codes) - {0}
    assert (InputError.exit_code, NoScenesError.exit_code, CatalogUnreachableError.exit_code) == (
        (2, 3, 6)
    )
    own = [kind for kind in FAMILY if "exit_code" in vars(kind)]  # kinds that set their own code
    assert len({kind.exit_code for kind in own}) == len(own), "two kinds share one exit code"


@pytest.mark.parametrize("bug", [KeyError, TypeError, ValueError, FileNotFoundError])
def test_any_other_exception_is_a_bug_that_propagates(bug, main_with, capsys):
    def handler(args: argparse.Namespace) -> int:
        raise bug("our mistake")

    with pytest.raises(bug, match="our mistake"):
        main_with(handler)(["boom"])
    assert "error:" not in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_and_is_not_exit_code_2():
    script = WITH_COMMAND.format(argv=["boom"])
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr
    assert "KeyError: 'missing'" in out.stderr
    assert "terrawatch boom: error:" not in out.stderr


def test_the_builtin_it_replaced_still_catches_each_member():
    assert issubclass(InputNotFoundError, FileNotFoundError)
    assert issubclass(OutputExistsError, FileExistsError)
    assert issubclass(UnknownSettingError, TypeError)
    assert issubclass(CatalogUnreachableError, ConnectionError)
    assert all(issubclass(kind, ValueError) for kind in FAMILY[1:5])


def test_an_unreachable_catalog_is_retried_and_bad_input_is_not():
    from prefect.states import Failed

    from terrawatch.tasks.core.catalog import _retry_unless_user_error

    def retried(err: Exception) -> bool:
        return _retry_unless_user_error(None, None, Failed(data=err))

    assert retried(CatalogUnreachableError("the STAC API did not answer"))
    assert not retried(InputError("bad aoi"))
    assert not retried(OutputExistsError("exists"))


def test_a_model_setting_refused_is_one_line_before_any_work(tmp_path, capsys):
    """The setting's one check (the model's) refuses it before a search or a cluster starts."""
    args = ["landcover", "--aoi", "6.9,50.9,6.96,50.94", "--start", "2024-06-01", "--end",
            "2024-06-30", "--classes", "water,tree", "--store", str(tmp_path / "x.zarr"),
            "--batch-size", "0"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--batch-size must be >= 1, got 0" in err
    assert not (tmp_path / "x.zarr").exists()


def test_a_chip_option_refused_is_one_line(tmp_path, capsys):
    args = ["align-sar", "--aoi", "6.9,50.9,6.96,50.94", "--start", "2024-06-01", "--end",
            "2024-06-30", "--out", str(tmp_path / "out"), "--min-valid", "0"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--min-valid must be in (0, 1], got 0.0" in err


@flow
def tiny(event_date: str, chunk: int, model: ModelOptions | None = None) -> None:
    """A flow with the parameter kinds of ours (a renamed flag, a number, an option group)."""


def test_flow_parameters_prefect_rejects_are_one_input_error_naming_the_flags():
    params = {"event_date": "2024-05-20", "chunk": "big", "model": {"batch_size": "many"}}
    with pytest.raises(InputError) as raised:
        validated_params(tiny, params, {"event_date": "--date"})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("--chunk: Input should be a valid integer")
    assert "; --batch-size: Input should be a valid integer" in message
    ok = validated_params(tiny, {"event_date": "2024-05-20", "chunk": "64"})
    assert ok["chunk"] == 64


def test_a_store_path_that_is_a_file_is_bad_input(tmp_path, capsys):
    store = tmp_path / "notes.txt"
    store.write_text("not a store")
    args = ["landcover", "--aoi", "6.9,50.9,6.96,50.94", "--start", "2024-06-01",
            "--end", "2024-06-30", "--classes", "water,tree",
            "--store", str(store / "cube.zarr")]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"{str(store)!r} is a file; give a folder path for the Zarr store" in err


def test_bands_that_are_not_numbers_are_a_usage_error(tmp_path, capsys):
    args = ["segment", "x.tif", "--classes", "a,b", "--out", "y.tif", "--bands", "red,2,1"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    assert "--bands: give 1-based band indexes" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys):
    from terrawatch import __version__

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"terrawatch {__version__}\n"


def test_help_and_readme_list_every_exit_code():
    help_text = cli.build_parser().format_help()
    section = (REPO / "README.md").read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    for code, meaning in errors.exit_codes().items():
        assert f"  {code}  {meaning}" in help_text
        row = next(line for line in section.splitlines() if line.startswith(f"| `{code}` |"))
        assert code < 2 or meaning.split()[0] in row


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every (sub-)command path of the parser, the top level first."""
    found = [list(prefix)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*prefix, name))
    return found


HELP_SCRIPT = """
import contextlib, io, json, sys
from terrawatch.flows.cli import main

heavy, commands, report = set(sys.argv[1].split(",")), json.loads(sys.argv[2]), []
for command in commands:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main([*command, "--help"])
            code = None
        except SystemExit as done:
            code = done.code
    loaded = sorted({name.split(".")[0] for name in sys.modules} & heavy)
    report.append([command, code, "usage:" in out.getvalue(), loaded])
print(json.dumps(report))
"""


def test_every_help_answers_without_importing_heavy_libraries():
    commands = _commands(cli.build_parser())
    assert ["landcover"] in commands and ["catalog", "add"] in commands
    out = subprocess.run(
        [sys.executable, "-c", HELP_SCRIPT, ",".join(HEAVY), json.dumps(commands)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert len(report) == len(commands)
    for command, code, printed, loaded in report:
        assert (code, printed, loaded) == (0, True, []), f"terrawatch {' '.join(command)} --help"
