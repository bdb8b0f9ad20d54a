"""The flood-response flow: SAR around an event -> members on Dask -> cube, polygons, report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from terrawatch.flows.cube_lease import held_lease, holds_writer_lease, writer_token
from terrawatch.flows.flood_members import flood_members, optical_segmenter
from terrawatch.flows.options import (
    FloodModelOptions,
    FloodOutputOptions,
    FloodSearchOptions,
    FloodWindowOptions,
    GridOptions,
    SarInputOptions,
    TilingOptions,
)
from terrawatch.flows.run_hooks import RUN_STOP_HOOKS
from terrawatch.flows.runner import dask_task_runner, run_tile_task
from terrawatch.models.classes import parse_class_names
from terrawatch.models.weights_check import all_missing_weights
from terrawatch.tasks.core.catalog import SearchResult, default_sar_collections
from terrawatch.tasks.core.cube_products import describe_cube_task, write_overviews_task
from terrawatch.tasks.core.defaults import check_chunk
from terrawatch.tasks.core.sar_composite import SarOptions
from terrawatch.tasks.flood import DEFAULT_CLASSES
from terrawatch.tasks.flood.landcover import check_landcover_cube
from terrawatch.tasks.flood.optical_member import spectral_items
from terrawatch.tasks.flood.plan import (
    FloodSpec,
    check_comparable,
    optical_note,
    plan_flood_task,
)
from terrawatch.tasks.flood.publish import publish_flood_task
from terrawatch.tasks.flood.reference_product import ReferenceLayer, search_reference_products
from terrawatch.tasks.flood.search import (
    FloodWindows,
    flood_windows,
    search_optical_window,
    search_optical_window_task,
    search_reference_window,
    search_reference_window_task,
    search_sar_window,
    search_sar_window_task,
    water_indices,
)
from terrawatch.tasks.flood.terrain import search_dem
from terrawatch.tasks.flood.tile import FloodTileJob, flood_tiles_task

__all__ = ["FloodInputs", "FloodModelOptions", "flood", "flood_inputs"]


@dataclass(frozen=True)
class FloodInputs:
    """A flood run's checked inputs: windows, segmenters, SAR options and each side's scenes."""

    windows: FloodWindows
    """The event date and the pre- and post-event windows."""
    spec: FloodSpec
    """The segmenters and the water classes."""
    sar: SarOptions
    """The SAR composite options."""
    pre: SearchResult
    """SAR scenes before the event."""
    post: SearchResult
    """SAR scenes from the event on."""
    pre_optical: SearchResult | None = None
    """Cloud-free optical scenes before the event (optical runs that found some)."""
    post_optical: SearchResult | None = None
    """Cloud-free optical scenes from the event on."""
    reference: SearchResult | None = None
    """SAR scenes of the reference window (threshold member), comparable with the post side."""
    dem: tuple[dict, ...] = ()
    """DEM items over the AOI from the catalog (radar shadow and layover); empty: none."""
    reference_products: tuple[ReferenceLayer, ...] = ()
    """Reference water products of the catalog over the AOI (JRC GSW, ESA WorldCover)."""


def flood_inputs(
    aoi: str | list[float] | dict[str, Any],
    event_date: str,
    classes: list[str] | None = None,
    water_classes: list[str] | None = None,
    store: str = "flood.zarr",
    windows: FloodWindowOptions = FloodWindowOptions(),
    search: FloodSearchOptions = FloodSearchOptions(),
    sar: SarInputOptions = SarInputOptions(),
    grid: GridOptions = GridOptions(),
    tiling: TilingOptions = TilingOptions(),
    model: FloodModelOptions = FloodModelOptions(),
    outputs: FloodOutputOptions = FloodOutputOptions(),
    *,
    tasks: bool = False,
) -> FloodInputs:
    """The flow's first step, and the command line's preflight: refuse bad input in seconds.

    Checks the windows, the classes and water classes, the SAR, model and chunk options,
    searches both windows (scenes present, one orbit and polarisation set on each side and
    across the two; optical scenes with ``search.optical``) and resolves the weights. Takes
    the flow's parameters.

    Args:
        tasks: Search with the Prefect tasks (which retry), as the flow does.

    Raises:
        InputError: a bad value or incomparable scenes; NoScenesError; WeightsNotFoundError.
    """
    from terrawatch.models.settings import SegEarthSettings

    window = flood_windows(event_date, windows.pre_days, windows.post_days)
    reference_window = flood_windows(
        event_date, max(windows.reference_days, windows.pre_days), windows.post_days
    ).pre
    classes = parse_class_names(classes or DEFAULT_CLASSES)  # once, for workers and cube
    water = water_indices(classes, water_classes)
    composite = sar.composite_options()
    check_chunk(tiling.chunk)
    SegEarthSettings(**dict(model.settings()))
    find_sar = search_sar_window_task if tasks else search_sar_window
    find_optical = search_optical_window_task if tasks else search_optical_window
    collections = search.collections or default_sar_collections(search.catalog)
    pre, post = (
        find_sar(search.catalog, aoi, side, dates, collections, search.max_items, sar.orbit)
        for side, dates in (("pre", window.pre), ("post", window.post))
    )
    check_comparable(pre, post, composite.polarizations)
    optical: tuple[SearchResult | None, SearchResult | None] = (None, None)
    wants_optical = model.method in ("auto", "optical", "ensemble")
    if search.optical and wants_optical:
        optical = tuple(  # type: ignore[assignment]
            find_optical(search.catalog, aoi, side, dates, search.optical_collections,
                         search.max_cloud, search.max_items)
            for side, dates in (("pre", window.pre), ("post", window.post))
        )  # fmt: skip
    if search.landcover_cube:
        check_landcover_cube(search.landcover_cube)
    post_optical = optical[1].items if optical[1] is not None else ()
    spectral = bool(spectral_items(post_optical))
    segmenter = bool(post_optical) and wants_optical and optical_segmenter(model)
    if model.method == "auto":  # probes each member's weights: a missing file is no error
        members = flood_members(model, spectral or segmenter)
    else:
        with all_missing_weights():  # every missing file named in one error
            members = flood_members(model, spectral or segmenter)
    spec = FloodSpec(
        model.spec(classes) if "alignearth" in members else None,
        water,
        model.optical_spec(classes) if "optical" in members and segmenter else None,
        threshold="threshold" in members,
        method=model.method,
        classes=classes,
        spectral="optical" in members and spectral,
    )
    reference = None
    if spec.threshold:
        find_reference = search_reference_window_task if tasks else search_reference_window
        reference = find_reference(search.catalog, aoi, reference_window, pre, post, collections,
                                   max(search.max_items, windows.reference_days))  # fmt: skip
    dem = search_dem(search.catalog, aoi) if spec.sar is not None or spec.threshold else ()
    products = search_reference_products(search.catalog, aoi)
    return FloodInputs(window, spec, composite, pre, post, *optical, reference=reference,
                       dem=dem, reference_products=products)  # fmt: skip


@flow(name="flood", task_runner=dask_task_runner(), **RUN_STOP_HOOKS)
@holds_writer_lease
def flood(
    aoi: str | list[float] | dict[str, Any],
    event_date: str,
    classes: list[str] | None = None,
    water_classes: list[str] | None = None,
    store: str = "flood.zarr",
    windows: FloodWindowOptions = FloodWindowOptions(),
    search: FloodSearchOptions = FloodSearchOptions(),
    sar: SarInputOptions = SarInputOptions(),
    grid: GridOptions = GridOptions(),
    tiling: TilingOptions = TilingOptions(),
    model: FloodModelOptions = FloodModelOptions(),
    outputs: FloodOutputOptions = FloodOutputOptions(),
) -> dict[str, Any]:
    """Map the water before and after an event and the flooded area, as one event of a cube.

    Args:
        aoi: ``"W,S,E,N"`` in degrees, 4 numbers, or a GeoJSON geometry/feature.
        event_date: ISO date of the event; the post-event window starts on it.
        classes: Class names, commas join synonyms (default: water vs land:
            ``["water,river,lake,flood water", "land,field,building,road,tree"]``).
        water_classes: Names (or synonyms) of the classes that count as water (default
            ``["water"]``).
        store: Zarr store path or fsspec URL; an existing flood cube gets a new event.
        windows: Days before and after the event searched.
        search: Catalog, SAR collections, optical scenes (``optical``, on by default: the
            optical member's NDWI/MNDWI rule on SCL-masked Sentinel-2 pixels, and where its
            weights are found the optical segmenter, whose pixels win over SAR for
            ``alignearth``; ``source_*`` = 2 where the optical member saw the pixel) and scene
            filters.
        sar: Orbit direction, polarisations, speckle filter and composite of the SAR scenes.
        grid: Output resolution and CRS (default: 10 m, Sentinel-1's; the AOI's UTM zone).
        tiling: Chunk (tile) size, halo and loader.
        model: Segmenter options (``sensor="sar"``: AlignEarth on the SAR composites) and
            ``method``: the flood members (default ``auto``: every member that can run).
        outputs: Minimum mapping unit of the flood polygons (``min_area``, hectares).

    Returns:
        Store, event date, windows, tile counts, flooded area in km², area table, picture path.
    """
    logger = get_run_logger()
    inputs = flood_inputs(
        aoi, event_date, classes, water_classes, store, windows, search, sar, grid, tiling,
        model, outputs, tasks=True,
    )  # fmt: skip
    spec, window = inputs.spec, inputs.windows
    plan = plan_flood_task(
        inputs.pre, inputs.post, window, spec, inputs.sar, store, aoi, inputs.pre_optical,
        inputs.post_optical, grid.resolution, grid.crs, chunk=tiling.chunk,
        run_id=str(flow_run.get_id() or ""),
        replace=tiling.replace, reference=inputs.reference, loader=tiling.loader,
        dem=inputs.dem, reference_products=inputs.reference_products,
    )  # fmt: skip
    logger.info("flood members: %s (--method %s)", ", ".join(plan.members), model.method)
    if "optical" in plan.members:
        logger.info("optical member: %s", optical_note(spec.spectral, spec.optical is not None))
    cube, grid_spec = plan.cube, plan.grid
    jobs = [
        FloodTileJob(store, cube.time_index, tile, tiling.chunk, grid_spec, plan.pre, plan.post,
                     plan.sar, plan.threshold, search.landcover_cube, plan.terrain,
                     plan.reference_products, halo=tiling.halo, loader=tiling.loader,
                     lease=writer_token(store))
        for tile in cube.todo
    ]  # fmt: skip
    logger.info("flood store %s, event %s: %d tiles to write", store, window.event, len(jobs))
    if spec.sar is not None:
        tiles = run_tile_task(
            flood_tiles_task, jobs, spec, "terrawatch.tasks.core.worker_model:worker_model",
            spec.sar,
        )  # fmt: skip
    else:  # no model to warm on the workers
        tiles = flood_tiles_task.submit(jobs, spec).result()
    held_lease(store).check()  # a run whose lease was taken over publishes nothing
    write_overviews_task(store, cube.time_index, rewrite=bool(jobs))  # quicklooks read them
    published = publish_flood_task(
        store, cube.time_index, grid_spec, plan.pre.sar, plan.post.sar, plan.sar, tiling.loader,
        outputs.min_area, plan.threshold.reference if plan.threshold else (),
        search.landcover_cube,
        (*plan.post.spectral, *plan.post.optical, *plan.pre.spectral, *plan.pre.optical),
    )  # fmt: skip
    stac = describe_cube_task(store, tiling.stac)
    return {
        "store": store,
        "event_date": published.event,
        "pre_window": list(window.pre),
        "post_window": list(window.post),
        "tiles": tiles["statuses"],
        "stage_seconds": tiles["stage_seconds"],
        "tiles_total": cube.n_tiles[0] * cube.n_tiles[1],
        "already_complete": cube.already_complete,
        "flooded_km2": published.flooded_km2,
        "areas": list(published.areas),
        "picture": published.picture,
        "members": list(plan.members),
        "files": published.files,
        "report": list(published.report_areas),
        "stac": stac,
    }


if __name__ == "__main__":
    from terrawatch.flows.local_api import shared_local_api

    # The Derna (Libya) flood of 10-11 September 2023, Sentinel-1 RTC on Planetary Computer.
    with shared_local_api():
        print(
            flood(
                aoi="22.60,32.70,22.70,32.78",
                event_date="2023-09-11",
                store="flood-derna.zarr",
                orbit="descending",
            )
        )
