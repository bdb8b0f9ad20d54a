"""deploy/: compose file, Kubernetes manifests, work-pool templates and Dockerfile agree.

Nothing here needs Docker or Kubernetes: the files are parsed and checked against the project
(pyproject's console script and extras, prefect.yaml's work pool and entrypoints) and against
deploy/README.md, which must document every environment variable they reference.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
IMAGE = f"terrawatch:{VERSION}"
# Console scripts the image provides: the project's own and those of its dependencies.
COMMANDS = {*PYPROJECT["project"]["scripts"], "prefect", "dask", "python", "sh"}
POOL = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"][0]["work_pool"]["name"]


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _k8s() -> list[dict]:
    return [
        d
        for p in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
    ]


def _k8s_containers() -> list[dict]:
    """Every container spec in the manifests (Deployments and Dask operator resources)."""
    found = []
    for doc in _k8s():
        spec = doc.get("spec", {})
        pods = [spec.get("template", {}).get("spec", {})]
        pods += [spec.get(k, {}).get("spec", {}) for k in ("worker", "scheduler")]
        found += [c for pod in pods for c in pod.get("containers", [])]
    return found


def _templates() -> dict[str, dict]:
    paths = [DEPLOY / "work-pool.process.json", DEPLOY / "k8s" / "work-pool.kubernetes.json"]
    return {p.name: json.loads(p.read_text()) for p in paths}


def _command(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _gpu_args(args: list[str]) -> bool:
    return "--resources" in args and args[args.index("--resources") + 1] == "GPU=1"


@pytest.mark.parametrize(
    "path",
    [
        "Dockerfile",
        "Dockerfile.dockerignore",
        "compose.yaml",
        ".env.example",
        *(f"k8s/{p.name}" for p in sorted((DEPLOY / "k8s").glob("*.yaml"))),
    ],
)
def test_each_file_opens_with_a_comment_saying_what_it_is_for(path):
    first = (DEPLOY / path).read_text().splitlines()[0]
    assert first.startswith("# ") and len(first) > 20, path


def test_work_pool_templates_say_what_they_are_for_and_how_to_create_them():
    for name, template in _templates().items():
        assert f"prefect work-pool create {POOL}" in template["variables"]["description"], name


def test_dockerfile_uses_a_cuda_runtime_base_and_a_non_root_user():
    text = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}


def test_dockerfile_installs_the_project_with_declared_extras_only():
    text = (DEPLOY / "Dockerfile").read_text()
    extras = re.search(r'pip install "\.\[([\w,-]+)\]"', text)
    assert extras, 'the Dockerfile must install the project itself (pip install ".[...]")'
    declared = set(PYPROJECT["project"].get("optional-dependencies", {}))
    missing = set(extras.group(1).split(",")) - declared
    assert not missing, f"extras {sorted(missing)} used by deploy/Dockerfile are not in pyproject"
    for folder in PYPROJECT["tool"]["setuptools"]["package-dir"].values():
        assert f"COPY --chown=terrawatch:terrawatch {folder} " in text


def test_build_context_holds_every_file_the_dockerfile_copies():
    text = (DEPLOY / "Dockerfile").read_text()
    sources = [s for line in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", text, re.M)
               for s in line.split()[:-1]]  # fmt: skip
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].removesuffix("/**") for line in ignore if line.startswith("!")}
    assert sources and set(sources) <= kept, sorted(set(sources) - kept)
    assert all((REPO / s).exists() for s in sources)


def test_compose_services_run_the_project_image_with_its_commands():
    services = _compose()["services"]
    ours = {n: s for n, s in services.items() if n != "postgres"}
    for name, service in ours.items():
        assert service["image"] == f"${{TERRAWATCH_IMAGE:-{IMAGE}}}", name
        assert _command(service)[0] in COMMANDS, name
    build = services["prefect-server"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_kubernetes_containers_run_the_project_image_with_its_commands():
    containers = _k8s_containers()
    assert len(containers) >= 4
    for container in containers:
        assert container["image"].rsplit("/", 1)[-1] == IMAGE, container["name"]
        assert container["args"][0] in COMMANDS, container["name"]


def test_prefect_workers_poll_the_pool_of_prefect_yaml():
    compose = _compose()["services"]
    commands = [_command(compose["prefect-worker"]), *(c["args"] for c in _k8s_containers())]
    workers = [c for c in commands if c[:3] == ["prefect", "worker", "start"]]
    assert len(workers) == 2
    assert all(c[c.index("--pool") + 1] == POOL for c in workers)
    setup = " ".join(_command(compose["prefect-setup"]))
    assert f"prefect work-pool create {POOL} --type process" in setup
    assert "deploy/work-pool.process.json" in setup and "deploy --all" in setup


def test_gpu_dask_workers_advertise_one_gpu_and_run_on_gpu_nodes():
    compose = _compose()["services"]["dask-gpu-worker"]
    assert _gpu_args(_command(compose))
    assert compose["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    group = next(d for d in _k8s() if d["kind"] == "DaskWorkerGroup")
    pod = group["spec"]["worker"]["spec"]
    assert _gpu_args(pod["containers"][0]["args"])
    assert (
        pod["nodeSelector"] and pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    )


def test_flow_runs_reach_the_dask_scheduler_that_is_deployed():
    compose = _compose()["services"]
    address = compose["prefect-worker"]["environment"]["TERRAWATCH_DASK_ADDRESS"]
    assert address == "tls://dask-scheduler:" + _command(compose["dask-scheduler"])[5]
    cluster = next(d for d in _k8s() if d["kind"] == "DaskCluster")["metadata"]
    template = _templates()["work-pool.kubernetes.json"]["variables"]["properties"]
    expected = f"tls://{cluster['name']}-scheduler.{cluster['namespace']}.svc.cluster.local:8786"
    assert template["dask_address"]["default"] == expected


def test_flow_run_secret_blocks_are_the_ones_compose_creates():
    template = _templates()["work-pool.process.json"]["variables"]["properties"]
    blocks = {re.search(r"secret\.([\w-]+)", v["default"]).group(1)
              for k, v in template.items() if k.startswith("storage_")}  # fmt: skip
    setup = " ".join(_command(_compose()["services"]["prefect-setup"]))
    assert blocks and all(f"save('{b}'" in setup for b in blocks)


def test_deployment_entrypoints_are_modules_the_dask_workers_can_import():
    """A file entrypoint (flows/x.py:f) is imported as top-level module ``x`` in the flow run,
    and Dask workers cannot unpickle its tasks (prefect #16419); ``flows.x:f`` they can."""
    for deployment in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]:
        module = deployment["entrypoint"].split(":")[0]
        assert re.fullmatch(r"terrawatch\.flows\.\w+", module), (
            f"{deployment['name']}: entrypoint {deployment['entrypoint']!r} must be a module path "
            "like 'terrawatch.flows.landcover:landcover'"
        )


def _env_names() -> set[str]:
    """Every environment variable set or interpolated by the deploy files."""
    names = set()
    compose_text = (DEPLOY / "compose.yaml").read_text()
    names |= set(re.findall(r"\$\{(\w+)", compose_text))
    for service in _compose()["services"].values():
        names |= set(service.get("environment", {}))
    names |= {line.split("=")[0] for line in (DEPLOY / ".env.example").read_text().splitlines()
              if re.match(r"^\w+=", line)}  # fmt: skip
    for doc in _k8s():
        names |= set(doc.get("stringData", {}))
    for container in _k8s_containers():
        names |= {e["name"] for e in container.get("env", [])}
    for template in _templates().values():
        env = template["job_configuration"]["env"]
        names |= set(env) if isinstance(env, dict) else set()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    names |= set(re.findall(r"^\s+(\w+)=", dockerfile, re.M))
    return names - {
        "DEBIAN_FRONTEND",
        "PIP_NO_CACHE_DIR",
        "PYTHONUNBUFFERED",
        "VIRTUAL_ENV",
        "PATH",
    }


def test_every_environment_variable_is_documented_in_the_readme():
    readme = (DEPLOY / "README.md").read_text()
    undocumented = sorted(n for n in _env_names() if f"`{n}`" not in readme)
    assert not undocumented, f"deploy/README.md does not document {undocumented}"


def test_every_required_compose_variable_has_an_example():
    text = (DEPLOY / "compose.yaml").read_text()
    example = (DEPLOY / ".env.example").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required and all(re.search(rf"^{n}=", example, re.M) for n in required)
