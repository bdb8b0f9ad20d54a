"""Building outlines from the building class: one polygon per building, regularised.

Outlines are the class's polygons (:func:`~tasks.core.export_polygons.polygonize`: merged
across chunk seams, holes such as courtyards kept), then regularised one by one:

1. Douglas-Peucker simplification with ``tolerance`` metres (default one pixel), which turns
   the pixel staircase into straight walls (``shapely.simplify(preserve_topology=True)``);
2. the building's minimum rotated rectangle replaces it when the two overlap by at least
   :data:`RECTANGLE_IOU` (intersection over union): most buildings are rectangles, and a
   rectangle at the building's own orientation is the outline a mapper would draw;
3. otherwise the simplified outline is kept (L-shapes, courtyards, irregular halls).

The ``shape`` attribute says which of the two each outline is. Buildings are regularised
independently, so neighbouring outlines may overlap slightly after step 2 (buildings that touch
in the class map are one region already).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from terrawatch.tasks.core.export_polygons import polygonize
from terrawatch.tasks.core.export_source import ExportLayer, metres_per_unit

RECTANGLE_IOU = 0.85
"""Minimum intersection over union with its minimum rotated rectangle to become a rectangle."""
BUILDING_CLASS = "building"
"""The class (name or synonym in the cube's class table) whose regions are buildings."""


def building_outlines(
    layer: ExportLayer,
    *,
    class_name: str = BUILDING_CLASS,
    tolerance: float | None = None,
    min_area: float = 0.0,
) -> gpd.GeoDataFrame:
    """One regularised outline per building region of ``layer``.

    Args:
        layer: A land-cover layer whose class table has ``class_name``.
        class_name: The building class (``--objects buildings`` uses :data:`BUILDING_CLASS`).
        tolerance: Simplification tolerance in metres (default: one pixel).
        min_area: Building regions smaller than this many m² are absorbed into their
            surroundings (so not outlined), as ``--min-area`` does for polygons.

    Returns:
        Columns ``class``, ``area_m2``, ``confidence``, ``shape`` (``rectangle`` or
        ``simplified``) and ``geometry``.
    """
    value = layer.value_of(class_name, "--objects buildings")
    regions = polygonize(layer, [value], min_area=min_area)
    tol = layer.pixel_size_m if tolerance is None else tolerance
    tol_crs = tol / metres_per_unit(layer.crs)
    simplified = shapely.simplify(regions.geometry.values, tol_crs, preserve_topology=True)
    rectangles = shapely.oriented_envelope(simplified)
    inter = shapely.area(shapely.intersection(simplified, rectangles))
    union = shapely.area(shapely.union(simplified, rectangles))
    use_rect = inter >= RECTANGLE_IOU * union
    outlines = np.where(use_rect, rectangles, simplified)
    frame = gpd.GeoDataFrame(
        {
            "class": regions["class"].values,
            "area_m2": shapely.area(outlines) * metres_per_unit(layer.crs) ** 2,
            "confidence": regions["confidence"].values,
            "shape": np.where(use_rect, "rectangle", "simplified"),
        },
        geometry=gpd.GeoSeries(outlines, crs=layer.crs),
    )
    return frame
