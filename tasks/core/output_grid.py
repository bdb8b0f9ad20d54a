"""The output grid of a run: given, or derived from the AOI in its UTM zone at the sensor's GSD."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import pyproj

from terrawatch.errors import InputError
from terrawatch.tasks.core.defaults import SENSOR_GSD
from terrawatch.tasks.core.grid import GridSpec


def default_resolution(collection: str, item: dict | None = None) -> float:
    """Inference pixel size in metres for a collection.

    Sentinel-2 (and Sentinel-1 RTC) 10 m, Landsat 30 m: the native size of the sensor's
    finest bands, so no detail is thrown away and nothing is invented. Anything else
    (``local`` aerial imagery) is read at its native pixel size, taken from ``item``'s
    ``proj:transform``.

    Raises:
        InputError: unknown collection and no item with ``proj:transform`` given.
    """
    for prefix, gsd in SENSOR_GSD.items():
        if collection.startswith(prefix):
            return gsd
    sizes = [] if item is None else _pixel_sizes(item)
    if not sizes:
        raise InputError(
            f"no default resolution for collection {collection!r}: known prefixes are "
            f"{sorted(SENSOR_GSD)}; pass an item with proj:transform, or give a resolution"
        )
    return min(sizes)


def _pixel_sizes(item: dict) -> list[float]:
    holders = [item.get("properties", {}), *item.get("assets", {}).values()]
    return [abs(float(h["proj:transform"][0])) for h in holders if h.get("proj:transform")]


def utm_crs(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone CRS of a point (standard 6-degree zones, no Norway exceptions)."""
    zone = min(max(math.floor((lon + 180.0) / 6.0) + 1, 1), 60)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def _check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        values = ()
    ok = len(values) == 4 and all(math.isfinite(v) for v in values)
    if ok:
        west, south, east, north = values
        ok = -180 <= west < east <= 180 and -90 <= south < north <= 90
    if not ok:
        raise InputError(
            f"aoi_bbox_lonlat must be (west, south, east, north) in degrees with west < east "
            f"and south < north (no antimeridian crossing), got {bbox!r}"
        )
    return values  # type: ignore[return-value]


def _check_resolution(resolution: float) -> float:
    number = isinstance(resolution, numbers.Real) and not isinstance(resolution, bool)
    if not (number and math.isfinite(resolution) and resolution > 0):
        raise InputError(f"resolution must be a number > 0 (CRS units), got {resolution!r}")
    return float(resolution)


def grid_for_aoi(
    aoi_bbox_lonlat: tuple[float, float, float, float], resolution: float, crs: str | None = None
) -> GridSpec:
    """The explicit output grid covering an AOI.

    ``crs=None`` picks the UTM zone of the AOI centre (EPSG:326xx north, 327xx south). The
    bounds are the AOI reprojected (edges densified) and snapped outward to multiples of
    ``resolution``, so grids of neighbouring AOIs at one resolution share pixel edges.

    Raises:
        InputError: empty, inverted or out-of-range bbox; resolution <= 0; unknown CRS.
    """
    west, south, east, north = _check_bbox(aoi_bbox_lonlat)
    res = _check_resolution(resolution)
    target = crs or utm_crs((west + east) / 2, (south + north) / 2)
    try:
        out_crs = pyproj.CRS.from_user_input(target)
    except pyproj.exceptions.CRSError as err:
        raise InputError(f"crs must be a CRS such as 'EPSG:32632', got {crs!r} ({err})") from err
    to_grid = pyproj.Transformer.from_crs("EPSG:4326", out_crs, always_xy=True)
    bounds = to_grid.transform_bounds(west, south, east, north, densify_pts=21)
    if not all(math.isfinite(b) for b in bounds):
        raise InputError(f"aoi_bbox_lonlat {aoi_bbox_lonlat!r} lies outside the area of {target!r}")
    left, bottom = (math.floor(v / res) * res for v in bounds[:2])
    right, top = (math.ceil(v / res) * res for v in bounds[2:])
    auth = out_crs.to_authority()
    name = f"{auth[0]}:{auth[1]}" if auth else out_crs.to_wkt()
    return GridSpec(name, res, left, bottom, right, top)
