"""Dask worker preload of the local clusters: a terminal's Ctrl-C is for the command alone.

Ctrl-C at a terminal sends SIGINT to the whole process group, the local Dask workers included.
Each worker would die with its own ``KeyboardInterrupt`` traceback while the command is
stopping them anyway (:mod:`terrawatch.flows.interrupt`); here they ignore it.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    """Ignore SIGINT in this worker process (Dask calls it when the worker starts)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
