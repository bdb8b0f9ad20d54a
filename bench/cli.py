"""Benchmark the command line's start: wall time of ``terrawatch --help`` vs ``python -c pass``.

Each command runs as a fresh process (the console script installed beside this Python), as a
user starts it, ``--repeats`` times after one untimed warm-up run (file-system cache); the
medians are reported. Every sub-command's ``--help`` is timed too and the slowest named. The
target is under 1 s for ``terrawatch --help``: help must not import torch, Prefect, Dask or
xarray (``tests/flows/test_cli_errors.py`` checks the imports). One summary line::

    python bench/cli.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terrawatch.flows.cli import build_parser

TARGET_S = 1.0


def terrawatch_command() -> list[str]:
    """The installed console script, else the same entry point through this Python."""
    script = Path(sys.executable).parent / "terrawatch"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from terrawatch.flows.cli import main; raise SystemExit(main())"]


def sub_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every sub-command path (``["catalog", "add"]``, ...), depth first."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [[*prefix, name], *sub_commands(sub, (*prefix, name))]
    return found


def median_s(argv: list[str], repeats: int) -> float:
    """Median wall time of ``argv`` as a fresh process (one warm-up run first)."""
    times = []
    for run in range(repeats + 1):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        if run:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command")
    args = parser.parse_args()
    command = terrawatch_command()
    python_s = median_s([sys.executable, "-c", "pass"], args.repeats)
    help_s = median_s([*command, "--help"], args.repeats)
    subs = {
        " ".join(sub): median_s([*command, *sub, "--help"], args.repeats)
        for sub in sub_commands(build_parser())
    }
    slowest = max(subs, key=subs.__getitem__)
    verdict = "meets" if max(help_s, subs[slowest]) < TARGET_S else "MISSES"
    print(
        f"cli: terrawatch --help {help_s:.3f} s, python -c pass {python_s:.3f} s "
        f"(+{help_s - python_s:.3f} s); slowest of {len(subs)} sub-command helps: "
        f"{slowest} {subs[slowest]:.3f} s; median of {args.repeats} runs; {verdict} the "
        f"{TARGET_S:.0f} s target"
    )


if __name__ == "__main__":
    main()
