"""Help that teaches: every option with help and default, examples that parse, a command list."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from terrawatch.flows import cli
from terrawatch.flows.cli_help import EXAMPLES


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, (*path, name))
    return found


def _built() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    cli.add_debug_option(parser)
    return parser


def _option_help(help_text: str, option: str) -> str:
    """The help of one option in ``--help`` output (its lines up to the next option)."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {option} ")
                 or line == f"  {option}" or line.startswith(f"  {option},"))  # fmt: skip
    text = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(" " * 10):
            break
        text.append(line)
    return " ".join(" ".join(text).split())


def test_every_option_of_every_command_has_help_and_shows_its_default():
    for path, parser in _parsers(_built()):
        help_text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            where = f"terrawatch {' '.join(path)} {action.option_strings or action.dest}"
            assert action.help, f"{where} has no help text"
            default = action.default
            if not action.option_strings or default is None or default is False or default == []:
                continue
            if default == argparse.SUPPRESS or isinstance(action, argparse._VersionAction):
                continue
            shown = _option_help(help_text, action.option_strings[-1])
            assert "default" in shown, f"{where}: default {default!r} not shown: {shown}"
            if f"(default: {default})" not in shown:  # said in words ("default: a local one")
                assert "default:" in shown or "default " in shown, where


def test_every_command_ends_with_examples_that_parse():
    parser = _built()
    for path, sub in _parsers(parser):
        help_text = sub.format_help()
        assert "\nexamples:\n" in help_text, f"terrawatch {' '.join(path)} --help"
        examples = help_text.split("\nexamples:\n", 1)[1].splitlines()
        assert 1 <= len(examples) <= 3
        for line in EXAMPLES[path]:
            argv = shlex.split(line)
            argv = argv[next(i for i, word in enumerate(argv) if word == "terrawatch") + 1 :]
            args = parser.parse_args(argv)  # each example is a valid command line
            assert args.command == argv[0]


def test_terrawatch_alone_lists_the_commands_one_line_each():
    command = Path(sys.executable).parent / "terrawatch"
    if not command.exists():
        pytest.skip("terrawatch is not installed beside this Python (pip install -e .)")
    out = subprocess.run([str(command)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = out.stdout.split("commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    names = [line.split()[0] for line in listed]
    assert names == [
        "segment", "catalog", "weights", "landcover", "change", "flood", "align-sar", "doctor",
        "export",
    ]  # fmt: skip
    assert all(len(line.split()) > 2 for line in listed)  # each with its one line
    assert "terrawatch COMMAND --help" in out.stdout
