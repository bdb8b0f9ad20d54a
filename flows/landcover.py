"""The land-cover flow: STAC search -> lazy cube -> chunked segmentation on Dask -> Zarr cube."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from terrawatch.flows.cube_lease import held_lease, holds_writer_lease, writer_token
from terrawatch.flows.options import (
    GridOptions,
    LandcoverModelOptions,
    ModelOptions,
    SearchOptions,
    TilingOptions,
)
from terrawatch.flows.run_hooks import RUN_STOP_HOOKS
from terrawatch.flows.runner import dask_task_runner, run_tile_task
from terrawatch.models.weights_check import all_missing_weights
from terrawatch.tasks.core.catalog import SearchResult, search_items, search_items_task
from terrawatch.tasks.core.cube_products import describe_cube_task, write_overviews_task
from terrawatch.tasks.core.defaults import check_chunk
from terrawatch.tasks.core.period import resolve_period
from terrawatch.tasks.core.worker_model import ModelSpec
from terrawatch.tasks.landcover.plan import plan_landcover_task
from terrawatch.tasks.landcover.publish import publish_landcover_task
from terrawatch.tasks.landcover.tile import LandcoverTileJob, segment_tiles_task

__all__ = ["LandcoverInputs", "ModelOptions", "landcover", "landcover_inputs"]


@dataclass(frozen=True)
class LandcoverInputs:
    """A land-cover run's checked inputs: the period, the model spec and the scenes."""

    start: str
    """Period start (ISO date)."""
    end: str
    """Period end (ISO date, inclusive)."""
    spec: ModelSpec
    """The segmenter the workers load."""
    scenes: SearchResult
    """The period's scenes."""


def landcover_inputs(
    aoi: str | list[float] | dict[str, Any],
    classes: list[str],
    start: str | None = None,
    end: str | None = None,
    period_days: int = 7,
    store: str = "landcover.zarr",
    search: SearchOptions = SearchOptions(),
    grid: GridOptions = GridOptions(),
    tiling: TilingOptions = TilingOptions(),
    model: LandcoverModelOptions | ModelOptions = LandcoverModelOptions(),
    *,
    today: date | None = None,
    tasks: bool = False,
) -> LandcoverInputs:
    """The flow's first step, and the command line's preflight: refuse bad input in seconds.

    Checks the classes, the chunk, the model settings and the period, searches the catalog
    (which checks the AOI, dates and collections and reaches it) and resolves the weights
    (downloaded once, into the weights directory the workers read from). Takes the flow's
    parameters.

    Args:
        today: The date a period of ``period_days`` ends before (default: today).
        tasks: Search with the Prefect tasks (which retry), as the flow does.

    Raises:
        InputError: a bad value; NoScenesError: nothing found; WeightsNotFoundError.
    """
    from terrawatch.models.classes import parse_class_names
    from terrawatch.models.settings import SegEarthSettings

    classes = parse_class_names(classes)  # once: the workers and the cube get this value
    check_chunk(tiling.chunk)
    SegEarthSettings(**dict(model.settings()))
    check_probabilities(model, store)
    start, end = resolve_period(start, end, period_days, today or date.today())
    find = search_items_task if tasks else search_items
    scenes = find(
        search.catalog, aoi, start, end, search.collections, search.max_cloud, search.max_items
    )
    if getattr(model, "refine", "none") == "special":  # bands, classifier, --labels: one line
        from terrawatch.flows.landcover_special import check_special

        check_special(model, classes, scenes.items, aoi, grid)
    with all_missing_weights():  # every missing file named in one error
        model.resolve_weights()
    return LandcoverInputs(start, end, model.spec(classes), scenes)


def check_probabilities(model: LandcoverModelOptions | ModelOptions, store: str) -> None:
    """``--probabilities`` is not for ``--refine special``, and an existing store keeps its
    variables: a store made with per-class probabilities gets them on every run, one made
    without never (checked again when the run plans the cube)."""
    from terrawatch.errors import InputError
    from terrawatch.tasks.landcover.probability import check_probability_store

    probabilities = bool(getattr(model, "probabilities", False))
    if probabilities and getattr(model, "refine", "none") == "special":
        raise InputError(
            "--probabilities with --refine special: the refined labels come from the spectral "
            "classifier, not from the segmenter's probabilities; drop one of them"
        )
    check_probability_store(store, probabilities)


@flow(name="landcover", task_runner=dask_task_runner(), **RUN_STOP_HOOKS)
@holds_writer_lease
def landcover(
    aoi: str | list[float] | dict[str, Any],
    classes: list[str],
    start: str | None = None,
    end: str | None = None,
    period_days: int = 7,
    store: str = "landcover.zarr",
    search: SearchOptions = SearchOptions(),
    grid: GridOptions = GridOptions(),
    tiling: TilingOptions = TilingOptions(),
    model: LandcoverModelOptions | ModelOptions = LandcoverModelOptions(),
) -> dict[str, Any]:
    """Write one time step (the period ``start``..``end``) of a land-cover cube.

    Args:
        aoi: ``"W,S,E,N"`` in degrees, 4 numbers, or a GeoJSON geometry/feature.
        classes: Class names; commas inside an entry join synonyms (``"tree,forest"``).
        start: Period start (ISO date); the time coordinate of the new step.
        end: Period end (ISO date, inclusive).
        period_days: Without start/end: the period is the ``period_days`` days before the
            scheduled run date (what scheduled monitoring deployments use).
        store: Zarr store path or fsspec URL; an existing cube gets a new time step.
        search: Catalog, collections and scene filters.
        grid: Output resolution and CRS (default: the sensor's GSD, the AOI's UTM zone).
        tiling: Chunk (tile) size, halo and loader.
        model: Segmenter options; ``refine="special"`` adds the SPECIAL spectral refinement
            (zero-shot pass, one training on all tiles, prediction pass; the zero-shot map stays
            in the cube as ``landcover_zero_shot``).

    Returns:
        Store, time, tile counts, whether the step was already complete, and class areas.
    """
    logger = get_run_logger()
    scheduled = flow_run.get_scheduled_start_time().date()
    inputs = landcover_inputs(
        aoi, classes, start, end, period_days, store, search, grid, tiling, model,
        today=scheduled, tasks=True,
    )  # fmt: skip
    refine = getattr(model, "refine", "none")  # a plain ModelOptions (the Python API) has none
    probabilities = bool(getattr(model, "probabilities", False))
    plan = plan_landcover_task(
        inputs.scenes,
        aoi,
        inputs.start,
        inputs.end,
        inputs.spec,
        store,
        grid.resolution,
        grid.crs,
        chunk=tiling.chunk,
        run_id=str(flow_run.get_id() or ""),
        replace=tiling.replace,
        refine=refine,
        probabilities=probabilities,
    )
    jobs = [
        LandcoverTileJob(store, plan.cube.time_index, tile, tiling.chunk, plan.grid, plan.items,
                halo=tiling.halo, loader=tiling.loader,
                lease=writer_token(store), probabilities=probabilities)
        for tile in plan.cube.todo
    ]  # fmt: skip
    logger.info(
        "store %s, time index %d: %d tiles to write", store, plan.cube.time_index, len(jobs)
    )
    if refine == "special":
        from terrawatch.flows.landcover_special import run_special

        tiles = run_special(plan, inputs.spec, store, halo=tiling.halo, loader=tiling.loader,
                            lease=writer_token(store), log=logger,
                            options=model)  # fmt: skip
    else:
        tiles = run_tile_task(
            segment_tiles_task, jobs, inputs.spec, "terrawatch.tasks.core.worker_model:worker_model"
        )
    held_lease(store).check()  # a run whose lease was taken over publishes nothing
    write_overviews_task(store, plan.cube.time_index, rewrite=bool(jobs))  # quicklooks read them
    published = publish_landcover_task(store, plan.cube.time_index, plan.grid.resolution**2)
    stac = describe_cube_task(store, tiling.stac)
    return {
        "store": store,
        "time": published.time,
        "tiles": tiles["statuses"],
        "stage_seconds": tiles["stage_seconds"],
        "tiles_total": plan.cube.n_tiles[0] * plan.cube.n_tiles[1],
        "already_complete": plan.cube.already_complete,
        "areas": list(published.areas),
        "quicklook": published.quicklook,
        "stac": stac,
    }


if __name__ == "__main__":
    from terrawatch.flows.local_api import shared_local_api

    # A small run over farmland and a river near Cologne on the embedded defaults.
    with shared_local_api():
        print(
            landcover(
                aoi="6.90,50.90,6.96,50.94",
                classes=["water,river", "building,roof", "road", "tree,forest", "cropland"],
                start="2024-06-01",
                end="2024-06-30",
                store="landcover-cologne.zarr",
            )
        )
