"""A deployed run writing its cube to S3 (a real S3 API on loopback), credentials never shown."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tests.deploy.conftest import BUCKET, LANDCOVER, STORAGE_SECRET

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_run(stack, landcover_params):
    """A run whose flow process gets the keys from Secret blocks, its Dask workers from env."""
    store = f"s3://{BUCKET}/koeln/landcover.zarr"
    return stack.trigger(LANDCOVER, landcover_params(store)), store


def _storage_options(object_store: dict[str, str]) -> dict:
    return {
        "key": object_store["AWS_ACCESS_KEY_ID"],
        "secret": object_store["AWS_SECRET_ACCESS_KEY"],
        "client_kwargs": {"endpoint_url": object_store["AWS_ENDPOINT_URL"]},
    }


def test_run_writes_the_cube_to_object_storage(stack, s3_run, clean_run, object_store):
    flow_run, store = s3_run
    assert flow_run.state.is_completed(), stack.flow_run_logs(flow_run.id)[-4000:]
    remote = xr.open_zarr(store, storage_options=_storage_options(object_store))
    local = xr.open_zarr(clean_run[1])
    assert np.array_equal(remote.landcover.values, local.landcover.values, equal_nan=True)


def test_storage_secret_is_in_no_log_attribute_or_deployment(stack, s3_run, object_store):
    import asyncio

    flow_run, store = s3_run
    remote = xr.open_zarr(store, storage_options=_storage_options(object_store))

    async def deployments() -> str:
        async with stack.client() as client:
            return repr(await client.read_deployments())

    assert flow_run.state.is_completed()
    assert STORAGE_SECRET not in stack.logs()  # server, worker, flow-run and Dask output
    assert STORAGE_SECRET not in stack.flow_run_logs(flow_run.id)
    assert STORAGE_SECRET not in repr(remote.attrs) + repr(remote.landcover.attrs)
    assert STORAGE_SECRET not in asyncio.run(deployments())


def test_dask_workers_hold_neither_storage_keys_nor_the_prefect_auth_string(stack, s3_run):
    """The cube above was written by workers whose environment has no credentials: what anyone
    reaching the scheduler sees (``Client.run``) holds neither secret."""
    import os

    from distributed import Client

    from tests.deploy._stack import AUTH

    flow_run, _ = s3_run
    assert flow_run.state.is_completed()
    with Client(stack.scheduler_address, timeout=30) as client:
        environments = client.run(lambda: dict(os.environ))
    assert len(environments) == 2
    for environment in environments.values():
        seen = repr(environment)
        assert STORAGE_SECRET not in seen and AUTH not in seen
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(environment)
