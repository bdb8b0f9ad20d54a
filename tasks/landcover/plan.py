"""Plan a land-cover run: grid, scenes, classes and the cube's tiles still to write."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date

from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.models.classes import ClassNames
from terrawatch.tasks.core.catalog import SearchResult, parse_aoi
from terrawatch.tasks.core.cube_types import CubePlan, TimeStep
from terrawatch.tasks.core.defaults import check_chunk
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.item_groups import best_first
from terrawatch.tasks.core.load import RGB_BANDS, check_readable
from terrawatch.tasks.core.output_grid import default_resolution, grid_for_aoi
from terrawatch.tasks.core.worker_model import ModelSpec, worker_model
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE, prepare_cube

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """What the tile tasks need: references only."""

    cube: CubePlan
    """Store, time index and tiles still to write."""
    grid: GridSpec
    """Output grid."""
    items: tuple[dict, ...]
    """Items of the period, best (least cloudy) first."""
    classes: ClassNames
    """Class table of the cube."""


def landcover_grid(
    items: list[dict], aoi: str | list[float] | dict, resolution: float | None, crs: str | None
) -> GridSpec:
    """The output grid of the AOI (items best first: the best one's sensor sets the GSD)."""
    _, bbox = parse_aoi(aoi)
    collection = items[0].get("collection", "*")
    return grid_for_aoi(bbox, resolution or default_resolution(collection, items[0]), crs)


def plan_landcover(
    search: SearchResult,
    aoi: str | list[float] | dict,
    start: str | date,
    end: str | date,
    spec: ModelSpec,
    store: str,
    resolution: float | None = None,
    crs: str | None = None,
    *,
    chunk: int,
    run_id: str | None = None,
    replace: bool = False,
    refine: str = "none",
    probabilities: bool = False,
) -> RunPlan:
    """Derive the grid, check the inputs, warm the model and prepare the cube."""
    check_chunk(chunk)
    from terrawatch.tasks.landcover.probability import check_probability_store

    check_probability_store(store, probabilities)  # the store keeps its variables
    items = best_first(search.items)
    grid = landcover_grid(items, aoi, resolution, crs)
    if refine == "special":
        from terrawatch.tasks.landcover.special import scene_bands

        check_readable(list(items), scene_bands(items).names)
    else:
        check_readable(list(items), RGB_BANDS)
    model = worker_model(spec)
    classes = spec.classes
    model_info = {k: v for k, v in model.provenance().items() if k != "classes"}  # cube has them
    provenance = dict(
        model_info,
        run_id=run_id or uuid.uuid4().hex,
        catalog=search.catalog,
        items=list(search.ids),
        dropped_items=[list(d) for d in search.dropped],
    )
    step = TimeStep(time=str(start)[:10], end=str(end)[:10], items=tuple(i["id"] for i in items))
    kind = LANDCOVER_CUBE
    if refine == "special":
        from terrawatch.tasks.landcover.special import SPECIAL_CUBE

        kind = SPECIAL_CUBE
        provenance["refine"] = "special"
    if probabilities:
        from terrawatch.tasks.landcover.probability import PROBABILITY_CUBE

        kind = PROBABILITY_CUBE
    cube = prepare_cube(store, grid, classes, step, provenance, chunk, replace=replace, kind=kind)
    logger.info(
        "grid %s %dx%d px at %g; %d of %d tiles to do",
        grid.crs,
        *grid.shape,
        grid.resolution,
        len(cube.todo),
        cube.n_tiles[0] * cube.n_tiles[1],
    )
    return RunPlan(cube, grid, items, classes)


plan_landcover_task = task(plan_landcover, name="plan-landcover", cache_policy=NO_CACHE)
