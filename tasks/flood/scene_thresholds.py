"""The plan's threshold step: one water threshold per SAR scene, before any tile runs.

A scene's threshold comes from its histogram over the whole AOI (a tile alone may hold no water
at all), so it is found once here, on the output grid coarsened to at most
:data:`ANALYSIS_PIXELS` a side, and handed to every tile as a number
(:class:`tasks.flood.threshold_member.ThresholdPlan`).
"""

from __future__ import annotations

import math

from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.sar import SarSummary
from terrawatch.tasks.core.sar_composite import SarOptions
from terrawatch.tasks.flood import threshold as rules
from terrawatch.tasks.flood.stack import read_db_stack, threshold_polarizations
from terrawatch.tasks.flood.threshold import scene_threshold
from terrawatch.tasks.flood.threshold_member import (
    EXCLUDE_LOW_BACKSCATTER,
    MIN_REFERENCE_SCENES,
    ThresholdPlan,
)

ANALYSIS_PIXELS = 2048
"""Largest side of the grid the scene histograms are read on (coarser for larger AOIs)."""


def analysis_grid(grid: GridSpec) -> GridSpec:
    """``grid``, coarsened by a whole factor until no side exceeds :data:`ANALYSIS_PIXELS`."""
    factor = math.ceil(max(grid.shape) / ANALYSIS_PIXELS)
    return GridSpec.from_geobox(grid.geobox.zoom_out(factor)) if factor > 1 else grid


def plan_thresholds(
    post: tuple[dict, ...],
    reference: tuple[dict, ...],
    grid: GridSpec,
    sar: SarOptions,
    summary: SarSummary,
    loader: str = "odc",
) -> tuple[ThresholdPlan, list[dict]]:
    """The threshold of every post-event and reference scene, and a record of each."""
    pols = threshold_polarizations(summary)
    analysis = analysis_grid(grid)
    found: dict[str, dict] = {}
    for items in (post, reference):
        if not items:
            continue
        stack = read_db_stack(tuple(items), analysis, None, sar, pols, loader)
        for i, key in enumerate(stack.keys):
            found[key] = {pol: scene_threshold(stack.db[pol][i], pol) for pol in pols}
    plan = ThresholdPlan(
        tuple(reference),
        pols,
        tuple((key, tuple((p, t.db) for p, t in per.items())) for key, per in found.items()),
    )
    records = [
        {"scene": key, **{p: t.to_attrs() for p, t in per.items()}} for key, per in found.items()
    ]
    return plan, records


def threshold_settings() -> dict:
    """The threshold member's fixed settings, for the cube's provenance."""
    return {
        "algorithm": "split-based Otsu with Ashman's D bimodality test per tile, "
        "global fallback; water = dark and (decrease or reference water)",
        "global_threshold_db": dict(rules.GLOBAL_THRESHOLD_DB),
        "decrease_db": rules.DECREASE_DB,
        "ashman_d_min": rules.ASHMAN_D_MIN,
        "tile_pixels": rules.TILE_PIXELS,
        "margin_scale_db": rules.MARGIN_SCALE_DB,
        "exclusion_low_backscatter_bit": EXCLUDE_LOW_BACKSCATTER,
        "min_reference_scenes": MIN_REFERENCE_SCENES,
    }
