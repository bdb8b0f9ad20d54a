"""``--dry-run``: what a flow command would do, before it does it.

The command's own preflight runs (the catalog search and the weight files' checks, neither of
which loads a model), then the grid is derived as the plan task derives it and the store's
``tile_done`` record is read. Nothing is loaded, started or written: no model, no Prefect API,
no Dask cluster, no store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from terrawatch.tasks.core.catalog import SearchResult
    from terrawatch.tasks.core.grid import GridSpec

SECONDS_PER_WINDOW_CPU = 0.75
"""Seconds per 224 px model window of SegEarth-OV ViT-B/16 + SimFeatUp on a 2-thread CPU worker.

Measured on 2026-12-06 with the model of ``bench/segment.py`` (random weights of the real
architecture): ``predict_logits`` of one 448² image (9 windows, batched) after a one-window
warm-up, ``torch.set_num_threads(2)``, took 13.0 s of process CPU time (1.45 CPU-s per window;
40.9 s wall on the shared 2-core machine at load 8), so about 0.75 s per window on an idle
2-thread worker. Flows segment each tile at native resolution in 224 px windows with stride 112
(:class:`~terrawatch.models.settings.SegEarthSettings`): a 1024 px tile with its 112 px halo
is 121 windows, about 90 s. A rough guide: reading, the machine's load and a GPU (tens of times
faster) all change it."""

WINDOW, STRIDE = 224, 112
"""SegEarthSettings.window and .stride (the flows' tiles are windowed at native resolution)."""


def windows_per_tile(side: int) -> int:
    """Model windows over a square tile read of ``side`` px (as models.sliding places them)."""
    per_axis = max(side - WINDOW + STRIDE - 1, 0) // STRIDE + 1
    return per_axis * per_axis


def grid_of(items: Sequence[dict], aoi: Any, resolution: float | None, crs: str | None):
    """The output grid the plan task derives from the AOI and the first (best) scene."""
    from terrawatch.tasks.core.catalog import parse_aoi
    from terrawatch.tasks.core.item_groups import best_first
    from terrawatch.tasks.core.output_grid import default_resolution, grid_for_aoi

    first = best_first(list(items))[0]
    _, bbox = parse_aoi(aoi)
    return grid_for_aoi(bbox, resolution or default_resolution(first.get("collection", ""), first),
                        crs)  # fmt: skip


def report(
    command: str,
    scenes: Sequence[tuple[str, SearchResult]],
    grid: GridSpec,
    chunk: int,
    halo: int,
    store: str,
    start: str,
    weights: Sequence[Path],
) -> int:
    """Print the dry run's report; 0."""
    from terrawatch.flows.cli_common import tiles_done

    print(f"terrawatch {command} --dry-run: nothing was loaded, started or written")
    for label, found in scenes:
        print(f"scenes{label}: {len(found.items)} from {found.catalog}")
        for item in found.items:
            props = item.get("properties", {})
            cloud = props.get("eo:cloud_cover")
            cloud_text = "n/a" if cloud is None else f"{cloud:.0f} %"
            print(f"  {item['id']}  {str(props.get('datetime', ''))[:10]}  cloud {cloud_text}")
    height, width = grid.shape
    km2 = height * width * grid.resolution**2 / 1e6
    print(f"grid: {grid.crs}, {grid.resolution:g} m, {width} x {height} px, {km2:.3g} km²")
    total = math.ceil(height / chunk) * math.ceil(width / chunk)
    done, recorded = tiles_done(store, start)
    done = done if recorded == total else 0
    todo = total - done
    print(f"tiles: {todo} to write, {done} already done in {store} (chunk {chunk} px)")
    for path in weights:
        size = path.stat().st_size / 1e6 if path.is_file() else None
        print(f"weights: {path}" + (f" ({size:.1f} MB)" if size is not None else ""))
    side = min(chunk, max(height, width)) + 2 * halo
    per_tile = windows_per_tile(side) * SECONDS_PER_WINDOW_CPU
    print(
        f"estimate: {todo} tiles x about {per_tile:.0f} s per tile ({windows_per_tile(side)} "
        f"model windows) on one 2-thread CPU worker = {_duration(todo * per_tile)}; several "
        "workers share the tiles, a GPU is tens of times faster"
    )
    return 0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def segmenter_weights(model: Any) -> list[Path]:
    """The checkpoint files of a ModelOptions group (already checked by the preflight)."""
    if getattr(model, "factory", None):  # a plug-in segmenter finds its own files
        return []
    from terrawatch.models.segearth import SIMFEATUP_WEIGHTS
    from terrawatch.models.weights import resolve_weights

    paths = [resolve_weights(model.backbone, model.weights)]
    if model.upsampler == "simfeatup":
        paths.append(resolve_weights(SIMFEATUP_WEIGHTS, model.upsampler_weights))
    return paths


def change_weights(model: Any, detection: Any) -> list[Path]:
    """The segmenter's files and the SAM / DINOv2 folders a change run loads."""
    from terrawatch.models.features import DINOV2_WEIGHTS
    from terrawatch.models.hf_weights import resolve_hf_model
    from terrawatch.models.sam import SAM_WEIGHTS

    paths = segmenter_weights(model)
    if detection.proposer == "sam":
        paths.append(resolve_hf_model(SAM_WEIGHTS, detection.proposer_weights))
    if detection.comparator == "dinov2":
        paths.append(resolve_hf_model(DINOV2_WEIGHTS, detection.comparator_weights))
    return paths


def flood_weights(model: Any, optical: bool) -> list[Path]:
    """The SAR (or optical) encoder's, the upsampler's and the optical CLIP's files."""
    if model.factory:
        return []
    from terrawatch.models.alignearth import sensor_profile
    from terrawatch.models.segearth import SIMFEATUP_WEIGHTS
    from terrawatch.models.weights import resolve_weights

    paths = [resolve_weights(sensor_profile(model.sensor, model.backbone).weights, model.weights)]
    if model.upsampler == "simfeatup":
        paths.append(resolve_weights(SIMFEATUP_WEIGHTS, model.upsampler_weights))
    if optical:
        paths.append(resolve_weights(model.backbone, model.optical_weights))
    return paths
