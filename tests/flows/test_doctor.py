"""``terrawatch doctor`` through the real console script, offline, against loopback servers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from terrawatch.errors import CatalogUnreachableError, WeightsNotFoundError
from terrawatch.flows.doctor import diagnose
from terrawatch.models.weights import resolve_weights
from terrawatch.tasks.core.catalog import search_items

LANDING = {"type": "Catalog", "id": "loopback", "stac_version": "1.0.0", "links": []}


class _StacLanding(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(LANDING).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def stac_url() -> Iterator[str]:
    """A STAC API landing page on loopback (the network edge)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StacLanding)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _weights(root: Path, tiny_model_files: dict[str, Path]) -> Path:
    """The landcover defaults under their real file names (tiny random weights)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_model_files["clip"], root / "ViT-B-16.pt")
    shutil.copy(tiny_model_files["simfeatup"], root / "xclip_jbu_one_million_aid.ckpt")
    return root


def _doctor(*args: str, weights: Path, **env: str) -> subprocess.CompletedProcess:
    command = Path(sys.executable).parent / "terrawatch"
    if not command.exists():
        pytest.skip("terrawatch is not installed beside this Python (pip install -e .)")
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PREFECT_API_URL", "TERRAWATCH_DASK_ADDRESS"}
    }
    environ.update(TERRAWATCH_OFFLINE="1", TERRAWATCH_WEIGHTS_DIR=str(weights), **env)
    return subprocess.run(
        [str(command), "doctor", *args], capture_output=True, text=True, env=environ, timeout=300
    )


@pytest.mark.slow  # a fresh process imports torch and Prefect: ~20 s on 2 busy cores
def test_doctor_says_the_main_job_can_run_and_exits_0(tmp_path, tiny_model_files, stac_url):
    weights = _weights(tmp_path / "weights", tiny_model_files)
    done = _doctor("--catalog", stac_url, "--json", weights=weights)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["main_job"]["can_run"] is True and report["exit_code"] == 0
    checks = {(c["section"], c["name"]): c for c in report["checks"]}
    clip = checks["weights", "ViT-B-16"]
    # a tiny file under the real name loads, but is not the published file: said, not fatal
    assert clip["status"] == "warn" and "is not the published 5806e77cd80f" in clip["detail"]
    size = (weights / "xclip_jbu_one_million_aid.ckpt").stat().st_size
    assert checks["weights", "simfeatup-jbu-one-million-aid"]["status"] == "ok"
    assert f"{size / 1024:.1f} KiB" in checks["weights", "simfeatup-jbu-one-million-aid"]["detail"]
    assert checks["weights", "sam-vit-huge"]["detail"].startswith("missing (optional")
    assert checks["catalogs", f"{stac_url} (main job)"]["status"] == "ok"
    assert "not contacted: offline mode" in checks["catalogs", "earth-search"]["detail"]
    assert "ephemeral" in checks["prefect", "API"]["detail"]
    assert {"torch", "GPU", "dask-cuda"} <= {
        name for section, name in checks if section == "compute"
    }
    assert "prefect " in checks["versions", "packages"]["detail"] + json.dumps(report)


@pytest.mark.slow
def test_doctor_lists_every_blocker_in_one_screen_and_exits_with_the_first(tmp_path, stac_url):
    dead = f"tcp://127.0.0.1:{_closed_port()}"
    catalog = f"http://127.0.0.1:{_closed_port()}/v1"
    done = _doctor("--catalog", catalog, weights=tmp_path / "empty", TERRAWATCH_DASK_ADDRESS=dead)
    assert done.returncode == WeightsNotFoundError.exit_code, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) < 40  # one screen
    last = lines[-1]
    assert last.startswith("main job (terrawatch landcover, default settings): CANNOT RUN")
    for blocker in ("weights ViT-B-16", "weights simfeatup", "dask scheduler", "catalogs "):
        assert blocker in last
    assert f"$TERRAWATCH_DASK_ADDRESS={dead} unreachable" in done.stdout
    assert "`terrawatch weights fetch ViT-B-16`" in done.stdout


def test_a_truncated_checkpoint_is_reported_unloadable_with_the_corrupt_exit_code(
    tmp_path, tiny_model_files, monkeypatch, stac_url
):
    weights = _weights(tmp_path / "weights", tiny_model_files)
    clip = weights / "ViT-B-16.pt"
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # a cut copy
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(weights))
    report = diagnose(stac_url)
    check = next(c for c in report.checks if c.name == "ViT-B-16")
    assert check.status == "FAIL" and "unloadable" in check.detail
    assert report.exit_code == 7


def test_a_local_catalog_folder_counts_as_reachable(tmp_path, tiny_model_files, monkeypatch):
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(_weights(tmp_path / "w", tiny_model_files)))
    folder = tmp_path / "catalog"
    folder.mkdir()
    assert diagnose(str(folder)).exit_code == CatalogUnreachableError.exit_code  # no STAC JSON
    (folder / "catalog.json").write_text(json.dumps(LANDING))
    assert diagnose(str(folder)).exit_code == 0


def test_offline_failure_messages_point_to_the_doctor():
    with pytest.raises(WeightsNotFoundError, match=r"run `terrawatch doctor` for a full check"):
        resolve_weights("ViT-B-16")
    with pytest.raises(CatalogUnreachableError, match=r"run `terrawatch doctor` for a full check"):
        search_items("earth-search", "7.0,50.0,7.1,50.1", "2024-06-01", "2024-06-30")
