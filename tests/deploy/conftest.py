"""Deployment fixtures: one real stack per session (see _stack.py), an S3 server, run inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shared_data
from tests.deploy._stack import Stack, start_stack

BUCKET = "cubes"
STORAGE_SECRET = "s3-secret-9b1d7e6c"
LANDCOVER = "landcover/landcover-weekly"
CLASSES = ["water", "building", "road", "tree", "grass"]


@pytest.fixture(scope="session")
def object_store() -> dict[str, str]:
    """A real S3 API (moto's server) on loopback: the network edge, nothing leaves the host."""
    import boto3
    import s3fs  # noqa: F401  (fsspec's s3:// implementation, used by every stack process)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "terrawatch-test",
        "AWS_SECRET_ACCESS_KEY": STORAGE_SECRET,
    }
    try:
        boto3.client(
            "s3",
            endpoint_url=settings["AWS_ENDPOINT_URL"],
            region_name=settings["AWS_DEFAULT_REGION"],
            aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=STORAGE_SECRET,
        ).create_bucket(Bucket=BUCKET)
        yield settings
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, object_store: dict[str, str]):
    """Prefect server + process pool + worker, Dask scheduler + 2 workers; always torn down."""
    shared_data("optical", "oem_koeln_50.tif")  # skip before starting anything without data
    stack = start_stack(tmp_path_factory.mktemp("stack"), object_store)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def koeln_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local STAC catalog of the Köln GeoTIFF (what ``terrawatch catalog add`` writes)."""
    from terrawatch.tasks.core.local_item import add_local_item

    catalog = tmp_path_factory.mktemp("catalog")
    image = shared_data("optical", "oem_koeln_50.tif")
    add_local_item(image, catalog, datetime="2024-06-01T10:00:00Z", item_id="koeln-june")
    return catalog


@pytest.fixture(scope="session")
def landcover_params(koeln_catalog: Path, tiny_model_files: dict[str, Path]):
    """Parameters overriding the weekly deployment's: Köln, 16 tiles, the tiny model."""

    def params(store: str) -> dict[str, Any]:
        return dict(
            aoi="6.8075,50.9590,6.8135,50.9628",
            start="2024-06-01",
            end="2024-06-02",
            classes=CLASSES,
            store=store,
            search={"catalog": str(koeln_catalog), "collections": ["local"], "max_cloud": None},
            grid={"resolution": 2.0},
            tiling={"chunk": 64},
            model={
                "weights": str(tiny_model_files["clip"]),
                "upsampler_weights": str(tiny_model_files["simfeatup"]),
            },
        )

    return params


@pytest.fixture(scope="session")
def clean_run(stack: Stack, landcover_params, tmp_path_factory: pytest.TempPathFactory):
    """One land-cover run triggered through the API, undisturbed: (flow run, store)."""
    store = str(tmp_path_factory.mktemp("clean") / "koeln.zarr")
    flow_run = stack.trigger(LANDCOVER, landcover_params(store))
    return flow_run, store
