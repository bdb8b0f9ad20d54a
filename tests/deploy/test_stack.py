"""Runs triggered through the Prefect API of a real deployment (server, pool, worker, Dask)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import xarray as xr
import yaml

from tests.deploy._stack import AUTH, POOL, REPO, api_status

pytestmark = pytest.mark.slow


def _deployments() -> list[dict]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


def test_every_deployment_of_prefect_yaml_is_served_by_the_pool(stack):
    async def read() -> dict[str, str]:
        async with stack.client() as client:
            return {d.name: d.work_pool_name for d in await client.read_deployments()}

    served = asyncio.run(read())
    assert served == {d["name"]: POOL for d in _deployments()}


def test_api_refuses_a_client_without_the_auth_string(stack):
    url = stack.api_url + "/flow_runs/count"
    assert api_status(url, None) == 401
    assert api_status(url, "operator:wrong") == 401
    assert api_status(stack.api_url + "/admin/version", AUTH) == 200


def test_landcover_run_triggered_through_the_api_completes(stack, clean_run):
    flow_run, store = clean_run
    assert flow_run.state.is_completed(), stack.logs()[-8000:]
    cube = xr.open_zarr(store, mask_and_scale=False)
    assert cube.attrs["run_id"] == str(flow_run.id)  # written by this very run
    assert (cube.tile_done.values == 1).all()


def test_deployed_run_writes_the_cube_of_the_flow_called_in_process(
    stack, clean_run, landcover_params, tmp_path
):
    from prefect_dask import DaskTaskRunner

    from terrawatch.flows.landcover import ModelOptions, landcover

    _, store = clean_run
    params = landcover_params(str(tmp_path / "in-process.zarr"))
    params["model"] = ModelOptions(**params["model"])
    runner = DaskTaskRunner(address=stack.scheduler_address)
    with stack.settings():
        landcover.with_options(task_runner=runner)(**params)
    deployed = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    local = xr.open_zarr(params["store"], decode_coords="all", mask_and_scale=False)
    assert deployed.landcover.rio.crs == local.landcover.rio.crs
    assert np.array_equal(deployed.landcover.values, local.landcover.values)
    assert np.array_equal(deployed.confidence.values, local.confidence.values)
    assert deployed.landcover.attrs["flag_meanings"] == "water building road tree grass"


FLOOD = "flood-response"


def _flood_deployment() -> dict | None:
    return next((d for d in _deployments() if d["name"] == FLOOD), None)


@pytest.mark.skipif(
    not (REPO / "flows" / "flood.py").exists() or _flood_deployment() is None,
    reason="flows/flood.py and the flood-response deployment of prefect.yaml are not there yet",
)
def test_flood_run_triggered_through_the_api_flags_the_planted_flood(stack, tmp_path):
    """A responder's ad-hoc run on synthetic Sentinel-1 scenes (tests/flows/test_flood.py's)."""
    from tests.flows import test_flood as scenes

    store = tmp_path / "flood.zarr"
    params = dict(
        aoi=scenes.flood_aoi(),
        event_date=scenes.EVENT,
        store=str(store),
        search={
            "catalog": str(scenes.make_flood_catalog(tmp_path / "scenes")),
            "collections": ["sentinel-1-rtc"],
        },
        tiling={"chunk": 64, "halo": 16},
        model={"factory": scenes.FACTORY, "upsampler": "bilinear"},
    )
    flow_run = stack.trigger(f"flood/{FLOOD}", params)
    assert flow_run.state.is_completed(), stack.flow_run_logs(flow_run.id)[-4000:]
    cube = xr.open_zarr(store, mask_and_scale=False)
    assert (cube.flooded.values[0][scenes._scene_mask(cube, scenes.FLOOD)] == 1).mean() >= 0.9
