"""Workers load the tile model as soon as the flow asks, all at once, before any tile."""

from __future__ import annotations

import time

from distributed import Client
from prefect import flow

from terrawatch.flows.runner import warm_workers
from terrawatch.tasks.core.worker_model import ModelSpec

# classes no other test uses, so no earlier test can have loaded this spec on the shared cluster
SPEC = ModelSpec(classes=("warm land", "warm water"), factory="tests.tasks.core.model_probe:build")


def _has_model(spec: ModelSpec) -> bool:
    from terrawatch.tasks.core.worker_model import _MODELS

    return spec in _MODELS


@flow
def _warming_flow(gpu: bool) -> int:
    return warm_workers("terrawatch.tasks.core.worker_model:worker_model", SPEC, gpu)


def test_every_worker_loads_the_model_without_a_tile(run_flow, dask_cluster):
    with Client(dask_cluster) as client:
        assert run_flow(_warming_flow, gpu=False) == 2
        deadline = time.monotonic() + 60
        while not all(client.run(_has_model, SPEC).values()):
            assert time.monotonic() < deadline, "workers did not load the model within 60 s"
            time.sleep(0.2)
    # tiles that need a GPU: no worker here advertises one, so none is warmed
    assert run_flow(_warming_flow, gpu=True) == 0


def test_outside_a_dask_flow_nothing_is_submitted():
    assert warm_workers("terrawatch.tasks.core.worker_model:worker_model", SPEC) == 0
