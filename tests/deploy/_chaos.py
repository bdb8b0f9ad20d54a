"""Chaos on the real local stack (_stack.py): kill one process at a random moment of a run,
recover as deploy/RUNBOOK.md says, and check the cube against a clean run's.

The kinds of fault (:data:`KINDS`), each a ``kill -9``:

- ``prefect-worker``: the Prefect worker alone (systemd's ``KillMode=process``: its flow-run
  process goes on, orphaned);
- ``flow-run``: the flow-run process alone (the worker sees its child die);
- ``container``: the worker and its flow-run process together (a container or host crash:
  nobody is left to report the run, it is a zombie);
- ``dask-worker``: one Dask worker and its nanny;
- ``dask-scheduler``: the Dask scheduler.

The recovery of each is what the runbook and the systemd units (``Restart=always``) do: the
killed service is started again (same command; the scheduler on the same port, as its unit's
fixed ``--port 8786``); a run still ``Running``/``Pending`` with no process left is marked
``Crashed`` by the zombie automation of ``deploy/automations`` (the stack applies it; the test's
own :func:`recover_zombie_run` is only the runbook's fallback, and needing it is a problem);
a run that did not complete is followed by a
new run of the deployment with the same parameters (runbook, "Retry a failed or crashed run").

What is checked per moment (:class:`MomentResult`): a completed run; the cube equal to the
clean run's (:func:`cube_differences`); every tile's ``tile_done`` chunk written exactly once
and its data chunk at most twice, once if the tile was done when the process was killed
(:class:`StoreWatch`); and the writer-lease history (:func:`lease_history_problems`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.deploy._stack import Stack

KINDS = ("prefect-worker", "flow-run", "container", "dask-worker", "dask-scheduler")
"""The processes a moment may kill (module docstring)."""
MOMENTS_ENV = "TERRAWATCH_CHAOS_MOMENTS"
"""How many moments the chaos test tries (default :data:`DEFAULT_MOMENTS`)."""
SEED_ENV = "TERRAWATCH_CHAOS_SEED"
"""The seed of the moments (default: a new one, printed, to replay a failure)."""
DEFAULT_MOMENTS = 10
ZOMBIE_GRACE_S = 150.0
"""How long a run may sit non-final with no process before the test marks it ``Crashed`` by
hand (the runbook's fallback) and counts a problem: the worker reports a child that died
within a second or two, and the zombie automation the stack applies
(``deploy/automations/zombie-flow-runs.yaml``) one whose worker died too 45 s after its last
heartbeat, or (``stuck-submissions.yaml``) one whose worker died while
submitting it (90 s on the test stack), plus its evaluation and the server's slot retry."""
AUTOMATION_MARK = "(marked by the automation 'terrawatch:"
"""Words of the automations' ``Crashed`` messages (zombie-flow-runs.yaml for a run whose
heartbeats stopped, stuck-submissions.yaml for one whose worker died while submitting it)."""
POLL_S = 0.05
"""How often :class:`StoreWatch` looks at the chunk and lease files: a tile takes far longer."""
VOLATILE_ATTRS = ("run_id", "created")
"""Attributes that name the run that wrote the cube or when: they differ between any two runs."""
TILE_CHUNK = re.compile(r"^\d+\.\d+\.\d+$")


def chaos_settings() -> tuple[int, int]:
    """``(moments, seed)`` from the environment; a fresh seed when none is given."""
    moments = int(os.environ.get(MOMENTS_ENV) or DEFAULT_MOMENTS)
    seed = int(os.environ.get(SEED_ENV) or int.from_bytes(os.urandom(4), "big"))
    return moments, seed


def plan_kinds(rng: Any, moments: int) -> list[str]:
    """Every kind equally often (shuffled rounds), so ten moments cover all five kinds."""
    kinds: list[str] = []
    while len(kinds) < moments:
        round_ = list(KINDS)
        rng.shuffle(round_)
        kinds += round_
    return kinds[:moments]


# --- who runs what --------------------------------------------------------------------------


def flow_run_processes(run_id: str) -> list[psutil.Process]:
    """The live ``prefect.engine`` processes of flow run ``run_id`` (orphaned ones included)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "prefect.engine" not in (proc.info["cmdline"] or []):
                continue
            if proc.environ().get("PREFECT__FLOW_RUN_ID") == run_id and proc.is_running():
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _kill_processes(procs: list[psutil.Process]) -> list[int]:
    """SIGKILL each process and its descendants; their pids."""
    pids = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            for member in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.send_signal(signal.SIGKILL)
                    pids.append(member.pid)
    psutil.wait_procs(procs, timeout=20)
    return pids


def dask_worker_names(stack: Stack) -> list[str]:
    return sorted(n for n in stack.procs if n.startswith("dask-worker"))


# --- the faults and their systemd-style restarts -----------------------------------------------


class Chaos:
    """Kills and restarts processes of one stack; fresh names for restarted Dask workers."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.restarts = 0
        self.port = int(stack.scheduler_address.rsplit(":", 1)[1])

    def wait_for_victim(self, kind: str, run_id: str, wait_s: float) -> None:
        """For the kinds that kill a flow-run process: wait until it exists (a moment before
        it started kills it as it starts), or the run has already ended."""
        if kind not in ("flow-run", "container"):
            return
        deadline = time.monotonic() + wait_s
        while not flow_run_processes(run_id) and time.monotonic() < deadline:
            if read_state(self.stack, run_id).is_final():
                return
            time.sleep(0.1)

    def kill(self, kind: str, run_id: str, rng: Any) -> tuple[str, list[int]]:
        """Kill ``kind`` (:data:`KINDS`); ``(what was killed, pids)``."""
        stack = self.stack
        if kind == "prefect-worker":
            proc = stack.procs.pop("prefect-worker")
            proc.send_signal(signal.SIGKILL)  # the worker only: its children go on
            proc.wait(timeout=20)
            return "prefect-worker", [proc.pid]
        if kind == "flow-run":
            procs = flow_run_processes(run_id)
            if not procs:
                return "nothing: the run had ended", []
            return f"flow-run pid {procs[0].pid}", _kill_processes(procs)
        if kind == "container":
            # both at once: the flow-run process first, it may run in a session of its own
            # (killed after the worker, it would notice the worker's end and report it)
            pids = _kill_processes(flow_run_processes(run_id))
            pids.append(stack.procs["prefect-worker"].pid)
            stack.kill("prefect-worker")  # the worker's process group and every descendant
            pids += _kill_processes(flow_run_processes(run_id))  # one it was starting
            return "prefect-worker with its flow-run process", pids
        if kind == "dask-worker":
            name = rng.choice(dask_worker_names(stack))
            pid = stack.procs[name].pid
            stack.kill(name)
            return name, [pid]
        if kind == "dask-scheduler":
            pid = stack.procs["dask-scheduler"].pid
            stack.kill("dask-scheduler")
            return "dask-scheduler", [pid]
        raise ValueError(kind)

    def restart(self, kind: str) -> None:
        """What ``Restart=always`` does for the unit(s) of ``kind`` (right away, not 5 s on)."""
        if kind in ("prefect-worker", "container"):
            self.stack.start_prefect_worker()
        elif kind == "dask-worker":
            self.replace_dead_dask_workers()
        elif kind == "dask-scheduler":
            self.restart_scheduler()
        # flow-run: no unit; the worker that started it is alive

    def restart_scheduler(self) -> None:
        """The scheduler again on its port; then every worker that exited with it restarted.

        A worker that lost its scheduler either reconnects or exits (systemd restarts it);
        this waits for one or the other before counting.
        """
        stack = self.stack
        (stack.root / "scheduler.json").unlink(missing_ok=True)
        stack.spawn(
            "dask-scheduler",
            [_dask(), "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
             "--no-dashboard", "--scheduler-file", str(stack.root / "scheduler.json")],
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not stack._scheduler_file_written() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stack.scheduler_address.endswith(f":{self.port}"), stack.logs()[-3000:]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            alive = [n for n in dask_worker_names(stack) if stack.procs[n].poll() is None]
            if len(alive) == _connected_workers(stack) or not alive:
                break
            time.sleep(0.5)
        self.replace_dead_dask_workers()

    def replace_dead_dask_workers(self, want: int = 2) -> None:
        """Start Dask workers (new names) until ``want`` live processes; wait for them."""
        stack = self.stack
        for name in dask_worker_names(stack):
            if stack.procs[name].poll() is not None:
                stack.procs.pop(name).wait()
        while len(dask_worker_names(stack)) < want:
            self.restarts += 1
            stack.start_dask_worker(f"dask-worker-chaos-{self.restarts}")
        stack.wait_for_dask_workers(want, timeout=120)

    def heal(self) -> None:
        """Leave the stack as a later test expects: a Prefect worker, a scheduler, 2 workers."""
        stack = self.stack
        if "dask-scheduler" not in stack.procs or stack.procs["dask-scheduler"].poll() is not None:
            stack.procs.pop("dask-scheduler", None)
            self.restart_scheduler()
        self.replace_dead_dask_workers()
        worker = stack.procs.get("prefect-worker")
        if worker is None or worker.poll() is not None:
            stack.procs.pop("prefect-worker", None)
            stack.start_prefect_worker()


def _dask() -> str:
    from tests.deploy._stack import BIN

    return str(BIN / "dask")


def _connected_workers(stack: Stack) -> int:
    from distributed import Client

    try:
        with Client(stack.scheduler_address, timeout=5) as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])
    except (OSError, TimeoutError):
        return -1


# --- run states ----------------------------------------------------------------------------


def read_state(stack: Stack, run_id: str) -> Any:
    async def read() -> Any:
        async with stack.client() as client:
            return (await client.read_flow_run(run_id)).state

    return asyncio.run(read())


def recover_zombie_run(stack: Stack, run_id: str) -> bool:
    """Mark a run whose process is gone ``Crashed``, releasing its deployment concurrency slot.

    The state change the zombie-detection automation shipped in ``deploy/`` makes in
    production (its ``change-flow-run-state`` action, forced, on a run whose heartbeats
    stopped), and runbook step 2 by hand; here it is applied once the run's process is
    confirmed gone. True if the run was changed (False: it already was final).
    """
    from prefect.states import Crashed

    async def crash() -> bool:
        async with stack.client() as client:
            run = await client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return False
            await client.set_flow_run_state(
                run_id, Crashed(message="flow-run process gone (zombie)"), force=True
            )
            return True

    return asyncio.run(crash())


def await_outcome(stack: Stack, run_id: str, timeout: float) -> tuple[Any, bool, bool]:
    """The run's final state, applying :func:`recover_zombie_run` to a run left with no
    process for :data:`ZOMBIE_GRACE_S`; ``(state, crashed by the zombie automation, crashed
    by hand)``.

    Raises:
        TimeoutError: Not final after ``timeout`` while its process still runs (a hang).
    """
    deadline = time.monotonic() + timeout
    gone_since: float | None = None
    zombie = False
    while time.monotonic() < deadline:
        state = read_state(stack, run_id)
        if state.is_final():
            automation = state.is_crashed() and AUTOMATION_MARK in (state.message or "")
            return state, automation, zombie
        started = state.is_running() or state.is_pending() or state.is_cancelling()
        if started and not flow_run_processes(run_id):
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since >= ZOMBIE_GRACE_S:
                zombie = recover_zombie_run(stack, run_id) or zombie
        else:
            gone_since = None
        time.sleep(1.0)
    raise TimeoutError(f"flow run {run_id} is {state.name} after {timeout:.0f} s")


# --- what the store saw ------------------------------------------------------------------------


class StoreWatch:
    """Counts writes of every tile's chunk files and keeps every version of the lease files.

    Zarr writes a chunk file as a new file moved into place (``zarr.storage.LocalStore``), so
    each write is a new (inode, mtime, size) at the chunk's path; polled every
    :data:`POLL_S`, two writes of one chunk closer together than that count as one (tile
    writes are over a second apart here: that only happens with two writers at once, which
    the lease history shows).
    """

    def __init__(self, store: Path, data_var: str = "landcover") -> None:
        self.store, self.data_var = store, data_var
        self.lease_dir = Path(str(store) + ".terrawatch-lease")
        self.versions: dict[str, tuple[int, int, int]] = {}
        self.writes: dict[str, int] = {}
        self.leases: dict[int, list[dict[str, Any]]] = {}
        self.first_tile_at: float | None = None
        """``time.monotonic()`` when the first ``tile_done`` chunk was seen."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store watch", daemon=True)

    def __enter__(self) -> StoreWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.look()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.look()

    def look(self) -> None:
        for var in ("tile_done", self.data_var):
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(self.store / var):
                    if not TILE_CHUNK.match(entry.name):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat()
                        version = (st.st_ino, st.st_mtime_ns, st.st_size)
                        key = f"{var}/{entry.name}"
                        if var == "tile_done" and self.first_tile_at is None:
                            self.first_tile_at = time.monotonic()
                        if self.versions.get(key) != version:
                            self.versions[key] = version
                            self.writes[key] = self.writes.get(key, 0) + 1
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.lease_dir):
                if not entry.name.endswith(".json"):
                    continue
                try:
                    record = json.loads(Path(entry.path).read_text())
                except (OSError, ValueError):
                    continue  # replaced or removed while read
                seen = self.leases.setdefault(int(entry.name.split(".")[0]), [])
                if not seen or seen[-1] != record:
                    seen.append(record)

    def done_tiles(self) -> set[str]:
        """The tiles done right now (their ``tile_done`` chunk exists), read directly."""
        with contextlib.suppress(FileNotFoundError):
            return {n for n in os.listdir(self.store / "tile_done") if TILE_CHUNK.match(n)}
        return set()

    def write_problems(self, tiles: list[str], done_at_kill: set[str]) -> list[str]:
        """Tiles lost or written twice (module docstring)."""
        problems = []
        for tile in tiles:
            done = self.writes.get(f"tile_done/{tile}", 0)
            data = self.writes.get(f"{self.data_var}/{tile}", 0)
            if done != 1:
                problems.append(f"tile {tile}: tile_done written {done} times")
            most = 1 if tile in done_at_kill else 2
            if not 1 <= data <= most:
                problems.append(f"tile {tile}: {self.data_var} written {data} times (<= {most})")
        return problems


def lease_history_problems(
    leases: dict[int, list[dict[str, Any]]], run_ids: set[str], killed: set[int]
) -> list[str]:
    """A second writer in the lease history: a generation taken while the one before it was
    live (not released, not expired, its holder not a process this moment killed), a holder
    that is not one of the moment's runs, or generations not in sequence."""
    problems = []
    gens = sorted(leases)
    if gens and gens != list(range(gens[0], gens[-1] + 1)):
        problems.append(f"lease generations not consecutive: {gens}")
    for gen in gens:
        first = leases[gen][0]
        if first["run_id"] not in run_ids:
            problems.append(f"lease generation {gen} held by unknown run {first['run_id']}")
        before = leases.get(gen - 1)
        if not before:
            continue
        last = before[-1]
        taken = first["acquired"]
        live = not last["released"] and taken < last["expires"] and last["pid"] not in killed
        if live:
            problems.append(
                f"lease generation {gen} (run {first['run_id']}) taken at {taken:.1f} while "
                f"generation {gen - 1} of run {last['run_id']} (pid {last['pid']}) was live"
            )
    if gens and not leases[gens[-1]][-1]["released"]:
        problems.append(f"the last lease (generation {gens[-1]}) was not released")
    return problems


# --- what the cube holds -----------------------------------------------------------------------


def cube_differences(clean: Path, other: Path) -> list[str]:
    """Where ``other`` differs from ``clean``: every file of the store byte for byte (chunks,
    array metadata), the JSON attributes without :data:`VOLATILE_ATTRS` (run id and creation
    times, at any depth), and the quicklook's pixels beside the store."""
    problems = []
    files = {p.relative_to(clean).as_posix() for p in clean.rglob("*") if p.is_file()}
    theirs = {p.relative_to(other).as_posix() for p in other.rglob("*") if p.is_file()}
    if files != theirs:
        problems.append(f"files differ: only clean {sorted(files - theirs)[:5]}, "
                        f"only faulted {sorted(theirs - files)[:5]}")  # fmt: skip
    for name in sorted(files & theirs):
        a, b = (clean / name).read_bytes(), (other / name).read_bytes()
        if Path(name).name in (".zattrs", ".zmetadata"):
            a, b = _stable(json.loads(a)), _stable(json.loads(b))
        if a != b:
            problems.append(f"{name} differs")
    for quicklook in clean.parent.glob(f"{clean.name}.quicklook-*.png"):
        twin = other.parent / quicklook.name.replace(clean.name, other.name, 1)
        if not twin.exists() or not _same_pixels(quicklook, twin):
            problems.append(f"{twin.name} missing or different")
    return problems


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE_ATTRS}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _same_pixels(a: Path, b: Path) -> bool:
    import numpy as np
    from PIL import Image

    with Image.open(a) as first, Image.open(b) as second:
        return np.array_equal(np.asarray(first), np.asarray(second))


# --- one moment and the counts -------------------------------------------------------------------


@dataclass
class MomentResult:
    """What one moment did and found."""

    index: int
    kind: str
    delay_s: float
    """Seconds after the trigger, or after ``after_tiles`` tiles were done."""
    after_tiles: int = 0
    """Tiles done before the kill (0: the moment is ``delay_s`` after the trigger)."""
    killed: str = ""
    state_at_kill: str = ""
    first_tile_s: float | None = None
    """Seconds from the trigger to the first tile (kept when the kill came after it)."""
    tiles_done_at_kill: int = 0
    faulted_state: str = ""
    zombie_recovered: bool = False
    rerun: bool = False
    final_state: str = ""
    recovered: bool = False
    identical: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def summary(results: list[MomentResult], seed: int) -> dict[str, Any]:
    """The counts the test prints and writes: moments, per kind, recoveries, identical cubes."""
    per_kind: dict[str, dict[str, int]] = {}
    for r in results:
        k = per_kind.setdefault(
            r.kind, {"moments": 0, "reruns": 0, "zombies": 0, "recoveries": 0, "identical": 0}
        )
        k["moments"] += 1
        k["reruns"] += r.rerun
        k["zombies"] += r.zombie_recovered
        k["recoveries"] += r.recovered
        k["identical"] += r.identical
    return {
        "seed": seed,
        "moments": len(results),
        "recoveries": sum(r.recovered for r in results),
        "identical_cubes": sum(r.identical for r in results),
        "clean_moments": sum(not r.problems for r in results),
        "zombie_recoveries": sum(r.zombie_recovered for r in results),
        "reruns": sum(r.rerun for r in results),
        "per_kind": per_kind,
        "results": [asdict(r) for r in results],
    }


RUN_WAIT_S = 300.0
"""Longest wait for a run (faulted or rerun) to reach a final state."""
EXIT_GRACE_S = 60.0
"""How long a flow-run process may take to exit once its run reported a final state."""


def _exited(run_ids: set[str], grace_s: float) -> list[psutil.Process]:
    """The flow-run processes of ``run_ids`` still alive after ``grace_s`` (none, normally)."""
    deadline = time.monotonic() + grace_s
    while (alive := [p for r in run_ids for p in flow_run_processes(r)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    return alive


def wait_for_moment(watch: StoreWatch, moment: MomentResult, started: float) -> None:
    """Sleep until the moment: ``moment.after_tiles`` tiles done (then ``delay_s`` more), or
    ``delay_s`` after the run was triggered when ``after_tiles`` is 0."""
    if moment.after_tiles:
        deadline = started + RUN_WAIT_S
        while len(watch.done_tiles()) < moment.after_tiles and time.monotonic() < deadline:
            time.sleep(POLL_S)
        time.sleep(moment.delay_s)
    else:
        time.sleep(max(0.0, started + moment.delay_s - time.monotonic()))


def run_moment(
    stack: Stack,
    chaos: Chaos,
    moment: MomentResult,
    rng: Any,
    parameters: Any,
    clean_store: Path,
    deployment: str,
) -> MomentResult:
    """Start a run into a fresh store, kill ``moment.kind`` after ``moment.delay_s``, recover as
    documented and record what the store saw (``moment.problems`` lists what went wrong)."""
    store = Path(parameters["store"])
    started = time.monotonic()
    run_ids: set[str] = set()
    killed: set[int] = set()
    with StoreWatch(store) as watch:
        flow_run = stack.trigger(deployment, parameters, wait=0)
        run_id = str(flow_run.id)
        run_ids.add(run_id)
        wait_for_moment(watch, moment, started)
        chaos.wait_for_victim(moment.kind, run_id, wait_s=RUN_WAIT_S)
        moment.state_at_kill = read_state(stack, run_id).name
        done_at_kill = watch.done_tiles()
        moment.killed, pids = chaos.kill(moment.kind, run_id, rng)
        killed |= set(pids)
        moment.tiles_done_at_kill = len(done_at_kill)
        chaos.restart(moment.kind)
        try:
            state, moment.zombie_recovered, by_hand = await_outcome(stack, run_id, RUN_WAIT_S)
            if by_hand:
                moment.problems.append(
                    f"the zombie automation did not mark the run Crashed within "
                    f"{ZOMBIE_GRACE_S:.0f} s of its process's end; marked by hand"
                )
        except TimeoutError as hung:
            moment.problems.append(str(hung))
            _kill_processes(flow_run_processes(run_id))
            recover_zombie_run(stack, run_id)
            state = read_state(stack, run_id)
        moment.faulted_state = f"{state.name}: {state.message}" if state.message else state.name
        final = state
        if not state.is_completed():  # runbook: start a new run of the deployment
            moment.rerun = True
            rerun = stack.trigger(deployment, parameters, wait=RUN_WAIT_S)
            run_ids.add(str(rerun.id))
            final = read_state(stack, str(rerun.id))
            if not final.is_completed():
                moment.problems.append(
                    f"rerun {rerun.id} ended {final.name}: {final.message}\n"
                    + stack.flow_run_logs(rerun.id)[-2000:]
                )
    leftovers = _exited(run_ids, EXIT_GRACE_S)
    if leftovers:
        moment.problems.append(f"flow-run processes left running: {[p.pid for p in leftovers]}")
        _kill_processes(leftovers)
    moment.final_state = final.name
    moment.recovered = final.is_completed()
    tiles = sorted(
        p.name for p in (clean_store / "tile_done").iterdir() if TILE_CHUNK.match(p.name)
    )
    moment.problems += watch.write_problems(tiles, done_at_kill)
    moment.problems += lease_history_problems(watch.leases, run_ids, killed)
    differences = cube_differences(clean_store, store) if moment.recovered else ["no cube"]
    moment.problems += differences
    moment.identical = moment.recovered and not differences
    moment.seconds = round(time.monotonic() - started, 1)
    if moment.after_tiles and watch.first_tile_at is not None:  # undisturbed until then
        moment.first_tile_s = round(watch.first_tile_at - started, 1)
    return moment
