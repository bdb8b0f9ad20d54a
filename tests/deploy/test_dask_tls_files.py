"""Every deploy path runs Dask with mutual TLS: compose, Kubernetes and systemd start the
scheduler and the workers with their own role's certificate and ``tls://`` addresses, and give
flow runs the client certificate through Dask's settings (deploy/README.md, "Dask TLS").
The processes themselves are exercised in tests/flows/test_dask_tls.py."""

from __future__ import annotations

import itertools
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from terrawatch.flows.dask_tls import CA_FILE, CLIENT_CERT, CLIENT_KEY, REQUIRE_ENCRYPTION

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TLS_DIR = "/etc/terrawatch/tls"
CLIENT_ENV = {
    CA_FILE[1]: f"{TLS_DIR}/ca.pem",
    CLIENT_CERT[1]: f"{TLS_DIR}/client.pem",
    CLIENT_KEY[1]: f"{TLS_DIR}/client.key",
    REQUIRE_ENCRYPTION[1]: "True",
}


def _role_of(args: list[str]) -> str | None:
    """``scheduler`` or ``worker`` for a Dask process's command line, else None."""
    if "dask" not in (Path(a).name for a in args[:1]):
        return None
    return "scheduler" if "scheduler" in args[1:2] else "worker"


def _uses_own_certificate(args: list[str], role: str) -> bool:
    options = dict(itertools.pairwise(args))
    return (
        options.get("--tls-ca-file") == f"{TLS_DIR}/ca.pem"
        and options.get("--tls-cert") == f"{TLS_DIR}/{role}.pem"
        and options.get("--tls-key") == f"{TLS_DIR}/{role}.key"
    )


def _is_tls(args: list[str], role: str) -> bool:
    if role == "scheduler":
        return "tls://0.0.0.0" in args or ("--protocol" in args and "tls" in args)
    return any(a.startswith("tls://") or a == "${TERRAWATCH_DASK_ADDRESS}" for a in args)


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]


def test_compose_dask_processes_use_their_own_certificate_and_tls():
    services = _compose()
    dask = {n: s for n, s in services.items() if _role_of(s.get("command", []))}
    assert {"dask-scheduler", "dask-gpu-worker", "dask-cpu-worker"} <= set(dask)
    for name, service in dask.items():
        args = [str(a) for a in service["command"]]
        role = _role_of(args)
        assert _uses_own_certificate(args, role) and _is_tls(args, role), name
        mounted = {v.split(":")[1] for v in service["volumes"] if v.startswith("./tls/certs/")}
        assert mounted == {f"{TLS_DIR}/ca.pem", f"{TLS_DIR}/{role}.pem", f"{TLS_DIR}/{role}.key"}
        assert service["environment"][REQUIRE_ENCRYPTION[1]] == "True", name


def test_compose_flow_runs_connect_with_the_client_certificate():
    worker = _compose()["prefect-worker"]
    env = worker["environment"]
    assert env["TERRAWATCH_DASK_ADDRESS"].startswith("tls://")
    assert {k: env[k] for k in CLIENT_ENV} == CLIENT_ENV
    mounted = {v.split(":")[1] for v in worker["volumes"] if v.startswith("./tls/certs/")}
    assert mounted == {CLIENT_ENV[k] for k in (CA_FILE[1], CLIENT_CERT[1], CLIENT_KEY[1])}


def test_kubernetes_dask_pods_mount_only_their_role_and_use_tls():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "dask-cluster.yaml").read_text()))
    pods = [d["spec"][k]["spec"] for d in docs for k in ("worker", "scheduler") if k in d["spec"]]
    assert len(pods) == 3
    for pod in pods:
        container = pod["containers"][0]
        args, role = container["args"], _role_of(container["args"])
        assert _uses_own_certificate(args, role) and _is_tls(args, role), args
        volume = next(v for v in pod["volumes"] if v["name"] == "dask-tls")["secret"]
        assert {i["key"] for i in volume["items"]} == {"ca.pem", f"{role}.pem", f"{role}.key"}
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_kubernetes_flow_runs_connect_with_the_client_certificate():
    template = json.loads((DEPLOY / "k8s" / "work-pool.kubernetes.json").read_text())
    env = template["job_configuration"]["env"]
    assert {k: env[k] for k in CLIENT_ENV} == CLIENT_ENV
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "dask-tls")["secret"]
    assert {i["key"] for i in volume["items"]} == {"ca.pem", "client.pem", "client.key"}
    default = template["variables"]["properties"]["dask_address"]["default"]
    assert default.startswith("tls://")


def test_systemd_units_and_settings_use_tls():
    for unit, role in (("dask-scheduler.service", "scheduler"), ("dask-worker@.service", "worker")):
        line = next(x for x in (DEPLOY / "systemd" / unit).read_text().splitlines()
                    if x.startswith("ExecStart="))  # fmt: skip
        args = shlex.split(line.removeprefix("ExecStart="))
        assert _uses_own_certificate(args, role) and _is_tls(args, role), unit
    settings = dict(
        line.split("=", 1)
        for line in (DEPLOY / "systemd" / "terrawatch.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert settings["TERRAWATCH_DASK_ADDRESS"].startswith("tls://")
    assert {k: settings[k] for k in CLIENT_ENV} == CLIENT_ENV


def test_certificates_stay_out_of_git(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    key = "deploy/tls/certs/client.key"
    assert subprocess.run(["git", "check-ignore", "-q", key], cwd=REPO).returncode == 0


def test_certificate_script_never_replaces_an_existing_ca(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    script = str(DEPLOY / "tls" / "make-certs.sh")
    subprocess.run(["sh", script, str(tmp_path)], check=True, capture_output=True)
    ca = (tmp_path / "ca.pem").read_bytes()
    again = subprocess.run(["sh", script, str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 1 and "not overwriting" in again.stderr
    assert (tmp_path / "ca.pem").read_bytes() == ca
    assert (tmp_path / "client.key").stat().st_mode & 0o077 == 0  # keys: owner only
