"""Flood polygons and footprint: union equals the raster, CRS, areas, holes, mapping unit."""

from __future__ import annotations

import numpy as np
import rasterio.features
from scipy.ndimage import binary_dilation, binary_erosion

from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.flood.polygons import EventLayers, flood_polygons, footprint
from terrawatch.tasks.flood.report import NOTE, map_png, report_html

GRID = GridSpec("EPSG:32633", 10.0, 500_000.0, 3_318_800.0, 502_000.0, 3_320_800.0)  # 200 x 200
WHEN = 1715490000  # 2024-05-12T05:00:00Z


def _layers() -> EventLayers:
    flooded = np.zeros(GRID.shape, np.uint8)
    flooded[20:120, 30:150] = 1
    flooded[50:80, 60:100] = 0  # a dry island: a hole
    flooded[150:190, 10:60] = 1  # a second region
    flooded[170:172, 150:152] = 1  # 4 px = 0.04 ha: below the mapping unit
    flooded[195:, :] = 255  # no data
    source = np.where(flooded == 255, 0, 1).astype(np.uint8)
    likelihood = np.where(flooded == 1, 80, 5).astype(np.uint8)
    likelihood[150:190, 10:60] = np.where(flooded[150:190, 10:60] == 1, 60, 5)
    observed_at = np.where(source == 1, WHEN, -1).astype(np.int64)
    return EventLayers(flooded, likelihood, observed_at, source)


def test_polygons_cover_the_flooded_raster_within_one_pixel():
    layers = _layers()
    polygons = flood_polygons(layers, GRID, min_area_ha=0.5)
    assert polygons.crs.to_epsg() == 4326
    back = polygons.to_crs(GRID.crs)
    burnt = rasterio.features.rasterize(
        back.geometry, out_shape=GRID.shape, transform=GRID.geobox.transform
    ).astype(bool)
    kept = layers.flooded == 1
    kept[170:172, 150:152] = False  # the dropped speck
    assert not (burnt & ~binary_dilation(kept)).any()
    assert not (binary_erosion(kept) & ~burnt).any()


def test_polygons_keep_holes_areas_and_attributes():
    polygons = flood_polygons(_layers(), GRID, min_area_ha=0.5)
    assert len(polygons) == 2  # the 0.04 ha speck is below the mapping unit
    big, small = polygons.iloc[0], polygons.iloc[1]
    assert len(big.geometry.interiors) == 1
    assert big.area_ha == (100 * 120 - 30 * 40) * 100 / 1e4
    assert small.area_km2 == 40 * 50 * 100 / 1e6
    assert (big.likelihood_mean, small.likelihood_mean) == (80.0, 60.0)
    assert big.first_observed == "2024-05-12T05:00:00Z"
    utm_area = polygons.to_crs(GRID.crs).area.iloc[0] / 1e4
    assert abs(utm_area - big.area_ha) < 1e-6 * big.area_ha


def test_no_mapping_unit_keeps_the_speck():
    assert len(flood_polygons(_layers(), GRID, min_area_ha=0.0)) == 3


def test_footprint_is_the_observed_area():
    shape = footprint(_layers(), GRID)
    assert shape.crs.to_epsg() == 4326
    assert shape.observed_km2.iloc[0] == 195 * 200 * 100 / 1e6


def test_report_is_one_self_contained_page():
    png = map_png(np.zeros((50, 60), np.uint8), 10.0, "Flood test")
    page = report_html("Flood test", png, [{"quantity": "flooded", "area_km2": 1.5}],
                       [{"role": "after", "scene": "s1"}], ["threshold"], {})  # fmt: skip
    assert png[:4] == b"\x89PNG" and "data:image/png;base64," in page
    assert NOTE in page and "<td>flooded</td>" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
