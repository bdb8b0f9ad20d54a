"""Dask with mutual TLS (deploy/README.md, "Dask TLS"): real `dask scheduler` and `dask worker`
processes started with the certificates of deploy/tls/make-certs.sh, as the deploy files start
them. A flow run whose only Dask setting is the standard ``DASK_DISTRIBUTED__COMM__TLS__*``
environment writes its cube through them; a client without a certificate of that CA is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr

from terrawatch.errors import InputError
from terrawatch.flows.dask_tls import check_dask_tls
from terrawatch.tasks.core.local_item import add_local_item
from tests.conftest import REPO, shared_data
from tests.flows.test_resume import PARAMS

MAKE_CERTS = REPO / "deploy" / "tls" / "make-certs.sh"
BIN = Path(sys.executable).parent
RUNNER = """
import json, sys
from terrawatch.flows.landcover import landcover
landcover(**json.loads(sys.argv[1]))  # its own task runner: $TERRAWATCH_DASK_ADDRESS
"""


def make_certs(out: Path) -> Path:
    """The shipped script, as an operator runs it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (deploy/tls/make-certs.sh needs it)")
    subprocess.run(["sh", str(MAKE_CERTS), str(out)], check=True, capture_output=True)
    return out


def client_env(certs: Path) -> dict[str, str]:
    """What compose gives the Prefect worker (and so each flow run): the client certificate."""
    return {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certs / "ca.pem"),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certs / "client.pem"),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certs / "client.key"),
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
    }


def _tls_args(certs: Path, role: str) -> list[str]:
    return ["--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", str(certs / f"{role}.pem"),
            "--tls-key", str(certs / f"{role}.key")]  # fmt: skip


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A TLS scheduler and one two-thread worker (no Prefect or storage settings): (address,
    certificate folder)."""
    root = tmp_path_factory.mktemp("tls")
    certs = make_certs(root / "certs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_", "DASK_"))}
    env.update(PYTHONPATH=str(REPO), TERRAWATCH_WEIGHTS_DIR=str(root / "weights"),
               TERRAWATCH_TEXT_CACHE=str(root / "text-cache"))  # fmt: skip
    procs: list[subprocess.Popen] = []

    def spawn(name: str, args: list[str]) -> None:
        with open(root / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        procs.append(proc)

    try:
        spawn("scheduler", [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                            "--no-dashboard", "--scheduler-file", str(root / "scheduler.json"),
                            *_tls_args(certs, "scheduler")])  # fmt: skip
        deadline = time.monotonic() + 60
        while not (root / "scheduler.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads((root / "scheduler.json").read_text())["address"]
        spawn("worker", [str(BIN / "dask"), "worker", address, "--nthreads", "2", "--no-dashboard",
                         "--host", "127.0.0.1", "--local-directory", str(root / "dask"),
                         *_tls_args(certs, "worker")])  # fmt: skip
        yield address, certs
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.slow
def test_flow_run_writes_its_cube_through_the_tls_scheduler(
    tls_cluster, prefect_api, tmp_path, tiny_model_files
):
    address, certs = tls_cluster
    catalog = tmp_path / "catalog"
    add_local_item(shared_data("optical", "oem_koeln_50.tif"), catalog,
                   datetime="2024-06-01T10:00:00Z")  # fmt: skip
    store = tmp_path / "cube.zarr"
    params = dict(
        PARAMS,
        grid={"resolution": 2.0},
        store=str(store),
        search={"catalog": str(catalog), "collections": ["local"], "max_cloud": None},
        model={"weights": str(tiny_model_files["clip"]),
               "upsampler_weights": str(tiny_model_files["simfeatup"])},
    )  # fmt: skip
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PYTHONPATH=str(REPO),
               TERRAWATCH_DASK_ADDRESS=address, **client_env(certs))  # fmt: skip
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(params)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert f"Connecting to an existing Dask cluster at {address}" in done.stdout + done.stderr
    tile_done = zarr.open_array(store, path="tile_done", mode="r")[:]
    assert tile_done.size > 1 and (tile_done == 1).all()
    assert (zarr.open_array(store, path="landcover", mode="r")[:] != 255).any()


_CONNECT = """
import json, sys
from distributed import Client
from distributed.security import Security

address, options = sys.argv[1], json.loads(sys.argv[2])
try:
    with Client(address, security=Security(**options) if options is not None else None,
                timeout=3, set_as_default=False) as client:
        ok = client.submit(sum, [1, 2]).result(timeout=10) == 3
except (OSError, TimeoutError, TypeError, ValueError):
    ok = False
print("CONNECTED" if ok else "REFUSED")
"""


def _connects(address: str, security: dict | None) -> bool:
    """Whether a client with these ``Security`` options gets a task done on the cluster.

    Each attempt runs in a fresh interpreter with no ``DASK_`` settings: a Client that failed
    to connect can leave distributed's shared event-loop runner of the process in a state where
    the next Client trips an internal assertion (seen in the full suite).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    done = subprocess.run(
        [sys.executable, "-c", _CONNECT, address, json.dumps(security)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip().endswith(("CONNECTED", "REFUSED")), done.stderr[-2000:]
    return done.stdout.strip().endswith("CONNECTED")


def test_only_clients_with_a_certificate_of_the_ca_get_in(tls_cluster, tmp_path):
    address, certs = tls_cluster
    other = make_certs(tmp_path / "other-ca")
    plain = address.replace("tls://", "tcp://")

    def security(ca: Path, cert: Path | None) -> dict:
        return dict(tls_ca_file=str(ca / "ca.pem"), require_encryption=True,
                    tls_client_cert=str(cert / "client.pem") if cert else None,
                    tls_client_key=str(cert / "client.key") if cert else None)  # fmt: skip

    assert _connects(address, security(certs, certs))  # the flow runs' certificate
    assert not _connects(address, None)  # no TLS settings at all
    assert not _connects(plain, None)  # plain TCP to the TLS port
    assert not _connects(address, security(certs, None))  # trusts the CA, shows no certificate
    assert not _connects(address, security(certs, other))  # a certificate of another CA


def test_tls_address_without_a_client_certificate_names_the_settings(tmp_path, monkeypatch):
    import dask.config

    ca, key = client_env(tmp_path)["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"], "distributed.comm"
    with dask.config.set({f"{key}.tls.ca-file": None, f"{key}.tls.client.cert": None}):
        with pytest.raises(InputError, match=r"--address=tls://s:8786 .*CA_FILE and .*CERT"):
            check_dask_tls("tls://s:8786")
    with dask.config.set({f"{key}.tls.ca-file": ca, f"{key}.tls.client.cert": ca}):
        with pytest.raises(InputError, match=r"CA_FILE=.*ca\.pem: no such file"):
            check_dask_tls("tls://s:8786")
        (tmp_path / "ca.pem").write_text("")
        check_dask_tls("tls://s:8786")
    with dask.config.set({f"{key}.require-encryption": True}):
        monkeypatch.setenv("TERRAWATCH_DASK_ADDRESS", "tcp://s:8786")
        with pytest.raises(InputError, match=r"TERRAWATCH_DASK_ADDRESS=tcp://s:8786 .*tls://"):
            check_dask_tls()


def test_doctor_names_missing_tls_settings_of_a_tls_scheduler(monkeypatch):
    import dask.config

    from terrawatch.flows.doctor import Report, _check_dask

    monkeypatch.setenv("TERRAWATCH_DASK_ADDRESS", "tls://127.0.0.1:1")
    report = Report()
    with dask.config.set({"distributed.comm.tls.ca-file": None}):
        _check_dask(report)
    tls = next(c for c in report.checks if c.name == "tls")
    assert tls.blocks_main_job and "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in tls.detail
