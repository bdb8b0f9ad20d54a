"""Two real land-cover runs on one cube: the second is refused while the first writes, naming it;
once the first is SIGKILLed (flow process and its Dask workers), a rerun takes its lease over and
finishes the cube with only the missing tiles."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import zarr

from terrawatch.flows.landcover import ModelOptions, landcover
from terrawatch.tasks.core.lease_files import LEASE_SUFFIX
from terrawatch.tasks.core.writer_lease import WriterLeaseError
from tests.flows.test_resume import _tiles_done, start_landcover_run

pytestmark = pytest.mark.slow


def test_second_run_is_refused_then_takes_over_from_a_killed_run(
    run_flow, prefect_api, tmp_path, tiny_model_files, monkeypatch
):
    store = tmp_path / "cube.zarr"
    first, params, model = start_landcover_run(tmp_path, tiny_model_files, prefect_api, store)
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
