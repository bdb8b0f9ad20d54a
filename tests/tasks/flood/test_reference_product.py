"""Reference water products: their water rules and the search through a local STAC catalog."""

from __future__ import annotations

import numpy as np

from terrawatch.tasks.flood.reference_product import (
    PRODUCTS,
    product_water,
    search_reference_products,
)
from tests.flows.flood_event import plant, wetland_regions, write_gsw


def test_gsw_occurrence_from_50_percent_and_worldcover_class_80_are_water():
    gsw, worldcover = PRODUCTS
    occurrence = np.array([0, 49, 50, 100, 255, np.nan], np.float32)  # 255: GSW's no data
    assert gsw.water(occurrence).tolist() == [False, False, True, True, False, False]
    classes = np.array([10, 50, 80, 90, np.nan], np.float32)
    assert worldcover.water(classes).tolist() == [False, False, True, False, False]


def test_a_local_catalog_item_is_found_and_read_on_the_flood_grid(tmp_path):
    from terrawatch.tasks.core.grid import GridSpec

    event = plant(64)
    (tmp_path / "catalog").mkdir()
    (tmp_path / "cogs").mkdir()
    write_gsw(tmp_path, event)
    layers = search_reference_products(str(tmp_path / "catalog"), event.aoi())
    assert [layer.product.collection for layer in layers] == ["jrc-gsw"]
    assert layers[0].items == ("gsw-event",)
    left, top = event.origin
    grid = GridSpec("EPSG:32633", 10.0, left, top - 640.0, left + 640.0, top)
    water = product_water(layers, grid, None)
    seasonal, rare = wetland_regions(64)
    assert (water == (event.water | seasonal)).all()  # 95 % and 70 %; not the 30 % one
    assert rare.any() and not water[rare].any()
    window = (slice(0, 32), slice(0, 32))
    assert (product_water(layers, grid, window) == water[window]).all()


def test_a_catalog_without_products_gives_none(tmp_path):
    from tests.flows.flood_event import write_event

    event = write_event(tmp_path, 64, reference=1)
    assert search_reference_products(str(tmp_path / "catalog"), event.aoi()) == ()
