"""Every client reads the same grid from a cube: GDAL's Zarr driver (through rasterio),
rioxarray (CF ``spatial_ref``) and the zarr-conventions ``proj:``/``spatial:`` attributes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import zarr
from affine import Affine
from rasterio.crs import CRS

from terrawatch.tasks.core.cube_store import open_cube
from terrawatch.tasks.core.geozarr import PROJ_CONVENTION, SPATIAL_CONVENTION
from tests.tasks.core.test_export import GRID, _blobs, _landcover_cube


def test_gdal_rioxarray_and_the_zarr_conventions_agree_on_the_grid(tmp_path: Path) -> None:
    labels = _blobs()
    store = _landcover_cube(tmp_path / "cube.zarr", labels)
    with rasterio.open(f'ZARR:"{store}":/landcover:0') as gdal:  # time index 0
        gdal_crs, gdal_transform, gdal_shape = gdal.crs, gdal.transform, gdal.shape
        gdal_bounds = tuple(gdal.bounds)
        np.testing.assert_array_equal(gdal.read(1), labels)
    cube = open_cube(store, mask_and_scale=False)
    assert cube.rio.crs == gdal_crs == CRS.from_epsg(32632)
    assert cube.rio.transform() == gdal_transform
    group = zarr.open_group(store, mode="r")
    assert group["landcover"].attrs["grid_mapping"] == "spatial_ref"  # CF, kept
    attrs = group.attrs
    assert [c["uuid"] for c in attrs["zarr_conventions"]] == [
        PROJ_CONVENTION["uuid"],
        SPATIAL_CONVENTION["uuid"],
    ]
    assert CRS.from_user_input(attrs["proj:code"]) == gdal_crs
    assert CRS.from_wkt(attrs["proj:wkt2"]) == gdal_crs
    assert attrs["spatial:dimensions"] == ["y", "x"]
    assert Affine(*attrs["spatial:transform"]) == gdal_transform
    assert tuple(attrs["spatial:shape"]) == gdal_shape == GRID.shape
    assert tuple(attrs["spatial:bbox"]) == gdal_bounds
    assert attrs["spatial:registration"] == "pixel"
