"""The change flow: two periods on one grid -> chunked change detection on Dask -> Zarr cube."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from terrawatch.errors import InputError
from terrawatch.flows.landcover import ModelOptions
from terrawatch.flows.runner import dask_task_runner, run_tile_task
from terrawatch.models.change import ChangeSettings
from terrawatch.tasks.change.cube import ChangeStep, LandcoverPair, read_landcover_pair
from terrawatch.tasks.change.plan import plan_change_task
from terrawatch.tasks.change.publish import publish_change_task
from terrawatch.tasks.change.tile import ChangeSpec, ChangeTileJob, change_tiles_task, class_query
from terrawatch.tasks.core.catalog import SearchResult, search_items_task
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.grid import GridSpec

Period = tuple[str, str]


@flow(name="change", task_runner=dask_task_runner())
def change(
    aoi: str | list[float] | dict[str, Any] | None = None,
    classes: list[str] | None = None,
    before: list[str] | str | None = None,
    after: list[str] | str | None = None,
    from_cube: str | None = None,
    catalog: str = "earth-search",
    store: str = "change.zarr",
    targets: list[str] | None = None,
    from_classes: list[str] | None = None,
    to_classes: list[str] | None = None,
    mode: Literal["mci", "imc"] = "mci",
    theta: float = 145.0,
    rule: Literal["instance", "landcover"] | None = None,
    proposer: Literal["superpixel", "sam"] = "superpixel",
    comparator: Literal["clip", "dinov2"] = "clip",
    proposer_weights: str | None = None,
    comparator_weights: str | None = None,
    collections: list[str] | None = None,
    max_cloud: float | None = 20.0,
    max_items: int = 50,
    resolution: float | None = None,
    crs: str | None = None,
    chunk: int = 512,
    halo: int = 112,
    loader: Literal["odc", "stackstac"] = "odc",
    model: ModelOptions | None = None,
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
            make the pair; ``before``, ``after``, ``resolution`` and ``crs`` must be unset.
        catalog: ``earth-search``, ``planetary-computer``, a STAC API URL or a local folder.
        store: Change cube path or fsspec URL; an existing cube gets a new pair.
        targets: Classes whose change is reported (default: all but class 0).
        from_classes: Report only changes from these classes (default: any).
        to_classes: Report only changes to these classes (default: any).
        mode: ``mci`` (mask, compare, identify) or ``imc`` (identify, mask, compare).
        theta: Change angle θ in degrees (published default 145).
        rule: ``instance`` (change of objects of the target classes) or ``landcover``
            (any class change). Default: ``instance`` with SAM (object masks, as published),
            ``landcover`` with superpixels: superpixels tile both dates alike, so the NMS
            merge keeps one date's copy of a region more or less at random, and the instance
            rule (judged on that date only) then missed 4-42% of planted changes.
        proposer: ``superpixel`` (weights-free) or ``sam``.
        comparator: ``clip`` (the segmenter's CLIP) or ``dinov2``.
        proposer_weights: SAM checkpoint path (default weights dir / download).
        comparator_weights: DINOv2 checkpoint path (default weights dir / download).
        collections: Collections to search (default: the catalog's Sentinel-2 L2A).
        max_cloud: Maximum ``eo:cloud_cover`` in percent (None: no limit).
        max_items: Maximum number of scenes per period.
        resolution: Output pixel size in CRS units (default per sensor).
        crs: Output CRS (default: UTM zone of the AOI centre).
        chunk: Output chunk (tile) size in pixels. 512 (not the land-cover 1024): masks are
            dense ``[N, H, W]`` booleans, about 1 GB per date at 1024² with 1 kpx regions.
        halo: Pixels read around each chunk for context.
        loader: ``odc`` (odc-stac) or ``stackstac``.
        model: Segmenter options (identifier and CLIP features).

    Returns:
        Store, pair times, tile counts, changed area and transitions, quicklook path.
    """
    logger = get_run_logger()
    source = _from_cube(from_cube, classes, before, after, resolution, crs) if from_cube else None
    aoi, classes, periods = _pair_inputs(aoi, classes, before, after, source)
    query = class_query(classes, targets, from_classes, to_classes)
    settings = ChangeSettings(
        mode=mode,
        theta_deg=theta,
        rule=rule or ("instance" if proposer == "sam" else "landcover"),
        **dict(zip(("targets", "from_classes", "to_classes"), query, strict=True)),
    )
    spec = ChangeSpec(
        (model or ModelOptions()).spec(classes),
        settings,
        proposer=proposer,
        proposer_weights=proposer_weights,
        comparator=comparator,
        comparator_weights=comparator_weights,
    )
    searches = _search(catalog, aoi, periods, collections, max_cloud, max_items, source)
    plan = plan_change_task(
        *searches,
        periods,
        spec,
        store,
        aoi=aoi,
        grid=source.grid if source is not None else None,
        resolution=resolution,
        crs=crs,
        chunk=chunk,
        run_id=str(flow_run.get_id() or ""),
    )
    cube, grid = plan.cube, plan.grid
    jobs = [
        ChangeTileJob(store, cube.time_index, tile, chunk, grid, plan.items_t1, plan.items_t2,
                      halo=halo, loader=loader)
        for tile in cube.todo
    ]  # fmt: skip
    logger.info("change store %s, pair %d: %d tiles to write", store, cube.time_index, len(jobs))
    tiles = run_tile_task(
        change_tiles_task, jobs, spec, "terrawatch.tasks.change.tile:worker_detector"
    )
    published = publish_change_task(
        store, cube.time_index, grid, plan.items_t1, plan.items_t2, loader
    )
    return {
        "store": store,
        "time": published.time,
        "time_before": published.time_before,
        "tiles": tiles["statuses"],
        "stage_seconds": tiles["stage_seconds"],
        "tiles_total": cube.n_tiles[0] * cube.n_tiles[1],
        "changed_km2": published.changed_km2,
        "valid_km2": published.valid_km2,
        "transitions": list(published.transitions),
        "quicklook": published.quicklook,
    }


def _pair_inputs(
    aoi: Any, classes: list[str] | None, before: Any, after: Any, source: LandcoverPair | None
) -> tuple[Any, list[str], tuple[Period, Period]]:
    """AOI, classes and periods: from the land-cover cube, or as given / scheduled."""
    if source is not None:
        step = source.step
        periods = ((step.before.time, step.before.end), (step.time, step.end))
        classes = [",".join(words) for words in source.classes.synonyms]
        return (aoi if aoi is not None else _lonlat_bbox(source.grid)), classes, periods
    if aoi is None or not classes:
        raise InputError(
            "give aoi and classes (or from_cube, a land-cover cube whose last two periods to "
            f"compare); got aoi={aoi!r}, classes={classes!r}"
        )
    scheduled = flow_run.get_scheduled_start_time().date()
    return aoi, list(classes), resolve_periods(before, after, scheduled)


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
    store: str,
    classes: list[str] | None,
    before: Any,
    after: Any,
    resolution: float | None,
    crs: str | None,
) -> LandcoverPair:
    """The land-cover cube's pair, after refusing parameters that the cube already fixes."""
    given = {"before": before, "after": after, "resolution": resolution, "crs": crs}
    clash = sorted(k for k, v in given.items() if v is not None)
    if clash:
        raise InputError(
            f"from_cube={store!r} fixes the periods and the grid; leave {clash!r} unset, or "
            "drop from_cube and give before/after"
        )
    source = read_landcover_pair(store)
    wanted = [",".join(w) for w in source.classes.synonyms]
    if classes and list(classes) != wanted:
        raise InputError(
            f"classes={classes!r} differ from the classes of from_cube={store!r} ({wanted!r}); "
            "leave classes unset to use the cube's"
        )
    return source


def _lonlat_bbox(grid: GridSpec) -> list[float]:
    box = grid.geobox.extent.to_crs("EPSG:4326").boundingbox
    return [box.left, box.bottom, box.right, box.top]


def _search(
    catalog: str,
    aoi: Any,
    periods: tuple[Period, Period],
    collections: list[str] | None,
    max_cloud: float | None,
    max_items: int,
    source: LandcoverPair | None,
) -> tuple[SearchResult, SearchResult]:
    """Both periods' scenes; with a land-cover cube exactly the items it recorded."""
    if source is None:
        return tuple(  # type: ignore[return-value]
            search_items_task(catalog, aoi, start, end, collections, max_cloud, max_items)
            for start, end in periods
        )
    results = []
    for (start, end), ids in zip(
        periods, (source.step.before.items, source.step.items), strict=True
    ):
        found = search_items_task(catalog, aoi, start, end, collections, None, None)
        kept = tuple(i for i in found.items if i["id"] in ids)
        missing = sorted(set(ids) - {i["id"] for i in kept})
        if missing:
            raise InputError(
                f"items {missing!r} recorded in the land-cover cube for {start}..{end} are not "
                f"in catalog {found.catalog!r}; pass the catalog the cube was made from"
            )
        results.append(dataclasses.replace(found, items=kept))
    return results[0], results[1]
