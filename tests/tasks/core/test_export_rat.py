"""The exported COG's class table as a raster attribute table that GDAL itself reads back."""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path

import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from terrawatch.tasks.core.export import export_layer
from terrawatch.tasks.core.export_rat import sidecar_path
from terrawatch.tasks.core.export_source import open_layer
from tests.tasks.core.test_export import _blobs, _landcover_cube


def _gdal() -> ctypes.CDLL:
    """The GDAL library rasterio runs on (its wheel bundles it), through GDAL's C API."""
    found = glob.glob(os.path.join(os.path.dirname(rasterio.__file__), "..", "rasterio.libs",
                                   "libgdal-*.so*"))  # fmt: skip
    if not found:
        pytest.skip("rasterio is not the wheel with a bundled libgdal; no GDAL C API to call")
    lib = ctypes.CDLL(found[0])
    lib.GDALAllRegister()
    lib.GDALOpen.restype, lib.GDALOpen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    lib.GDALGetRasterBand.restype = ctypes.c_void_p
    lib.GDALGetRasterBand.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.GDALGetDefaultRAT.restype, lib.GDALGetDefaultRAT.argtypes = (
        ctypes.c_void_p,
        [ctypes.c_void_p],
    )
    lib.GDALRATGetRowCount.argtypes = [ctypes.c_void_p]
    lib.GDALRATGetColumnCount.argtypes = [ctypes.c_void_p]
    lib.GDALRATGetNameOfCol.restype = ctypes.c_char_p
    lib.GDALRATGetNameOfCol.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.GDALRATGetUsageOfCol.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.GDALRATGetValueAsString.restype = ctypes.c_char_p
    lib.GDALRATGetValueAsString.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    return lib


def _read_rat(path: Path) -> tuple[list[tuple[str, int]], list[list[str]]]:
    """Columns (name, usage) and rows of band 1's RAT, as GDAL opens the file."""
    lib = _gdal()
    dataset = lib.GDALOpen(str(path).encode(), 0)
    assert dataset
    try:
        rat = lib.GDALGetDefaultRAT(lib.GDALGetRasterBand(dataset, 1))
        assert rat, "GDAL found no raster attribute table"
        ncols = lib.GDALRATGetColumnCount(rat)
        columns = [
            (lib.GDALRATGetNameOfCol(rat, c).decode(), lib.GDALRATGetUsageOfCol(rat, c))
            for c in range(ncols)
        ]
        rows = [
            [lib.GDALRATGetValueAsString(rat, r, c).decode() for c in range(ncols)]
            for r in range(lib.GDALRATGetRowCount(rat))
        ]
        return columns, rows
    finally:
        lib.GDALClose(dataset)


def test_gdal_reads_the_class_table_of_an_exported_cog(tmp_path: Path) -> None:
    store = _landcover_cube(tmp_path / "cube.zarr", _blobs())
    layer = open_layer(store)
    tif = tmp_path / "landcover.tif"
    export_layer(layer, tif)
    assert sidecar_path(tif).exists() and cog_validate(str(tif))[0]
    columns, rows = _read_rat(tif)
    assert columns == [("Value", 5), ("Class", 2), ("Red", 6), ("Green", 7), ("Blue", 8),
                       ("Alpha", 9)]  # fmt: skip
    assert [(int(r[0]), r[1]) for r in rows] == list(zip(layer.values, layer.names, strict=True))
    with rasterio.open(tif) as src:  # the same colours as the COG's own colour table
        colormap = src.colormap(1)
    assert [tuple(int(v) for v in r[2:]) for r in rows] == [colormap[v] for v in layer.values]
    export_layer(layer, tif, overwrite=True)  # a rewrite replaces the sidecar whole
    assert _read_rat(tif)[1] == rows
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cube.zarr") == [
        "landcover.tif",
        "landcover.tif.aux.xml",
    ]
