"""Ctrl-C and SIGTERM to a real ``terrawatch landcover`` run: it stops within seconds, says how
far it got in one line, exits 130 / 143, and the rerun finishes the same cube as a clean run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from terrawatch.flows.landcover import ModelOptions, landcover
from terrawatch.tasks.core.local_item import add_local_item
from tests.conftest import REPO, shared_data
from tests.flows.test_resume import PARAMS as RESUME_PARAMS

pytestmark = pytest.mark.slow

PARAMS = dict(RESUME_PARAMS, aoi="6.8075,50.9590,6.8105,50.9609")
"""About 210 x 210 m of the orthophoto at 1 m: 4 x 4 tiles of 64 px."""
SIGNAL_TO_EXIT_S = 10.0
"""The issue asks for 5 s; the bound here leaves room for a loaded CI machine."""
LINE = re.compile(
    r"^interrupted: (\d+)/(\d+) tiles written to (.+); rerun the same command to resume$"
)


def _console_script() -> str:
    command = Path(sys.executable).parent / "terrawatch"
    if not command.exists():
        pytest.skip("terrawatch is not installed beside this Python (pip install -e .)")
    return str(command)


def _tiles_done(store: Path) -> int:
    try:
        return int((zarr.open_array(store, path="tile_done", mode="r")[:] == 1).sum())
    except (FileNotFoundError, KeyError, ValueError):
        return 0


def _argv(catalog: Path, store: Path, files: dict[str, Path]) -> list[str]:
    return [
        _console_script(), "landcover", "--catalog", str(catalog), "--collections", "local",
        "--aoi", PARAMS["aoi"], "--start", PARAMS["start"], "--end", PARAMS["end"],
        "--classes", ",".join(PARAMS["classes"]), "--store", str(store),
        "--resolution", "1.0", "--chunk", "64",
        "--weights", str(files["clip"]), "--upsampler-weights", str(files["simfeatup"]),
    ]  # fmt: skip


def _env(prefect_api: str) -> dict[str, str]:
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PYTHONPATH=str(REPO))
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    return env


def _interrupt(argv, env, store: Path, at_least: int, send) -> tuple[int, str, float, int]:
    """Start the command, wait until ``at_least`` tiles are written, ``send`` the signal.

    Returns exit code, stderr, seconds from the signal to the exit, and the process group.
    """
    proc = subprocess.Popen(
        argv, cwd=store.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while _tiles_done(store) < at_least and proc.poll() is None:
            assert time.monotonic() < deadline, "no tile written in 10 minutes"
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        sent = time.monotonic()
        send(proc)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err, time.monotonic() - sent, proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _group_gone(pgid: int, within_s: float = 15.0) -> bool:
    """Whether every process the command started (its whole group) has exited."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _one_line(err: str, store: Path) -> tuple[int, int]:
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    match = LINE.match(lines[-1])
    assert match, err[-3000:]
    assert match.group(3) == str(store)
    return int(match.group(1)), int(match.group(2))


def _last_flow_run_state(prefect_api: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
    return runs[0].state.type.value


def test_sigint_and_sigterm_stop_the_run_and_the_rerun_finishes_the_same_cube(
    run_flow, prefect_api, tmp_path, tiny_model_files
):
    catalog = tmp_path / "catalog"
    add_local_item(shared_data("optical", "oem_koeln_50.tif"), catalog, datetime="2024-06-01")
    store = tmp_path / "cube.zarr"
    argv, env = _argv(catalog, store, tiny_model_files), _env(prefect_api)

    # Ctrl-C at a terminal: SIGINT to the whole process group (the command and its workers)
    code, err, seconds, pgid = _interrupt(
        argv, env, store, 1, lambda p: os.killpg(p.pid, signal.SIGINT)
    )
    assert code == 130, err[-3000:]
    assert seconds < SIGNAL_TO_EXIT_S
    done, total = _one_line(err, store)
    assert 1 <= done < total and done == _tiles_done(store)  # the count is the store's
    assert _group_gone(pgid), "worker processes outlived the command"
    assert _last_flow_run_state(prefect_api) == "CANCELLED"

    # SIGTERM to the command alone (kill, systemd, docker stop), after one more tile
    code, err, seconds, pgid = _interrupt(
        argv, env, store, done + 1, lambda p: p.send_signal(signal.SIGTERM)
    )
    assert code == 143, err[-3000:]
    assert seconds < SIGNAL_TO_EXIT_S
    done, total = _one_line(err, store)
    assert done < total and done == _tiles_done(store)
    assert _group_gone(pgid), "worker processes outlived the command"
    assert _last_flow_run_state(prefect_api) == "CANCELLED"

    rerun = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _tiles_done(store) == total

    clean = tmp_path / "clean.zarr"
    model = ModelOptions(
        weights=str(tiny_model_files["clip"]),
        upsampler_weights=str(tiny_model_files["simfeatup"]),
    )
    search = {"catalog": str(catalog), "collections": ["local"], "max_cloud": None}
    run_flow(landcover, **dict(PARAMS, search=search, store=str(clean), model=model))
    resumed = xr.open_zarr(store, mask_and_scale=False)
    reference = xr.open_zarr(clean, mask_and_scale=False)
    assert np.array_equal(resumed.landcover.values, reference.landcover.values)
    assert np.array_equal(resumed.confidence.values, reference.confidence.values)
