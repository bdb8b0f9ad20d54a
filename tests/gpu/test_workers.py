"""GPU workers: cluster selection, the model on the worker's GPU, a small land-cover flow."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from terrawatch.flows.options import ModelOptions
from terrawatch.tasks.core.local_item import add_local_item
from terrawatch.tasks.core.worker_model import ModelSpec
from tests.conftest import shared_data

pytestmark = pytest.mark.gpu
CLASSES = ["water,sea", "sand,desert", "vegetation", "building,town"]


def _devices_of_loaded_models() -> list[str]:
    """Run in a worker: the device of every segmenter the worker keeps."""
    from terrawatch.tasks.core import worker_model

    return sorted({str(model.device) for model in worker_model._MODELS.values()})


@pytest.fixture
def gpu_cluster(monkeypatch):
    """A dask-cuda LocalCUDACluster as flows/runner.py starts it (GPU resource advertised)."""
    dask_cuda = pytest.importorskip("dask_cuda", reason="dask-cuda is not installed")
    monkeypatch.setenv("TERRAWATCH_GPU_WORKERS", "1")  # tiles ask for the GPU resource
    with dask_cuda.LocalCUDACluster(
        n_workers=1, threads_per_worker=2, resources={"GPU": 1}, dashboard_address=None
    ) as cluster:
        yield cluster


def test_runner_picks_a_local_cuda_cluster_when_cuda_and_dask_cuda_are_here(monkeypatch):
    pytest.importorskip("dask_cuda", reason="dask-cuda is not installed")
    from terrawatch.flows.runner import dask_task_runner, gpu_workers_expected

    monkeypatch.delenv("TERRAWATCH_DASK_ADDRESS", raising=False)
    runner = dask_task_runner()
    assert "LocalCUDACluster" in str(runner.cluster_class)
    assert runner.cluster_kwargs["resources"] == {"GPU": 1}
    assert gpu_workers_expected()


def test_the_model_is_loaded_on_the_workers_gpu(gpu_cluster, tiny_model_files):
    from distributed import Client

    from terrawatch.tasks.core.worker_model import worker_model

    spec = ModelSpec(
        tuple(CLASSES),
        weights=str(tiny_model_files["clip"]),
        upsampler_weights=str(tiny_model_files["simfeatup"]),
    )

    def load_and_report(spec: ModelSpec) -> str:  # local: pickled by value to the worker
        return str(worker_model(spec).device)

    with Client(gpu_cluster) as client:
        device = client.submit(load_and_report, spec, resources={"GPU": 1}).result(timeout=300)
        assert device.startswith("cuda")
        assert all(
            d.startswith("cuda")
            for devices in client.run(_devices_of_loaded_models).values()
            for d in devices
        )


def test_a_small_landcover_flow_runs_on_a_gpu_worker(
    gpu_cluster, prefect_api, tmp_path, tiny_model_files
):
    from distributed import Client
    from prefect_dask import DaskTaskRunner

    from terrawatch.flows.landcover import landcover

    catalog = tmp_path / "catalog"
    add_local_item(
        shared_data("optical", "oem_koeln_50.tif"), catalog, datetime="2024-06-01T10:00:00Z"
    )
    store = tmp_path / "koeln.zarr"
    runner = DaskTaskRunner(address=gpu_cluster.scheduler_address)
    landcover.with_options(task_runner=runner)(
        aoi="6.8085,50.9595,6.8130,50.9625",
        start="2024-06-01",
        end="2024-06-02",
        classes=CLASSES,
        store=str(store),
        search={"catalog": str(catalog), "collections": ["local"], "max_cloud": None},
        grid={"resolution": 2.0},
        tiling={"chunk": 64},
        model=ModelOptions(
            weights=str(tiny_model_files["clip"]),
            upsampler_weights=str(tiny_model_files["simfeatup"]),
        ),
    )
    labels = xr.open_zarr(store).landcover.isel(time=0).values
    assert np.isin(labels, [0, 1, 2, 3]).mean() > 0.9  # classified pixels, not all no-data
    with Client(gpu_cluster) as client:
        devices = [d for ds in client.run(_devices_of_loaded_models).values() for d in ds]
    assert devices and all(d.startswith("cuda") for d in devices)
