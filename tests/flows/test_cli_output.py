"""A small ``terrawatch landcover`` run through the real command: quiet by default, a short
human summary, the full log in ``--log-file``, nothing but JSON with ``-q --json``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from terrawatch.tasks.core.local_item import add_local_item
from tests.conftest import REPO, shared_data
from tests.flows.test_interrupt import _console_script

pytestmark = pytest.mark.slow

AOI = "6.8075,50.9590,6.8105,50.9609"
"""About 210 x 210 m of the orthophoto: 2 x 2 tiles of 128 px at 1 m."""


def _terminal_lines(text: str) -> list[str]:
    """The lines a terminal keeps: a bar redraws its line after ``\\r``, a closed status bar
    blanks it."""
    shown = (line.split("\r")[-1] for line in text.split("\n"))
    return [line for line in shown if line.strip()]


def _floats(value):
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, list):
        for item in value:
            yield from _floats(item)


def test_run_is_quiet_by_default_logs_to_file_and_prints_json_on_request(
    prefect_api, tmp_path, tiny_model_files
):
    catalog = tmp_path / "catalog"
    add_local_item(shared_data("optical", "oem_koeln_50.tif"), catalog, datetime="2024-06-01")
    argv = [
        _console_script(), "landcover", "--catalog", str(catalog), "--collections", "local",
        "--aoi", AOI, "--start", "2024-06-01", "--end", "2024-06-02",
        "--classes", "water,building,road,tree,grass", "--store", "cube.zarr",
        "--resolution", "1.0", "--chunk", "128",
        "--weights", str(tiny_model_files["clip"]),
        "--upsampler-weights", str(tiny_model_files["simfeatup"]),
    ]  # fmt: skip
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PYTHONPATH=str(REPO))

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*argv, *extra], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )

    log_file = tmp_path / "run.log"
    first = run("--log-file", str(log_file))
    assert first.returncode == 0, first.stderr[-3000:]
    shown = first.stdout + first.stderr
    assert "distributed." not in shown and "Traceback" not in shown
    assert len(_terminal_lines(first.stdout) + _terminal_lines(first.stderr)) < 15, shown
    summary = first.stdout.splitlines()
    assert summary[:3] == ["store:   cube.zarr", "time:    2024-06-01", "tiles:   4 written (of 4)"]
    assert summary[-1].startswith("elapsed: ")
    assert "tiles: 100%|" in first.stderr  # the bar finished before the summary
    full_log = Path(log_file).read_text()
    assert "distributed.scheduler" in full_log and " INFO " in full_log

    again = run("-q", "--json")  # the step is complete: nothing to write, same summary
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr == ""
    summary = json.loads(again.stdout)
    assert summary["already_complete"] is True and summary["tiles_total"] == 4
    assert all(round(x, 6) == x for x in _floats(summary))  # no 1.7424000000000002
