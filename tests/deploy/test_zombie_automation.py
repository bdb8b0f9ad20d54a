"""The zombie-run automation of deploy/automations/ and the settings it depends on agree.

Static checks of what every deploy path ships; the automation acting on a real server is in
test_run_end_state.py.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
AUTOMATION = DEPLOY / "automations" / "zombie-flow-runs.yaml"
TEMPLATES = [DEPLOY / "work-pool.process.json", DEPLOY / "k8s" / "work-pool.kubernetes.json"]
APPLY = "prefect automation create --from-file deploy/automations/zombie-flow-runs.yaml"


def _automation() -> dict:
    return yaml.safe_load(AUTOMATION.read_text())


def test_automation_is_one_prefect_accepts_and_crashes_runs_whose_heartbeats_stop():
    from prefect.events.schemas.automations import AutomationCore, Posture

    automation = AutomationCore.model_validate(_automation())
    trigger = automation.trigger
    assert trigger.posture == Posture.Proactive
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    final = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
    assert trigger.expect == final | {"prefect.flow-run.heartbeat"}
    assert trigger.for_each == {"prefect.resource.id"}
    (action,) = automation.actions
    assert action.type == "change-flow-run-state" and action.state.value == "CRASHED"


def test_every_work_pool_sends_heartbeats_more_often_than_the_automation_window():
    within = float(_automation()["trigger"]["within"])
    for path in TEMPLATES:
        env = json.loads(path.read_text())["job_configuration"]["env"]
        frequency = float(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
        assert 30 <= frequency < within, path.name  # Prefect raises anything below 30 to 30


def test_process_pool_streams_no_output_through_its_worker():
    """A flow run writing into its dead worker's pipe ended Crashed after finishing its work."""
    template = json.loads(TEMPLATES[0].read_text())
    assert template["variables"]["properties"]["stream_output"]["default"] is False


def test_every_deploy_path_applies_the_automation_and_the_image_holds_it():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    setup = " ".join(compose["prefect-setup"]["command"])
    assert APPLY in setup and "automation delete" in setup  # replaced, not duplicated
    for guide in (DEPLOY / "README.md", DEPLOY / "systemd" / "README.md"):
        assert APPLY in guide.read_text(), guide
    copied = [shlex.split(line)[-2] for line in (DEPLOY / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ")]  # fmt: skip
    assert "deploy/automations/zombie-flow-runs.yaml" in copied
    for ignore in (REPO / ".dockerignore", DEPLOY / "Dockerfile.dockerignore"):
        assert "!deploy/automations/zombie-flow-runs.yaml" in ignore.read_text().splitlines()


def test_waiting_runs_retry_their_slot_often_wherever_the_server_runs():
    name = "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert float(compose["prefect-server"]["environment"][name]) <= 5
    assert f"{name}=5" in (DEPLOY / "systemd" / "terrawatch.env.example").read_text()
    assert f"{name}=5" in (DEPLOY / "README.md").read_text()  # Kubernetes: the Helm chart


STUCK = DEPLOY / "automations" / "stuck-submissions.yaml"


def test_runs_whose_worker_died_while_submitting_them_are_crashed_on_every_path():
    """A run left Submitting has no process and so no heartbeat, but holds its slot (the chaos
    test found it): the second automation crashes a run not Running soon after Submitting."""
    from prefect.events.schemas.automations import AutomationCore, Posture

    automation = AutomationCore.model_validate(yaml.safe_load(STUCK.read_text()))
    trigger = automation.trigger
    assert trigger.posture == Posture.Proactive
    assert trigger.after == {"prefect.flow-run.Submitting"}
    assert {"prefect.flow-run.Running", "prefect.flow-run.heartbeat"} <= trigger.expect
    assert trigger.within.total_seconds() >= 120  # image pulls; the test stack shortens it
    (action,) = automation.actions
    assert action.type == "change-flow-run-state" and action.state.value == "CRASHED"
    apply = "prefect automation create --from-file deploy/automations/stuck-submissions.yaml"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert apply in " ".join(compose["prefect-setup"]["command"])
    for guide in (DEPLOY / "README.md", DEPLOY / "systemd" / "README.md"):
        assert apply in guide.read_text(), guide
    for ignore in (REPO / ".dockerignore", DEPLOY / "Dockerfile.dockerignore"):
        assert "!deploy/automations/stuck-submissions.yaml" in ignore.read_text().splitlines()
