"""A land-cover cube in a flood run: urban and forest exclusion bits, flooded km² per class."""

from __future__ import annotations

import numpy as np
import pytest

from terrawatch.errors import InputError
from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.flood.landcover import (
    EXCLUDE_FOREST,
    EXCLUDE_URBAN,
    check_landcover_cube,
    flooded_by_class,
    landcover_exclusion,
)
from terrawatch.tasks.landcover.cube import prepare_cube, write_tile

LANDCOVER_GRID = GridSpec("EPSG:32633", 20.0, 500_000.0, 3_318_800.0, 501_280.0, 3_320_080.0)
FLOOD_GRID = GridSpec("EPSG:32633", 10.0, 500_000.0, 3_318_800.0, 501_280.0, 3_320_080.0)
CLASSES = parse_class_names(["water", "building,urban", "tree,forest", "cropland"])


@pytest.fixture
def landcover(tmp_path) -> str:
    """64 x 64 px at 20 m: buildings top-left, forest top-right, cropland below."""
    store = str(tmp_path / "landcover.zarr")
    plan = prepare_cube(store, LANDCOVER_GRID, CLASSES,
                        TimeStep("2024-04-01", "2024-04-30", ("s2",)), {}, 64)  # fmt: skip
    labels = np.full((64, 64), 3, np.uint8)
    labels[:32, :32] = 1
    labels[:32, 32:] = 2
    write_tile(store, plan.time_index, (0, 0), labels, np.full((64, 64), 0.9), 64)
    return store


def test_urban_and_forest_classes_become_exclusion_bits(landcover):
    bits = landcover_exclusion(landcover, FLOOD_GRID, (slice(0, 128), slice(0, 128)))
    assert bits.shape == (128, 128)
    assert (bits[:64, :64] == EXCLUDE_URBAN).all() and (bits[:64, 64:] == EXCLUDE_FOREST).all()
    assert (bits[64:] == 0).all()


def test_flooded_area_is_split_by_land_cover_class(landcover):
    flooded = np.zeros(FLOOD_GRID.shape, np.uint8)
    flooded[100:120, :] = 1  # 20 rows of cropland
    flooded[10:20, 0:10] = 1  # 100 px of buildings
    rows = {r["land cover"]: r["flooded_km2"] for r in flooded_by_class(landcover, FLOOD_GRID,
                                                                         flooded)}  # fmt: skip
    assert rows["cropland"] == pytest.approx(20 * 128 * 100 / 1e6)
    assert rows["building"] == pytest.approx(100 * 100 / 1e6)
    assert rows["water"] == 0.0


def test_a_path_that_is_no_land_cover_cube_names_the_flag(tmp_path):
    with pytest.raises(InputError, match=r"--landcover-cube .* does not exist"):
        check_landcover_cube(str(tmp_path / "nothing.zarr"))
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(InputError, match="is not a terrawatch land-cover cube"):
        check_landcover_cube(str(tmp_path / "empty.zarr"))
