"""Flow fixtures: a throwaway Prefect API (SQLite) and one real Dask cluster of worker processes."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_api():
    """Prefect's test harness: a real API server on loopback with a temporary database."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        from prefect.settings import PREFECT_API_URL

        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def dask_cluster():
    """Two worker processes with one thread each, as on a 2-core laptop."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture
def run_flow(prefect_api, dask_cluster):
    """Call a flow on the shared cluster (no new cluster per run)."""
    from prefect_dask import DaskTaskRunner

    def call(flow, **params):
        runner = DaskTaskRunner(address=dask_cluster.scheduler_address)
        return flow.with_options(task_runner=runner)(**params)

    return call
