"""Finalise a change cube's pair; publish the changed area per transition and a quicklook."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from terrawatch.tasks.change.cube import ChangeCounts, finalize_change_cube
from terrawatch.tasks.core.cube_store import open_cube
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.load import read_composite
from terrawatch.tasks.core.map_frame import MapFrame
from terrawatch.tasks.core.publish import (
    artifact_key,
    block_any_of,
    coarse_grid,
    fit_image,
    period_text,
    png_markdown,
    step_record,
    write_beside,
)
from terrawatch.tasks.core.render import change_quicklook_png

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedChange:
    """Summary of one finished pair."""

    store: str
    """Zarr store."""
    time: str
    """Start of the later period (the ``time`` coordinate), ISO date."""
    time_before: str
    """Start of the earlier period, ISO date."""
    changed_km2: float
    """Changed area."""
    valid_km2: float
    """Area valid at both dates."""
    transitions: tuple[dict, ...]
    """Rows of class_from, class_to, pixels, area_km2, share_percent (of the changed area)."""
    quicklook: str | None
    """Path of the quicklook PNG beside a local store (None for object storage)."""


def publish_change(
    store: str,
    time_index: int,
    grid: GridSpec,
    items_t1: tuple[dict, ...],
    items_t2: tuple[dict, ...],
    loader: str = "odc",
) -> PublishedChange:
    """Check completeness, count changes, write the quicklook and create the artifacts."""
    counts = finalize_change_cube(store, time_index)
    pixel_km2 = grid.resolution**2 / 1e6
    rows = transition_table(counts, pixel_km2)
    cube = open_cube(store, mask_and_scale=False)
    time = str(np.datetime_as_string(cube["time"].values[time_index], unit="D"))
    before = str(np.datetime_as_string(cube["time_before"].values[time_index], unit="D"))
    record = step_record(cube, time_index)
    dates = (period_text(record.get("before", {}), before), period_text(record, time))
    png = change_quicklook(store, time_index, grid, items_t1, items_t2, loader, dates)
    quicklook = write_beside(store, f"change-{before}-{time}.png", png)
    key = artifact_key(store)
    changed_km2, valid_km2 = counts.changed * pixel_km2, counts.valid * pixel_km2
    create_table_artifact(
        rows or [{"class_from": "-", "class_to": "-", "pixels": 0, "area_km2": 0.0}],
        key=f"{key}-changes",
        description=f"Changed area per transition, {store}, {before} -> {time}",
    )
    create_markdown_artifact(
        f"### Change {before} -> {time}\n\nStore: `{store}`\n\n"
        f"Changed: {changed_km2:.4g} km² of {valid_km2:.4g} km² valid at both dates.\n\n"
        + png_markdown(png, "before, after and the change outline"),
        key=f"{key}-quicklook",
        description=f"Before, after and the change outline of {store}, {before} -> {time}",
    )
    return PublishedChange(store, time, before, changed_km2, valid_km2, tuple(rows), quicklook)


def transition_table(counts: ChangeCounts, pixel_km2: float) -> list[dict]:
    """One row per class_from -> class_to transition, largest first."""
    return [
        {
            "class_from": source,
            "class_to": target,
            "pixels": pixels,
            "area_km2": pixels * pixel_km2,
            "share_percent": 100.0 * pixels / counts.changed if counts.changed else 0.0,
        }
        for source, target, pixels in counts.transitions
    ]


def change_quicklook(
    store: str,
    time_index: int,
    grid: GridSpec,
    items_t1: tuple[dict, ...],
    items_t2: tuple[dict, ...],
    loader: str = "odc",
    dates: tuple[str, str] | None = None,
) -> bytes:
    """Before, after and the change outline as a quicklook PNG, with coordinates and dates.

    The images are read on a coarser grid (odc-stac reads overviews where there are any) and
    the change mask is reduced with a block "any", so a large cube costs a small picture.
    ``dates`` are the two periods (panel titles and the figure title).
    """
    coarse, step, window = coarse_grid(grid)
    mask = block_any_of(store, "changed", time_index, step)
    t1, _ = read_composite(items_t1, coarse, window, loader)
    t2, _ = read_composite(items_t2, coarse, window, loader)
    frame = MapFrame.from_grid(grid)
    name = Path(str(store).rstrip("/")).name
    title = f"{name} · change {dates[0]} → {dates[1]}" if dates else f"{name} · change"
    return change_quicklook_png(
        fit_image(t1, mask.shape), fit_image(t2, mask.shape), mask, dates=dates,
        title=f"{title}\n{frame.crs_text}", frame=frame,
    )  # fmt: skip


publish_change_task = task(publish_change, name="publish-change", cache_policy=NO_CACHE)
