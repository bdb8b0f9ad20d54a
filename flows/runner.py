"""Cluster selection in one place: an existing scheduler, a GPU node, or a local CPU cluster."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prefect_dask import DaskTaskRunner

from terrawatch.errors import InputError

if TYPE_CHECKING:
    from distributed import LocalCluster

DASK_ADDRESS_ENV = "TERRAWATCH_DASK_ADDRESS"
DASK_WORKERS_ENV = "TERRAWATCH_DASK_WORKERS"
DASK_THREADS_ENV = "TERRAWATCH_DASK_THREADS"


def dask_task_runner(address: str | None = None) -> DaskTaskRunner:
    """The task runner of every flow.

    Order: ``address`` or ``$TERRAWATCH_DASK_ADDRESS`` (an existing scheduler, e.g.
    ``tcp://scheduler:8786``); ``dask_cuda.LocalCUDACluster`` (one two-thread worker per GPU)
    when CUDA and dask-cuda are present; else a ``LocalCluster`` of worker processes, one thread
    each, as many as cores (``$TERRAWATCH_DASK_WORKERS`` / ``$TERRAWATCH_DASK_THREADS``
    override). Torch in each worker uses as many threads as the worker has (see
    ``tasks.landcover.tile``); one forward pass at a time per worker (``MODEL_TURN``).
    """
    address = address or os.environ.get(DASK_ADDRESS_ENV)
    if address:
        return DaskTaskRunner(address=address)
    if _has_cuda() and _has_dask_cuda():
        return DaskTaskRunner(
            cluster_class="dask_cuda.LocalCUDACluster",
            cluster_kwargs={
                # two tiles in flight per GPU: one's reads and writes overlap the other's model
                "threads_per_worker": 2,
                "resources": {"GPU": 1},
                "dashboard_address": None,
            },
        )
    threads = _env_count(DASK_THREADS_ENV, 1)
    workers = _env_count(DASK_WORKERS_ENV, max(1, (os.cpu_count() or 1) // threads))
    return DaskTaskRunner(
        cluster_class=local_cluster,
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": threads,
            "processes": True,
            "dashboard_address": None,
        },
    )


LOCAL_WORKER_CONFIG: dict[str, object] = {"distributed.worker.profile.enabled": False}
"""Dask settings for the workers of the clusters this project starts itself.

Dask's statistical profiler samples every worker thread's stack every 10 ms for the dashboard's
Profile page. Local clusters here have no dashboard, and the sampling slowed the model by about
4% (0.60 -> 0.58 s per 1248² tile in each of 2 workers on a 2-core machine, 2 runs each way).
Shared clusters keep their own configuration.
"""


def local_cluster(**cluster_kwargs: Any) -> LocalCluster:
    """A ``LocalCluster`` whose workers run with :data:`LOCAL_WORKER_CONFIG`.

    The nannies capture Dask's configuration when they are created and hand it to their worker
    processes, so setting it around the constructor is enough and leaves the caller's untouched.

    The workers ignore a terminal's SIGINT (:mod:`terrawatch.flows.worker_signals`; the
    command stops them, :mod:`terrawatch.flows.interrupt`) and start with the command's log
    levels (:func:`terrawatch.flows.console.worker_log_environment`).
    """
    import dask.config
    from distributed import LocalCluster

    from terrawatch.flows.console import worker_log_environment

    preload = [*dask.config.get("distributed.worker.preload", []), WORKER_SIGNALS_PRELOAD]
    worker_config = {**LOCAL_WORKER_CONFIG, "distributed.worker.preload": preload}
    with dask.config.set(worker_config), _environment(worker_log_environment()):
        return LocalCluster(**cluster_kwargs)


WORKER_SIGNALS_PRELOAD = "terrawatch.flows.worker_signals"
"""The preload that makes local workers ignore a terminal's Ctrl-C."""


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set inside the block (inherited by processes started)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _env_count(name: str, default: int) -> int:
    """A positive integer from the environment, or ``default`` when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise InputError(f"${name} must be a positive integer, got {raw!r}; unset it or fix it")
    return int(raw)


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _has_dask_cuda() -> bool:
    return importlib.util.find_spec("dask_cuda") is not None


GPU_WORKERS_ENV = "TERRAWATCH_GPU_WORKERS"


def warm_workers(loader: str, spec: Any, gpu: bool = False) -> int:
    """Start loading the tile model on every worker of the flow's cluster; do not wait.

    Call it in a flow just before submitting the tile task. Without it, a fresh cluster warms
    up one worker after another: the worker that runs the tile task imports torch and the
    model code to unpickle it, and only once it has mapped the tiles do the other workers
    start their own imports (about 6 s each on 2 cores). Here all workers import and load at
    once, while the tile task is being submitted. On a warm cluster it costs one no-op task per
    worker.

    Args:
        loader: ``"package.module:function"`` that loads (and caches) the model of ``spec``
            in a worker process, e.g. ``"terrawatch.tasks.core.worker_model:worker_model"``.
        spec: Its argument.
        gpu: Warm only the workers that advertise a ``GPU`` resource (the tiles run there).

    Returns:
        The number of workers asked to warm up (0 outside a flow on a DaskTaskRunner).
    """
    from distributed import fire_and_forget
    from prefect.context import FlowRunContext

    from terrawatch.tasks.core.worker_warmup import warm_worker

    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    if not isinstance(runner, DaskTaskRunner):
        return 0
    client = runner.client
    workers = client.scheduler_info(n_workers=-1)["workers"]
    chosen = [
        address
        for address, info in workers.items()
        if not gpu or info.get("resources", {}).get("GPU", 0) > 0
    ]
    for address in chosen:
        fire_and_forget(
            client.submit(
                warm_worker, loader, spec, workers=[address], allow_other_workers=True, pure=False
            )
        )
    return len(chosen)


def run_tile_task(tile_task: Any, jobs: list, spec: Any, loader: str, loaded: Any = None) -> Any:
    """Warm the workers (:func:`warm_workers`), submit the flow's tile task, wait for it.

    Args:
        tile_task: The Prefect task mapping the tiles (``segment_tiles_task``, ...).
        jobs: Its tile jobs; none left (a finished step) warms nothing.
        spec: Its model spec.
        loader: What loads the tile model on a worker, for :func:`warm_workers`.
        loaded: The argument of ``loader`` when it is not ``spec`` itself.
    """
    gpu = gpu_workers_expected()
    if jobs:
        warm_workers(loader, spec if loaded is None else loaded, gpu)
    return tile_task.submit(jobs, spec, gpu=gpu).result()


def gpu_workers_expected() -> bool:
    """Whether tile tasks should ask Dask for a ``GPU`` resource.

    True when ``$TERRAWATCH_GPU_WORKERS=1`` (a shared cluster whose workers advertise
    ``resources={"GPU": 1}``) or when the local cluster is a ``LocalCUDACluster``. Asking for a
    resource no worker has would block forever, so it is never guessed for an unknown cluster.
    """
    flag = os.environ.get(GPU_WORKERS_ENV, "").strip().lower() in {"1", "true", "yes"}
    local_gpu = not os.environ.get(DASK_ADDRESS_ENV) and _has_cuda() and _has_dask_cuda()
    return flag or local_gpu
