"""Step 5: finalise a cube's time step and publish class areas and a quicklook as artifacts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from terrawatch.tasks.core.cube_overviews import has_overview, open_overview, overview_factors
from terrawatch.tasks.core.cube_store import open_cube
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.map_frame import MapFrame
from terrawatch.tasks.core.publish import (
    artifact_key,
    period_text,
    png_markdown,
    quicklook_step,
    step_record,
    write_beside,
)
from terrawatch.tasks.core.render import class_area_table, quicklook_png
from terrawatch.tasks.landcover.cube import finalize_cube

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedStep:
    """Summary of one finished time step."""

    store: str
    """Zarr store."""
    time: str
    """Time coordinate (ISO date)."""
    areas: tuple[dict, ...]
    """Rows of class, pixels, area_km2, share_percent."""
    quicklook: str | None
    """Path of the quicklook PNG written beside a local store (None for object storage)."""


def publish_landcover(store: str, time_index: int, pixel_area_m2: float) -> PublishedStep:
    """Check completeness, count classes, write the quicklook and create the artifacts."""
    counts = finalize_cube(store, time_index)
    names = list(counts)
    areas = class_area_table([counts[n] for n in names], names, pixel_area_m2)
    cube = open_cube(store, mask_and_scale=False)
    time = str(np.datetime_as_string(cube["time"].values[time_index], unit="D"))
    labels = _strided_labels(cube, time_index, store)
    colors = [entry["color"] for entry in cube.attrs["classes"]]  # the cube's own table
    frame = MapFrame.from_grid(GridSpec.from_dict(cube.attrs["grid"]))
    png = quicklook_png(
        labels, names, colors=colors, title=landcover_title(store, cube, time_index, frame),
        frame=frame,
    )  # fmt: skip
    quicklook = write_beside(store, f"quicklook-{time}.png", png)
    key = artifact_key(store)
    create_table_artifact(areas, key=f"{key}-areas", description=f"Class areas, {store} at {time}")
    create_markdown_artifact(
        f"### Land cover {time}\n\nStore: `{store}`\n\n" + png_markdown(png, "quicklook"),
        key=f"{key}-quicklook",
        description=f"Quicklook of {store} at {time}",
    )
    return PublishedStep(store, time, tuple(areas), quicklook)


def landcover_title(store: str, cube, time_index: int, frame: MapFrame) -> str:
    """``<store> · land cover <period>`` over the CRS: what a reader needs to place the map."""
    time = str(np.datetime_as_string(cube["time"].values[time_index], unit="D"))
    period = period_text(step_record(cube, time_index), time)
    return f"{Path(str(store).rstrip('/')).name} · land cover {period}\n{frame.crs_text}"


def _strided_labels(cube, time_index: int, store: str) -> np.ndarray:
    """Read only every n-th pixel, so a continental cube gives a small picture cheaply: from
    the coarsest overview level that is still at least as fine as the picture."""
    step = quicklook_step((cube.sizes["y"], cube.sizes["x"]))
    labels = cube["landcover"].isel(time=time_index)
    factor = max((f for f in overview_factors(cube.landcover.shape[1:]) if f <= step), default=1)
    if factor > 1 and has_overview(store, factor, time_index):
        level = open_overview(store, factor)["landcover"]
        labels, step = level.sel(time=labels["time"].values), max(1, step // factor)
    return labels.isel(y=slice(None, None, step), x=slice(None, None, step)).values


publish_landcover_task = task(publish_landcover, name="publish-landcover", cache_policy=NO_CACHE)
