"""prefect.yaml: every deployment points at a real flow with valid parameters."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _deployments() -> list[dict]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


def test_entrypoints_resolve_to_flows_and_parameters_fit_their_signatures():
    for deployment in _deployments():
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        signature = inspect.signature(flow.fn)
        signature.bind_partial(**deployment.get("parameters", {}))
        required = [
            p.name for p in signature.parameters.values() if p.default is inspect.Parameter.empty
        ]
        assert set(required) <= set(deployment.get("parameters", {})), deployment["name"]


def test_deployment_parameters_pass_the_flows_own_validation():
    """Nested option groups included: a misspelt field of a group is refused, not ignored."""
    for deployment in _deployments():
        flow = _flow(deployment)
        params = flow.validate_parameters(deployment["parameters"])
        for name, value in deployment["parameters"].items():
            if isinstance(value, dict):  # an option group: its fields as given, the rest default
                group = params[name]
                assert group.model_dump(include=set(value)) == value, (deployment["name"], name)


def test_a_misspelt_group_field_is_refused():
    from prefect.exceptions import ParameterTypeError

    landcover = next(d for d in _deployments() if d["name"] == "landcover-weekly")
    params = {**landcover["parameters"], "search": {"max_clouds": 30}}
    with pytest.raises(ParameterTypeError, match="max_clouds"):
        _flow(landcover).validate_parameters(params)


def test_no_flow_takes_more_than_twelve_parameters():
    for deployment in _deployments():
        count = len(inspect.signature(_flow(deployment).fn).parameters)
        assert count <= 12, (deployment["entrypoint"], count)


def _flow(deployment: dict):
    path, name = deployment["entrypoint"].split(":")
    return getattr(importlib.import_module(path), name)


def test_monitoring_deployment_is_weekly_and_queues_overlapping_runs():
    weekly = next(d for d in _deployments() if d["name"] == "landcover-weekly")
    assert weekly["schedules"][0]["cron"].split()[-1] == "1"
    assert weekly["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert weekly["work_pool"]["name"]


def test_change_deployment_is_monthly_without_dates_and_queues_overlapping_runs():
    monthly = next(d for d in _deployments() if d["name"] == "change-monthly")
    day, month, weekday = monthly["schedules"][0]["cron"].split()[2:]
    assert day != "*" and (month, weekday) == ("*", "*")
    assert not {"before", "after", "from_cube"} & set(monthly["parameters"])
    assert monthly["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert monthly["work_pool"]["name"] == "terrawatch"


def test_flood_deployment_runs_only_on_demand_and_never_drops_a_request():
    flood = next(d for d in _deployments() if d["name"] == "flood-response")
    assert not flood.get("schedules")
    assert flood["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert {"aoi", "event_date"} <= set(flood["parameters"])
