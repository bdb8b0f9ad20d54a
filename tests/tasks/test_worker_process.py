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
