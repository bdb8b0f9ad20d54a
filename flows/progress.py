"""Progress of a flow command on the terminal: one bar per stage, counted from the store itself.

A thread polls the store's ``tile_done`` record of the step being written (nothing else knows
better which tiles are really written): a status bar while the run searches and plans, a tile bar
with rate and ETA once the step exists, and a status bar while it publishes. The tile bar reaches
100% only when every tile of the step is marked done; tiles done by an earlier run are its
starting count and do not inflate the rate. Written to a log file rather than a terminal, only
the tile bar is drawn, at most every :data:`LOG_SECONDS`.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from terrawatch.flows import interrupt

POLL_SECONDS = 0.5
LOG_SECONDS = 30.0
"""Least time between two lines of the tile bar when stderr is not a terminal (a log file)."""
STATUS_FORMAT = "{desc} [{elapsed}]"


class StepProgress:
    """Draws the stages of one flow run while it runs (``with StepProgress(...):``)."""

    def __init__(self, store: str, start: str, desc: str, enabled: bool = True) -> None:
        self.store, self.start, self.desc = store, start, desc
        self.enabled = enabled
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._bar: Any = None
        self._stage = ""
        self._tty = sys.stderr.isatty()
        self._thread = threading.Thread(target=self._run, daemon=True, name="progress")

    def __enter__(self) -> StepProgress:
        if self.enabled:
            interrupt.before_message(self.close)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop polling and leave the tile bar (if any) as last drawn."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * POLL_SECONDS + 1)
        with self._lock:
            self._close_bar()

    def _run(self) -> None:
        from terrawatch.flows.cli_common import tiles_done

        self._show_status("search and plan")
        while not self._stop.wait(POLL_SECONDS):
            done, total = tiles_done(self.store, self.start)
            with self._lock:
                if self._stop.is_set():
                    return
                if total and self._stage != "tiles" and self._stage != "publish":
                    self._show_tiles(done, total)
                if self._stage == "tiles":
                    if done != self._bar.n:
                        self._bar.update(done - self._bar.n)
                    if done == total:
                        self._close_bar()
                        self._show_status("publish")
                elif self._bar is not None:  # the elapsed time of a status
                    self._bar.refresh()

    def _show_status(self, stage: str) -> None:
        from tqdm import tqdm

        self._close_bar()
        self._stage = stage
        if self._tty:  # a status line that vanishes helps a person, not a log
            self._bar = tqdm(desc=f"{self.desc}: {stage}", bar_format=STATUS_FORMAT, leave=False)

    def _show_tiles(self, done: int, total: int) -> None:
        from tqdm import tqdm

        self._close_bar()
        self._stage = "tiles"
        self._bar = tqdm(
            total=total,
            initial=done,
            unit="tile",
            desc=f"{self.desc}: tiles",
            leave=True,
            mininterval=0.1 if self._tty else LOG_SECONDS,
        )

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
