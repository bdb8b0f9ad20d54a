"""What a responder hands on, written beside the store: polygons, footprint, numbers, report.

For an event of a local store ``flood.zarr`` and event date ``D``:

- ``flood.zarr.flood-D.parquet`` / ``.geojson``: flood polygons (GeoParquet, GeoJSON; EPSG:4326);
- ``flood.zarr.flood-D-footprint.geojson``: the area observed after the event;
- ``flood.zarr.flood-D.html``: the self-contained report (map, numbers, scenes, methods, note).

Each file is written to a temporary name first and renamed, so a failed or interrupted run
leaves the previous file whole. Object-storage stores get no files (the artifacts carry the
numbers and the picture).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.flood.landcover import flooded_by_class
from terrawatch.tasks.flood.polygons import EventLayers, flood_polygons, footprint
from terrawatch.tasks.flood.report import map_classes, map_png, report_html


@dataclass(frozen=True)
class FloodOutputs:
    """The files and numbers of one event's outputs."""

    files: dict[str, str]
    """Kind -> path (empty for object storage)."""
    areas: tuple[dict, ...]
    """Rows ``quantity, area_km2`` of the report's numbers table."""
    polygons: int
    """Flood polygons kept (at least the minimum mapping unit)."""
    png: bytes
    """The report's map."""
    by_class: tuple[dict, ...] = ()
    """Flooded km² per land-cover class (with a land-cover cube)."""


def read_event(store: str, time_index: int) -> tuple[EventLayers, np.ndarray, np.ndarray]:
    """The event's layers, its ``reference_water`` and its ``exclusion`` from the store."""
    group = zarr.open_group(store, mode="r")

    def layer(name: str) -> np.ndarray:
        return np.asarray(group[name][time_index])

    layers = EventLayers(
        layer("flooded"), layer("likelihood"), layer("observed_at"), layer("source")
    )
    return layers, layer("reference_water"), layer("exclusion")


def area_rows(
    layers: EventLayers, reference: np.ndarray, exclusion: np.ndarray, pixel_km2: float
) -> list[dict]:
    """The report's numbers: flooded first, then what was and was not observed."""
    observed = layers.source != 0
    quantities = (
        ("flooded", layers.flooded == 1),
        ("reference (normal) water", observed & (reference == 1)),
        ("excluded: SAR cannot see water", observed & (exclusion != 0) & (exclusion != NODATA)),
        ("observed after the event", observed),
        ("not observed (no data)", ~observed),
    )
    return [
        {"quantity": q, "area_km2": round(float(m.sum()) * pixel_km2, 6)} for q, m in quantities
    ]


def _replace_write(path: str, write) -> str:
    """Write through ``write(tmp_path)`` and rename onto ``path``: all or nothing."""
    suffix = Path(path).suffix
    tmp = f"{path}.partial{suffix}"
    write(tmp)
    os.replace(tmp, path)
    return path


def write_outputs(
    store: str,
    time_index: int,
    grid: GridSpec,
    event: str,
    min_area_ha: float,
    scenes: list[dict],
    methods: list[str],
    landcover: str | None = None,
) -> FloodOutputs:
    """Polygons, footprint, numbers and the HTML report of one finished event."""
    layers, reference, exclusion = read_event(store, time_index)
    pixel_km2 = grid.resolution**2 / 1e6
    polygons = flood_polygons(layers, grid, min_area_ha)
    rows = area_rows(layers, reference, exclusion, pixel_km2)
    rows.insert(1, {"quantity": f"flood polygons (>= {min_area_ha:g} ha)", "area_km2":
                    round(float(polygons["area_km2"].sum()), 6)})  # fmt: skip
    name = Path(str(store).rstrip("/")).name
    title = f"Flood {event} - {name}"
    by_class = flooded_by_class(landcover, grid, layers.flooded) if landcover else []
    png = map_png(map_classes(layers, reference, exclusion), grid.resolution, title)
    files: dict[str, str] = {}
    if "://" not in store:
        stem = f"{str(store).rstrip('/')}.flood-{event}"
        files["polygons_geoparquet"] = _replace_write(f"{stem}.parquet", polygons.to_parquet)
        files["polygons_geojson"] = _replace_write(
            f"{stem}.geojson", lambda p: polygons.to_file(p, driver="GeoJSON")
        )
        files["footprint_geojson"] = _replace_write(
            f"{stem}-footprint.geojson",
            lambda p: footprint(layers, grid).to_file(p, driver="GeoJSON"),
        )
        page = report_html(title, png, rows, scenes, methods, dict(files), by_class)
        files["report_html"] = _replace_write(
            f"{stem}.html", lambda p: Path(p).write_text(page, encoding="utf-8")
        )
    return FloodOutputs(files, tuple(rows), len(polygons), png, tuple(by_class))
