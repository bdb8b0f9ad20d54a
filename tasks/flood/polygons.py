"""Flood polygons and the observation footprint of one event, in EPSG:4326, for responders' GIS.

The ``flooded`` raster is cut into connected regions (4-connectivity, as
:func:`rasterio.features.shapes` traces them, so holes stay holes); each region becomes one
polygon with its area (computed in the grid's projected CRS, before reprojecting), the mean
``likelihood`` and the first ``observed_at`` of its pixels. Regions below the minimum mapping
unit are dropped. The footprint is the union of the pixels any member observed.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import rasterio.features
from scipy import ndimage
from shapely.geometry import shape
from shapely.ops import unary_union

from terrawatch.tasks.core.grid import GridSpec

WGS84 = "EPSG:4326"
DEFAULT_MIN_AREA_HA = 0.5
"""Default minimum mapping unit in hectares (GFM and UNOSAT maps drop specks below this)."""
FOUR = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])
"""4-connectivity, the one :func:`rasterio.features.shapes` traces by default."""


@dataclass(frozen=True)
class EventLayers:
    """The rasters of one event that the outputs need (one time step of the cube)."""

    flooded: np.ndarray
    """uint8 0/1, 255 no data."""
    likelihood: np.ndarray
    """uint8 0..100, 255 no data."""
    observed_at: np.ndarray
    """int64 seconds since 1970, -1 none."""
    source: np.ndarray
    """uint8 member bits, 0 none."""


def flood_polygons(layers: EventLayers, grid: GridSpec, min_area_ha: float) -> gpd.GeoDataFrame:
    """One polygon per connected flooded region of at least ``min_area_ha``, in EPSG:4326.

    Columns: ``area_ha``, ``area_km2``, ``likelihood_mean`` (0..100), ``first_observed``
    (ISO UTC), ``pixels``; sorted by area, largest first.
    """
    flooded = layers.flooded == 1
    regions, count = ndimage.label(flooded, structure=FOUR)
    transform = grid.geobox.transform
    index = np.arange(1, count + 1)
    likelihood = ndimage.mean(layers.likelihood.astype(np.float64), regions, index) if count else []
    first = ndimage.minimum(layers.observed_at, regions, index) if count else []
    rows = []
    shapes = rasterio.features.shapes(regions.astype(np.int32), mask=flooded, transform=transform)
    for geometry, value in shapes:
        polygon = shape(geometry)
        area_ha = polygon.area / 1e4
        if area_ha < min_area_ha:
            continue
        i = int(value) - 1
        when = np.datetime64(int(first[i]), "s") if first[i] >= 0 else None
        rows.append({
            "geometry": polygon,
            "area_ha": round(area_ha, 4),
            "area_km2": round(area_ha / 100, 6),
            "likelihood_mean": round(float(likelihood[i]), 1),
            "first_observed": f"{when}Z" if when is not None else None,
            "pixels": round(polygon.area / grid.resolution**2),
        })  # fmt: skip
    columns = ["area_ha", "area_km2", "likelihood_mean", "first_observed", "pixels"]
    frame = gpd.GeoDataFrame(rows, columns=[*columns, "geometry"], geometry="geometry",
                             crs=grid.crs)  # fmt: skip
    return frame.sort_values("area_ha", ascending=False, ignore_index=True).to_crs(WGS84)


def footprint(layers: EventLayers, grid: GridSpec) -> gpd.GeoDataFrame:
    """The observed area (any member saw the pixel) as one (multi)polygon in EPSG:4326."""
    seen = layers.source != 0
    parts = [
        shape(g)
        for g, _ in rasterio.features.shapes(
            seen.astype(np.uint8), mask=seen, transform=grid.geobox.transform
        )
    ]
    union = unary_union(parts) if parts else None
    area = union.area / 1e6 if union is not None else 0.0
    frame = gpd.GeoDataFrame(
        [{"geometry": union, "observed_km2": round(area, 6)}], geometry="geometry", crs=grid.crs
    )
    return frame.to_crs(WGS84)


def write_polygons(frame: gpd.GeoDataFrame, stem: str) -> dict[str, str]:
    """``frame`` as ``<stem>.parquet`` (GeoParquet) and ``<stem>.geojson``; their paths."""
    paths = {"geoparquet": f"{stem}.parquet", "geojson": f"{stem}.geojson"}
    frame.to_parquet(paths["geoparquet"])
    frame.to_file(paths["geojson"], driver="GeoJSON")
    return paths
