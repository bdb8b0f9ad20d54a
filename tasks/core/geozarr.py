"""The zarr-conventions (GeoZarr) declarations a cube's group attributes carry.

Besides the CF ``spatial_ref``/``grid_mapping`` that GDAL and rioxarray read today, every cube
declares the ``proj:`` and ``spatial:`` conventions of https://github.com/zarr-conventions in
a ``zarr_conventions`` array, so readers that follow them (GDAL 3.13+, rioxarray's planned
reader, OpenLayers' GeoZarr source) find the same grid without CF. The attribute values
(``proj:code``/``proj:wkt2``, ``spatial:dimensions``, ``spatial:transform``, ``spatial:shape``,
``spatial:bbox``, ``spatial:registration``) are written by
:func:`tasks.core.cube_store.group_attrs`.
"""

from __future__ import annotations

from typing import Any

PROJ_CONVENTION: dict[str, str] = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/geo-proj/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/geo-proj/blob/v1/README.md",
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "name": "proj:",
    "description": "Coordinate reference system information for geospatial data",
}
SPATIAL_CONVENTION: dict[str, str] = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "name": "spatial:",
    "description": "Spatial coordinate information",
}


def convention_attrs() -> dict[str, Any]:
    """``zarr_conventions`` and the pixel registration of a cube's group."""
    return {
        "zarr_conventions": [dict(PROJ_CONVENTION), dict(SPATIAL_CONVENTION)],
        "spatial:registration": "pixel",
    }
