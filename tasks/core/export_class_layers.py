"""Export a per-class variable (the land-cover ``probability``) as a multi-band COG.

A per-class variable has dims ``(time, class, y, x)``: one continuous layer per class, uint8
percent with 255 for no data. What a GIS user expects of it, as of Dynamic World's
probabilities: a GeoTIFF with one band per class, each band named (its description) after its
class, in the order of the class table; ``--class NAME`` (repeatable, synonyms resolve) picks
the bands. Overviews are band *averages* (the layers are likelihoods, not class ids), no data
is 255 and is left out of the averages, and there is no colour table (QGIS shows a single band
as a grey ramp, several as a multiband layer). The file is written as
:mod:`tasks.core.export_cog` writes class maps: a tiled GeoTIFF chunk by chunk, then
rio-cogeo's ``cog_translate``, renamed onto the target only when complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from terrawatch.errors import InputError
from terrawatch.tasks.core.cube_types import CLASS_DIM, NODATA
from terrawatch.tasks.core.export_cog import BLOCK, write_staged_cog
from terrawatch.tasks.core.export_source import LATEST, _open, layer_of, time_index


@dataclass(frozen=True, eq=False)
class ClassLayers:
    """Some classes' layers of a per-class variable at one time step, lazily."""

    store: str
    """The cube's store path or URL."""
    var: str
    """Variable name in the store."""
    time: str
    """The step's ``time`` coordinate as an ISO date."""
    data: xr.DataArray
    """``(class, y, x)`` uint8, lazy, chunked as the store."""
    names: tuple[str, ...]
    """Class name of each layer."""
    crs: CRS
    """The cube's CRS."""
    transform: Affine
    """Pixel (col, row) to CRS (x, y) of the full grid."""
    units: str = "percent"
    """Unit of the values."""
    nodata: int = NODATA
    """The no-data value."""


def per_class_vars(ds: xr.Dataset) -> list[str]:
    """Data variables on ``(time, class, y, x)``."""
    return [n for n, v in ds.data_vars.items() if v.dims == ("time", CLASS_DIM, "y", "x")]


def is_per_class(store: str, var: str | None) -> bool:
    """Whether ``--var`` names a per-class variable of ``store`` (False without ``--var``)."""
    return var is not None and var in per_class_vars(_open(store))


def class_layers_of(
    ds: xr.Dataset,
    store: str,
    var: str,
    time: str = LATEST,
    classes: list[str] | None = None,
) -> ClassLayers:
    """The layers of ``classes`` (names or synonyms; default all) of ``var`` at ``time``.

    Raises:
        InputError: ``var`` is not per-class, ``time`` is not a step, a class is unknown.
    """
    choices = per_class_vars(ds)
    if var not in choices:
        raise InputError(
            f"--var {var!r} is not a per-class variable of {store!r}"
            + (f"; use one of {choices!r}" if choices else " (it has none)")
        )
    table = layer_of(ds, store, None, time)  # the class table: names, synonyms, values
    values = list(table.values)
    if classes:
        values = list(dict.fromkeys(table.value_of(name, "--class") for name in classes))
    index = time_index(ds, time, store)
    data = ds[var].isel(time=index)
    if data.dtype != np.uint8:  # opened CF-decoded: NaN back to the fill value
        data = data.fillna(ds[var].encoding.get("_FillValue", NODATA)).astype(np.uint8)
    return ClassLayers(
        store=store,
        var=var,
        time=table.time,
        data=data.isel({CLASS_DIM: values}),
        names=tuple(table.name_of(v) for v in values),
        crs=table.crs,
        transform=table.transform,
        units=str(ds[var].attrs.get("units", "")),
        nodata=int(ds[var].encoding.get("_FillValue", NODATA)),
    )


def open_class_layers(
    store: str, var: str, time: str = LATEST, classes: list[str] | None = None
) -> ClassLayers:
    """:func:`class_layers_of` on the store at ``store``."""
    return class_layers_of(_open(store), store, var, time, classes)


def export_class_layers_cog(
    layers: ClassLayers, path: str | Path, *, blocksize: int = BLOCK
) -> Path:
    """Write ``layers`` as a COG at ``path``: one band per class, average overviews."""
    path = Path(path)
    write_staged_cog(
        lambda staging: _write_tiled(layers, staging),
        path,
        nodata=layers.nodata,
        resampling="average",
        tags=_tags(layers),
        blocksize=blocksize,
    )
    return path


def _write_tiled(layers: ClassLayers, path: Path) -> None:
    """A plain tiled GeoTIFF, one store chunk of one class at a time."""
    count, height, width = layers.data.shape
    profile = {
        "driver": "GTiff", "dtype": "uint8", "count": count, "height": height, "width": width,
        "crs": layers.crs, "transform": layers.transform, "nodata": layers.nodata,
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        "interleave": "band", "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    chunks = layers.data.chunks
    rows, cols = (chunks[1][0], chunks[2][0]) if chunks else (height, width)
    with rasterio.open(path, "w", **profile) as dst:
        for band, name in enumerate(layers.names, start=1):
            for row0 in range(0, height, rows):
                for col0 in range(0, width, cols):
                    block = layers.data[band - 1, row0 : row0 + rows, col0 : col0 + cols]
                    values = np.asarray(block.values)
                    window = Window(col0, row0, values.shape[1], values.shape[0])
                    dst.write(values, band, window=window)
            dst.set_band_description(band, name)
        dst.update_tags(**_tags(layers))


def _tags(layers: ClassLayers) -> dict[str, str]:
    return {
        "class_names": json.dumps(list(layers.names)),
        "units": layers.units,
        "cube_store": layers.store,
        "cube_variable": layers.var,
        "cube_time": layers.time,
    }
