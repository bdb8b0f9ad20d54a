"""Worker tuning: torch threads match the worker's threads; GDAL's cache is capped; what a
worker has loaded is frozen out of the garbage collector's full walks."""

from __future__ import annotations

import gc
import platform

import pytest
import torch
from distributed import Client, LocalCluster

from terrawatch.tasks.core.worker_process import (
    GDAL_CACHE_MB,
    freeze_loaded_objects,
    raise_mmap_threshold,
    tune_worker_process,
)


def _tuned_settings() -> tuple[int, str | None]:
    import rasterio.env

    tune_worker_process()
    return torch.get_num_threads(), rasterio.env.get_gdal_config("GDAL_CACHEMAX")


def test_outside_a_worker_nothing_changes():
    threads, frozen = torch.get_num_threads(), gc.get_freeze_count()
    tune_worker_process()
    assert freeze_loaded_objects() is False
    assert torch.get_num_threads() == threads
    assert gc.get_freeze_count() == frozen


def _freeze_after_loading() -> tuple[bool, int, int]:
    """On a worker: freeze, then (done, objects tracked before, objects frozen)."""
    import gc

    tracked = len(gc.get_objects())
    done = freeze_loaded_objects()
    return done, tracked, gc.get_freeze_count()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_mmap_threshold_is_settable_on_glibc():
    assert raise_mmap_threshold(32 * 1024 * 1024) is True


def test_a_worker_gets_one_torch_thread_a_capped_gdal_cache_and_frozen_loaded_objects():
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        threads, cache = client.submit(_tuned_settings, pure=False).result()
        done, tracked, frozen = client.submit(_freeze_after_loading, pure=False).result()
    assert threads == 1
    assert int(cache) == GDAL_CACHE_MB
    # what was loaded is out of the full collections' walks (a worker's 0.3 s pauses)
    assert done is True
    assert frozen >= 0.5 * tracked > 10_000


def _rss_mb() -> float:
    status = open("/proc/self/status").read()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS"))) / 1024


def _heap_left_after_freeing(trim: bool) -> float:
    """MB of RSS still held after freeing 200 MB of heap blocks pinned below a live block."""
    import numpy as np

    from terrawatch.tasks.core.worker_process import raise_mmap_threshold, release_free_heap

    raise_mmap_threshold(32 * 1024 * 1024)  # as on a worker: 1 MB blocks come from the heap
    baseline = _rss_mb()
    blocks = [np.ones(1024 * 1024, np.uint8) for _ in range(200)]
    pin = np.ones(1024 * 1024, np.uint8)  # live above them: the heap top cannot shrink
    del blocks
    if trim:
        release_free_heap()
    left = _rss_mb() - baseline
    del pin
    return left


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
@pytest.mark.parametrize("trim", [False, True])
def test_released_heap_goes_back_to_the_os(trim):
    # in a fresh process each, so this test's own heap does not blur the figures
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        left = pool.submit(_heap_left_after_freeing, trim).result()
    if trim:
        assert left < 50
    else:  # the premise: without the trim glibc keeps the freed blocks resident
        assert left > 150
