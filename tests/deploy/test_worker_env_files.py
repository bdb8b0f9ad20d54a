"""No deploy path puts credentials in a Dask worker's environment (anyone who reaches the
scheduler can read it): compose, Kubernetes and the test stack give the workers neither the
storage keys nor the Prefect API's auth string (deploy/README.md, "Object storage and
credentials"). That the workers then still write an S3 cube is tests/deploy/test_object_store.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from terrawatch.tasks.core.store_credentials import KEY_ID_BLOCK, SECRET_KEY_BLOCK

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SECRETS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PREFECT_API_AUTH_STRING"}


def test_compose_dask_processes_get_no_credentials():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    dask = [s for n, s in services.items() if n.startswith("dask-")]
    assert len(dask) == 3
    for service in dask:
        assert not SECRETS & set(service.get("environment", {}))
        assert "env_file" not in service


def test_kubernetes_dask_pods_get_no_credentials():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "dask-cluster.yaml").read_text()))
    pods = [d["spec"][k]["spec"] for d in docs for k in ("worker", "scheduler") if k in d["spec"]]
    for container in (c for pod in pods for c in pod["containers"]):
        assert "envFrom" not in container  # a whole Secret would bring its keys
        assert not SECRETS & {e["name"] for e in container.get("env", [])}


def test_the_blocks_tiles_load_are_the_ones_the_work_pool_and_compose_use():
    template = (DEPLOY / "work-pool.process.json").read_text()
    compose = (DEPLOY / "compose.yaml").read_text()
    for block in (KEY_ID_BLOCK, SECRET_KEY_BLOCK):
        assert f"prefect.blocks.secret.{block}" in template
        assert re.search(rf"save\('{block}'", compose)
