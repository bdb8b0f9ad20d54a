"""Worker tuning: torch threads match the worker's threads; GDAL's cache is capped."""

from __future__ import annotations

import platform

import pytest
import torch
from distributed import Client, LocalCluster

from tasks._worker_process import GDAL_CACHE_MB, raise_mmap_threshold, tune_worker_process


def _tuned_settings() -> tuple[int, str | None]:
    import rasterio.env

    tune_worker_process()
    return torch.get_num_threads(), rasterio.env.get_gdal_config("GDAL_CACHEMAX")


def test_outside_a_worker_nothing_changes():
    threads = torch.get_num_threads()
    tune_worker_process()
    assert torch.get_num_threads() == threads


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_mmap_threshold_is_settable_on_glibc():
    assert raise_mmap_threshold(32 * 1024 * 1024) is True


def test_a_one_thread_worker_runs_torch_on_one_thread_with_a_capped_gdal_cache():
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        threads, cache = client.submit(_tuned_settings, pure=False).result()
    assert threads == 1
    assert int(cache) == GDAL_CACHE_MB


def _rss_mb() -> float:
    status = open("/proc/self/status").read()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS"))) / 1024


def _heap_left_after_freeing(trim: bool) -> float:
    """MB of RSS still held after freeing 200 MB of heap blocks pinned below a live block."""
    import numpy as np

    from tasks._worker_process import raise_mmap_threshold, release_free_heap

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
