"""The ``.tw`` accessor on real cubes: class table, masks with synonyms, areas, transitions, a
plot in the cube's palette, the same exports as ``terrawatch export``, and its registration by
``import terrawatch`` without importing xarray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import xarray as xr
from rio_cogeo.cogeo import cog_validate

import terrawatch  # noqa: F401  (registers .tw)
from terrawatch.errors import InputError
from terrawatch.tasks.core.cube_types import NODATA, TimeStep
from terrawatch.tasks.core.export_polygons import polygonize
from terrawatch.tasks.core.export_source import open_layer
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE
from tests.tasks.core.test_export import GRID, RES, _write_cube

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two steps: water grows into former background; a no-data strip on the left."""
    june = np.zeros(GRID.shape, np.uint8)
    june[:, 100:] = 3  # water
    june[50:70, 20:60] = 1  # building
    june[:, :4] = NODATA
    july = june.copy()
    july[:, 80:100] = 3  # 180 x 20 px of background became water
    path = tmp_path_factory.mktemp("accessor") / "cube.zarr"
    for step, labels in ((TimeStep("2024-06-01", "2024-06-30", ("a",)), june),
                         (TimeStep("2024-07-01", "2024-07-31", ("b",)), july)):  # fmt: skip
        conf = np.where(labels == NODATA, NODATA, 90).astype(np.uint8)
        _write_cube(path, LANDCOVER_CUBE, step, {"landcover": labels, "confidence": conf})
    return str(path)


@pytest.fixture(params=[True, False], ids=["cf-decoded", "raw"])
def cube(store: str, request: pytest.FixtureRequest) -> xr.Dataset:
    return xr.open_zarr(store, decode_coords="all", mask_and_scale=request.param)


def test_class_table_and_masks_resolve_synonyms(cube: xr.Dataset) -> None:
    table = cube.tw.classes
    assert table["name"].tolist() == ["background", "building", "road", "water"]
    assert "river" in table.loc[3, "synonyms"] and table.loc[3, "color"].startswith("#")
    water = cube.tw.mask("river")
    assert water.dims == ("time", "y", "x") and water.dtype == bool
    assert int(water.isel(time=0).sum()) == 180 * 100
    assert int(cube.tw.mask("House").isel(time=1).sum()) == 20 * 40
    with pytest.raises(InputError, match="no class 'forest'"):
        cube.tw.mask("forest")


def test_areas_are_a_tidy_table_in_square_kilometres(cube: xr.Dataset) -> None:
    areas = cube.tw.areas()
    assert list(areas.columns) == ["time", "class", "value", "pixels", "area_km2"]
    assert len(areas) == 2 * 4
    june = areas[areas["time"] == "2024-06-01"].set_index("class")
    july = areas[areas["time"] == "2024-07-01"].set_index("class")
    assert june.loc["water", "pixels"] == 180 * 100
    assert june.loc["water", "area_km2"] == pytest.approx(180 * 100 * RES**2 / 1e6)
    assert july.loc["water", "pixels"] - june.loc["water", "pixels"] == 180 * 20
    assert june["pixels"].sum() == 180 * 196  # no data is not a class


def test_transitions_are_a_from_to_area_matrix(cube: xr.Dataset) -> None:
    matrix = cube.tw.transitions("2024-06-01", "2024-07-01")
    assert matrix.loc["background", "water"] == pytest.approx(180 * 20 * RES**2 / 1e6)
    assert matrix.loc["water", "water"] == pytest.approx(180 * 100 * RES**2 / 1e6)
    off_diagonal = matrix.values.sum() - np.trace(matrix.values)
    assert off_diagonal == pytest.approx(matrix.loc["background", "water"])


def test_plot_uses_the_cubes_palette_and_a_legend(cube: xr.Dataset) -> None:
    ax = cube.tw.plot(time="2024-07-01")
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == cube.tw.classes["name"].tolist()
    colors = [matplotlib.colors.to_hex(h.get_facecolor()) for h in legend.legend_handles]
    assert colors == cube.tw.classes["color"].tolist()
    assert ax.get_title() == "landcover 2024-07-01"


def test_exports_are_the_same_as_the_command(cube: xr.Dataset, store: str, tmp_path: Path) -> None:
    tif = cube.tw.to_cog(tmp_path / "june.tif", time="2024-06-01")
    assert cog_validate(str(tif))[0]
    frame = cube.tw.to_polygons(tmp_path / "july.gpkg")
    expected = polygonize(open_layer(store))
    assert sorted(frame["area_m2"]) == sorted(expected["area_m2"])
    assert (tmp_path / "july.gpkg").is_file()
    with pytest.raises(InputError, match="to_polygons writes vectors"):
        cube.tw.to_polygons(tmp_path / "x.tif")


def test_import_terrawatch_registers_tw_and_rio_without_importing_xarray(store: str) -> None:
    code = (
        "import sys, terrawatch\n"
        "assert 'xarray' not in sys.modules and 'rioxarray' not in sys.modules\n"
        "import xarray as xr\n"
        f"cube = xr.open_zarr({store!r}, decode_coords='all')\n"
        "assert 'rioxarray' not in sys.modules\n"
        "print(cube.tw.classes['name'].tolist()[3], cube.landcover.rio.crs.to_epsg())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["water", "32632"]
