"""Flood mapping on tiles: plan an event, then water before/after per chunk and the tile task.

Mirrors :mod:`tasks.landcover.plan` and :mod:`tasks.landcover.tile` for a pair of windows around an
event date (:mod:`tasks.flood.search`: the pre-event window ``[event - pre_days, event)``, the
post-event window ``[event, event + post_days]`` and their searches; its names stay importable from
here). Each side is a Sentinel-1 composite (optionally overridden by cloud-free optical
pixels); water is any class of a configurable water set, and ``flooded = water_post &
~water_pre`` (:mod:`tasks.flood.cube`). The maths of one tile goes to the shared tile runner
(:func:`tasks.core.tile_runner.run_tile`). Tasks get references only; segmenters are loaded once
per worker process (:func:`tasks.core.worker_model.worker_model`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.core.load import read_composite
from terrawatch.tasks.core.sar_composite import SarOptions, read_sar_composite
from terrawatch.tasks.core.tile_runner import (
    TileJob,
    TileProduct,
    TileResult,
    TileWindow,
    run_tile,
    run_tiles,
)
from terrawatch.tasks.core.worker_model import ModelSpec, segment_array, worker_model
from terrawatch.tasks.flood.cube import (
    FLOOD_CUBE,
    SOURCE_NONE,
    SOURCE_OPTICAL,
    SOURCE_SAR,
    water_mask,
)
from terrawatch.tasks.flood.plan import FloodSpec, Scenes


@dataclass(frozen=True)
class FloodTileJob(TileJob):
    """One output chunk of one event: references only."""

    pre: Scenes
    """Scenes before the event."""
    post: Scenes
    """Scenes after the event."""
    sar: SarOptions
    """SAR composite options (polarisations resolved)."""


@dataclass(frozen=True)
class Layer:
    """One composite to segment for one side of the event: its pixels decide where ``valid``."""

    model: ModelSpec
    """The segmenter of the layer's sensor."""
    rgb: np.ndarray
    """RGB ``[3, h, w]`` in 0..1 over the tile's window."""
    valid: np.ndarray
    """Pixels this layer decides (valid, and not decided by an earlier layer)."""
    sensor: int
    """``SOURCE_OPTICAL`` or ``SOURCE_SAR``."""


@dataclass(frozen=True)
class Sides:
    """The layers before and after the event over one tile's window."""

    shape: tuple[int, int]
    """(height, width) of the window."""
    pre: tuple[Layer, ...]
    """Layers before the event, optical first."""
    post: tuple[Layer, ...]
    """Layers after the event."""


def read_sides(job: FloodTileJob, spec: FloodSpec, window: TileWindow) -> tuple[Sides, np.ndarray]:
    """The layers of both sides and where any decides a pixel (the tile's valid mask)."""
    pre = observe(job, job.pre, window, spec, latest_first=True)
    post = observe(job, job.post, window, spec, latest_first=False)
    valid = np.zeros(window.outer_shape, bool)
    for layer in (*pre, *post):
        valid |= layer.valid
    return Sides(window.outer_shape, pre, post), valid


def observe(
    job: FloodTileJob, scenes: Scenes, window: TileWindow, spec: FloodSpec, latest_first: bool
) -> tuple[Layer, ...]:
    """The layers of one side: cloud-free optical pixels win, SAR fills the rest.

    A layer without a pixel in the chunk core is dropped (its model never runs), and SAR is not
    read when optical pixels cover the whole core.
    """
    layers: list[Layer] = []
    decided = np.zeros(window.outer_shape, bool)
    if scenes.optical and spec.optical is not None:
        rgb, valid = read_composite(scenes.optical, job.grid, window.outer, job.loader)
        if valid[window.inner].any():
            layers.append(Layer(spec.optical, rgb, valid, SOURCE_OPTICAL))
            decided |= valid
    if not decided[window.inner].all():
        rgb, valid = read_sar_composite(scenes.sar, job.grid, window.outer, job.sar, job.loader,
                                        latest_first=latest_first)  # fmt: skip
        valid &= ~decided
        if valid[window.inner].any():
            layers.append(Layer(spec.sar, rgb, valid, SOURCE_SAR))
    return tuple(layers)


def segment_sides(spec: FloodSpec, sides: Sides) -> dict[str, np.ndarray]:
    """Water and source sensor before and after the event over the tile's window."""
    arrays = {}
    for side, layers in (("pre", sides.pre), ("post", sides.post)):
        labels = np.full(sides.shape, NODATA, np.uint8)
        source = np.full(sides.shape, SOURCE_NONE, np.uint8)
        for layer in layers:
            found, _ = segment_array(worker_model(layer.model), layer.rgb, layer.valid)
            labels[layer.valid] = found[layer.valid]
            source[layer.valid] = layer.sensor
        arrays[f"water_{side}"] = water_mask(labels, spec.water, source)
        arrays[f"source_{side}"] = source
    return arrays


FLOOD_TILE = TileProduct(FLOOD_CUBE, read_sides, segment_sides)
"""Flood for the tile runner: optical and SAR layers of both sides in, water and sources out."""


def flood_tile(job: FloodTileJob, spec: FloodSpec) -> TileResult:
    """Read and segment both sides of one chunk (with the halo), crop and write."""
    return run_tile(FLOOD_TILE, job, spec)


def flood_tiles(
    jobs: list[FloodTileJob], spec: FloodSpec, gpu: bool = False
) -> dict[str, dict[str, float]]:
    """Run every tile as a plain Dask task on the flow's cluster; log progress as they finish.

    Must run on a Dask worker (submit it through the flow's DaskTaskRunner); one Prefect task
    for all tiles, as :func:`tasks.landcover.tile.segment_tiles` and for the same reason.

    Returns:
        ``statuses``: tile counts per status; ``stage_seconds``: wall seconds per stage
        (``read``, ``wait`` for the worker's model, ``model``, ``write``) summed over the
        written tiles.
    """
    return run_tiles(flood_tile, jobs, spec, gpu, label="flood tile", description="flood tiles")


flood_tiles_task = task(flood_tiles, name="flood-tiles", cache_policy=NO_CACHE)
