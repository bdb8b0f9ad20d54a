"""Two real land-cover runs on one cube: the second is refused while the first writes, naming it;
once the first is SIGKILLed (flow process and its Dask workers), a rerun takes its lease over and
finishes the cube with only the missing tiles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import zarr

from terrawatch.flows.landcover import ModelOptions, landcover
from terrawatch.tasks.core.lease_files import LEASE_SUFFIX
from terrawatch.tasks.core.local_item import add_local_item
from terrawatch.tasks.core.writer_lease import WriterLeaseError
from tests.conftest import REPO, shared_data
from tests.flows.test_resume import PARAMS, RUNNER, _tiles_done

pytestmark = pytest.mark.slow


def test_second_run_is_refused_then_takes_over_from_a_killed_run(
    run_flow, prefect_api, tmp_path, tiny_model_files, monkeypatch
):
    image = shared_data("optical", "oem_koeln_50.tif")
    catalog = tmp_path / "catalog"
    add_local_item(image, catalog, datetime="2024-06-01T10:00:00Z")
    model = {
        "weights": str(tiny_model_files["clip"]),
        "upsampler_weights": str(tiny_model_files["simfeatup"]),
    }
    store = tmp_path / "cube.zarr"
    search = {"catalog": str(catalog), "collections": ["local"], "max_cloud": None}
    params = dict(PARAMS, search=search, store=str(store), model=model)
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PYTHONPATH=str(REPO))
    first = subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(params)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while _tiles_done(store) < 1 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, "the first run must still be writing"
        lease = json.loads(
            sorted((tmp_path / f"cube.zarr{LEASE_SUFFIX}").glob("*.json"))[-1].read_text()
        )

        monkeypatch.setenv("TERRAWATCH_LEASE_WAIT_S", "0")
        with pytest.raises(WriterLeaseError) as refused:
            run_flow(landcover, **dict(params, model=ModelOptions(**model)))
        message = str(refused.value)
        assert lease["run_id"] in message and f"pid {first.pid}" in message
        assert first.poll() is None  # the refused run did not disturb the writer

        os.killpg(first.pid, signal.SIGKILL)  # the flow process and its Dask workers
    finally:
        first.wait(timeout=30)
    total = zarr.open_array(store, path="tile_done", mode="r").size
    done_before = _tiles_done(store)
    assert 1 <= done_before < total

    monkeypatch.setenv("TERRAWATCH_LEASE_WAIT_S", "20")  # well under the 30 s TTL
    summary = run_flow(landcover, **dict(params, model=ModelOptions(**model)))
    assert summary["tiles"] == {"written": total - done_before}
    assert _tiles_done(store) == total
