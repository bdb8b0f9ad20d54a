"""Radar shadow and layover from the terrain: where SAR geometry hides water (exclusion bits).

A side-looking radar sees a slope at the local incidence angle ``theta - alpha``, where
``theta`` is the incidence on the ellipsoid and ``alpha`` the terrain slope in the range plane,
positive where the slope faces the sensor (the ground rises away from it, along the look).
Two cases hide the ground:

- layover (:data:`EXCLUDE_LAYOVER`): a slope facing the sensor steeper than the incidence
  (``alpha > theta``, local incidence below 0): its top returns before its foot;
- radar shadow (:data:`EXCLUDE_SHADOW`): a slope facing away steeper than ``90 - theta``
  (``-alpha > 90 - theta``, local incidence above 90): the pulse never reaches it.

The slope comes from a DEM in the run's catalog (:data:`DEM_COLLECTIONS`: Copernicus DEM or
NASADEM, as Planetary Computer and Earth Search serve them), resampled bilinearly onto the flood
grid. The incidence is the scene's ``incidence_angle`` asset (degrees) where its items carry
one, else Sentinel-1 IW's mid-swath :data:`IW_INCIDENCE_DEG`. The look direction is the track
heading (:data:`TRACK_HEADING_DEG`, by orbit direction) turned 90 degrees to the
``sar:observation_direction`` (Sentinel-1: right). The test is per pixel: the shadow a ridge
casts down-range beyond its own back slope is not traced.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from terrawatch.errors import InputError, NoScenesError
from terrawatch.tasks.core.catalog import search_items
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.flood.raster_read import first_valid_on_grid

logger = logging.getLogger(__name__)

EXCLUDE_LAYOVER = 8
"""``exclusion`` bit: layover (a slope facing the sensor steeper than the incidence)."""
EXCLUDE_SHADOW = 16
"""``exclusion`` bit: radar shadow (a slope facing away steeper than 90 - incidence)."""
DEM_COLLECTIONS: tuple[str, ...] = ("cop-dem-glo-30", "cop-dem-glo-90", "nasadem")
"""DEM collections looked for in the run's catalog, best first."""
DEM_ASSETS: tuple[str, ...] = ("data", "elevation", "dem")
"""Asset keys of the elevation raster in a DEM item."""
INCIDENCE_ASSET = "incidence_angle"
"""Asset key of a per-pixel ellipsoid incidence angle (degrees) on a SAR item."""
IW_INCIDENCE_DEG = 37.5
"""Sentinel-1 IW mid-swath incidence: the swath spans 29.1 to 46.0 degrees (ESA S1 user guide)."""
TRACK_HEADING_DEG = {"ascending": 347.0, "descending": 193.0}
"""Sentinel-1 ground-track heading (clockwise from north) by orbit direction: the orbit's 98.2
degree inclination gives about -13 degrees ascending and 193 descending at mid latitudes."""
DEM_WINDOW = ("1900-01-01", "2100-12-31")
"""DEM items are timeless: any acquisition date matches."""


@dataclass(frozen=True)
class TerrainPlan:
    """What a tile needs for the shadow and layover bits: references only."""

    dem: tuple[tuple[str, str], ...]
    """(item id, elevation href) of the DEM items over the AOI, best first."""
    look_azimuth_deg: float
    """Horizontal direction from the sensor to the ground, clockwise from north."""
    incidence_deg: float
    """Ellipsoid incidence where no incidence asset is given."""
    incidence: tuple[str, ...] = ()
    """Hrefs of the post-event scenes' ``incidence_angle`` assets (empty: the constant)."""

    def to_attrs(self) -> dict[str, Any]:
        """JSON form for the cube's provenance."""
        return {
            "dem_items": [item_id for item_id, _ in self.dem],
            "look_azimuth_deg": self.look_azimuth_deg,
            "incidence": "incidence_angle asset" if self.incidence else self.incidence_deg,
            "layover_bit": EXCLUDE_LAYOVER,
            "shadow_bit": EXCLUDE_SHADOW,
        }


def search_dem(catalog: str, aoi: Any) -> tuple[dict, ...]:
    """DEM items over the AOI from the catalog's first DEM collection that has any; () if none."""
    for collection in DEM_COLLECTIONS:
        try:
            found = search_items(catalog, aoi, *DEM_WINDOW, [collection], None, None)
        except (NoScenesError, InputError) as err:  # no such collection, or none over the AOI
            logger.debug("no DEM in %s: %s", collection, err)
            continue
        except Exception as err:  # an optional layer: the flood map goes on without it
            logger.warning("DEM search in %s failed, run goes on without it: %s", collection, err)
            continue
        return tuple(found.items)
    logger.info(
        "no DEM in the catalog (%s): radar shadow and layover are not flagged",
        ", ".join(DEM_COLLECTIONS),
    )
    return ()


def _elevation_href(item: dict) -> str:
    assets = item.get("assets", {})
    for key in DEM_ASSETS:
        if key in assets:
            return str(assets[key]["href"])
    raise InputError(
        f"DEM item {item.get('id')!r} has no elevation asset ({', '.join(DEM_ASSETS)}); its "
        f"assets are {sorted(assets)}"
    )


def look_azimuth(item: dict) -> float:
    """Direction from the sensor to the ground (degrees clockwise from north) of a SAR item."""
    props = item.get("properties", {})
    orbit = str(props.get("sat:orbit_state", "")).lower()
    if orbit not in TRACK_HEADING_DEG:
        raise InputError(
            f"SAR item {item.get('id')!r} has no sat:orbit_state ascending/descending; "
            "radar shadow and layover need the look direction"
        )
    side = str(props.get("sar:observation_direction", "right")).lower()
    return (TRACK_HEADING_DEG[orbit] + (90.0 if side == "right" else -90.0)) % 360.0


def plan_terrain(post: Sequence[dict], dem: Sequence[dict]) -> TerrainPlan | None:
    """The tiles' terrain inputs for the post-event scenes' geometry; None without a DEM."""
    if not dem:
        return None
    incidence = tuple(
        str(i["assets"][INCIDENCE_ASSET]["href"]) for i in post if INCIDENCE_ASSET in i["assets"]
    )
    return TerrainPlan(
        tuple((str(i["id"]), _elevation_href(i)) for i in dem),
        look_azimuth(post[0]),
        IW_INCIDENCE_DEG,
        incidence,
    )


def layover_shadow(
    dem: np.ndarray, resolution: float, look_azimuth_deg: float, incidence_deg: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Layover and shadow masks of a north-up DEM (metres, rows southward) for one geometry."""
    d_row, d_col = np.gradient(dem.astype(np.float64), resolution)
    d_east, d_north = d_col, -d_row
    look = np.deg2rad(look_azimuth_deg)
    # a slope faces the sensor where the ground rises along the look (away from the sensor)
    along_look = d_east * np.sin(look) + d_north * np.cos(look)
    alpha = np.rad2deg(np.arctan(along_look))
    theta = np.asarray(incidence_deg, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        layover = alpha > theta
        shadow = -alpha > 90.0 - theta
    return layover, shadow


def terrain_exclusion(
    plan: TerrainPlan, grid: GridSpec, window: tuple[slice, slice] | None
) -> np.ndarray:
    """The layover and shadow exclusion bits over a window of the flood grid (0: none)."""
    dem = first_valid_on_grid([href for _, href in plan.dem], grid, window)
    incidence: float | np.ndarray = plan.incidence_deg
    if plan.incidence:
        angles = first_valid_on_grid(plan.incidence, grid, window)
        incidence = np.where(np.isfinite(angles), angles, plan.incidence_deg)
    layover, shadow = layover_shadow(dem, grid.resolution, plan.look_azimuth_deg, incidence)
    bits = np.zeros(dem.shape, np.uint8)
    bits[layover] |= EXCLUDE_LAYOVER
    bits[shadow] |= EXCLUDE_SHADOW
    return bits
