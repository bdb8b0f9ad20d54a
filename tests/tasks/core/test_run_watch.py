"""The tile coordinator's stop signal on real lease files: a live lease goes on; a released,
expired or taken-over lease stops the tiles; a lease is released only by the run holding it."""

from __future__ import annotations

import time

from terrawatch.tasks.core.run_watch import RunWatch, tile_keys
from terrawatch.tasks.core.writer_lease import acquire_lease, release_run_lease


def test_live_lease_goes_on_and_released_lease_stops(tmp_path):
    store = str(tmp_path / "cube.zarr")
    lease = acquire_lease(store, "run-a", ttl_s=30, wait_s=0)
    watch = RunWatch(None, store, lease.token, every_seconds=0.0)
    assert watch.stop_reason() is None

    assert not release_run_lease(store, "run-b")  # not the holder: nothing released
    assert watch.stop_reason() is None
    assert release_run_lease(store, "run-a")
    stopped = watch.stop_reason()
    assert stopped is not None and not stopped.cancelled
    assert "released" in str(stopped)
    assert not release_run_lease(store, "run-a")  # already released


def test_expired_or_taken_over_lease_stops(tmp_path):
    store = str(tmp_path / "cube.zarr")
    lease = acquire_lease(store, "run-a", ttl_s=1, wait_s=0)  # no heartbeat: a dead process
    watch = RunWatch(None, store, lease.token, every_seconds=0.0)
    time.sleep(1.1)
    assert "expired" in str(watch.stop_reason())
    acquire_lease(store, "run-b", ttl_s=30, wait_s=0)
    assert "took the cube over" in str(watch.stop_reason())


def test_looks_at_most_every_interval(tmp_path):
    store = str(tmp_path / "cube.zarr")
    lease = acquire_lease(store, "run-a", ttl_s=30, wait_s=0)
    now = [0.0]
    watch = RunWatch(None, store, lease.token, every_seconds=2.0, clock=lambda: now[0])
    release_run_lease(store, "run-a")
    assert watch.stop_reason() is None  # not due yet: no file read
    now[0] = 2.0
    assert watch.stop_reason() is not None


def test_tile_keys_name_the_run_and_differ_per_call():
    first, second = tile_keys("abc", 3), tile_keys("abc", 3)
    assert len(set(first)) == 3 and not set(first) & set(second)
    assert all(key.startswith("terrawatch-tile-abc-") for key in first + second)
