"""Load a tile model on a worker ahead of its first tile (submitted by ``flows.runner``).

Light on imports itself: what the model needs comes in with the spec's class, which Dask
imports when it unpickles the task's arguments, as it does for the first tile on a fresh worker.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

logger = logging.getLogger(__name__)


def warm_worker(loader: str, spec: Any) -> float | None:
    """Call ``loader(spec)`` (``"package.module:function"``), e.g.
    ``tasks.core.worker_model:worker_model``.

    Returns the seconds it took, or None when it failed: the warm-up only saves time, and the
    first tile that needs the model raises the same error where the flow reports it.
    """
    started = time.perf_counter()
    module, _, name = loader.partition(":")
    try:  # the loaders tune the worker process (threads, heap, GDAL) before they load
        getattr(importlib.import_module(module), name)(spec)
    except Exception:  # reported by the first tile, see above
        logger.warning("warming %s failed; the first tile will say why", loader, exc_info=True)
        return None
    return time.perf_counter() - started
