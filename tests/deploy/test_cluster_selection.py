"""Cluster selection (flows/_runner.py): existing scheduler, GPU node or local CPU cluster.

The GPU branches stand in for the two probes (``torch.cuda`` and an installed dask-cuda): this
machine has neither, and they are the hardware edge of the choice.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types

import pytest

from terrawatch.flows import runner as _runner
from terrawatch.flows.runner import dask_task_runner, gpu_workers_expected, local_cluster


@pytest.fixture(autouse=True)
def _no_cluster_env(monkeypatch: pytest.MonkeyPatch):
    for name in ("TERRAWATCH_DASK_ADDRESS", "TERRAWATCH_DASK_WORKERS", "TERRAWATCH_DASK_THREADS",
                 "TERRAWATCH_GPU_WORKERS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


class LocalCUDACluster:
    """Stands in for dask_cuda's class, which DaskTaskRunner imports on construction."""


@pytest.fixture
def gpu_node(monkeypatch: pytest.MonkeyPatch):
    """CUDA visible and a (stand-in) dask-cuda installed."""
    fake = types.ModuleType("dask_cuda")
    fake.__spec__ = importlib.machinery.ModuleSpec("dask_cuda", None)
    fake.LocalCUDACluster = LocalCUDACluster
    monkeypatch.setitem(sys.modules, "dask_cuda", fake)
    monkeypatch.setattr(_runner, "_has_cuda", lambda: True)


def test_scheduler_address_from_the_environment_is_used(monkeypatch):
    monkeypatch.setenv("TERRAWATCH_DASK_ADDRESS", "tcp://scheduler:8786")
    runner = dask_task_runner()
    assert runner.address == "tcp://scheduler:8786" and runner.cluster_class is None


def test_explicit_address_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("TERRAWATCH_DASK_ADDRESS", "tcp://scheduler:8786")
    assert dask_task_runner("tcp://other:8786").address == "tcp://other:8786"


def test_cpu_machine_gets_one_single_thread_worker_per_core():
    runner = dask_task_runner()
    assert runner.address is None and runner.cluster_class is local_cluster
    assert runner.cluster_kwargs["n_workers"] == max(1, os.cpu_count() or 1)
    assert runner.cluster_kwargs["threads_per_worker"] == 1


def test_gpu_node_with_dask_cuda_gets_a_local_cuda_cluster(gpu_node):
    runner = dask_task_runner()
    assert runner.cluster_class == "dask_cuda.LocalCUDACluster"
    assert runner.cluster_kwargs["resources"] == {"GPU": 1}
    assert gpu_workers_expected()


def test_gpu_node_without_dask_cuda_gets_a_cpu_cluster(monkeypatch):
    monkeypatch.setattr(_runner, "_has_cuda", lambda: True)
    monkeypatch.setattr(_runner, "_has_dask_cuda", lambda: False)
    assert dask_task_runner().cluster_class is local_cluster
    assert not gpu_workers_expected()


def test_shared_cluster_asks_for_gpus_only_when_told(gpu_node, monkeypatch):
    monkeypatch.setenv("TERRAWATCH_DASK_ADDRESS", "tcp://scheduler:8786")
    assert not gpu_workers_expected()
    monkeypatch.setenv("TERRAWATCH_GPU_WORKERS", "1")
    assert gpu_workers_expected()


def test_bad_worker_count_names_the_variable(monkeypatch):
    monkeypatch.setenv("TERRAWATCH_DASK_WORKERS", "two")
    with pytest.raises(
        ValueError, match=r"TERRAWATCH_DASK_WORKERS must be a positive integer.*'two'"
    ):
        dask_task_runner()


def test_local_cluster_workers_run_without_the_profiler():
    import dask.config
    from distributed import Client

    with (
        local_cluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        settings = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))

    assert list(settings.values()) == [False]
    assert dask.config.get("distributed.worker.profile.enabled") is True  # caller's untouched
