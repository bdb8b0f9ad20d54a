"""Radar shadow and layover from a DEM and the viewing geometry."""

from __future__ import annotations

import numpy as np

from terrawatch.tasks.flood.terrain import (
    EXCLUDE_LAYOVER,
    EXCLUDE_SHADOW,
    TerrainPlan,
    layover_shadow,
    look_azimuth,
    terrain_exclusion,
)

RES = 10.0


def ridge(fore_deg: float, back_deg: float, size: int = 60) -> tuple[np.ndarray, slice, slice]:
    """A north-south ridge: west face rising eastward at ``back_deg`` up to the crest, east face
    falling at ``fore_deg``; (dem, west-face columns, east-face columns) without the kinks."""
    cols = np.arange(size, dtype=np.float64)
    west0, crest = 20, 30
    rise = (cols - west0) * RES * np.tan(np.deg2rad(back_deg))
    top = (crest - west0) * RES * np.tan(np.deg2rad(back_deg))
    fall = top - (cols - crest) * RES * np.tan(np.deg2rad(fore_deg))
    z = np.where(cols < west0, 0.0, np.where(cols <= crest, rise, fall))
    z = np.clip(z, 0.0, None)
    east_end = crest + int(top / (RES * np.tan(np.deg2rad(fore_deg))))
    return z[None, :].repeat(8, axis=0), slice(west0 + 1, crest), slice(crest + 1, east_end)


def test_a_ridge_under_a_radar_looking_west_has_layover_in_front_and_shadow_behind():
    """The sensor in the east (look azimuth 270), incidence 35: the east face (towards the
    sensor) at 45 degrees is layover, the west face at 60 degrees (> 90 - 35) is shadow."""
    dem, west, east = ridge(fore_deg=45.0, back_deg=60.0)
    layover, shadow = layover_shadow(dem, RES, 270.0, 35.0)
    assert layover[:, east].all() and not layover[:, west].any()
    assert shadow[:, west].all() and not shadow[:, east].any()
    assert not (layover | shadow)[:, :18].any()  # flat ground


def test_gentler_slopes_are_seen():
    dem, west, _ = ridge(fore_deg=30.0, back_deg=50.0)  # 30 < 35 and 50 < 55
    layover, shadow = layover_shadow(dem, RES, 270.0, 35.0)
    assert not layover.any() and not shadow.any()
    # a steeper incidence turns the same back slope into shadow (50 > 90 - 45)
    _, shadow = layover_shadow(dem, RES, 270.0, 45.0)
    assert shadow[:, west].all()


def test_a_radar_looking_east_swaps_the_faces():
    dem, west, east = ridge(fore_deg=45.0, back_deg=60.0)
    layover, shadow = layover_shadow(dem, RES, 90.0, 35.0)
    assert layover[:, west].all() and not shadow[:, west].any()
    assert not layover[:, east].any()


def test_look_direction_from_the_orbit_and_the_right_looking_antenna():
    item = {"id": "s1", "properties": {"sat:orbit_state": "descending"}}
    assert look_azimuth(item) == 283.0  # heading 193, right-looking: west-north-west
    item["properties"].update({"sat:orbit_state": "ascending"})
    assert look_azimuth(item) == 77.0


def test_bits_on_a_grid_from_a_dem_file(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from terrawatch.tasks.core.grid import GridSpec
    from terrawatch.tasks.flood.raster_read import read_on_grid

    dem, west, east = ridge(fore_deg=45.0, back_deg=60.0)
    path = tmp_path / "dem.tif"
    profile = dict(driver="GTiff", width=dem.shape[1], height=dem.shape[0], count=1,
                   dtype="float32", crs="EPSG:32633", transform=from_origin(500000, 4000080, RES,
                   RES))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dem.astype(np.float32), 1)
    grid = GridSpec("EPSG:32633", RES, 500000, 4000000, 500000 + RES * dem.shape[1], 4000080)
    assert np.allclose(read_on_grid(str(path), grid, None), dem, atol=1e-3)
    plan = TerrainPlan((("dem", str(path)),), 270.0, 35.0)
    bits = terrain_exclusion(plan, grid, None)
    assert (bits[:, east] == EXCLUDE_LAYOVER).all() and (bits[:, west] == EXCLUDE_SHADOW).all()
