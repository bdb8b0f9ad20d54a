"""The flood-response flow: SAR before/after an event -> water on Dask -> flood-extent Zarr cube."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from terrawatch.flows.landcover import ModelOptions
from terrawatch.flows.runner import dask_task_runner, run_tile_task
from terrawatch.tasks.core.catalog import default_sar_collections
from terrawatch.tasks.core.sar_composite import SarOptions
from terrawatch.tasks.core.worker_model import ModelSpec
from terrawatch.tasks.flood.plan import FloodSpec, plan_flood_task
from terrawatch.tasks.flood.publish import publish_flood_task
from terrawatch.tasks.flood.search import (
    DEFAULT_CLASSES,
    flood_windows,
    search_optical_window_task,
    search_sar_window_task,
    water_indices,
)
from terrawatch.tasks.flood.tile import FloodTileJob, flood_tiles_task


class FloodModelOptions(ModelOptions):
    """Segmenter options of a flood run: SAR (AlignEarth) by default, optical for S2 scenes."""

    sensor: Literal["sar", "optical"] = Field(
        "sar", description="encoder for the SAR composites: sar (AlignEarth) or optical CLIP"
    )
    optical_weights: str | None = Field(
        None, description="CLIP checkpoint for optical scenes (default weights dir/download)"
    )
    factory: str | None = Field(
        None, description="'package.module:callable' building your own segmenter (ModelSpec)"
    )

    def spec(self, classes: list[str]) -> ModelSpec:
        """The spec of the SAR segmenter."""
        base = super().spec(classes)
        return dataclasses.replace(base, sensor=self.sensor, factory=self.factory)

    def optical_spec(self, classes: list[str]) -> ModelSpec:
        """The spec of the optical segmenter (same classes and settings, optical CLIP)."""
        base = super().spec(classes)
        return dataclasses.replace(
            base, weights=self.optical_weights, sensor="optical", factory=self.factory
        )


@flow(name="flood", task_runner=dask_task_runner())
def flood(
    aoi: str | list[float] | dict[str, Any],
    event_date: str,
    pre_days: int = 12,
    post_days: int = 6,
    classes: list[str] | None = None,
    water_classes: list[str] | None = None,
    catalog: str = "planetary-computer",
    store: str = "flood.zarr",
    collections: list[str] | None = None,
    orbit: Literal["ascending", "descending"] | None = None,
    polarizations: list[str] | None = None,
    speckle: Literal["lee", "refined_lee"] | None = "lee",
    speckle_window: int = 7,
    composite: Literal["grey", "dual"] = "grey",
    optical: bool = False,
    optical_collections: list[str] | None = None,
    max_cloud: float | None = 10.0,
    max_items: int = 20,
    resolution: float | None = None,
    crs: str | None = None,
    chunk: int = 1024,
    halo: int = 112,
    loader: Literal["odc", "stackstac"] = "odc",
    model: FloodModelOptions | None = None,
) -> dict[str, Any]:
    """Map the water before and after an event and the flooded area, as one event of a cube.

    Args:
        aoi: ``"W,S,E,N"`` in degrees, 4 numbers, or a GeoJSON geometry/feature.
        event_date: ISO date of the event; the post-event window starts on it.
        pre_days: Days before the event searched for the reference (pre-event) images.
        post_days: Days after the event date searched for the flood images.
        classes: Class names, commas join synonyms (default: water vs land:
            ``["water,river,lake,flood water", "land,field,building,road,tree"]``).
        water_classes: Names (or synonyms) of the classes that count as water (default
            ``["water"]``).
        catalog: ``planetary-computer`` (Sentinel-1 RTC), ``earth-search`` (GRD), a STAC API
            URL or a local folder.
        store: Zarr store path or fsspec URL; an existing flood cube gets a new event.
        collections: SAR collections (default ``sentinel-1-rtc`` on Planetary Computer, else
            ``sentinel-1-grd``).
        orbit: Keep only ``ascending`` or ``descending`` passes (needed when both occur).
        polarizations: SAR polarisations to load (default: what the composite needs).
        speckle: Speckle filter ``lee``, ``refined_lee`` or None.
        speckle_window: Speckle filter window in pixels.
        composite: SAR model input: ``grey`` (co-pol; what AlignEarth was shown on) or ``dual``.
        optical: Also use cloud-free optical scenes (Sentinel-2 L2A) in both windows; their
            valid pixels win over SAR (``source_*`` = 2 there).
        optical_collections: Optical collections (default ``sentinel-2-l2a``).
        max_cloud: Maximum ``eo:cloud_cover`` of optical scenes, percent.
        max_items: Maximum number of scenes per window and sensor.
        resolution: Output pixel size in CRS units (default 10 m, Sentinel-1's).
        crs: Output CRS (default: UTM zone of the AOI centre).
        chunk: Output chunk (tile) size in pixels.
        halo: Pixels read around each chunk for context.
        loader: ``odc`` (odc-stac) or ``stackstac``.
        model: Segmenter options (``sensor="sar"``: AlignEarth on the SAR composites).

    Returns:
        Store, event date, windows, tile counts, flooded area in km², area table, picture path.
    """
    logger = get_run_logger()
    windows = flood_windows(event_date, pre_days, post_days)
    classes = list(classes or DEFAULT_CLASSES)
    options = model or FloodModelOptions()
    spec = FloodSpec(
        options.spec(classes),
        water_indices(classes, water_classes),
        options.optical_spec(classes) if optical else None,
    )
    sar = SarOptions(
        tuple(polarizations) if polarizations else None, speckle, speckle_window, composite
    )
    collections = collections or default_sar_collections(catalog)
    pre, post = (
        search_sar_window_task(catalog, aoi, side, window, collections, max_items, orbit)
        for side, window in (("pre", windows.pre), ("post", windows.post))
    )
    pre_optical = post_optical = None
    if optical:
        pre_optical, post_optical = (
            search_optical_window_task(
                catalog, aoi, side, window, optical_collections, max_cloud, max_items
            )
            for side, window in (("pre", windows.pre), ("post", windows.post))
        )
    plan = plan_flood_task(
        pre, post, windows, spec, sar, store, aoi, pre_optical, post_optical,
        resolution, crs, chunk, run_id=str(flow_run.get_id() or ""),
    )  # fmt: skip
    cube, grid = plan.cube, plan.grid
    jobs = [
        FloodTileJob(store, cube.time_index, tile, chunk, grid, plan.pre, plan.post, plan.sar,
                     halo=halo, loader=loader)
        for tile in cube.todo
    ]  # fmt: skip
    logger.info("flood store %s, event %s: %d tiles to write", store, windows.event, len(jobs))
    tiles = run_tile_task(
        flood_tiles_task, jobs, spec, "terrawatch.tasks.core.worker_model:worker_model", spec.sar
    )
    published = publish_flood_task(
        store, cube.time_index, grid, plan.pre.sar, plan.post.sar, plan.sar, loader
    )
    return {
        "store": store,
        "event_date": published.event,
        "pre_window": list(windows.pre),
        "post_window": list(windows.post),
        "tiles": tiles["statuses"],
        "stage_seconds": tiles["stage_seconds"],
        "tiles_total": cube.n_tiles[0] * cube.n_tiles[1],
        "flooded_km2": published.flooded_km2,
        "areas": list(published.areas),
        "picture": published.picture,
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
