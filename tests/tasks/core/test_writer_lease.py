"""The writer lease on real stores: holders in other processes, a hung holder, a killed holder,
an orphan's tile write after a takeover, and an S3 API (moto's server on loopback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from terrawatch.tasks.core.cube_store import write_cube_tile
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.writer_lease import (
    WriterLeaseError,
    acquire_lease,
    check_writer_token,
    writer_lease,
)
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE, prepare_cube
from tests.conftest import REPO

CHUNK = 64
GRID = GridSpec("EPSG:32629", 10.0, 500_000.0, 4_000_000.0, 501_280.0, 4_000_640.0)  # 64 x 128 px
STEP = TimeStep("2024-06-01", "2024-06-30", ("S2A_1",))

HOLDER = """
import sys, time
from terrawatch.tasks.core.writer_lease import writer_lease
store, run_id, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
with writer_lease(store, run_id, ttl_s=ttl, wait_s=0) as lease:
    print(lease.token, flush=True)
    time.sleep(float(sys.argv[4]))
print("released", flush=True)
"""


def _holder(store: str, run_id: str, ttl: float, hold: float) -> tuple[subprocess.Popen, str]:
    """A real process holding the lease (heartbeat thread and all); returns it and its token."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, store, run_id, str(ttl), str(hold)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        text=True,
    )
    token = proc.stdout.readline().strip()
    assert token, "the holder did not take the lease"
    return proc, token


def _cube(tmp_path: Path) -> str:
    store = str(tmp_path / "cube.zarr")
    prepare_cube(store, GRID, _classes(), STEP, {"run_id": "r"}, chunk=CHUNK)
    return store


def _classes():
    from terrawatch.models.classes import parse_class_names

    return parse_class_names(["water", "tree"])


def _arrays(value: int) -> dict[str, np.ndarray]:
    return {
        "landcover": np.full((CHUNK, CHUNK), value, np.uint8),
        "confidence": np.full((CHUNK, CHUNK), 0.5, np.float32),
    }


def test_second_run_is_refused_naming_the_holder_then_gets_the_released_lease(tmp_path):
    store = str(tmp_path / "cube.zarr")
    proc, token = _holder(store, "run-a", ttl=30, hold=3)
    try:
        with pytest.raises(WriterLeaseError) as refused:
            acquire_lease(store, "run-b", wait_s=0)
        message = str(refused.value)
        assert "run-a" in message and f"pid {proc.pid}" in message and "since 20" in message
        assert store in message
        check_writer_token(store, token)  # the holder's own writes go through
        started = time.monotonic()
        lease = acquire_lease(store, "run-b", wait_s=30)  # waits for the holder's release
        assert proc.stdout.readline().strip() == "released"
        assert 0.5 < time.monotonic() - started < 25
    finally:
        proc.kill()
        proc.wait()
    assert lease.record.run_id == "run-b"
    with pytest.raises(WriterLeaseError, match="took the cube over: flow run run-b"):
        check_writer_token(store, token)


def test_heartbeat_keeps_a_lease_alive_past_its_ttl(tmp_path):
    store = str(tmp_path / "cube.zarr")
    with writer_lease(store, "run-a", ttl_s=1.0, wait_s=0) as lease:
        time.sleep(2.5)
        with pytest.raises(WriterLeaseError, match="run-a"):
            acquire_lease(store, "run-b", wait_s=0)
        check_writer_token(store, lease.token)
    with pytest.raises(WriterLeaseError, match="released"):  # its tiles stop with it
        check_writer_token(store, lease.token)
    acquire_lease(store, "run-b", wait_s=0)  # released on exit: taken at once


def test_hung_holder_is_taken_over_after_expiry_and_its_tiles_cannot_write(tmp_path):
    store = _cube(tmp_path)
    proc, old = _holder(store, "run-a", ttl=1.5, hold=60)
    try:
        write_cube_tile(store, LANDCOVER_CUBE, 0, (0, 0), _arrays(1), CHUNK, lease=old)
        os.kill(proc.pid, signal.SIGSTOP)  # alive but silent: a hung or cut-off host
        started = time.monotonic()
        new = acquire_lease(store, "run-b", wait_s=20)
        assert 1.0 < time.monotonic() - started < 15
        os.kill(proc.pid, signal.SIGCONT)
        with pytest.raises(WriterLeaseError, match="took the cube over"):
            write_cube_tile(store, LANDCOVER_CUBE, 0, (0, 1), _arrays(1), CHUNK, lease=old)
        write_cube_tile(store, LANDCOVER_CUBE, 0, (0, 1), _arrays(0), CHUNK, lease=new.token)
    finally:
        proc.kill()
        proc.wait()
    labels = zarr.open_array(store, path="landcover", mode="r")[0]
    assert (labels[:, :CHUNK] == 1).all() and (labels[:, CHUNK:] == 0).all()
    done = zarr.open_array(store, path="tile_done", mode="r")[0]
    assert done.tolist() == [[1, 1]]


def test_sigkilled_holder_on_this_host_is_taken_over_and_its_token_is_dead(tmp_path):
    store = _cube(tmp_path)
    proc, old = _holder(store, "run-a", ttl=30, hold=60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    new = acquire_lease(store, "run-b", wait_s=20)  # its pid is gone here: no 30 s wait
    assert time.monotonic() - started < 10
    assert new.record.generation == 2
    with pytest.raises(WriterLeaseError):
        write_cube_tile(store, LANDCOVER_CUBE, 0, (0, 0), _arrays(1), CHUNK, lease=old)
    assert zarr.open_array(store, path="tile_done", mode="r")[0].tolist() == [[0, 0]]


def test_expired_lease_refuses_writes_even_before_a_takeover(tmp_path):
    store = _cube(tmp_path)
    lease = acquire_lease(store, "run-a", ttl_s=1.0, wait_s=0)  # never renewed
    time.sleep(1.2)
    with pytest.raises(WriterLeaseError, match="expired"):
        write_cube_tile(store, LANDCOVER_CUBE, 0, (0, 0), _arrays(1), CHUNK, lease=lease.token)
    assert lease.renew()  # nobody took it over: a late heartbeat revives it
    write_cube_tile(store, LANDCOVER_CUBE, 0, (0, 0), _arrays(1), CHUNK, lease=lease.token)


def test_lease_on_an_s3_api(tmp_path, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket="cubes")
        store = "s3://cubes/koeln/landcover.zarr"
        first = acquire_lease(store, "run-a", wait_s=0)
        with pytest.raises(FileExistsError):  # conditional PUT: a second create of gen 1 fails
            first.files.create(1, b"{}")
        with pytest.raises(WriterLeaseError, match="run-a"):
            acquire_lease(store, "run-b", wait_s=0)
        assert first.renew()
        first.release()
        second = acquire_lease(store, "run-b", wait_s=0)
        check_writer_token(store, second.token)
        with pytest.raises(WriterLeaseError, match="took the cube over"):
            check_writer_token(store, first.token)
    finally:
        server.stop()


def test_bad_lease_settings_name_the_variable(monkeypatch, tmp_path):
    from terrawatch.errors import InputError

    monkeypatch.setenv("TERRAWATCH_LEASE_WAIT_S", "soon")
    with pytest.raises(InputError, match="TERRAWATCH_LEASE_WAIT_S"):
        acquire_lease(str(tmp_path / "c.zarr"), "r")


def test_unwritable_place_is_an_input_error_naming_the_store(tmp_path):
    from terrawatch.errors import InputError

    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(InputError, match="--store"):
        acquire_lease(str(tmp_path / "a-file" / "cube.zarr"), "r", wait_s=0)
