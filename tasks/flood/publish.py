"""Finalise a flood cube's event; publish the flooded area in km² and a picture as artifacts."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from terrawatch.tasks.core.cube_store import open_cube
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.map_frame import MapFrame
from terrawatch.tasks.core.publish import (
    artifact_key,
    block_any_of,
    coarse_grid,
    fit_image,
    png_markdown,
    write_beside,
)
from terrawatch.tasks.core.render import color_rgb255, render_panels, to_hwc_uint8
from terrawatch.tasks.core.sar import POLARIZATIONS
from terrawatch.tasks.core.sar_composite import SarOptions, read_sar_composite
from terrawatch.tasks.flood.cube import FloodCounts, finalize_flood_cube
from terrawatch.tasks.flood.outputs import write_outputs
from terrawatch.tasks.flood.polygons import DEFAULT_MIN_AREA_HA
from terrawatch.tasks.flood.report import NOTE

logger = logging.getLogger(__name__)

FLOOD_COLOR = "#0050ff"
"""Flooded pixels in the picture (blue)."""
PRE_WATER_COLOR = "#00d0d0"
"""Water already there before the event (rivers, lakes) in the picture (teal)."""


@dataclass(frozen=True)
class PublishedFlood:
    """Summary of one finished event."""

    store: str
    """Zarr store."""
    event: str
    """Event date (the ``time`` coordinate), ISO date."""
    flooded_km2: float
    """Flooded area."""
    areas: tuple[dict, ...]
    """Rows of quantity, pixels, area_km2 (flooded, water before/after, observed, unknown)."""
    picture: str | None
    """Path of the PNG beside a local store (None for object storage)."""
    files: dict | None = None
    """The responder's files beside the store (polygons, footprint, report), kind -> path."""
    report_areas: tuple[dict, ...] = ()
    """The report's numbers (flooded, polygons, reference water, excluded, (not) observed)."""
    by_class: tuple[dict, ...] = ()
    """Flooded km² per land-cover class (with ``--landcover-cube``)."""


def publish_flood(
    store: str,
    time_index: int,
    grid: GridSpec,
    pre_sar: tuple[dict, ...],
    post_sar: tuple[dict, ...],
    sar: SarOptions,
    loader: str = "odc",
    min_area_ha: float = DEFAULT_MIN_AREA_HA,
    reference_sar: tuple[dict, ...] = (),
    landcover: str | None = None,
    optical: tuple[dict, ...] = (),
) -> PublishedFlood:
    """Check completeness, count the pixels, draw the picture, write the responder's files
    (:mod:`tasks.flood.outputs`) and create the artifacts."""
    counts = finalize_flood_cube(store, time_index)
    pixel_km2 = grid.resolution**2 / 1e6
    rows = flood_area_table(counts, pixel_km2)
    cube = open_cube(store, mask_and_scale=False)
    days = {
        name: str(np.datetime_as_string(cube[name].values[time_index], unit="D"))
        for name in ("time", "pre_start", "post_end")
    }
    event = days["time"]
    days["pre_end"] = str(np.datetime64(event, "D") - 1)
    png = flood_picture(store, time_index, grid, pre_sar, post_sar, sar, loader, days)
    picture = write_beside(store, f"flood-{event}.png", png)
    key = artifact_key(store)
    flooded_km2 = counts.flooded * pixel_km2
    scenes = scene_rows(pre_sar, post_sar, reference_sar, optical)
    outputs = write_outputs(store, time_index, grid, event, min_area_ha, scenes,
                            method_lines(cube.attrs), landcover)  # fmt: skip
    create_table_artifact(
        rows, key=f"{key}-flood-area", description=f"Flooded area, {store}, event {event}"
    )
    create_table_artifact(
        list(outputs.areas),
        key=f"{key}-flood-report",
        description=f"Flood report numbers (km²), {store}, event {event}; {NOTE}",
    )
    if outputs.by_class:
        create_table_artifact(
            list(outputs.by_class),
            key=f"{key}-flood-landcover",
            description=f"Flooded km² per land-cover class, {store}, event {event}",
        )
    create_markdown_artifact(
        f"### Flood {event}\n\nStore: `{store}`\n\n"
        f"Flooded: **{flooded_km2:.4g} km²**: water after the event ({event}.."
        f"{days['post_end']}) where there was none before it ({days['pre_start']}.."
        f"{days['pre_end']}).\n\n"
        + png_markdown(png, "before, after and the flooded area")
        + "\n\n"
        + png_markdown(outputs.png, "flood map")
        + f"\n\n*{NOTE}*",
        key=f"{key}-flood-picture",
        description=f"Before, after and the flooded area of {store}, event {event}",
    )
    logger.info("flood %s in %s: %.4g km2 flooded", event, store, flooded_km2)
    unseen = next(r["area_km2"] for r in outputs.areas if r["quantity"].startswith("not observed"))
    if unseen > 0:
        total = grid.shape[0] * grid.shape[1] * pixel_km2
        logger.warning(
            "%.4g km2 of the AOI (%.1f %%) was not observed after the event: no data there "
            "(flooded 255), not 'not flooded'; see the footprint",
            unseen, 100 * unseen / total,
        )  # fmt: skip
    return PublishedFlood(
        store, event, flooded_km2, tuple(rows), picture, outputs.files, outputs.areas,
        outputs.by_class,
    )  # fmt: skip


def scene_rows(
    pre: tuple[dict, ...],
    post: tuple[dict, ...],
    reference: tuple[dict, ...],
    optical: tuple[dict, ...] = (),
) -> list[dict]:
    """The report's scenes: role, id, acquisition time, orbit (optical: the optical member's)."""
    rows, seen = [], set()
    for role, items in (("after the event", post), ("optical", optical),
                        ("before the event", pre), ("reference", reference)):  # fmt: skip
        for item in items:
            if item["id"] in seen:
                continue
            seen.add(item["id"])
            props = item.get("properties", {})
            rows.append({"role": role, "scene": item["id"], "time": props.get("datetime"),
                         "orbit": props.get("sat:orbit_state")})  # fmt: skip
    return rows


def method_lines(attrs: dict) -> list[str]:
    """The report's methods, from the cube's provenance."""
    lines = [
        f"members: {', '.join(attrs.get('members', []))} ({attrs.get('members_note', '')})",
        "flooded = observed water (majority of the members that observed the pixel) and not "
        "reference water and not excluded; likelihood = the members' water probability "
        "pooled by log-odds",
    ]
    settings = attrs.get("threshold_member")
    if settings:
        lines.append(f"threshold member: {settings['algorithm']}; decrease test "
                     f"{settings['decrease_db']} dB; global fallback "
                     f"{settings['global_threshold_db']} dB")  # fmt: skip
    for record in attrs.get("scene_thresholds", []):
        parts = [f"{p} {v['db']} dB ({v['method']})" for p, v in record.items() if p != "scene"]
        lines.append(f"scene {record['scene']}: " + ", ".join(parts))
    optical = (attrs.get("optical_member") or {}).get("spectral")
    if optical:
        lines.append(
            f"optical member: NDWI (McFeeters 1996) > {optical['ndwi_threshold']} and MNDWI (Xu "
            f"2006) > {optical['mndwi_threshold']} on Sentinel-2 pixels the SCL calls clear "
            f"(not observed: SCL {optical['scl_not_observed']}); post-event scenes "
            f"{', '.join(optical['items_post']) or 'none'}"
        )
    for product in attrs.get("reference_products") or []:
        lines.append(f"reference water product: {product['rule']} ({', '.join(product['items'])})")
    terrain = attrs.get("terrain")
    if terrain:
        lines.append(
            f"radar shadow and layover: DEM {', '.join(terrain['dem_items'])}, look azimuth "
            f"{terrain['look_azimuth_deg']} deg, incidence {terrain['incidence']}"
        )
    elif "terrain" in attrs:
        lines.append("radar shadow and layover: no DEM in the catalog, not flagged")
    if attrs.get("model"):
        lines.append(f"segmenter: {attrs['model'].get('backbone', '?')}")
    lines.append(
        f"reference window: scenes of {len(attrs.get('items_reference_sar', []))} dates before "
        "the event; exclusion: dark in every reference scene"
    )
    return lines


def flood_area_table(counts: FloodCounts, pixel_km2: float) -> list[dict]:
    """Rows ``quantity, pixels, area_km2``: flooded first, then water and coverage."""
    quantities = (
        ("flooded", counts.flooded),
        ("water before the event", counts.water_pre),
        ("water after the event", counts.water_post),
        ("observed before and after", counts.observed_both),
        ("unknown: water after, no image before", counts.unknown),
        ("after: decided by SAR", counts.sources_post["sar"]),
        ("after: decided by optical", counts.sources_post["optical"]),
    )
    return [
        {"quantity": name, "pixels": int(n), "area_km2": n * pixel_km2} for name, n in quantities
    ]


def flood_picture(
    store: str,
    time_index: int,
    grid: GridSpec,
    pre_sar: tuple[dict, ...],
    post_sar: tuple[dict, ...],
    sar: SarOptions,
    loader: str = "odc",
    days: dict[str, str] | None = None,
) -> bytes:
    """SAR before, after, and after with water before (teal) and flooded (blue), as PNG.

    A quicklook (:mod:`tasks.core.publish`): the SAR images are read on a coarser grid
    (odc-stac reads overviews where there are any) without speckle filter, and the masks are
    reduced with a block "any", so small flooded patches still show.
    """
    coarse, step, window = coarse_grid(grid)
    grey = "grey" if sar.composite not in POLARIZATIONS else sar.composite
    view = dataclasses.replace(sar, composite=grey, speckle=None)
    flooded = block_any_of(store, "flooded", time_index, step)
    water_pre = block_any_of(store, "water_pre", time_index, step)
    pre, _ = read_sar_composite(pre_sar, coarse, window, view, loader, latest_first=True)
    post, _ = read_sar_composite(post_sar, coarse, window, view, loader)
    pre, post = (to_hwc_uint8(fit_image(img, flooded.shape)) for img in (pre, post))
    overlay = post.copy()
    overlay[water_pre] = color_rgb255(PRE_WATER_COLOR, "PRE_WATER_COLOR")
    overlay[flooded] = color_rgb255(FLOOD_COLOR, "FLOOD_COLOR")
    days = days or {}
    panels = [
        (f"before ({days.get('pre_start', '?')}..{days.get('pre_end', '?')})", pre),
        (f"after ({days.get('time', '?')}..{days.get('post_end', '?')})", post),
        ("after + water", overlay),
    ]
    legend = [("flooded", FLOOD_COLOR), ("water before the event", PRE_WATER_COLOR)]
    frame = MapFrame.from_grid(grid)
    name = Path(str(store).rstrip("/")).name
    title = f"{name} · flood {days.get('time', '')}\n{frame.crs_text}"
    return render_panels(panels, legend, title, frame)


publish_flood_task = task(publish_flood, name="publish-flood", cache_policy=NO_CACHE)
