"""The land-cover flow: STAC search -> lazy cube -> chunked segmentation on Dask -> Zarr cube."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from terrawatch.flows.runner import dask_task_runner, run_tile_task
from terrawatch.tasks.core.catalog import search_items_task
from terrawatch.tasks.core.period import resolve_period
from terrawatch.tasks.core.worker_model import ModelSpec
from terrawatch.tasks.landcover.plan import plan_landcover_task
from terrawatch.tasks.landcover.publish import publish_landcover_task
from terrawatch.tasks.landcover.tile import TileJob, segment_tiles_task


class ModelOptions(BaseModel):
    """Segmenter choice and settings (published SegEarth-OV defaults)."""

    backbone: Literal["ViT-B-16", "ViT-B-32", "ViT-L-14"] = "ViT-B-16"
    weights: str | None = Field(
        None, description="CLIP checkpoint path; default weights dir/download"
    )
    upsampler: Literal["simfeatup", "bilinear"] = "simfeatup"
    upsampler_weights: str | None = Field(None, description="SimFeatUp checkpoint path")
    prob_thd: float = Field(0.0, ge=0, le=1, description="min class probability, else bg_idx")
    bg_idx: int = Field(0, ge=0, description="class index for low-confidence pixels")
    batch_size: int = Field(8, ge=1, description="windows per forward pass")

    def spec(self, classes: list[str]) -> ModelSpec:
        """The hashable spec the workers load the model from."""
        settings = (
            ("prob_thd", self.prob_thd),
            ("bg_idx", self.bg_idx),
            ("batch_size", self.batch_size),
        )
        return ModelSpec(
            tuple(classes),
            self.backbone,
            self.weights,
            self.upsampler,
            self.upsampler_weights,
            settings,
        )


@flow(name="landcover", task_runner=dask_task_runner())
def landcover(
    aoi: str | list[float] | dict[str, Any],
    classes: list[str],
    start: str | None = None,
    end: str | None = None,
    period_days: int = 7,
    catalog: str = "earth-search",
    store: str = "landcover.zarr",
    collections: list[str] | None = None,
    max_cloud: float | None = 20.0,
    max_items: int = 50,
    resolution: float | None = None,
    crs: str | None = None,
    chunk: int = 1024,
    loader: Literal["odc", "stackstac"] = "odc",
    model: ModelOptions | None = None,
) -> dict[str, Any]:
    """Write one time step (the period ``start``..``end``) of a land-cover cube.

    Args:
        aoi: ``"W,S,E,N"`` in degrees, 4 numbers, or a GeoJSON geometry/feature.
        classes: Class names; commas inside an entry join synonyms (``"tree,forest"``).
        start: Period start (ISO date); the time coordinate of the new step.
        end: Period end (ISO date, inclusive).
        period_days: Without start/end: the period is the ``period_days`` days before the
            scheduled run date (what scheduled monitoring deployments use).
        catalog: ``earth-search``, ``planetary-computer``, a STAC API URL or a local folder.
        store: Zarr store path or fsspec URL; an existing cube gets a new time step.
        collections: Collections to search (default: the catalog's Sentinel-2 L2A).
        max_cloud: Maximum ``eo:cloud_cover`` in percent (None: no limit).
        max_items: Maximum number of scenes.
        resolution: Output pixel size in CRS units = inference GSD (default per sensor).
        crs: Output CRS (default: UTM zone of the AOI centre).
        chunk: Output chunk (tile) size in pixels.
        loader: ``odc`` (odc-stac) or ``stackstac``.
        model: Segmenter options.

    Returns:
        Store, time, tile counts and class areas.
    """
    logger = get_run_logger()
    spec = (model or ModelOptions()).spec(classes)
    scheduled = flow_run.get_scheduled_start_time()
    start, end = resolve_period(start, end, period_days, scheduled.date())
    search = search_items_task(catalog, aoi, start, end, collections, max_cloud, max_items)
    plan = plan_landcover_task(
        search,
        aoi,
        start,
        end,
        spec,
        store,
        resolution,
        crs,
        chunk,
        run_id=str(flow_run.get_id() or ""),
    )
    jobs = [
        TileJob(store, plan.cube.time_index, tile, chunk, plan.grid, plan.items, loader=loader)
        for tile in plan.cube.todo
    ]
    logger.info(
        "store %s, time index %d: %d tiles to write", store, plan.cube.time_index, len(jobs)
    )
    tiles = run_tile_task(
        segment_tiles_task, jobs, spec, "terrawatch.tasks.core.worker_model:worker_model"
    )
    published = publish_landcover_task(store, plan.cube.time_index, plan.grid.resolution**2)
    return {
        "store": store,
        "time": published.time,
        "tiles": tiles["statuses"],
        "stage_seconds": tiles["stage_seconds"],
        "tiles_total": plan.cube.n_tiles[0] * plan.cube.n_tiles[1],
        "areas": list(published.areas),
        "quicklook": published.quicklook,
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
