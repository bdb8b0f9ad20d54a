"""``terrawatch export`` as a function: one cube layer to a COG or to vectors, by the suffix.

The command (:mod:`flows.cli_export`) and the xarray accessor call this, so both write the
same files. Formats: ``.tif`` Cloud-Optimized GeoTIFF (:mod:`tasks.core.export_cog`);
``.parquet`` / ``.gpkg`` / ``.geojson`` polygons per class (:mod:`tasks.core.export_polygons`),
building outlines (:mod:`tasks.core.export_buildings`) or road centerlines
(:mod:`tasks.core.export_roads`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import geopandas as gpd

from terrawatch.errors import InputError
from terrawatch.tasks.core.export_files import output_format, write_vector_batches
from terrawatch.tasks.core.export_source import ExportLayer

Objects = Literal["buildings", "roads"]
OBJECTS: tuple[str, ...] = ("buildings", "roads")


@dataclass(frozen=True)
class VectorOptions:
    """How polygons and objects are cut and cleaned (all lengths in metres)."""

    simplify: float = 0.0
    """Tolerance of the topology-keeping simplification (0 = pixel edges as they are)."""
    min_area: float = 0.0
    """Regions smaller than this many m² are absorbed into their largest neighbour (polygons;
    no gaps) or dropped (buildings)."""
    min_spur: float | None = None
    """Road spurs shorter than this are pruned (default: ``export_roads.SPUR_PIXELS`` pixels)."""


def export_layer(
    layer: ExportLayer,
    path: str | Path,
    *,
    objects: Objects | None = None,
    options: VectorOptions = VectorOptions(),
    overwrite: bool = False,
) -> tuple[Path, int]:
    """Write ``layer`` to ``path`` in the format of its suffix.

    Returns:
        The path and the number of features written (pixels' classes count 0 for a COG).

    Raises:
        InputError: Unknown suffix, ``objects`` with a ``.tif``, an unknown object kind, or a
            class the objects need that the cube lacks.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    kind = output_format(path, overwrite)
    if objects is not None and objects not in OBJECTS:
        raise InputError(f"--objects {objects!r} is not known; use one of {list(OBJECTS)!r}")
    if kind == "cog":
        if objects is not None:
            raise InputError(
                f"--objects {objects} writes vectors; give --to a .parquet, .gpkg or .geojson file"
            )
        from terrawatch.tasks.core.export_cog import export_cog

        return export_cog(layer, path), 0
    if objects is None:  # streamed: finished polygons go to the file a batch at a time
        from terrawatch.tasks.core.export_polygons import polygon_batches

        batches = polygon_batches(layer, simplify=options.simplify, min_area=options.min_area)
        return write_vector_batches(batches, path, layer.var)
    frame = vectors(layer, objects, options)
    return write_vector_batches([frame], path, objects)


def vectors(
    layer: ExportLayer, objects: Objects | None = None, options: VectorOptions = VectorOptions()
) -> gpd.GeoDataFrame:
    """The features :func:`export_layer` writes, as a GeoDataFrame in the cube's CRS."""
    if objects == "buildings":
        from terrawatch.tasks.core.export_buildings import building_outlines

        tolerance = options.simplify or None
        return building_outlines(layer, tolerance=tolerance, min_area=options.min_area)
    if objects == "roads":
        from terrawatch.tasks.core.export_roads import road_centerlines

        return road_centerlines(layer, min_spur=options.min_spur)
    from terrawatch.tasks.core.export_polygons import polygonize

    return polygonize(layer, simplify=options.simplify, min_area=options.min_area)
