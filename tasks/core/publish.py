"""Shared pieces of the publish steps: artifact keys, files beside a store, small quicklooks.

Used by :mod:`tasks.landcover.publish` (land cover), :mod:`tasks.change.publish` and
:mod:`tasks.flood.publish`. A quicklook is at most :data:`QUICKLOOK_MAX_SIZE` pixels a side:
images are read on a coarser grid (:func:`coarse_grid`) and masks are reduced by blocks
(:func:`block_any_of`), so a large cube costs a small picture.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from terrawatch.tasks.core.cube_store import record_index
from terrawatch.tasks.core.grid import GridSpec

QUICKLOOK_MAX_SIZE = 1024
"""Largest side of a quicklook, in pixels."""


def quicklook_step(shape: tuple[int, ...]) -> int:
    """Stride (pixels per quicklook pixel) that fits ``(height, width)`` into a quicklook."""
    return max(1, -(-max(shape) // QUICKLOOK_MAX_SIZE))


def coarse_grid(grid: GridSpec) -> tuple[GridSpec, int, tuple[slice, slice]]:
    """The quicklook grid of ``grid``, its stride and its whole window ``(rows, cols)``.

    Readers (odc-stac) use overviews where there are any when they load the coarse grid.
    """
    step = quicklook_step(grid.shape)
    coarse = GridSpec.from_geobox(grid.geobox.zoom_out(step)) if step > 1 else grid
    return coarse, step, (slice(0, coarse.shape[0]), slice(0, coarse.shape[1]))


def block_any_of(store: str, name: str, time_index: int, step: int) -> np.ndarray:
    """``name == 1`` of one time step reduced by ``step x step`` blocks, a band of rows at a time.

    A block is True when any of its pixels is, so small patches still show in a quicklook.
    """
    array = zarr.open_array(store, path=name, mode="r")
    rows = step * max(1, array.chunks[1] // step)
    parts = []
    for y0 in range(0, array.shape[1], rows):
        block = np.asarray(array[time_index, y0 : y0 + rows, :]) == 1
        block = np.logical_or.reduceat(block, np.arange(0, block.shape[0], step), axis=0)
        parts.append(np.logical_or.reduceat(block, np.arange(0, block.shape[1], step), axis=1))
    return np.concatenate(parts, axis=0)


def fit_image(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop or pad (with NaN) ``[3, h, w]`` to ``shape``: coarse grids may differ by a pixel."""
    out = np.full((rgb.shape[0], *shape), np.nan, np.float32)
    h, w = min(shape[0], rgb.shape[1]), min(shape[1], rgb.shape[2])
    out[:, :h, :w] = rgb[:, :h, :w]
    return out


def write_beside(store: str, suffix: str, payload: bytes) -> str | None:
    """Write ``<store>.<suffix>`` next to a local store; None (nothing written) for a URL."""
    if "://" in store:
        return None
    path = Path(str(store).rstrip("/") + f".{suffix}")
    path.write_bytes(payload)
    return str(path)


def artifact_key(store: str) -> str:
    """Prefect artifact key of a store: lowercase letters, digits and dashes only."""
    stem = Path(store.rstrip("/")).name.lower().removesuffix(".zarr")
    return "".join(ch if ch.isalnum() else "-" for ch in stem).strip("-") or "cube"


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown image of ``png`` inlined as a data URL (artifacts cannot link local files)."""
    encoded = base64.b64encode(png).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"


def step_record(cube: Any, time_index: int) -> dict:
    """The ``time_steps`` record (period, items) of a cube's time index; ``{}`` when missing."""
    records = cube.attrs.get("time_steps", [])
    found = record_index(records, cube["time"].values[time_index])
    return records[found] if found is not None else {}


def period_text(record: dict, fallback: str = "") -> str:
    """A step's period as people read it: ``2024-06-01..2024-06-30`` (one date when equal)."""
    start, end = str(record.get("time", fallback))[:10], str(record.get("end", ""))[:10]
    return f"{start}..{end}" if end and end != start else start
