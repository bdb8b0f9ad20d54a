"""A real shared deployment on loopback: Prefect server, process work pool and worker, Dask.

The same pieces as ``deploy/compose.yaml``, started as plain processes: ``prefect server
start`` (SQLite in a temp dir, basic auth on), ``prefect work-pool create``, ``prefect deploy
--all`` from the repository's ``prefect.yaml``, ``prefect worker start``, ``dask scheduler``
and ``dask worker`` processes advertising ``GPU=1`` (on CPU here) with two threads each, so
that two tiles are in flight per worker as on the compose file's GPU workers.
Every process runs in its own process group, so :meth:`Stack.stop` ends it and its children.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
PREFECT_FILE = "prefect.yaml"
"""The repository's deployments, as an operator deploys them."""
POOL = yaml.safe_load((REPO / PREFECT_FILE).read_text())["deployments"][0]["work_pool"]["name"]
"""The work pool of ``prefect.yaml``'s deployments."""
AUTH = "operator:not-a-real-password-7f3a"
"""Basic-auth ``user:password`` of the test server (``PREFECT_SERVER_API_AUTH_STRING``)."""
BIN = Path(sys.executable).parent
STUCK_SUBMISSION_TEST_S = 90
"""Window of the stuck-submission automation on the test stack (shipped: 300 s)."""
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_LIBC = ctypes.CDLL(None)  # the process's own libc (Linux)


@dataclass
class Stack:
    """The running processes, their shared environment and logs under ``root``."""

    root: Path
    env: dict[str, str]
    """Environment of the Prefect processes (no storage keys)."""
    dask_env: dict[str, str] = field(default_factory=dict)
    """Environment of the Dask workers: ``env`` less credentials (``dask_worker_environment``)."""
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    @property
    def scheduler_address(self) -> str:
        return json.loads((self.root / "scheduler.json").read_text())["address"]

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``args`` in a new process group, output appended to ``root/<name>.log``."""
        with open(self.root / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                args,
                cwd=REPO,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run a command to completion in the stack's environment; its output, or raise."""
        done = subprocess.run(
            list(args),
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout + done.stderr

    def logs(self) -> str:
        """Every process log, for failure messages and secret checks."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')}"
            for p in sorted(self.root.glob("*.log"))
        )

    def kill(self, name: str) -> None:
        """SIGKILL one process group (a crash: no graceful shutdown) and reap it."""
        proc = self.procs.pop(name)
        _kill_tree(proc, signal.SIGKILL)

    def kill_alone(self, name: str) -> list[psutil.Process]:
        """SIGKILL one process only, not its children (a lost Prefect worker whose flow runs
        go on, orphaned); returns those children, still running."""
        proc = self.procs.pop(name)
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        proc.kill()
        proc.wait(timeout=20)
        return children

    def flow_run_processes(self) -> list[psutil.Process]:
        """The flow-run processes the Prefect worker started (``python -m prefect.engine``)."""
        worker = psutil.Process(self.procs["prefect-worker"].pid)
        return [
            child
            for child in worker.children(recursive=True)
            if "prefect.engine" in " ".join(_cmdline(child))
        ]

    def crash_worker(self) -> list[int]:
        """SIGKILL the Prefect worker and then at once its flow-run processes (a container or
        host crash: nobody is left to report); their pids."""
        runs = self.flow_run_processes()
        worker = self.procs.pop("prefect-worker")
        worker.kill()
        for run in runs:
            with contextlib.suppress(psutil.NoSuchProcess):
                run.kill()
        worker.wait(timeout=20)
        psutil.wait_procs(runs, timeout=20)
        return [run.pid for run in runs]

    def heartbeats(self, flow_run_id: Any) -> int:
        """How many ``prefect.flow-run.heartbeat`` events the server holds for a flow run."""
        import asyncio

        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

        flt = EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        )

        async def read() -> int:
            async with self.client() as client:
                return (await client.read_events(filter=flt, limit=1)).total

        return asyncio.run(read())

    def stop(self) -> None:
        """End every process (workers first), SIGTERM then SIGKILL, children included."""
        for name in reversed(list(self.procs)):
            _kill_tree(self.procs.pop(name), signal.SIGTERM)

    # --- Dask ------------------------------------------------------------------------------

    def start_dask_scheduler(self) -> None:
        self.spawn(
            "dask-scheduler",
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(self.root / "scheduler.json")],
        )  # fmt: skip
        _wait(self._scheduler_file_written, 60, "dask scheduler", self)
        self.env["TERRAWATCH_DASK_ADDRESS"] = self.scheduler_address

    def _scheduler_file_written(self) -> bool:
        try:
            return bool(self.scheduler_address)
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return False

    def start_dask_worker(self, name: str) -> None:
        """One worker process, two threads, advertising one GPU as the compose file's do."""
        self.spawn(
            name,
            [str(BIN / "dask"), "worker", self.scheduler_address, "--name", name,
             "--nthreads", "2", "--nworkers", "1", "--resources", "GPU=1", "--no-dashboard",
             "--host", "127.0.0.1", "--local-directory", str(self.root / "dask")],
            env=self.dask_env,
        )  # fmt: skip

    def wait_for_dask_workers(self, n: int, timeout: float = 90) -> None:
        from distributed import Client

        with Client(self.scheduler_address, timeout=30) as client:
            client.wait_for_workers(n, timeout=timeout)

    def dask_tasks(self) -> dict[str, list[str]]:
        """Worker name -> keys of the tasks it is processing now."""
        from distributed import Client

        with Client(self.scheduler_address, timeout=30) as client:
            names = {
                a: str(w["name"]) for a, w in client.scheduler_info(n_workers=-1)["workers"].items()
            }
            return {
                names[a]: [str(k) for k in keys]
                for a, keys in client.processing().items()
                if a in names
            }

    # --- Prefect ---------------------------------------------------------------------------

    def start_prefect_server(self) -> None:
        port = free_port()
        self.env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        self.spawn(
            "prefect-server",
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
             "--no-ui", "--analytics-off", "--no-scheduler", "--no-late-runs"],
        )  # fmt: skip
        _wait(
            lambda: api_status(self.api_url + "/health", AUTH) == 200, 120, "prefect server", self
        )

    def start_prefect_worker(self) -> None:
        self.spawn(
            "prefect-worker",
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process",
             "--name", "test-worker"],
        )  # fmt: skip
        _wait(self._worker_online, 90, "prefect worker", self)

    def _worker_online(self) -> bool:
        import asyncio

        async def online() -> bool:
            async with self.client() as client:
                workers = await client.read_workers_for_work_pool(POOL)
                return any(w.status.value == "ONLINE" for w in workers)

        return asyncio.run(online())

    def apply_automations(self) -> None:
        """deploy/automations/*.yaml as deploy/README.md applies them (replace, then create).

        One change: the window of ``stuck-submissions.yaml`` (300 s, for slow image pulls) is
        :data:`STUCK_SUBMISSION_TEST_S` here, where a flow run starts in seconds, so that the
        chaos test sees that automation act within its wait.
        """
        prefect = str(BIN / "prefect")
        for path in sorted((REPO / "deploy" / "automations").glob("*.yaml")):
            automation = yaml.safe_load(path.read_text())
            with contextlib.suppress(RuntimeError):  # not there yet
                self.cli(prefect, "--no-prompt", "automation", "delete", automation["name"])
            if path.name != "stuck-submissions.yaml":
                self.cli(prefect, "automation", "create", "--from-file", str(path))
                continue
            shipped = automation["trigger"]["within"]
            automation["trigger"]["within"] = STUCK_SUBMISSION_TEST_S
            for action in automation["actions"]:
                action["message"] = action["message"].replace(
                    f"{shipped} s", f"{STUCK_SUBMISSION_TEST_S} s"
                )
            self.cli(prefect, "automation", "create", "--from-json", json.dumps(automation))

    def save_secret(self, name: str, value: str) -> None:
        """A Prefect Secret block on the stack's server (what an operator does once)."""
        from prefect.blocks.system import Secret

        with self.settings():
            Secret(value=value).save(name, overwrite=True)

    @contextlib.contextmanager
    def settings(self):
        """Point this (test) process at the stack's API, with its credentials."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        with temporary_settings(
            updates={PREFECT_API_URL: self.api_url, PREFECT_API_AUTH_STRING: AUTH}
        ):
            yield

    @contextlib.asynccontextmanager
    async def client(self):
        from prefect.client.orchestration import get_client

        with self.settings():
            async with get_client() as client:
                yield client

    def trigger(self, deployment: str, parameters: dict[str, Any], wait: float = 300) -> Any:
        """``run_deployment`` as a responder would; ``wait=0`` returns as soon as it is queued."""
        from prefect.deployments import run_deployment

        with self.settings():
            return run_deployment(deployment, parameters=parameters, timeout=wait, poll_interval=1)

    def wait(self, flow_run_id: Any, timeout: float = 300) -> Any:
        """The flow run once it reached a final state."""
        import asyncio

        from prefect.flow_runs import wait_for_flow_run

        async def wait() -> Any:
            async with self.client() as client:
                return await wait_for_flow_run(flow_run_id, timeout=int(timeout), client=client)

        return asyncio.run(wait())

    def flow_run_logs(self, flow_run_id: Any) -> str:
        """Every log line the API stored for a flow run and its tasks."""
        import asyncio

        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        async def read() -> list:
            async with self.client() as client:
                flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
                return await client.read_logs(log_filter=flt, limit=200)

        return "\n".join(log.message for log in asyncio.run(read()))


def start_stack(root: Path, storage: dict[str, str]) -> Stack:
    """Start everything in the order of deploy/README.md; on failure stop it all and raise.

    Args:
        root: Folder for the database, logs and scheduler file.
        storage: Object-storage settings: ``AWS_ENDPOINT_URL`` and ``AWS_DEFAULT_REGION`` go to
            every process; ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` only into Prefect
            Secret blocks, which the work pool's base job template hands to flow runs and each
            run's tile coordinator to its tiles (never a Dask worker's environment).
    """
    keys = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    public = {k: v for k, v in storage.items() if k not in keys}
    stack = Stack(root, stack_environment(root, public))
    stack.dask_env = dask_worker_environment(stack.env)
    prefect = str(BIN / "prefect")
    try:
        stack.start_prefect_server()
        stack.start_dask_scheduler()
        for name in ("dask-worker-1", "dask-worker-2"):
            stack.start_dask_worker(name)
        stack.save_secret("terrawatch-storage-key-id", storage["AWS_ACCESS_KEY_ID"])
        stack.save_secret("terrawatch-storage-secret-key", storage["AWS_SECRET_ACCESS_KEY"])
        template = str(REPO / "deploy" / "work-pool.process.json")
        stack.cli(prefect, "work-pool", "create", POOL, "--type", "process",
                  "--base-job-template", template)  # fmt: skip
        stack.cli(prefect, "--no-prompt", "deploy", "--all", "--prefect-file", PREFECT_FILE)
        stack.apply_automations()
        stack.wait_for_dask_workers(2)
        stack.start_prefect_worker()
    except BaseException:
        stack.stop()
        raise
    return stack


def stack_environment(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """What ``deploy/.env.example`` sets in compose, for loopback processes."""
    drop = ("PREFECT_", "TERRAWATCH_", "AWS_", "DASK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        PREFECT_HOME=str(root / "prefect-home"),  # SQLite database and profiles
        PREFECT_SERVER_API_AUTH_STRING=AUTH,
        PREFECT_API_AUTH_STRING=AUTH,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
        PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="5",  # as deploy/ sets it
        TERRAWATCH_PROJECT_DIR=str(REPO),
        TERRAWATCH_WEIGHTS_DIR=str(root / "weights"),
        TERRAWATCH_TEXT_CACHE=str(root / "text-cache"),
        TERRAWATCH_GPU_WORKERS="1",
        TERRAWATCH_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(REPO),
    )
    env.update(extra or {})
    return env


def dask_worker_environment(env: dict[str, str]) -> dict[str, str]:
    """What compose gives a Dask worker: no Prefect auth string and no storage keys (a Prefect
    task brings its flow run's API settings; tiles get the keys from their run)."""
    return {k: v for k, v in env.items() if k not in WORKER_SECRETS}


WORKER_SECRETS = frozenset({
    "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
})  # fmt: skip
"""Variables a Dask worker's environment must not hold (anyone on the cluster can read it)."""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_status(url: str, auth: str | None) -> int | None:
    """HTTP status of a GET (None when nothing answers)."""
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return None


def _wait(ready, timeout: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        dead = [name for name, proc in stack.procs.items() if proc.poll() is not None]
        if dead:
            raise RuntimeError(f"{what}: {dead} exited early:\n{stack.logs()[-6000:]}")
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout} s:\n{stack.logs()[-6000:]}")


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the test process dies, even if pytest itself is killed.

    Runs between fork and exec, so it only calls into libc, loaded beforehand.
    """
    _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _kill_tree(proc: subprocess.Popen, sig: signal.Signals) -> None:
    """Signal a process group and every descendant (some leave the group), then reap."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    _gone, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
