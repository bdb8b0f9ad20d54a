"""Deployed runs end in the state of their work, whatever happened to their Prefect worker.

- Worker lost alone (its flow run goes on, orphaned): the run finishes its tiles and ends
  ``Completed``, not ``Crashed`` from a broken stdout pipe (the work pool streams no output).
- Worker and flow-run process lost together (a container or host crash): nobody is left to
  report; the zombie automation of ``deploy/automations/`` marks the run ``Crashed`` once its
  heartbeats stop, which frees the deployment's slot, and the run queued behind it starts.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import xarray as xr
import yaml

from tests.deploy._stack import REPO, Stack
from tests.deploy.conftest import LANDCOVER
from tests.deploy.test_fault import _tiles_done

pytestmark = pytest.mark.slow

ZOMBIE_AUTOMATION = REPO / "deploy" / "automations" / "zombie-flow-runs.yaml"
WITHIN_S = float(yaml.safe_load(ZOMBIE_AUTOMATION.read_text())["trigger"]["within"])
"""Seconds without a heartbeat after which the automation marks a run Crashed."""
SLACK_S = 25.0
"""The server's proactive evaluation (every 5 s), a slot retry (5 s), a loaded 2-core host."""


def _state(stack: Stack, flow_run_id: Any) -> Any:
    async def read() -> Any:
        async with stack.client() as client:
            return (await client.read_flow_run(flow_run_id)).state

    return asyncio.run(read())


def _wait_until(stack: Stack, flow_run_id: Any, done, timeout: float) -> tuple[Any, float]:
    """Poll a run's state until ``done(state)``; (state, seconds waited)."""
    start = time.monotonic()
    state = _state(stack, flow_run_id)
    while not done(state) and time.monotonic() - start < timeout:
        time.sleep(0.5)
        state = _state(stack, flow_run_id)
    return state, time.monotonic() - start


def _same_cube(store: Path | str, clean: str) -> None:
    ours, reference = xr.open_zarr(store, mask_and_scale=False), xr.open_zarr(clean)
    assert (ours.tile_done.values == 1).all()
    assert np.array_equal(ours.landcover.values, reference.landcover.values)


def test_run_whose_worker_is_killed_mid_way_ends_completed_with_the_clean_cube(
    stack, clean_run, landcover_params, tmp_path
):
    store = tmp_path / "orphaned.zarr"
    flow_run = stack.trigger(LANDCOVER, landcover_params(str(store)), wait=0)
    orphans: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        while _tiles_done(store) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        orphans = stack.kill_alone("prefect-worker")  # SIGKILL; its flow run goes on alone
        assert any("prefect.engine" in " ".join(p.cmdline()) for p in orphans)
        final = stack.wait(flow_run.id)
    finally:
        psutil.wait_procs(orphans, timeout=60)
        stack.start_prefect_worker()  # later tests get a worker again
    assert final.state.is_completed(), (final.state, stack.flow_run_logs(flow_run.id)[-4000:])
    _same_cube(store, clean_run[1])


def test_run_lost_with_its_worker_is_crashed_by_the_automation_and_the_next_run_starts(
    stack, clean_run, landcover_params, tmp_path
):
    store = str(tmp_path / "zombie.zarr")
    lost = stack.trigger(LANDCOVER, landcover_params(store), wait=0)
    deadline = time.monotonic() + 240
    while _tiles_done(store) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    queued = stack.trigger(LANDCOVER, landcover_params(store), wait=0)  # same deployment: waits
    state, _ = _wait_until(stack, queued.id, lambda s: s.name == "AwaitingConcurrencySlot", 60)
    assert state.name == "AwaitingConcurrencySlot", state
    try:
        assert _state(stack, lost.id).is_running() and _tiles_done(store) < 16
        assert stack.crash_worker(), "no flow-run process to kill"
        killed = time.monotonic()
        stack.start_prefect_worker()  # what Restart=always / restart: unless-stopped do
        crashed, _ = _wait_until(stack, lost.id, lambda s: s.is_final(), WITHIN_S + 60)
        crashed_s = time.monotonic() - killed
        started, _ = _wait_until(stack, queued.id, lambda s: not s.is_scheduled(), 120)
        started_s = time.monotonic() - killed
        final = stack.wait(queued.id)
    finally:
        if "prefect-worker" not in stack.procs:
            stack.start_prefect_worker()
    heartbeats = stack.heartbeats(lost.id)
    assert crashed.is_crashed() and "No heartbeat" in (crashed.message or ""), (crashed, heartbeats)
    assert crashed_s < WITHIN_S + SLACK_S, f"Crashed {crashed_s:.0f} s after the kill"
    assert not started.is_scheduled(), started  # Submitting/Pending: it holds the slot
    assert started_s < WITHIN_S + SLACK_S + 10, f"next run started {started_s:.0f} s after"
    assert final.state.is_completed(), stack.flow_run_logs(queued.id)[-4000:]
    _same_cube(store, clean_run[1])
