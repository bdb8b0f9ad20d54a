"""Ctrl-C and SIGTERM stop a command within seconds, say how far it got, and exit 130 / 143.

Left to the libraries, a signal unwinds through Prefect's engine and the Dask task runner, which
waits for the tiles in flight (minutes with a large model) and prints hundreds of traceback lines.
Here the first SIGINT or SIGTERM is handled at once, in the main thread:

1. the console stops showing logs and tracebacks (a ``--log-file`` still records them);
2. the worker processes of the local cluster are killed, so tiles in flight are abandoned.
   A tile's ``tile_done`` is set only after all its chunks are written
   (:func:`terrawatch.tasks.core.cube_store.write_cube_tile`), so an abandoned tile is written
   again by the rerun and no partial chunk is ever taken for done. On a shared cluster
   (``--address``) the workers are not ours to kill: they finish the tile they hold;
3. the flow run is marked Cancelled in the Prefect API;
4. the local Prefect API server is stopped, one line is printed and the process exits with
   128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report a signal.

A watchdog exits after :data:`DEADLINE_SECONDS` whatever a step is waiting for.

A Ctrl-C at a terminal reaches the whole process group: the local Dask workers ignore it
(:mod:`terrawatch.flows.worker_signals`). The local Prefect API server (uvicorn) shuts down on
it by itself, so the Cancelled state is set first, over the engine's open connection; should
the server be gone already, the run is left as it was (the log file says so).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

DEADLINE_SECONDS = 3.5
"""Longest time from the signal to the exit (the issue's bound is 5 s)."""

CANCEL_SECONDS = 2.0
"""Longest wait for the Prefect API to take the Cancelled state."""

SIGNALS = (signal.SIGINT, signal.SIGTERM)

log = logging.getLogger(__name__)


@dataclass
class _Watch:
    """What the interrupt line reports and what must be stopped; one per command run."""

    command: str
    store: str | None = None
    step_start: str | None = None
    server_pid: int | None = None
    stop_server: Callable[[], object] | None = None
    before_message: list[Callable[[], object]] = field(default_factory=list)
    handling: bool = False


_watch: _Watch | None = None


@contextlib.contextmanager
def exit_on_signals(command: str, store: str | None = None) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM end the command cleanly (see the module docstring).

    Args:
        command: The sub-command, for the line of commands without a store.
        store: The store the command writes, when it has one (``--store``).
    """
    global _watch
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only; nothing to install
        return
    _watch = _Watch(command, store)
    previous = {sig: signal.signal(sig, _on_signal) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _watch = None


def watch_step(store: str, step_start: str) -> None:
    """Name the store and time step whose tiles the interrupt line counts."""
    if _watch is not None:
        _watch.store, _watch.step_start = store, step_start


def watch_server(pid: int, stop: Callable[[], object]) -> None:
    """The local Prefect API server: kept alive until the run is marked Cancelled, then stopped."""
    if _watch is not None:
        _watch.server_pid, _watch.stop_server = pid, stop


def before_message(callback: Callable[[], object]) -> None:
    """Run ``callback`` (e.g. close a progress bar) before the interrupt line is printed."""
    if _watch is not None:
        _watch.before_message.append(callback)


def reclaim_sigterm(*_: Any) -> None:
    """A flow's ``on_running`` hook: take SIGTERM back from Prefect's engine.

    Prefect's flow engine installs its own SIGTERM handler for the run (it raises
    ``TerminationSignal`` and unwinds through the task runner, which waits for running tiles);
    the hook runs in the main thread just after that, so the command's handler wins.
    """
    if _watch is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)


def exit_code(signum: int) -> int:
    """The shell's exit status of a command ended by ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


def _on_signal(signum: int, _frame: object) -> None:
    watch = _watch
    if watch is None or watch.handling:
        return  # a second Ctrl-C while stopping: the watchdog bounds the time anyway
    watch.handling = True
    code = exit_code(signum)
    stderr = sys.stderr
    _silence_console()
    log.warning("%s received: stopping", signal.Signals(signum).name)  # to a --log-file
    once = threading.Lock()

    def say_and_exit() -> None:  # by this thread or the watchdog, whichever comes first
        if not once.acquire(timeout=1.0):  # the other is saying it and stuck: exit anyway
            _last_exit(code)
        for callback in watch.before_message:
            with contextlib.suppress(Exception):
                callback()
        stderr.write(_message(watch) + "\n")
        stderr.flush()
        _last_exit(code)  # the lock is never released: the other caller never says it twice

    watchdog = threading.Timer(DEADLINE_SECONDS, say_and_exit)
    watchdog.daemon = True
    watchdog.start()
    marking = threading.Thread(
        target=_mark_flow_run_cancelled, args=(_flow_run(), signal.Signals(signum).name)
    )
    marking.start()  # over HTTP, while the workers are killed here
    _kill_workers(watch.server_pid)
    marking.join(timeout=CANCEL_SECONDS)
    if watch.stop_server is not None:
        with contextlib.suppress(Exception):
            watch.stop_server()
    say_and_exit()


def _message(watch: _Watch) -> str:
    """The one line: how many tiles are in the store and how to resume."""
    if watch.store is None:
        return f"terrawatch {watch.command}: interrupted"
    done, total = (0, 0)
    if watch.step_start is not None:
        from terrawatch.flows.cli_common import tiles_done

        with contextlib.suppress(Exception):
            done, total = tiles_done(watch.store, watch.step_start)
    if total:
        return (
            f"interrupted: {done}/{total} tiles written to {watch.store}; "
            "rerun the same command to resume"
        )
    return f"interrupted before the run started writing to {watch.store}; rerun the same command"


def _silence_console() -> None:
    """No more log lines or tracebacks on the terminal (a log file keeps recording)."""
    from terrawatch.flows.console import silence_console

    silence_console()
    # tracebacks of dying threads go to sys.stderr; the line is written to the saved stream
    sys.stderr = open(os.devnull, "w")


def _kill_workers(server_pid: int | None) -> None:
    """SIGKILL this process's children except the API server: the local Dask workers.

    The nannies (in this process) are told first that the workers go for good, so none is
    restarted; a worker started all the same exits by itself when this process ends (Dask's
    parent-alive pipe). Multiprocessing's resource tracker is left for :func:`_last_exit`.
    """
    import psutil

    _stop_restarts()
    try:
        children = psutil.Process().children(recursive=True)
        keep = set()
        if server_pid:
            keep = {server_pid, *(p.pid for p in psutil.Process(server_pid).children(True))}
    except psutil.Error:
        return
    victims = [p for p in children if p.pid not in keep and not _is_resource_tracker(p)]
    for process in victims:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(victims, timeout=1.0)


def _stop_restarts() -> None:
    """Mark the local cluster's nannies as closing: a worker that dies is not restarted."""
    from distributed.core import Status
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    with contextlib.suppress(Exception):  # no flow run, a shared cluster, or no client yet
        for nanny in runner.client.cluster.workers.values():
            nanny.status = Status.closing_gracefully


def _last_exit(code: int) -> NoReturn:
    """Exit now; multiprocessing's resource tracker goes first, silently.

    Left alive, it would print a traceback for each semaphore of a killed worker and a
    warning about "leaked semaphore objects" after the command's line (those few named
    semaphores stay in ``/dev/shm`` instead).
    """
    import psutil

    with contextlib.suppress(psutil.Error):
        for process in psutil.Process().children(recursive=True):
            if _is_resource_tracker(process):
                with contextlib.suppress(psutil.Error):
                    process.kill()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os._exit(code)


def _is_resource_tracker(process: Any) -> bool:
    try:
        return "multiprocessing.resource_tracker" in " ".join(process.cmdline())
    except Exception:  # gone already, or not ours to read
        return False


def _flow_run() -> tuple[Any, Any] | None:
    """The flow run of this thread's context and the engine's client, or None outside a run."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    return context.flow_run.id, context.client


def _mark_flow_run_cancelled(run: tuple[Any, Any] | None, signal_name: str) -> None:
    """Set the flow run (if any) to Cancelled in the Prefect API."""
    from prefect.client.orchestration import SyncPrefectClient, get_client
    from prefect.states import Cancelled

    if run is None:
        return
    run_id, engine_client = run
    state = Cancelled(message=f"{signal_name} from the user")
    try:
        if isinstance(engine_client, SyncPrefectClient):  # its connection is open already
            engine_client.set_flow_run_state(run_id, state, force=True)
        else:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run_id, state, force=True)
    except Exception:  # the line and the exit code still follow; the log file has why
        log.exception("could not mark flow run %s cancelled", run_id)
