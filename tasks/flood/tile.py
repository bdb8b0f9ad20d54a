"""Flood mapping on tiles: every member's view of a tile, their consensus, and the tile task.

Mirrors :mod:`tasks.landcover.tile` for a pair of windows around an event date
(:mod:`tasks.flood.search`). The members (:mod:`tasks.flood.consensus`): ``threshold``, the
weights-free SAR change detection (:mod:`tasks.flood.threshold_member`, on each scene in dB with
the thresholds the plan found per scene), and the segmenters: ``alignearth`` on the SAR
composites and ``optical`` on cloud-free optical pixels (water = a class of the water set).
Their consensus gives ``observed_water`` and ``likelihood``; ``flooded = observed_water &
~reference_water & ~exclusion`` (:mod:`tasks.flood.cube`). The maths of one tile goes to the
shared tile runner (:func:`tasks.core.tile_runner.run_tile`). Tasks get references only;
segmenters are loaded once per worker process (:func:`tasks.core.worker_model.worker_model`).
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
from terrawatch.tasks.flood.consensus import MEMBER_BITS, Vote, consensus
from terrawatch.tasks.flood.cube import (
    FLOOD_CUBE,
    NO_TIME,
    SOURCE_NONE,
    SOURCE_OPTICAL,
    SOURCE_SAR,
)
from terrawatch.tasks.flood.landcover import landcover_exclusion
from terrawatch.tasks.flood.optical_member import SpectralView, spectral_view
from terrawatch.tasks.flood.plan import FloodSpec, Scenes
from terrawatch.tasks.flood.reference_product import ReferenceLayer, product_water
from terrawatch.tasks.flood.stack import DbStack, read_db_stack
from terrawatch.tasks.flood.terrain import TerrainPlan, terrain_exclusion
from terrawatch.tasks.flood.threshold_member import ThresholdPlan, Thresholds, threshold_view


@dataclass(frozen=True)
class FloodTileJob(TileJob):
    """One output chunk of one event: references only."""

    pre: Scenes
    """Scenes before the event."""
    post: Scenes
    """Scenes after the event."""
    sar: SarOptions
    """SAR composite options (polarisations resolved)."""
    threshold: ThresholdPlan | None = None
    """The threshold member's reference scenes and scene thresholds; None: member off."""
    landcover: str | None = None
    """A land-cover cube whose urban and forest classes are excluded (``--landcover-cube``)."""
    terrain: TerrainPlan | None = None
    """The DEM and viewing geometry of the shadow and layover bits; None: no DEM."""
    reference_products: tuple[ReferenceLayer, ...] = ()
    """Reference water products of the catalog, OR-ed into ``reference_water``."""


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
    """The inputs of every member over one tile's window."""

    shape: tuple[int, int]
    """(height, width) of the window."""
    pre: tuple[Layer, ...]
    """Segmenter layers before the event, optical first."""
    post: tuple[Layer, ...]
    """Segmenter layers after the event."""
    post_db: DbStack | None = None
    """The threshold member's post-event scenes in dB (None: member off)."""
    reference_db: DbStack | None = None
    """The threshold member's reference scenes in dB (None: off, or no reference scene)."""
    thresholds: Thresholds | None = None
    """The threshold member's scene thresholds."""
    first_post: np.datetime64 | None = None
    """Time of the first post-event scene (``observed_at`` of the segmenters alone)."""
    landcover_bits: np.ndarray | None = None
    """Exclusion bits from the land-cover cube (urban, forest) over the window."""
    pre_spectral: SpectralView | None = None
    """The optical member's NDWI/MNDWI rule on the latest clear pre-event pixels (None: off)."""
    post_spectral: SpectralView | None = None
    """The same on the earliest clear post-event pixels."""
    terrain_bits: np.ndarray | None = None
    """Layover and radar-shadow exclusion bits over the window (None: no DEM)."""
    product_water: np.ndarray | None = None
    """Where a reference water product says water (None: no product)."""


def read_sides(job: FloodTileJob, spec: FloodSpec, window: TileWindow) -> tuple[Sides, np.ndarray]:
    """The inputs of every member over the window, and where any sees a pixel (valid mask)."""
    pre = post = ()
    if spec.sar is not None or spec.optical is not None:
        pre = observe(job, job.pre, window, spec, latest_first=True)
        post = observe(job, job.post, window, spec, latest_first=False)
    valid = np.zeros(window.outer_shape, bool)
    for layer in (*pre, *post):
        valid |= layer.valid
    post_db = reference_db = thresholds = None
    if job.threshold is not None:
        plan = job.threshold
        post_db = read_db_stack(job.post.sar, job.grid, window.outer, job.sar, plan.pols,
                                job.loader)  # fmt: skip
        valid |= np.isfinite(post_db.co).any(axis=0)
        if plan.reference:
            reference_db = read_db_stack(plan.reference, job.grid, window.outer, job.sar,
                                         plan.pols, job.loader)  # fmt: skip
            valid |= np.isfinite(reference_db.co).any(axis=0)
        thresholds = plan.scene_thresholds()
    times = [item_time(i) for i in job.post.sar]
    first = min(times) if times else None
    bits = None
    if job.landcover is not None:
        bits = landcover_exclusion(job.landcover, job.grid, window.outer)
    spectral = [
        spectral_view(s.spectral, job.grid, window.outer, job.loader, latest_first=latest)
        if s.spectral else None
        for s, latest in ((job.pre, True), (job.post, False))
    ]  # fmt: skip
    for view in spectral:
        if view is not None:
            valid |= view.observed
    terrain = None
    if job.terrain is not None:
        terrain = terrain_exclusion(job.terrain, job.grid, window.outer)
    products = None
    if job.reference_products:
        products = product_water(job.reference_products, job.grid, window.outer)
    sides = Sides(window.outer_shape, pre, post, post_db, reference_db, thresholds, first, bits,
                  *spectral, terrain, products)  # fmt: skip
    return sides, valid


def item_time(item: dict) -> np.datetime64:
    """An item's acquisition time (``datetime``, else ``start_datetime``) as datetime64[s]."""
    props = item.get("properties", {})
    text = str(props.get("datetime") or props.get("start_datetime")).replace("Z", "")
    return np.datetime64(text.split("+")[0], "s")


def observe(
    job: FloodTileJob, scenes: Scenes, window: TileWindow, spec: FloodSpec, latest_first: bool
) -> tuple[Layer, ...]:
    """The segmenter layers of one side: cloud-free optical pixels first, SAR fills the rest.

    A layer without a pixel in the chunk core is dropped (its model never runs), and SAR is not
    read when optical pixels cover the whole core or no SAR segmenter runs.
    """
    layers: list[Layer] = []
    decided = np.zeros(window.outer_shape, bool)
    if scenes.optical and spec.optical is not None:
        rgb, valid = read_composite(scenes.optical, job.grid, window.outer, job.loader)
        if valid[window.inner].any():
            layers.append(Layer(spec.optical, rgb, valid, SOURCE_OPTICAL))
            decided |= valid
    if spec.sar is not None and not decided[window.inner].all():
        rgb, valid = read_sar_composite(scenes.sar, job.grid, window.outer, job.sar, job.loader,
                                        latest_first=latest_first)  # fmt: skip
        valid &= ~decided
        if valid[window.inner].any():
            layers.append(Layer(spec.sar, rgb, valid, SOURCE_SAR))
    return tuple(layers)


def _segmenter_votes(spec: FloodSpec, layers: tuple[Layer, ...]) -> list[Vote]:
    """One vote per segmenter layer: its water probability from the winning class's confidence."""
    votes = []
    for layer in layers:
        labels, confidence = segment_array(worker_model(layer.model), layer.rgb, layer.valid)
        water = np.isin(labels, np.asarray(spec.water, dtype=labels.dtype))
        probability = np.where(water, confidence, 1.0 - confidence).astype(np.float32)
        observed = layer.valid & (labels != NODATA)
        member = "optical" if layer.sensor == SOURCE_OPTICAL else "alignearth"
        votes.append(Vote(member, observed, probability))
    return votes


def earliest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel the earlier of two ``observed_at`` layers (:data:`NO_TIME` where neither)."""
    big = np.iinfo(np.int64).max
    both = np.minimum(np.where(a == NO_TIME, big, a), np.where(b == NO_TIME, big, b))
    return np.where(both == big, NO_TIME, both).astype(np.int64)


def _sensor(members: np.ndarray) -> np.ndarray:
    """``source_*`` from member bits: optical where the optical member saw it, else SAR."""
    sensor = np.where(members != 0, SOURCE_SAR, SOURCE_NONE).astype(np.uint8)
    sensor[(members & MEMBER_BITS["optical"]) != 0] = SOURCE_OPTICAL
    return sensor


def segment_sides(spec: FloodSpec, sides: Sides) -> dict[str, np.ndarray]:
    """Every member's votes, their consensus before and after, and the ensemble's layers."""
    pre_votes = _segmenter_votes(spec, sides.pre)
    post_votes = _segmenter_votes(spec, sides.post)
    for votes, spectral in ((pre_votes, sides.pre_spectral), (post_votes, sides.post_spectral)):
        if spectral is not None:
            votes.append(Vote("optical", spectral.observed, spectral.probability))
    view = None
    if sides.post_db is not None:
        view = threshold_view(sides.post_db, sides.reference_db, sides.thresholds or {})
        post_votes.append(Vote("threshold", view.observed, view.probability))
        pre_votes.append(Vote("threshold", view.pre_observed, view.pre_probability))
    after, before = consensus(post_votes, sides.shape), consensus(pre_votes, sides.shape)
    water_pre = before.water
    if view is not None:
        reference, exclusion, observed_at = view.reference_water, view.exclusion, view.observed_at
        at = np.where(after.source != 0, observed_at, NO_TIME)
        if sides.first_post is not None:  # segmenters saw it where the threshold member did not
            fill = (after.source != 0) & (at == NO_TIME)
            at[fill] = sides.first_post.astype(np.int64)
        observed_at = at
    else:
        reference, exclusion = water_pre, np.zeros(sides.shape, np.uint8)
        first = sides.first_post.astype(np.int64) if sides.first_post is not None else NO_TIME
        observed_at = np.where(after.source != 0, first, NO_TIME).astype(np.int64)
    if sides.post_spectral is not None:  # the earliest scene of any member that saw it
        seen = sides.post_spectral.observed
        optical_at = np.where(seen, sides.post_spectral.observed_at, NO_TIME)
        optical_only = seen & (after.source == MEMBER_BITS["optical"])
        observed_at = np.where(optical_only, optical_at, earliest(observed_at, optical_at))
    if sides.landcover_bits is not None:
        exclusion = exclusion | sides.landcover_bits
    if sides.terrain_bits is not None:
        exclusion = exclusion | sides.terrain_bits
    if sides.product_water is not None:
        reference = np.where(sides.product_water, 1, reference).astype(np.uint8)
    return {
        "water_pre": water_pre,
        "water_post": after.water,
        "source_pre": _sensor(before.source),
        "source_post": _sensor(after.source),
        "observed_water": after.water,
        "reference_water": reference,
        "exclusion": exclusion,
        "likelihood": after.likelihood,
        "source": after.source,
        "observed_at": observed_at.astype(np.int64),
    }


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
