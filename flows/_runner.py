"""Cluster selection in one place: an existing scheduler, a GPU node, or a local CPU cluster."""

from __future__ import annotations

import importlib.util
import os

from prefect_dask import DaskTaskRunner

DASK_ADDRESS_ENV = "TERRAWATCH_DASK_ADDRESS"
DASK_WORKERS_ENV = "TERRAWATCH_DASK_WORKERS"
DASK_THREADS_ENV = "TERRAWATCH_DASK_THREADS"


def dask_task_runner(address: str | None = None) -> DaskTaskRunner:
    """The task runner of every flow.

    Order: ``address`` or ``$TERRAWATCH_DASK_ADDRESS`` (an existing scheduler, e.g.
    ``tcp://scheduler:8786``); ``dask_cuda.LocalCUDACluster`` (one worker per GPU) when CUDA and
    dask-cuda are present; else a ``LocalCluster`` of worker processes, one thread each, as many
    as cores (``$TERRAWATCH_DASK_WORKERS`` / ``$TERRAWATCH_DASK_THREADS`` override). Torch in each
    worker uses as many threads as the worker has (see ``tasks.infer``).
    """
    address = address or os.environ.get(DASK_ADDRESS_ENV)
    if address:
        return DaskTaskRunner(address=address)
    if _has_cuda() and importlib.util.find_spec("dask_cuda") is not None:
        return DaskTaskRunner(
            cluster_class="dask_cuda.LocalCUDACluster",
            cluster_kwargs={
                "threads_per_worker": 1,
                "resources": {"GPU": 1},
                "dashboard_address": None,
            },
        )
    threads = int(os.environ.get(DASK_THREADS_ENV, "1"))
    workers = int(os.environ.get(DASK_WORKERS_ENV, str(max(1, (os.cpu_count() or 1) // threads))))
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": threads,
            "processes": True,
            "dashboard_address": None,
        }
    )


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


GPU_WORKERS_ENV = "TERRAWATCH_GPU_WORKERS"


def gpu_workers_expected() -> bool:
    """Whether tile tasks should ask Dask for a ``GPU`` resource.

    True when ``$TERRAWATCH_GPU_WORKERS=1`` (a shared cluster whose workers advertise
    ``resources={"GPU": 1}``) or when the local cluster is a ``LocalCUDACluster``. Asking for a
    resource no worker has would block forever, so it is never guessed for an unknown cluster.
    """
    flag = os.environ.get(GPU_WORKERS_ENV, "").strip().lower() in {"1", "true", "yes"}
    local_gpu = (
        not os.environ.get(DASK_ADDRESS_ENV)
        and _has_cuda()
        and (importlib.util.find_spec("dask_cuda") is not None)
    )
    return flag or local_gpu
