"""One Prefect API for a flow process and its Dask worker processes.

With no ``PREFECT_API_URL`` configured, Prefect starts an ephemeral API server on demand in
each process that needs one, so every Dask worker process would start its own server on the
same SQLite database (tens of seconds per task under load). :func:`shared_local_api` starts
the ephemeral server once and hands its URL to the workers through the environment.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    get_current_settings,
    temporary_settings,
)


@contextlib.contextmanager
def shared_local_api() -> Iterator[str]:
    """Yield the API URL to use; start (once) and share the ephemeral server when none is set."""
    settings = get_current_settings()
    if settings.api.url:
        yield str(settings.api.url)
        return
    from prefect.server.api.server import SubprocessASGIServer

    # The ephemeral server's telemetry only logs errors on machines without internet.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from terrawatch.flows import interrupt

    server = SubprocessASGIServer()
    timeout = settings.server.ephemeral.startup_timeout_seconds
    try:
        server.start(timeout=timeout)
    except RuntimeError as err:  # "Timed out while attempting to connect to ephemeral ..."
        from terrawatch.errors import TerrawatchError

        raise TerrawatchError(
            f"the local Prefect API server did not start within {timeout} s ({err}); the "
            "machine may be busy: rerun, allow it longer with "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120, or set PREFECT_API_URL to a "
            "running Prefect server"
        ) from err
    if server.server_process is not None:
        interrupt.watch_server(server.server_process.pid, server.stop)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url  # inherited by worker processes
    try:
        # No flow-run heartbeats: nothing outlives this process to watch them (the server
        # stops with it), and each run's end waited for the heartbeat thread's 1 s sleep
        # steps (0.65 s per run on average, in a flow of one trivial task that took 1.1 s).
        updates = {PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        with temporary_settings(updates=updates):
            yield server.api_url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
