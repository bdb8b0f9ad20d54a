"""Per-process tuning of a Dask worker before it runs a model: threads and the C allocator.

Three settings decide whether a CPU worker runs at full speed in bounded memory:

- One torch thread per Dask worker thread, so that workers do not oversubscribe the cores.
- glibc's mmap threshold. Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``
  (``distributed.nanny.pre-spawn-environ``) so that freed memory goes back to the OS. Setting
  any ``MALLOC_*`` threshold switches off glibc's dynamic mmap threshold, which pins it at
  128 KiB: every tensor above that is then a fresh ``mmap`` whose pages fault in on first
  touch. On this project's 2-core CI machine a small ViT segmenter ran 192 windows/s in a plain
  process, 85 windows/s under ``MALLOC_TRIM_THRESHOLD_=65536`` and 194 windows/s with the mmap
  threshold set to 32 MiB as well (one thread each, one run). So the threshold is raised
  here, at run time through ``mallopt``, which works on any cluster (local, Docker, Kubernetes)
  without touching its configuration; trimming of the heap top stays as Dask configured it.
- GDAL's block cache. Its default is 5% of RAM per process (1.2 GB on a 24 GB machine) and it
  fills with blocks a tile never reads again (each tile is read once), so a worker's RSS grew
  with the scene: 1419 MB after 24 tiles of an 8192² scene against 1100 MB with the cache at
  :data:`GDAL_CACHE_MB` (same run). A tile's blocks (a few tens of MB) fit well within it.

When a tile run ends, every worker hands its freed heap back to the OS
(:func:`release_free_heap`, called by :func:`tasks.core.tile_runner.run_tiles`). A tile frees its
few hundred MB of buffers in an order that leaves live blocks near the top of glibc's heaps, so
the automatic trim releases little: over six runs of a 4096² scene on one 2-worker cluster a
worker's RSS between tiles crept from 1.15 to 1.45 GB; trimmed after every tile it stayed at
1.08-1.09 GB. Trimming after every tile made the tiles about 10% slower, though (8192² warm
runs alternated on one cluster: 28.1 and 28.1 s trimmed, 25.1 and 26.1 s not: each tile
faults its pages in again), so the trim runs once per run, when the workers fall idle.

Once a model has loaded, the objects alive then (imports and model) are frozen out of the
cyclic garbage collector's full walks (:func:`freeze_loaded_objects`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import threading
from typing import Any

import rasterio.env
import torch

logger = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Allocations below this come from the reusable heap (glibc's own dynamic ceiling)."""

GDAL_CACHE_MB = 64
"""GDAL block cache per worker process, in MB."""

_M_MMAP_THRESHOLD = -3  # from glibc's <malloc.h>
_TUNED = threading.Event()

MODEL_TURN = threading.Lock()
"""One model call at a time per worker process: hold it around every forward pass.

A worker with several Dask threads runs that many tiles at once. With this lock one tile's
model runs (on all the worker's torch threads, or alone on its GPU) while the other tiles read
and write, so their I/O overlaps the compute instead of models oversubscribing the cores.
With one Dask thread per worker it is never contended.
"""


def dask_worker() -> Any | None:
    """The Dask worker running this code, or None outside a worker."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def tune_worker_process() -> None:
    """Match torch threads to the worker's threads, let tensors reuse heap memory, cap GDAL.

    Called before a worker reads or segments a tile; a no-op outside a Dask worker and after
    the first call in a process.
    """
    worker = dask_worker()
    if worker is None or _TUNED.is_set():
        return
    torch.set_num_threads(max(1, int(worker.state.nthreads)))
    rasterio.env.set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_MB)
    if raise_mmap_threshold(MMAP_THRESHOLD_BYTES):
        logger.info("glibc mmap threshold raised to %d bytes", MMAP_THRESHOLD_BYTES)
    _TUNED.set()


def freeze_loaded_objects() -> bool:
    """Collect garbage once, then keep every object alive now out of the cyclic GC's walks.

    A worker that has imported torch, open_clip and Prefect and loaded a model holds about
    680,000 objects, and every full collection walks all of them: 0.3 s on the 2-core machine,
    with the worker's event loop stalled meanwhile (the start of a warm 4096² run waited
    0.84 s for a task message, 0.31 s of it in one such collection). Those objects live as
    long as the process, so walking them frees nothing; after :func:`gc.freeze` a full
    collection walks only what was made since. Call it when a model has loaded; a no-op
    (False) outside a Dask worker, where the process is not ours to tune.
    """
    if dask_worker() is None:
        return False
    gc.collect()
    gc.freeze()
    return True


def release_free_heap() -> bool:
    """Return the free memory of every glibc heap to the OS (``malloc_trim(0)``).

    False (and nothing done) without glibc. Cheap next to a tile: it only walks free chunks.
    """
    malloc_trim = getattr(_libc(), "malloc_trim", None)
    if malloc_trim is None:  # musl, macOS
        return False
    malloc_trim.argtypes = (ctypes.c_size_t,)
    malloc_trim.restype = ctypes.c_int
    malloc_trim(0)
    return True


def raise_mmap_threshold(nbytes: int) -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD``; False (and nothing changed) without glibc."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:  # musl, macOS: no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(nbytes)))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, or None where it cannot be found or loaded (looked up once: it runs
    ``ldconfig``)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None
