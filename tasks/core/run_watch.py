"""Whether the tiles of a flow run should still be written: its run is Running, its lease live.

The tile coordinator (:func:`tasks.core.tile_runner.run_tiles`) runs as a Dask task; nothing
stops a Dask task when the Prefect flow run that submitted it is cancelled, crashes or its
process dies. So the coordinator asks, every :data:`WATCH_SECONDS`, two cheap questions (one
API read, one small lease file read) and cancels its tile futures when either says stop:

- the flow run's state in the Prefect API is no longer ``Running`` (``prefect flow-run cancel``
  sets ``Cancelling``; a zombie-detection automation sets ``Crashed``);
- the run's writer lease is gone: expired because the flow process stopped heartbeating
  (``kill -9``), released by a cancellation or crash hook, or taken over by another run.

An API that cannot be reached is not a reason to stop (the lease still is): a brief outage of
the server must not cancel a healthy run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from terrawatch.errors import TerrawatchError
from terrawatch.tasks.core.writer_lease import WriterLeaseError, check_writer_token

WATCH_SECONDS = 2.0
"""Seconds between two looks at the run's state and lease: the most a cancelled run's tiles
keep being started after the cancel (tiles already running finish their one chunk)."""

TILE_KEY_PREFIX = "terrawatch-tile"
"""Dask keys of a run's tiles start with ``<prefix>-<flow run id>-``, so that a cancellation or
crash hook, in another process, can find and cancel them on a shared scheduler."""


class RunStoppedError(TerrawatchError, RuntimeError):
    """The tiles of a flow run were cancelled: its run was cancelled, crashed or lost its lease.

    ``cancelled`` is True when the run was cancelled through the API (the flow then ends
    ``Cancelled`` rather than ``Failed``).
    """

    def __init__(self, message: str, *, cancelled: bool = False) -> None:
        super().__init__(message)
        self.cancelled = cancelled

    def __reduce__(self) -> tuple[Any, ...]:  # crosses Dask and Prefect's result pickling
        return (_rebuild_stopped, (str(self), self.cancelled))


def _rebuild_stopped(message: str, cancelled: bool) -> RunStoppedError:
    return RunStoppedError(message, cancelled=cancelled)


def tile_keys(run_id: str, count: int) -> list[str]:
    """Dask keys for ``count`` tiles of flow run ``run_id`` (unique per call: a retry gets new)."""
    batch = uuid.uuid4().hex[:8]
    return [f"{TILE_KEY_PREFIX}-{run_id or 'none'}-{batch}-{index}" for index in range(count)]


class RunWatch:
    """Says why the tiles of the current flow run must stop (:meth:`stop_reason`), at most
    every ``every_seconds``."""

    def __init__(
        self,
        run_id: str | None,
        store: str | None,
        token: str | None,
        every_seconds: float = WATCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id, self.store, self.token = run_id or None, store, token
        self.every_seconds, self._clock = every_seconds, clock
        self._next = clock() + every_seconds
        self._client: Any = None

    def due(self) -> bool:
        """Whether a look is due now."""
        return self._clock() >= self._next

    def stop_reason(self) -> RunStoppedError | None:
        """Why to stop, or None; looks at most every ``every_seconds`` (else None)."""
        if not self.due():
            return None
        return self.look()

    def look(self) -> RunStoppedError | None:
        """Why to stop, or None: one read of the run's state and one of its lease, now."""
        self._next = self._clock() + self.every_seconds
        state = self._run_state()
        if state is not None and not state.is_running():
            return RunStoppedError(
                f"flow run {self.run_id} is {state.name}: its tiles were cancelled",
                cancelled=state.is_cancelling() or state.is_cancelled(),
            )
        if self.store and self.token:
            try:
                check_writer_token(self.store, self.token)
            except WriterLeaseError as error:
                return RunStoppedError(f"tiles cancelled: {error}")
        return None

    def _run_state(self) -> Any:
        if not self.run_id:
            return None
        try:
            if self._client is None:
                from prefect.client.orchestration import get_client

                self._client = get_client(sync_client=True).__enter__()
            return self._client.read_flow_run(self.run_id).state
        except Exception:  # an unreachable API is no reason to stop; the lease still is
            return None

    def close(self) -> None:
        """Close the API client (if one was opened)."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                client.__exit__(None, None, None)
            except Exception:
                pass
