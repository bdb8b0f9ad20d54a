"""What an operator runs and relies on: systemd units, ignore files, the dashboard, the pull step.

Static where a host is needed (systemd is not running here: ``systemd-analyze verify`` checks
the units, and each command's ``--help`` the options they pass); real where it can be: git's
own ignore rules, a Dask scheduler serving its dashboard, Prefect running the pull step.
"""

from __future__ import annotations

import asyncio
import configparser
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from terrawatch.errors import InputError

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))
VENV_BIN = "/opt/terrawatch/venv/bin/"
ENV_FILE = "/etc/terrawatch/terrawatch.env"


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def _exec_start(path: Path) -> list[str]:
    return shlex.split(_unit(path)["Service"]["ExecStart"])


def test_every_process_has_a_unit_that_restarts_it():
    wanted = ["prefect server start", "prefect worker start", "dask scheduler", "dask worker"]
    commands = []
    for path in UNITS:
        unit = _unit(path)
        service = unit["Service"]
        assert service["Restart"] == "always", path.name
        assert float(service["RestartSec"]) > 0, path.name
        assert service["EnvironmentFile"] == ENV_FILE, path.name
        assert service["User"] == "terrawatch", path.name
        assert unit["Install"]["WantedBy"] == "multi-user.target", path.name
        command = _exec_start(path)
        assert command[0].startswith(VENV_BIN), path.name
        commands.append(" ".join([Path(command[0]).name, *command[1:]]))
    assert all(any(c.startswith(w + " ") for c in commands) for w in wanted), commands


def test_unit_commands_are_console_scripts_of_the_install():
    scripts = {e.name for e in entry_points(group="console_scripts")}
    for path in UNITS:
        assert Path(_exec_start(path)[0]).name in scripts, path.name


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_systemd_verifies_the_units(tmp_path):
    """``systemd-analyze verify``: syntax, known keys, sections and executable commands."""
    bin_dir = str(Path(sys.executable).parent) + "/"
    names = []
    for path in UNITS:
        text = path.read_text().replace(VENV_BIN, bin_dir)
        text = text.replace(ENV_FILE, str(SYSTEMD / "terrawatch.env.example"))
        name = path.name.replace("@.service", "@1.service")
        (tmp_path / name).write_text(text)
        names.append(name)
    done = subprocess.run(
        ["systemd-analyze", "verify", *names], cwd=tmp_path, capture_output=True, text=True
    )
    # a template's instance is verified through its own file; nothing else may be reported
    report = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 0 and not report, report


def test_unit_options_are_known_to_their_commands():
    """Each ``--option`` of an ExecStart is in that command's own ``--help``."""
    bin_dir = Path(sys.executable).parent
    for path in UNITS:
        command = _exec_start(path)
        words = [w for w in command[1:] if not w.startswith(("-", "$", "tcp:")) and ":" not in w]
        sub = words[:2] if Path(command[0]).name == "prefect" else words[:1]
        env = dict(os.environ, COLUMNS="200", PREFECT_SERVER_ANALYTICS_ENABLED="false")
        help_text = subprocess.run(
            [str(bin_dir / Path(command[0]).name), *sub, "--help"],
            capture_output=True, text=True, env=env, timeout=120,
        ).stdout  # fmt: skip
        for option in (w for w in command if w.startswith("--")):
            assert option in help_text, (path.name, option)
    options = shlex.split(_env_example()["DASK_WORKER_OPTIONS"])
    help_text = subprocess.run(
        [str(bin_dir / "dask"), "worker", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    assert all(o in help_text for o in options if o.startswith("--"))


def _env_example() -> dict[str, str]:
    values = {}
    for line in (SYSTEMD / "terrawatch.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, value = line.split("=", 1)
            values[name] = value.strip('"')
    return values


def test_unit_settings_are_documented_and_read_the_variables_the_code_reads():
    from terrawatch.flows.deploy_steps import PROJECT_DIR_ENV, WEIGHTS_DIR_ENV
    from terrawatch.flows.runner import DASK_ADDRESS_ENV, GPU_WORKERS_ENV
    from terrawatch.tasks.core.writer_lease import TTL_ENV, WAIT_ENV

    example = _env_example()
    readme = (DEPLOY / "README.md").read_text()
    assert not [n for n in example if f"`{n}`" not in readme], "deploy/README.md, Settings"
    used = {PROJECT_DIR_ENV, WEIGHTS_DIR_ENV, DASK_ADDRESS_ENV, GPU_WORKERS_ENV, TTL_ENV, WAIT_ENV}
    assert used <= set(example)
    runbook = (DEPLOY / "RUNBOOK.md").read_text()
    assert TTL_ENV in runbook and WAIT_ENV in runbook
    units = " ".join(p.read_text() for p in UNITS)
    assert all(n in example for n in re.findall(r"\$\{?(\w+)\}?", units) if n.isupper())


def test_deploy_env_is_ignored_by_git_and_its_example_is_not():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/.env"], cwd=REPO)
    assert ignored.returncode == 0, "deploy/.env must be git-ignored (it holds the secrets)"
    example = subprocess.run(["git", "check-ignore", "-q", "deploy/.env.example"], cwd=REPO)
    assert example.returncode == 1


def _ignore_rules(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _in_context(rules: list[str], path: str) -> bool:
    """Docker's rule: the last matching line wins; ``!`` lines re-include."""
    kept = True
    for rule in rules:
        negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/**"):
            kept = negate
    return kept


def test_every_build_path_keeps_secrets_and_the_virtualenv_out_of_the_image():
    buildkit = _ignore_rules(DEPLOY / "Dockerfile.dockerignore")
    legacy = _ignore_rules(REPO / ".dockerignore")  # DOCKER_BUILDKIT=0 reads only this one
    assert legacy == buildkit
    for secret in ("deploy/.env", "deploy/k8s/secrets.yaml", ".venv/bin/python", ".git/config",
                   "tests/conftest.py", "deploy/systemd/terrawatch.env"):  # fmt: skip
        assert not _in_context(legacy, secret), secret
    for needed in ("pyproject.toml", "flows/landcover.py", "tasks/core/writer_lease.py"):
        assert _in_context(legacy, needed), needed


def test_dask_dashboard_is_served_with_the_dashboard_extra():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["dashboard"]
    assert any(r.startswith("bokeh") for r in extra)
    assert re.search(
        r'pip install "\.\[[\w,-]*dashboard[\w,-]*\]"', (DEPLOY / "Dockerfile").read_text()
    )
    from distributed import LocalCluster

    from tests.deploy._stack import free_port

    port = free_port()
    with LocalCluster(n_workers=0, processes=False, dashboard_address=f"127.0.0.1:{port}"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=30) as response:
            page = response.read().decode()
    assert response.status == 200 and "Dask" in page


def test_prefect_yaml_stores_no_deploy_time_placeholders():
    """``prefect deploy`` resolves ``{{ $VAR }}`` in the deployer's shell: unset means ""."""
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert not re.search(r"\{\{\s*\$", json.dumps(config)), "a deploy-time placeholder"
    pull = config["pull"]
    assert [next(iter(step)) for step in pull] == [
        "terrawatch.flows.deploy_steps.check_run_environment"
    ]


def _run_pull_step() -> dict:
    from prefect.deployments.steps.core import run_steps

    pull = yaml.safe_load((REPO / "prefect.yaml").read_text())["pull"]
    return asyncio.run(run_steps(pull))


@pytest.mark.parametrize(
    ("project", "weights", "wanted"),
    [
        (None, None, r"\$TERRAWATCH_PROJECT_DIR is not set in the flow run's environment"),
        ("", None, r"\$TERRAWATCH_PROJECT_DIR is empty"),
        ("{missing}", None, r"is not a folder on this host"),
        ("{repo}", "", r"\$TERRAWATCH_WEIGHTS_DIR='' is not a folder"),
    ],
)
def test_pull_step_refuses_a_missing_or_empty_setting_naming_it(
    monkeypatch, tmp_path, project, weights, wanted
):
    for name, value in (("TERRAWATCH_PROJECT_DIR", project), ("TERRAWATCH_WEIGHTS_DIR", weights)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value.format(repo=REPO, missing=tmp_path / "nope"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception) as refused:
        _run_pull_step()
    error = refused.value
    while not isinstance(error, InputError) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, InputError) and re.search(wanted, str(error)), repr(refused.value)
    assert "worker's environment" in str(error)
    assert Path.cwd() == tmp_path


def test_pull_step_works_in_the_project_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TERRAWATCH_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.chdir(REPO)
    outputs = _run_pull_step()
    assert Path.cwd() == tmp_path and outputs["directory"] == str(tmp_path)
