"""The process-local Prefect API: one server for the flow and its workers, no heartbeats."""

from __future__ import annotations

import os

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from terrawatch.flows.local_api import shared_local_api


@pytest.mark.slow
def test_without_a_configured_api_one_server_is_shared_and_the_environment_restored(
    monkeypatch,
):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(updates={PREFECT_API_URL: None}):
        with shared_local_api() as url:
            # worker processes inherit the URL instead of starting servers of their own
            assert os.environ["PREFECT_API_URL"] == url
            assert httpx.get(f"{url}/health", timeout=30).status_code == 200
            # no flow-run heartbeats: the server dies with this process, so no one reads them
            assert get_current_settings().flows.heartbeat_frequency is None
        assert "PREFECT_API_URL" not in os.environ
        assert get_current_settings().flows.heartbeat_frequency is not None


def test_a_configured_api_is_used_as_it_is():
    with temporary_settings(updates={PREFECT_API_URL: "http://prefect.example:4200/api"}):
        with shared_local_api() as url:
            assert url == "http://prefect.example:4200/api"
            assert get_current_settings().flows.heartbeat_frequency is not None
