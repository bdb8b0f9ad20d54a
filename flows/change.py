"""The change flow: two periods on one grid -> chunked change detection on Dask -> Zarr cube."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from terrawatch.errors import InputError
from terrawatch.flows.cube_lease import held_lease, holds_writer_lease, writer_token
from terrawatch.flows.options import (
    ChangeOptions,
    ChangeTilingOptions,
    GridOptions,
    ModelOptions,
    SearchOptions,
)
from terrawatch.flows.run_hooks import RUN_STOP_HOOKS
from terrawatch.flows.runner import dask_task_runner, run_tile_task
from terrawatch.models.classes import ClassNames, parse_class_names
from terrawatch.models.weights_check import all_missing_weights
from terrawatch.tasks.change.cube import ChangeStep, LandcoverPair, read_landcover_pair
from terrawatch.tasks.change.plan import plan_change_task
from terrawatch.tasks.change.publish import publish_change_task
from terrawatch.tasks.change.steps import StepChoice
from terrawatch.tasks.change.tile import ChangeSpec, ChangeTileJob, change_tiles_task, class_query
from terrawatch.tasks.core.catalog import SearchResult, search_items, search_items_task
from terrawatch.tasks.core.cube_products import describe_cube_task, write_overviews_task
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.defaults import check_chunk
from terrawatch.tasks.core.grid import GridSpec

Period = tuple[str, str]


@dataclass(frozen=True)
class ChangeInputs:
    """A change run's checked inputs: area, classes, periods, detector and both dates' scenes."""

    aoi: Any
    """The AOI (with ``from_cube`` and none given: the cube's extent)."""
    classes: ClassNames
    """The class list (from the cube with ``from_cube``)."""
    periods: tuple[Period, Period]
    """``(start, end)`` of the earlier and the later period."""
    spec: ChangeSpec
    """The detector the workers build."""
    grid: GridSpec | None
    """The land-cover cube's grid with ``from_cube``, else None (derived from the AOI)."""
    scenes: tuple[SearchResult, SearchResult]
    """The scenes of the earlier and the later period."""


def change_inputs(
    aoi: str | list[float] | dict[str, Any] | None = None,
    classes: list[str] | None = None,
    before: list[str] | str | None = None,
    after: list[str] | str | None = None,
    from_cube: str | None = None,
    store: str = "change.zarr",
    detection: ChangeOptions = ChangeOptions(),
    search: SearchOptions = SearchOptions(),
    grid: GridOptions = GridOptions(),
    tiling: ChangeTilingOptions = ChangeTilingOptions(),
    model: ModelOptions = ModelOptions(),
    *,
    today: date | None = None,
    tasks: bool = False,
) -> ChangeInputs:
    """The flow's first step, and the command line's preflight: refuse bad input in seconds.

    Checks the land-cover cube (with ``from_cube``), the periods, the class query, the change
    and model settings and the chunk, searches both periods (with ``from_cube``: the items the
    cube recorded) and resolves the weights. Takes the flow's parameters.

    Args:
        today: The scheduled date the default periods are counted back from (default: today).
        tasks: Search with the Prefect tasks (which retry), as the flow does.

    Raises:
        InputError: a bad value; NoScenesError: nothing found; WeightsNotFoundError.
    """
    from terrawatch.models.settings import SegEarthSettings

    source = _from_cube(from_cube, classes, before, after, grid) if from_cube else None
    aoi, classes, periods = _pair_inputs(aoi, classes, before, after, source, today)
    query = class_query(classes, detection.targets, detection.from_classes, detection.to_classes)
    steps = detection.chosen_steps()
    _log_step_choice(steps, tasks)
    check_chunk(tiling.chunk)
    SegEarthSettings(**dict(model.settings()))
    spec = change_spec(classes, query, detection, model, steps)
    find = search_items_task if tasks else search_items
    scenes = _search(find, search, aoi, periods, source)
    with all_missing_weights():  # every missing file named in one error
        model.resolve_weights()
        detection.resolve_weights(steps)
    grid_spec = source.grid if source is not None else None
    return ChangeInputs(aoi, classes, periods, spec, grid_spec, scenes)


def change_spec(
    classes: Any, query: tuple, detection: ChangeOptions, model: ModelOptions, steps: StepChoice
) -> ChangeSpec:
    """The detector of a run (the flow's and ``change IMAGE1 IMAGE2``'s): the settings, the
    chosen steps with their weights, and why they were chosen."""
    from terrawatch.models.settings import ChangeSettings

    settings = ChangeSettings(
        mode=detection.mode,
        theta_deg=detection.theta,
        rule=detection.chosen_rule(steps.proposer),
        **dict(zip(("targets", "from_classes", "to_classes"), query, strict=True)),
    )
    return ChangeSpec(
        model.spec(classes),
        settings,
        proposer=steps.proposer,
        proposer_weights=steps.proposer_weights,
        comparator=steps.comparator,
        comparator_weights=steps.comparator_weights,
        step_choice=tuple(steps.provenance((detection.proposer, detection.comparator)).items()),
    )


def _log_step_choice(steps: StepChoice, in_flow: bool) -> None:
    """Say which proposer/comparator run and why: in the flow run's log, else the module's."""
    message = f"change steps: {steps.proposer} + {steps.comparator} ({steps.reason})"
    if in_flow:
        get_run_logger().info(message)
    else:
        logging.getLogger(__name__).info(message)


@flow(name="change", task_runner=dask_task_runner(), **RUN_STOP_HOOKS)
@holds_writer_lease
def change(
    aoi: str | list[float] | dict[str, Any] | None = None,
    classes: list[str] | None = None,
    before: list[str] | str | None = None,
    after: list[str] | str | None = None,
    from_cube: str | None = None,
    store: str = "change.zarr",
    detection: ChangeOptions = ChangeOptions(),
    search: SearchOptions = SearchOptions(),
    grid: GridOptions = GridOptions(),
    tiling: ChangeTilingOptions = ChangeTilingOptions(),
    model: ModelOptions = ModelOptions(),
) -> dict[str, Any]:
    """Detect change between two periods and write it as one pair of a change cube.

    Args:
        aoi: ``"W,S,E,N"`` in degrees, 4 numbers, or a GeoJSON geometry/feature (optional
            with ``from_cube``: the cube's extent).
        classes: Class names; commas inside an entry join synonyms. Class 0 is the
            background. Not needed with ``from_cube``.
        before: Earlier period ``[start, end]`` (ISO dates, inclusive) or ``"START/END"``.
        after: Later period; its start is the ``time`` coordinate of the pair. Without
            ``before``/``after`` (scheduled runs): the last full calendar month before the
            scheduled date vs the same month a year earlier (same season: no phenology
            change).
        from_cube: A land-cover cube: its grid, classes and last two periods (and their items)
            make the pair; ``before``, ``after`` and the grid options must be unset.
        store: Change cube path or fsspec URL; an existing cube gets a new pair.
        detection: What change is reported (target, from and to classes) and how it is
            detected (mode, θ, rule, proposer, comparator and their weights).
        search: Catalog, collections and scene filters (max_items per period).
        grid: Output resolution and CRS (default: the sensor's GSD, the AOI's UTM zone).
        tiling: Chunk (tile) size, halo and loader.
        model: Segmenter options (identifier and CLIP features).

    Returns:
        Store, pair times, tile counts, changed area and transitions, quicklook path.
    """
    logger = get_run_logger()
    scheduled = flow_run.get_scheduled_start_time().date()
    inputs = change_inputs(
        aoi, classes, before, after, from_cube, store, detection, search, grid, tiling, model,
        today=scheduled, tasks=True,
    )  # fmt: skip
    spec = inputs.spec
    plan = plan_change_task(
        *inputs.scenes,
        inputs.periods,
        spec,
        store,
        aoi=inputs.aoi,
        grid=inputs.grid,
        resolution=grid.resolution,
        crs=grid.crs,
        chunk=tiling.chunk,
        run_id=str(flow_run.get_id() or ""),
        replace=tiling.replace,
    )
    cube, grid_spec = plan.cube, plan.grid
    jobs = [
        ChangeTileJob(store, cube.time_index, tile, tiling.chunk, grid_spec, plan.items_t1,
                      plan.items_t2, halo=tiling.halo, loader=tiling.loader,
                      lease=writer_token(store))
        for tile in cube.todo
    ]  # fmt: skip
    logger.info("change store %s, pair %d: %d tiles to write", store, cube.time_index, len(jobs))
    tiles = run_tile_task(
        change_tiles_task, jobs, spec, "terrawatch.tasks.change.tile:worker_detector"
    )
    held_lease(store).check()  # a run whose lease was taken over publishes nothing
    write_overviews_task(store, cube.time_index, rewrite=bool(jobs))  # quicklooks read them
    published = publish_change_task(
        store, cube.time_index, grid_spec, plan.items_t1, plan.items_t2, tiling.loader
    )
    stac = describe_cube_task(store, tiling.stac)
    return {
        "store": store,
        "time": published.time,
        "time_before": published.time_before,
        "tiles": tiles["statuses"],
        "stage_seconds": tiles["stage_seconds"],
        "tiles_total": cube.n_tiles[0] * cube.n_tiles[1],
        "already_complete": cube.already_complete,
        "changed_km2": published.changed_km2,
        "valid_km2": published.valid_km2,
        "transitions": list(published.transitions),
        "quicklook": published.quicklook,
        "stac": stac,
    }


def _pair_inputs(
    aoi: Any,
    classes: list[str] | None,
    before: Any,
    after: Any,
    source: LandcoverPair | None,
    today: date | None,
) -> tuple[Any, ClassNames, tuple[Period, Period]]:
    """AOI, classes and periods: from the land-cover cube, or as given / scheduled."""
    if source is not None:
        step = source.step
        periods = ((step.before.time, step.before.end), (step.time, step.end))
        return (aoi if aoi is not None else _lonlat_bbox(source.grid)), source.classes, periods
    if aoi is None or not classes:
        raise InputError(
            "give aoi and classes (or from_cube, a land-cover cube whose last two periods to "
            f"compare); got aoi={aoi!r}, classes={classes!r}"
        )
    classes = parse_class_names(classes)  # once: the workers and the cube get this value
    return aoi, classes, resolve_periods(before, after, today or date.today())


def resolve_periods(
    before: list[str] | str | None, after: list[str] | str | None, today: date
) -> tuple[Period, Period]:
    """The two periods: as given, or the last full month before ``today`` and a year earlier.

    Scheduled monthly runs pass neither: a run on 2024-07-02 compares June 2024 with June
    2023. The same month of the previous year keeps the season (crops, leaves, snow) out of
    the change.

    Raises:
        InputError: Only one period given, a malformed period, or periods out of order.
    """
    if (before is None) != (after is None):
        raise InputError("give both before and after ([start, end] ISO dates), or neither")
    if before is not None and after is not None:
        periods = (_period("before", before), _period("after", after))
    else:
        last = today.replace(day=1) - timedelta(days=1)
        first = last.replace(day=1)
        first_ago = first.replace(year=first.year - 1)
        periods = (
            (first_ago.isoformat(), _month_end(first_ago).isoformat()),
            (first.isoformat(), last.isoformat()),
        )
    (start1, end1), (start2, end2) = periods
    ChangeStep.of(TimeStep(start1, end1, ()), TimeStep(start2, end2, ()))  # checks the order
    return periods


def _month_end(day: date) -> date:
    following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return following - timedelta(days=1)


def _period(name: str, value: list[str] | str) -> Period:
    parts = value.split("/") if isinstance(value, str) else list(value)
    if len(parts) != 2 or not all(isinstance(p, str) and p.strip() for p in parts):
        raise InputError(
            f"{name} must be a period [start, end] of ISO dates or 'START/END', got {value!r}; "
            "e.g. ['2024-06-01', '2024-06-30']"
        )
    return parts[0].strip(), parts[1].strip()


def _from_cube(
    store: str, classes: list[str] | None, before: Any, after: Any, grid: GridOptions
) -> LandcoverPair:
    """The land-cover cube's pair, after refusing parameters that the cube already fixes."""
    given = {"before": before, "after": after, **grid.model_dump()}
    clash = sorted(k for k, v in given.items() if v is not None)
    if clash:
        raise InputError(
            f"from_cube={store!r} fixes the periods and the grid; leave {clash!r} unset, or "
            "drop from_cube and give before/after"
        )
    source = read_landcover_pair(store)
    if classes and parse_class_names(classes) != source.classes:
        raise InputError(
            f"classes={classes!r} differ from the classes of from_cube={store!r} "
            f"({source.classes.entries!r}); leave classes unset to use the cube's"
        )
    return source


def _lonlat_bbox(grid: GridSpec) -> list[float]:
    box = grid.geobox.extent.to_crs("EPSG:4326").boundingbox
    return [box.left, box.bottom, box.right, box.top]


def _search(
    find: Any,
    search: SearchOptions,
    aoi: Any,
    periods: tuple[Period, Period],
    source: LandcoverPair | None,
) -> tuple[SearchResult, SearchResult]:
    """Both periods' scenes; with a land-cover cube exactly the items it recorded."""
    if source is None:
        return tuple(  # type: ignore[return-value]
            find(search.catalog, aoi, start, end, search.collections, search.max_cloud,
                 search.max_items)
            for start, end in periods
        )  # fmt: skip
    results = []
    for (start, end), ids in zip(
        periods, (source.step.before.items, source.step.items), strict=True
    ):
        found = find(search.catalog, aoi, start, end, search.collections, None, None)
        kept = tuple(i for i in found.items if i["id"] in ids)
        missing = sorted(set(ids) - {i["id"] for i in kept})
        if missing:
            raise InputError(
                f"items {missing!r} recorded in the land-cover cube for {start}..{end} are not "
                f"in catalog {found.catalog!r}; pass the catalog the cube was made from"
            )
        results.append(dataclasses.replace(found, items=kept))
    return results[0], results[1]
