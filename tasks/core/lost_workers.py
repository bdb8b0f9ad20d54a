"""Lost Dask workers in the flow run's log: which worker, and how many of the run's tiles re-run.

Dask re-runs the tasks of a worker that dies (those it was running, and finished ones whose
results lived only there), so a run survives it with the same cube; but nothing told the
operator, and a worker that keeps dying looked like a slow run. The scheduler publishes every
worker removal on its ``all`` event topic (``action: remove-worker``, with the keys it was
processing and the computed keys it lost); :class:`LostWorkerLog` subscribes to it for the
length of a tile run and writes one warning per lost worker that held tiles of this run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

TOPIC = "all"
"""The scheduler's event topic that carries ``remove-worker`` events."""


class LostWorkerLog:
    """Context manager: warn through ``warn`` when a worker holding tracked tasks is removed.

    Args:
        client: The Dask client the tasks were submitted with.
        warn: Where the line goes (the flow run's logger's ``warning``).
        label: What a task is called in the line, e.g. ``"tile"``.
    """

    def __init__(self, client: Any, warn: Callable[[str], object], label: str = "tile") -> None:
        self.client, self.warn, self.label = client, warn, label
        self.keys: set[str] = set()
        self.names: dict[str, str] = {}
        self.lost: list[tuple[str, int]] = []
        """(worker, tasks re-run) per lost worker that held tracked tasks."""

    def track(self, futures: Iterable[Any]) -> None:
        """Watch these futures' tasks (call right after submitting them)."""
        self.keys |= {str(f.key) for f in futures}

    def __enter__(self) -> LostWorkerLog:
        self._refresh_names()
        self.client.subscribe_topic(TOPIC, self._on_event)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.unsubscribe_topic(TOPIC)

    def _refresh_names(self) -> None:
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        self.names.update({addr: str(info.get("name", addr)) for addr, info in workers.items()})

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        _, message = event
        if not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        held = {str(k) for k in message.get("processing-tasks", ())}
        held |= {str(k) for k in message.get("lost-computed-tasks", ())}
        rerun = len(held & self.keys)
        if not rerun:
            return
        address = str(message.get("worker", "?"))
        name = self.names.get(address, address)
        self.lost.append((name, rerun))
        how = "retired" if message.get("expected") else "lost"
        self.warn(
            f"Dask worker {name} ({address}) {how}: {rerun} {self.label}(s) it was running or "
            "held are re-run on the other workers (tiles already written are kept)"
        )
