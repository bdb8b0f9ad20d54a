"""Plan a flood event: windows, scenes per side and sensor, the grid and the flood cube."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.errors import InputError
from terrawatch.models.classes import ClassNames, parse_class_names
from terrawatch.tasks.core.catalog import (
    SearchResult,
    parse_aoi,
)
from terrawatch.tasks.core.cube_types import CubePlan, TimeStep
from terrawatch.tasks.core.defaults import check_chunk
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.item_groups import best_first
from terrawatch.tasks.core.load import RGB_BANDS, check_readable
from terrawatch.tasks.core.output_grid import default_resolution, grid_for_aoi
from terrawatch.tasks.core.sar import (
    SarSummary,
    check_sar_items,
    check_sar_readable,
)
from terrawatch.tasks.core.sar_composite import SarOptions
from terrawatch.tasks.core.worker_model import ModelSpec, worker_model
from terrawatch.tasks.flood import DEFAULT_CLASSES
from terrawatch.tasks.flood.consensus import MEMBERS
from terrawatch.tasks.flood.cube import (
    FloodStep,
    prepare_flood_cube,
)
from terrawatch.tasks.flood.optical_member import (
    SPECTRAL_BANDS,
    spectral_items,
    spectral_settings,
)
from terrawatch.tasks.flood.reference_product import ReferenceLayer
from terrawatch.tasks.flood.scene_thresholds import plan_thresholds, threshold_settings
from terrawatch.tasks.flood.search import (
    FloodWindows,
)
from terrawatch.tasks.flood.terrain import TerrainPlan, plan_terrain
from terrawatch.tasks.flood.threshold_member import ThresholdPlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FloodSpec:
    """The segmenters of a flood run and the water classes; hashable."""

    sar: ModelSpec | None
    """Segmenter of the SAR composites (``sensor="sar"``: AlignEarth); None: member off."""
    water: tuple[int, ...]
    """Indices of the water classes in the classes."""
    optical: ModelSpec | None = None
    """Segmenter of optical scenes (same classes), when optical scenes are used."""
    threshold: bool = False
    """Whether the weights-free threshold member runs."""
    method: str = "alignearth"
    """The ``--method`` asked for (``members`` is what it resolved to)."""
    classes: ClassNames | None = None
    """The run's classes (the segmenters' own when None)."""
    spectral: bool = False
    """Whether the optical member's weights-free NDWI/MNDWI rule runs (post-event S2 found)."""

    @property
    def members(self) -> tuple[str, ...]:
        """The members that run, in ``source`` bit order."""
        optical = self.optical is not None or self.spectral
        on = (self.threshold, self.sar is not None, optical)
        return tuple(name for name, flag in zip(MEMBERS, on, strict=True) if flag)


@dataclass(frozen=True)
class Scenes:
    """The scenes of one side, in reading priority."""

    sar: tuple[dict, ...]
    """SAR items, by time."""
    optical: tuple[dict, ...] = ()
    """Cloud-free optical items for the optical segmenter, least cloudy first; empty: none."""
    spectral: tuple[dict, ...] = ()
    """Optical items with green, NIR, SWIR1 and SCL for the NDWI/MNDWI rule; empty: rule off."""


@dataclass(frozen=True)
class FloodPlan:
    """What the tile tasks need: references only."""

    cube: CubePlan
    """Store, event index and tiles still to write."""
    grid: GridSpec
    """Output grid."""
    pre: Scenes
    """Scenes before the event."""
    post: Scenes
    """Scenes after the event."""
    sar: SarOptions
    """SAR options with the polarisations resolved."""
    summary: SarSummary
    """Orbit direction, polarisations and geometry common to all SAR scenes."""
    threshold: ThresholdPlan | None = None
    """The threshold member's reference scenes and scene thresholds (None: member off)."""
    members: tuple[str, ...] = ()
    """The members that run."""
    terrain: TerrainPlan | None = None
    """The DEM and viewing geometry of the shadow and layover bits (None: no DEM found)."""
    reference_products: tuple[ReferenceLayer, ...] = ()
    """Reference water products found in the catalog."""


def plan_flood(
    pre: SearchResult,
    post: SearchResult,
    windows: FloodWindows,
    spec: FloodSpec,
    sar: SarOptions,
    store: str,
    aoi: Any,
    pre_optical: SearchResult | None = None,
    post_optical: SearchResult | None = None,
    resolution: float | None = None,
    crs: str | None = None,
    *,
    chunk: int,
    run_id: str | None = None,
    replace: bool = False,
    reference: SearchResult | None = None,
    loader: str = "odc",
    dem: tuple[dict, ...] = (),
    reference_products: tuple[ReferenceLayer, ...] = (),
) -> FloodPlan:
    """Check both sides, derive the grid, open every asset, warm the models, prepare the cube.

    Raises:
        InputError: the two sides mix orbit directions, polarisations or geometries (they must
            be comparable), a bad chunk or grid, or an item lacks a band.
        FileNotFoundError, ValueError: an asset cannot be read.
    """
    check_chunk(chunk)
    summary = check_comparable(pre, post, sar.polarizations)
    sar = sar.resolved(summary)
    _, bbox = parse_aoi(aoi)
    first = post.items[0]
    grid = grid_for_aoi(
        bbox, resolution or default_resolution(first.get("collection", ""), first), crs
    )
    reference_items = (reference or pre).items if spec.threshold else ()
    check_sar_readable([*pre.items, *post.items, *reference_items], sar.polarizations)
    found = [best_first(r.items) if r else () for r in (pre_optical, post_optical)]
    optical = found if spec.optical is not None else [(), ()]
    if any(optical):
        check_readable([*optical[0], *optical[1]], RGB_BANDS)
    spectral = [spectral_items(f) if spec.spectral else () for f in found]
    if any(spectral):
        check_readable([*spectral[0], *spectral[1]], SPECTRAL_BANDS)
    models, classes = _warm_models(spec, any(optical))
    sides = (
        Scenes(pre.items, optical[0], spectral[0]),
        Scenes(post.items, optical[1], spectral[1]),
    )
    searches = (pre, post, pre_optical, post_optical)
    provenance = _provenance(windows, sides, classes, spec, sar, summary, models, searches)
    provenance["run_id"] = run_id or uuid.uuid4().hex
    if spec.spectral:
        provenance["optical_member"] = {
            "spectral": spectral_settings(*spectral),
            "segmenter": "segearth-ov water classes" if spec.optical is not None else None,
        }
    threshold = None
    if spec.threshold:
        threshold, records = plan_thresholds(post.items, reference_items, grid, sar, summary,
                                             loader)  # fmt: skip
        provenance["items_reference_sar"] = [i["id"] for i in reference_items]
        provenance["scene_thresholds"] = records
        provenance["threshold_member"] = threshold_settings()
    terrain = plan_terrain(post.items, dem)
    provenance["terrain"] = terrain.to_attrs() if terrain is not None else None
    provenance["reference_products"] = [layer.to_attrs() for layer in reference_products]
    step = FloodStep(
        windows.event,
        windows.post[1],
        _ids(sides[1]),
        TimeStep(windows.pre[0], windows.pre[1], _ids(sides[0])),
    )
    cube = prepare_flood_cube(store, grid, classes, step, provenance, chunk, replace=replace)
    logger.info(
        "flood grid %s %dx%d px at %g; %d of %d tiles to do",
        grid.crs,
        *grid.shape,
        grid.resolution,
        len(cube.todo),
        cube.n_tiles[0] * cube.n_tiles[1],
    )
    return FloodPlan(cube, grid, sides[0], sides[1], sar, summary, threshold, spec.members,
                     terrain, reference_products)  # fmt: skip


def check_comparable(
    pre: SearchResult, post: SearchResult, polarizations: tuple[str, ...] | None
) -> SarSummary:
    """The SAR scenes of both sides share one orbit direction, polarisation set and geometry.

    Raises:
        InputError: they do not, so water changes would be geometry changes.
    """
    try:
        return check_sar_items([*pre.items, *post.items], polarizations)
    except InputError as err:
        raise InputError(
            f"the pre- and post-event SAR scenes are not comparable, so water changes would be "
            f"geometry changes: {err}"
        ) from err


def _warm_models(spec: FloodSpec, optical: bool) -> tuple[dict[str, Any], ClassNames]:
    """Load the segmenters here (weights resolved, prompts encoded and cached) and the classes."""
    models = {"model": worker_model(spec.sar)} if spec.sar is not None else {}
    if spec.optical is not None and optical:
        models["model_optical"] = worker_model(spec.optical)
    model = spec.sar or spec.optical
    if model is not None:
        return models, model.classes
    return models, spec.classes or parse_class_names(DEFAULT_CLASSES)


def _ids(scenes: Scenes) -> tuple[str, ...]:
    ids = [i["id"] for i in (*scenes.sar, *scenes.optical, *scenes.spectral)]
    return tuple(dict.fromkeys(ids))


def _provenance(
    windows: FloodWindows,
    sides: tuple[Scenes, Scenes],
    classes: ClassNames,
    spec: FloodSpec,
    sar: SarOptions,
    summary: SarSummary,
    models: dict[str, Any],
    searches: tuple[SearchResult | None, ...],
) -> dict[str, Any]:
    """Event, windows, items per side and sensor, water classes, models (JSON-safe)."""
    model_info = {
        key: {k: v for k, v in model.provenance().items() if k != "classes"}
        for key, model in models.items()
    }
    info = {
        "event_date": windows.event,
        "pre_window": list(windows.pre),
        "post_window": list(windows.post),
        "items_pre_sar": [i["id"] for i in sides[0].sar],
        "items_post_sar": [i["id"] for i in sides[1].sar],
        "items_pre_optical": _optical_ids(sides[0]),
        "items_post_optical": _optical_ids(sides[1]),
        "dropped_items": [list(d) for r in searches if r is not None for d in r.dropped],
        "water_classes": [classes.names[i] for i in spec.water],
        "method": spec.method,
        "members": list(spec.members),
        "members_note": _members_note(spec),
        "catalog": searches[1].catalog if searches[1] is not None else None,
        "orbit_state": summary.orbit_state,
        "sar_polarizations": list(sar.polarizations or ()),
        "sar_geometry": "grd_radar_geometry" if summary.radar_geometry else "rtc",
        "sar_composite": sar.composite,
        "speckle_filter": sar.speckle or "none",
        "speckle_window": sar.speckle_window,
        **model_info,
    }
    return json.loads(json.dumps(info, default=str))


def _optical_ids(scenes: Scenes) -> list[str]:
    return list(dict.fromkeys(i["id"] for i in (*scenes.optical, *scenes.spectral)))


def _members_note(spec: FloodSpec) -> str:
    """Why these members ran, for the provenance."""
    if spec.members == ("threshold",) and spec.method == "auto":
        return "no segmenter weights found: auto ran the weights-free threshold member only"
    if spec.method == "auto" and spec.sar is None and spec.optical is None:
        return (
            f"no segmenter weights found: auto ran the weights-free members only "
            f"({', '.join(spec.members)}; optical: {optical_note(spec.spectral, False)})"
        )
    note = f"--method {spec.method}"
    if "optical" in spec.members:
        note += "; optical: " + optical_note(spec.spectral, spec.optical is not None)
    return note


def optical_note(spectral: bool, segmenter: bool) -> str:
    """What the optical member ran, for the log and the provenance."""
    parts = ["NDWI/MNDWI rule on SCL-masked Sentinel-2"] if spectral else []
    if segmenter:
        parts.append("SegEarth-OV water classes")
    elif spectral:
        parts.append("no optical segmenter weights")
    return ", ".join(parts)


plan_flood_task = task(plan_flood, name="plan-flood", cache_policy=NO_CACHE)
