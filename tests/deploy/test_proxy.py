"""Operators and responders behind deploy/proxy/prefect.conf.template (deploy/README.md,
"Operators and responders"): the rules as nginx evaluates them (first matching regular
expression of the map), and, where nginx is installed, a real nginx in front of the test stack's
Prefect server: a responder triggers the flood deployment with Prefect's own client and reads its
run, and is refused everything else; an operator may do anything; the server's credential never
leaves the proxy."""

from __future__ import annotations

import base64
import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.deploy._stack import AUTH, REPO, Stack, free_port

TEMPLATE = REPO / "deploy" / "proxy" / "prefect.conf.template"
FLOOD = "flood/flood-response"
FLOOD_ID = "0b4d7a52-6f1e-4c1a-9b7e-2f3c8d9e1a45"
OTHER_ID = "9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4"
PASSWORDS = {"operator-kim": "kim-pass-31", "ana": "ana-pass-47"}


def render(values: dict[str, str]) -> str:
    """What ``envsubst '$NAME ...'`` writes: only the named variables, nginx's own left alone."""
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    assert not re.search(r"\$\{[A-Z_]+\}", text), "a template variable is not documented here"
    return text


def decide(user: str, method: str, path: str) -> str:
    """The map's verdict for ``$remote_user $request_method $uri``: first regex that matches."""
    text = render({"FLOOD_DEPLOYMENT_ID": FLOOD_ID} | dict.fromkeys(_other_variables(), "x"))
    block = re.search(r'map "\$remote_user \$request_method \$uri" \$\w+ \{(.*?)\n\}', text, re.S)
    rules = re.findall(r'^\s*"~(.+?)"\s+(allow|deny);', block.group(1), re.M)
    default = re.search(r"^\s*default\s+(allow|deny);", block.group(1), re.M).group(1)
    key = f"{user} {method} {path}"
    return next((verdict for pattern, verdict in rules if re.search(pattern, key)), default)


def _other_variables() -> list[str]:
    names = set(re.findall(r"\$\{([A-Z_]+)\}", TEMPLATE.read_text()))
    return sorted(names - {"FLOOD_DEPLOYMENT_ID"})


@pytest.mark.parametrize(
    ("user", "method", "path", "verdict"),
    [
        ("operator", "DELETE", "/api/deployments/" + OTHER_ID, "allow"),
        ("operator-kim", "POST", "/api/block_documents/filter", "allow"),
        ("ana", "POST", f"/api/deployments/{FLOOD_ID}/create_flow_run", "allow"),
        ("ana", "POST", f"/api/deployments/{OTHER_ID}/create_flow_run", "deny"),
        ("ana", "GET", "/api/deployments/name/flood/flood-response", "allow"),
        ("ana", "GET", "/api/admin/version", "allow"),  # every Prefect client asks it first
        ("ana", "GET", "/api/flow_runs/" + OTHER_ID, "allow"),
        ("ana", "POST", "/api/flow_runs/filter", "allow"),
        ("ana", "POST", "/api/logs/filter", "allow"),
        ("ana", "POST", "/api/ui/flow_runs/history", "allow"),
        ("ana", "GET", "/runs/flow-run/x", "allow"),  # the UI's pages
        ("ana", "POST", "/api/logs/", "deny"),
        ("ana", "GET", "/api/block_documents/" + OTHER_ID, "deny"),
        ("ana", "POST", "/api/block_documents/filter", "deny"),
        ("ana", "GET", "/api/variables/name/x", "deny"),
        ("ana", "GET", "/api/admin/settings", "deny"),
        ("ana", "GET", "/api/events/in", "deny"),
        ("ana", "DELETE", "/api/flow_runs/" + OTHER_ID, "deny"),
        ("ana", "PATCH", "/api/deployments/" + FLOOD_ID, "deny"),
        ("ana", "POST", f"/api/flow_runs/{OTHER_ID}/set_state", "deny"),
        ("ana", "POST", "/api/deployments/", "deny"),
        ("ana", "POST", f"/api/deployments/{FLOOD_ID}/schedule", "deny"),
        ("operatorx", "DELETE", "/api/flow_runs/" + OTHER_ID, "deny"),  # not an operator name
        ("", "POST", "/api/deployments/", "allow"),  # no login yet: auth_basic answers 401
    ],
)
def test_rules_give_responders_reads_and_flood_runs_only(user, method, path, verdict):
    assert decide(user, method, path) == verdict


# --- a real nginx in front of the stack --------------------------------------------------------


def _htpasswd(path: Path) -> None:
    lines = []
    for user, password in PASSWORDS.items():
        hashed = subprocess.run(["openssl", "passwd", "-apr1", password], check=True,
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
        lines.append(f"{user}:{hashed}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def proxy(stack: Stack, tmp_path_factory: pytest.TempPathFactory):
    """nginx with the rendered template on a free port: (API URL, CA file)."""
    nginx = shutil.which("nginx") or (Path("/usr/sbin/nginx") if Path("/usr/sbin/nginx").exists()
                                      else None)  # fmt: skip
    if nginx is None or shutil.which("openssl") is None:
        pytest.skip("nginx (Debian package nginx) and openssl are needed for the real proxy test")
    root = tmp_path_factory.mktemp("proxy")
    make_certs = ["sh", str(REPO / "deploy" / "tls" / "make-certs.sh"), str(root / "tls")]
    subprocess.run(make_certs, check=True, capture_output=True)  # its certificates name 127.0.0.1
    _htpasswd(root / "htpasswd")
    with stack.settings():
        from prefect import get_client

        with get_client(sync_client=True) as client:
            flood_id = client.read_deployment_by_name(FLOOD).id
    port = free_port()
    upstream = stack.api_url.removeprefix("http://").removesuffix("/api")
    site = render({
        "PROXY_PORT": str(port),
        "PROXY_TLS_CERT": str(root / "tls" / "scheduler.pem"),
        "PROXY_TLS_KEY": str(root / "tls" / "scheduler.key"),
        "PROXY_HTPASSWD": str(root / "htpasswd"),
        "PREFECT_UPSTREAM": upstream,
        "PREFECT_UPSTREAM_AUTH": base64.b64encode(AUTH.encode()).decode(),
        "FLOOD_DEPLOYMENT_ID": str(flood_id),
    })  # fmt: skip
    (root / "prefect.conf").write_text(site)
    for folder in ("logs", "temp"):
        (root / folder).mkdir()
    (root / "nginx.conf").write_text(
        f"user root;\npid {root}/nginx.pid;\nerror_log {root}/logs/error.log;\n"
        f"events {{}}\nhttp {{\n  access_log {root}/logs/access.log;\n"
        f"  client_body_temp_path {root}/temp;\n  proxy_temp_path {root}/temp;\n"
        f"  include {root}/prefect.conf;\n}}\n"
    )
    with open(root / "logs" / "stderr.log", "wb") as stderr:
        command = [str(nginx), "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"https://127.0.0.1:{port}/api"
    ca = str(root / "tls" / "ca.pem")
    try:
        deadline = time.monotonic() + 30
        while _status(url + "/health", None, ca) != 200:
            assert proc.poll() is None, (root / "logs" / "stderr.log").read_text()
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.2)
        yield url, ca, str(flood_id)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _status(url: str, login: str | None, ca: str, method: str = "GET", body=None) -> int:
    request = urllib.request.Request(url, method=method)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=ca),
                                    timeout=30) as response:  # fmt: skip
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0  # nothing answers (yet)


def _login(user: str) -> str:
    return f"{user}:{PASSWORDS[user]}"


@pytest.mark.slow
def test_responder_triggers_the_flood_deployment_and_nothing_else(stack, proxy):
    from prefect.deployments import run_deployment
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_SSL_CERT_FILE,
        PREFECT_API_URL,
        temporary_settings,
    )

    url, ca, flood_id = proxy
    later = datetime.now(UTC) + timedelta(days=3650)  # scheduled far ahead: no worker takes it
    responder = {PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: _login("ana"),
                 PREFECT_API_SSL_CERT_FILE: ca}  # fmt: skip
    with temporary_settings(updates=responder):  # Prefect's own client, as a responder runs it
        params = {"aoi": "22.60,32.70,22.70,32.78", "event_date": "2023-09-11"}
        run = run_deployment(FLOOD, parameters=params, scheduled_time=later, timeout=0)
    run_url = f"{url}/flow_runs/{run.id}"
    assert _status(run_url, _login("ana"), ca) == 200
    assert _status(f"{url}/flow_runs/filter", _login("ana"), ca, "POST", {}) == 200

    with stack.settings():
        from prefect import get_client

        with get_client(sync_client=True) as client:
            weekly = client.read_deployment_by_name("landcover/landcover-weekly").id
            secret = client.read_block_document_by_name("terrawatch-storage-key-id", "secret").id
    assert _status(f"{url}/deployments/{weekly}/create_flow_run", _login("ana"), ca, "POST",
                   {"state": {"type": "SCHEDULED"}}) == 403  # fmt: skip
    assert _status(f"{url}/block_documents/{secret}?include_secrets=true", _login("ana"), ca) == 403
    assert _status(f"{url}/block_documents/filter", _login("ana"), ca, "POST", {}) == 403
    assert _status(f"{url}/deployments/{flood_id}", _login("ana"), ca, "PATCH", {}) == 403
    assert _status(run_url, _login("ana"), ca, "DELETE") == 403
    assert _status(run_url, "ana:wrong-password", ca) == 401
    assert _status(run_url, "operator-kim:ana-pass-47", ca, "DELETE") == 401
    assert _status(run_url, None, ca) == 401
    assert _status(run_url, AUTH, ca) == 401  # the server's credential is no login here

    assert _status(f"{url}/block_documents/filter", _login("operator-kim"), ca, "POST", {}) == 200
    assert _status(run_url, _login("operator-kim"), ca, "DELETE") == 204
    assert _status(run_url, _login("ana"), ca) == 404
