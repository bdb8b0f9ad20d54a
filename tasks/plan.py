"""Plan a land-cover run: grid, input checks and model warm-up, then the cube's to-do list.

Everything that can reject the run happens here, before any tile is segmented: the grid is
derived, every asset header is opened, the model weights are resolved and the class prompts
encoded (which fills the on-disk text cache the tile workers then read), and the store is
checked against the grid and classes before anything is written to it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks._errors import InputError
from tasks._grid import GridSpec
from tasks.catalog import SearchResult, parse_aoi
from tasks.cube import ClassTable, CubePlan, TimeStep, prepare_cube
from tasks.infer import RGB_BANDS, ModelSpec, worker_model
from tasks.load import check_readable
from tasks.output_grid import default_resolution, grid_for_aoi

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
    classes: ClassTable
    """Class table of the cube."""


def plan_landcover(
    search: SearchResult,
    aoi: str | list[float] | dict,
    start: str | date,
    end: str | date,
    spec: ModelSpec,
    store: str,
    resolution: float | None = None,
    crs: str | None = None,
    chunk: int = 1024,
    run_id: str | None = None,
) -> RunPlan:
    """Derive the grid, check the inputs, warm the model and prepare the cube."""
    if chunk < 64:
        raise InputError(f"chunk must be >= 64 pixels, got {chunk!r}")
    items = best_first(search.items)
    _, bbox = parse_aoi(aoi)
    collection = items[0].get("collection", "*")
    grid = grid_for_aoi(bbox, resolution or default_resolution(collection, items[0]), crs)
    check_readable(list(items), RGB_BANDS)
    model = worker_model(spec)
    classes = ClassTable(
        names=model.classes.names, synonyms=tuple(tuple(s) for s in model.classes.classes)
    )
    model_info = {k: v for k, v in model.provenance().items() if k != "classes"}  # cube has them
    provenance = dict(
        model_info,
        run_id=run_id or uuid.uuid4().hex,
        catalog=search.catalog,
        items=list(search.ids),
        dropped_items=[list(d) for d in search.dropped],
    )
    step = TimeStep(time=str(start)[:10], end=str(end)[:10], items=tuple(i["id"] for i in items))
    cube = prepare_cube(store, grid, classes, step, provenance, chunk)
    logger.info(
        "grid %s %dx%d px at %g; %d of %d tiles to do",
        grid.crs,
        *grid.shape,
        grid.resolution,
        len(cube.todo),
        cube.n_tiles[0] * cube.n_tiles[1],
    )
    return RunPlan(cube, grid, items, classes)


def resolve_period(
    start: str | None, end: str | None, period_days: int, today: date
) -> tuple[str, str]:
    """The period of a run: as given, or the ``period_days`` days before ``today``.

    Scheduled monitoring runs pass neither, so each weekly run covers the previous week and
    appends it as one time step.
    """
    if (start is None) != (end is None):
        raise InputError("give both start and end (ISO dates), or neither to use period_days")
    if start is not None and end is not None:
        return start, end
    if period_days < 1:
        raise InputError(f"period_days must be >= 1, got {period_days!r}")
    last = today - timedelta(days=1)
    return (last - timedelta(days=period_days - 1)).isoformat(), last.isoformat()


def best_first(items: tuple[dict, ...]) -> tuple[dict, ...]:
    """Least cloudy first (then by time and id): the composite takes the first valid pixel."""

    def key(item: dict) -> tuple[float, str, str]:
        props = item.get("properties", {})
        cloud = props.get("eo:cloud_cover")
        return (
            float(cloud) if cloud is not None else 100.0,
            str(props.get("datetime")),
            item["id"],
        )

    return tuple(sorted(items, key=key))


plan_landcover_task = task(plan_landcover, name="plan-landcover", cache_policy=NO_CACHE)
