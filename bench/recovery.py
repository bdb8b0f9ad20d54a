"""Benchmark how fast ``prefect flow-run cancel`` stops a land-cover run's tiles on Dask.

A real land-cover run (the small random-weight model of ``bench/pipeline.py``, the Cologne
test scene at 1 m, 64 px tiles) runs in its own process on a local Dask cluster that outlives
it, against a local Prefect API. Once two tiles are written, ``prefect flow-run cancel`` (the
real command) cancels it; the benchmark waits for the run to be Cancelled and a further
``--settle`` seconds (orphaned tiles would write then), and reports the seconds from the cancel
command to the last tile write (target under 30 s) and to the Cancelled state. One summary
line::

    python bench/recovery.py [--settle 5] [--no-kill]

Then ``kill -9`` to the next run of the same deployment starting (target under 60 s), on the
real local deployment of ``tests/deploy/_stack.py`` (Prefect server with auth, the process work
pool of ``deploy/work-pool.process.json``, ``prefect deploy --all``, the zombie automation of
``deploy/automations/``, a Prefect worker, a Dask scheduler and two workers): a run of
``landcover-weekly`` is writing, a second run of the deployment waits for its slot, and

- ``flow-run``: the flow-run process alone is killed; its worker reports it ``Crashed``;
- ``container``: the worker and its flow-run process are killed together (a container or host
  crash) and the worker restarted (as systemd and compose do); nobody reports the run, the
  automation marks it ``Crashed`` once its heartbeats stop.

Each figure is the seconds from the kill to the second run leaving its wait (``Pending``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pipeline import CLASSES, model_files

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO.parent / "shared" / "data" / "optical" / "oem_koeln_50.tif"
AOI = "6.8075,50.9590,6.8135,50.9628"
TARGET_S = 30.0
KILL_TARGET_S = 60.0
LANDCOVER = "landcover/landcover-weekly"
RUNNER = """
import json, sys
from prefect_dask import DaskTaskRunner
from terrawatch.flows.landcover import landcover
params, address = json.loads(sys.argv[1]), sys.argv[2]
landcover.with_options(task_runner=DaskTaskRunner(address=address))(**params)
"""


def tiles_done(store: Path) -> int:
    """Tiles the cube records as written (0 before the cube exists)."""
    import zarr

    try:
        return int((zarr.open_array(store, path="tile_done", mode="r")[:] == 1).sum())
    except (FileNotFoundError, KeyError, ValueError):
        return 0


def last_write(store: Path) -> float:
    """The latest modification time of a file of the cube (a tile writes its chunks)."""
    return max(path.stat().st_mtime for path in store.rglob("*") if path.is_file())


def run_state(run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds watched after Cancelled")
    parser.add_argument(
        "--no-kill", action="store_true", help="skip the kill -9 figures (they start a deployment)"
    )
    args = parser.parse_args()

    from terrawatch.flows.local_api import shared_local_api
    from terrawatch.flows.runner import local_cluster
    from terrawatch.tasks.core.lease_files import LEASE_SUFFIX
    from terrawatch.tasks.core.local_item import add_local_item

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = model_files(folder)
        catalog = folder / "catalog"
        add_local_item(SCENE, catalog, datetime="2024-06-01T10:00:00Z")
        store = folder / "cube.zarr"
        params = dict(
            aoi=AOI, start="2024-06-01", end="2024-06-02", classes=CLASSES, store=str(store),
            grid={"resolution": 1.0}, tiling={"chunk": 64},
            search={"catalog": str(catalog), "collections": ["local"], "max_cloud": None},
            model={"weights": str(files["clip"]), "upsampler_weights": str(files["simfeatup"])},
        )  # fmt: skip
        with (
            shared_local_api() as api,
            local_cluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
        ):
            env = dict(os.environ, PREFECT_API_URL=api, PYTHONPATH=str(REPO))
            run = subprocess.Popen(
                [sys.executable, "-c", RUNNER, json.dumps(params), cluster.scheduler_address],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                while tiles_done(store) < 2 and run.poll() is None:
                    time.sleep(0.05)
                lease = sorted((folder / f"cube.zarr{LEASE_SUFFIX}").glob("*.json"))[-1]
                run_id = json.loads(lease.read_text())["run_id"]
                prefect = Path(sys.executable).parent / "prefect"
                cancelled_at = time.time()
                subprocess.run(
                    [str(prefect), "flow-run", "cancel", run_id],
                    env=env, check=True, stdout=subprocess.DEVNULL,
                )  # fmt: skip
                command_s = time.time() - cancelled_at  # the CLI's own start is in the figure
                while not run_state(run_id).is_final() and time.time() < cancelled_at + 120:
                    time.sleep(0.1)
                final = run_state(run_id)
                to_final = time.time() - cancelled_at
                time.sleep(args.settle)  # the cluster lives on: orphaned tiles would write now
                to_last_write = last_write(store) - cancelled_at
            finally:
                if run.poll() is None:
                    run.kill()
                run.wait()
            total = tiles_done(store), _tile_count(store)
        kills = "" if args.no_kill else kill_figures(folder, params)
    verdict = "ok" if to_last_write < TARGET_S and final.is_cancelled() else "OVER TARGET"
    print(
        f"recovery: flow-run cancel -> last tile write {to_last_write:.1f} s "
        f"(target < {TARGET_S:.0f} s, {verdict}; the command itself {command_s:.1f} s); "
        f"-> {final.name} {to_final:.1f} s; {total[0]}/{total[1]} tiles written{kills}"
    )


def kill_figures(folder: Path, params: dict) -> str:
    """``kill -9`` -> next run of the deployment leaves its wait, both kills; summary words."""
    from tests.deploy._stack import start_stack

    (folder / "stack").mkdir()
    stack = start_stack(folder / "stack", {"AWS_ACCESS_KEY_ID": "-", "AWS_SECRET_ACCESS_KEY": "-"})
    try:
        words = []
        for how in ("flow-run", "container"):
            to_crashed, to_next = _kill_and_time(stack, params, folder / f"{how}.zarr", how)
            verdict = "ok" if to_next < KILL_TARGET_S else "OVER TARGET"
            words.append(
                f"kill -9 {how} -> Crashed {to_crashed:.1f} s, next run {to_next:.1f} s "
                f"(target < {KILL_TARGET_S:.0f} s, {verdict})"
            )
        return "; " + "; ".join(words)
    finally:
        stack.stop()


def _kill_and_time(stack, params: dict, store: Path, how: str) -> tuple[float, float]:
    import signal

    run_params = {**params, "store": str(store), "grid": {"resolution": 2.0}}  # 16 tiles
    lost = stack.trigger(LANDCOVER, run_params, wait=0)
    while tiles_done(store) < 2:
        time.sleep(0.05)
    queued = stack.trigger(LANDCOVER, run_params, wait=0)
    while _deployed_state(stack, queued.id).name != "AwaitingConcurrencySlot":
        time.sleep(0.2)
    if how == "flow-run":
        (process,) = stack.flow_run_processes()
        killed = time.monotonic()
        os.kill(process.pid, signal.SIGKILL)
    else:
        killed = time.monotonic()
        stack.crash_worker()  # SIGKILL of the worker and its flow-run process
        stack.start_prefect_worker()  # Restart=always / restart: unless-stopped
    to_crashed = to_next = None
    while to_next is None and time.monotonic() < killed + 300:
        if to_crashed is None and _deployed_state(stack, lost.id).is_final():
            to_crashed = time.monotonic() - killed
        if not _deployed_state(stack, queued.id).is_scheduled():
            to_next = time.monotonic() - killed
        time.sleep(0.2)
    if to_crashed is None and _deployed_state(stack, lost.id).is_final():
        to_crashed = to_next
    stack.wait(queued.id, timeout=600)  # the next figure's runs must not queue behind it
    return to_crashed or float("nan"), to_next or float("nan")


def _deployed_state(stack, flow_run_id):
    import asyncio

    async def read():
        async with stack.client() as client:
            return (await client.read_flow_run(flow_run_id)).state

    return asyncio.run(read())


def _tile_count(store: Path) -> int:
    import zarr

    return zarr.open_array(store, path="tile_done", mode="r").size


if __name__ == "__main__":
    main()
