"""Overview levels of real cubes: the mode of class blocks (never a mean), the mean of
confidence, georeferenced levels that xarray and GDAL open, declared as multiscales."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from terrawatch.tasks.core.cube_overviews import (
    MULTISCALES_CONVENTION,
    has_overview,
    open_overview,
    overview_factors,
    write_overviews,
)
from terrawatch.tasks.core.cube_store import open_cube
from terrawatch.tasks.core.cube_types import NODATA, TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE
from tests.tasks.core.test_export import _write_cube

GRID = GridSpec("EPSG:32632", 2.0, 350_000.0, 5_640_000.0, 351_200.0, 5_641_000.0)  # 500 x 600
JUNE = TimeStep("2024-06-01", "2024-06-30", ("a",))
JULY = TimeStep("2024-07-01", "2024-07-31", ("b",))


def _planted(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, GRID.shape, dtype=np.uint8)
    labels[:, :300] = 0
    labels[0:200:2, 0:300:2] = 1  # one pixel in four: a mean or nearest pick would show it
    labels[:, :6] = NODATA
    labels[300:304, 40:44] = NODATA  # a block without data stays no data
    labels[304:306, 40:42] = NODATA
    labels[305, 41] = 2  # three of four no data: the valid pixel decides
    conf = rng.integers(0, 101, GRID.shape, dtype=np.uint8)
    conf[labels == NODATA] = NODATA
    return {"landcover": labels, "confidence": conf}


def _reference(array: np.ndarray, factor: int, how: str) -> np.ndarray:
    """Block mode (smallest value on ties) or rounded mean of the valid pixels, by loops."""
    h, w = -(-array.shape[0] // factor), -(-array.shape[1] // factor)
    out = np.full((h, w), NODATA, np.uint8)
    for r in range(h):
        for c in range(w):
            block = array[r * factor : (r + 1) * factor, c * factor : (c + 1) * factor]
            valid = block[block != NODATA].astype(np.int64)
            if valid.size:
                out[r, c] = np.bincount(valid).argmax() if how == "mode" else np.rint(valid.mean())
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("overviews") / "cube.zarr"
    store = _write_cube(path, LANDCOVER_CUBE, JUNE, _planted(), GRID)
    assert write_overviews(store, 0) == [2, 4]
    return store


def test_levels_are_block_modes_of_classes_and_means_of_confidence(store: str) -> None:
    truth = _planted()
    for factor in (2, 4):
        level = open_overview(store, factor)
        labels = level["landcover"].values[0]
        np.testing.assert_array_equal(labels, _reference(truth["landcover"], factor, "mode"))
        conf = level["confidence"].values[0]
        np.testing.assert_array_equal(conf, _reference(truth["confidence"], factor, "mean"))
    half = open_overview(store, 2)["landcover"].values[0]
    assert (half[:100, 3:150] == 0).all()  # the planted 1-in-4 pixels never win
    assert half[150, 20] == NODATA and half[152, 20] == 2


def test_levels_are_georeferenced_for_xarray_and_gdal(store: str) -> None:
    full = open_cube(store)
    assert tuple(full.rio.transform())[:6] == (2.0, 0.0, 350_000.0, 0.0, -2.0, 5_641_000.0)
    for factor in (2, 4):
        level = open_overview(store, factor)
        assert level.rio.crs == full.rio.crs
        expected = (2.0 * factor, 0.0, 350_000.0, 0.0, -2.0 * factor, 5_641_000.0)
        assert tuple(level.rio.transform())[:6] == expected
        with rasterio.open(f'ZARR:"{store}":/overviews/{factor}/landcover:0') as gdal:
            assert gdal.crs == level.rio.crs and gdal.transform == level.rio.transform()
            assert gdal.shape == (-(-500 // factor), -(-600 // factor))


def test_levels_are_declared_as_multiscales_and_follow_new_steps(store: str) -> None:
    attrs = zarr.open_group(store, mode="r").attrs
    assert MULTISCALES_CONVENTION["uuid"] in [c["uuid"] for c in attrs["zarr_conventions"]]
    layout = attrs["multiscales"]["layout"]
    assert [e["asset"] for e in layout] == [".", "overviews/2", "overviews/4"]
    assert layout[1]["transform"]["scale"] == [2.0, 2.0]
    assert layout[2]["terrawatch:resampling"] == {"confidence": "mean", "landcover": "mode"}
    assert overview_factors((500, 600)) == [2, 4] and overview_factors((256, 200)) == []

    _write_cube(Path(store), LANDCOVER_CUBE, JULY, _planted(1), GRID)
    assert not has_overview(store, 2, 1)
    write_overviews(store, 1)
    write_overviews(store, 1)  # a rerun rewrites the step in place
    level = open_overview(store, 2)
    assert [str(t)[:10] for t in level["time"].values] == ["2024-06-01", "2024-07-01"]
    expected = _reference(_planted(1)["landcover"], 2, "mode")
    np.testing.assert_array_equal(level["landcover"].values[1], expected)
    assert has_overview(store, 4, 1)
    assert open_cube(store).sizes["time"] == 2  # the cube itself does not see the levels


def test_the_land_cover_quicklook_reads_the_mode_level(tmp_path: Path) -> None:
    from terrawatch.tasks.landcover.publish import _strided_labels

    grid = GridSpec("EPSG:32632", 2.0, 350_000.0, 5_640_000.0, 352_200.0, 5_642_200.0)  # 1100²
    labels = np.zeros(grid.shape, np.uint8)
    labels[0::2, 0::2] = 1  # what a stride-2 read of the full level would show everywhere
    conf = np.full(grid.shape, 50, np.uint8)
    arrays = {"landcover": labels, "confidence": conf}
    store = _write_cube(tmp_path / "big.zarr", LANDCOVER_CUBE, JUNE, arrays, grid)
    cube = open_cube(store, mask_and_scale=False)
    assert (_strided_labels(cube, 0, store) == 1).all()  # no overviews yet: strided pixels
    write_overviews(store, 0)
    picture = _strided_labels(open_cube(store, mask_and_scale=False), 0, store)
    assert picture.shape == (550, 550) and (picture == 0).all()  # the factor-2 mode level


def test_a_rerun_with_no_tile_to_write_declares_what_a_killed_run_did_not(
    tmp_path: Path,
) -> None:
    """A run killed after its last tile and before its overviews: the rerun writes no tile
    (``rewrite=False``) yet declares the layout, for a cube too small for levels as well
    (found by tests/deploy/test_chaos.py); a declared cube is left untouched."""
    small = GridSpec("EPSG:32632", 2.0, 350_000.0, 5_640_000.0, 350_200.0, 5_640_200.0)
    planted = {k: v[:100, :100] for k, v in _planted().items()}
    store = _write_cube(tmp_path / "small.zarr", LANDCOVER_CUBE, JUNE, planted, small)
    assert "multiscales" not in zarr.open_group(store, mode="r").attrs
    assert write_overviews(store, 0, rewrite=False) == []
    attrs = zarr.open_group(store, mode="r").attrs
    assert [e["asset"] for e in attrs["multiscales"]["layout"]] == ["."]
    assert MULTISCALES_CONVENTION["uuid"] in [c["uuid"] for c in attrs["zarr_conventions"]]
    before = (Path(store) / ".zattrs").stat().st_mtime_ns
    assert write_overviews(store, 0, rewrite=False) == []
    assert (Path(store) / ".zattrs").stat().st_mtime_ns == before  # nothing rewritten
