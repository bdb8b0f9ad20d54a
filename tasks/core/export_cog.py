"""Export a cube layer as a Cloud-Optimized GeoTIFF that GIS tools open styled.

The layer is copied chunk by chunk into a tiled GeoTIFF beside the target, then rio-cogeo's
``cog_translate`` turns it into a COG with internal overviews built by *mode* resampling (a
class map must never average class ids), the colour table of the cube's palette (QGIS opens it
as a paletted layer) and the class names as GDAL metadata (``CLASS_<value>=name`` and a JSON
``class_names``), and beside it the class table as a raster attribute table in GDAL's
``NAME.tif.aux.xml`` sidecar (:mod:`tasks.core.export_rat`; rasterio cannot write one into
the file). The result is renamed onto
the target only when complete, so a failure or interrupt leaves an existing file untouched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import rasterio
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from terrawatch.tasks.core.export_files import staged
from terrawatch.tasks.core.export_rat import write_rat_sidecar
from terrawatch.tasks.core.export_source import ExportLayer
from terrawatch.tasks.core.render import color_rgb255

BLOCK = 512
"""Internal tile size of the COG (pixels)."""


def export_cog(layer: ExportLayer, path: str | Path, *, blocksize: int = BLOCK) -> Path:
    """Write ``layer`` as a COG at ``path`` (deflate, mode overviews, colour table, class names).

    Overviews halve the size until one fits in a ``blocksize`` tile. The output folder must
    exist (:func:`~tasks.core.export_files.output_format` checks it).

    Returns:
        The written path.
    """
    path = Path(path)
    write_staged_cog(
        lambda staging: _write_tiled(layer, staging),
        path,
        nodata=layer.nodata,
        resampling="mode",
        tags=_class_tags(layer),
        blocksize=blocksize,
    )
    write_rat_sidecar(layer, path)  # the class table for QGIS/GDAL, once the COG is in place
    return path


def write_staged_cog(
    write_tiled: Callable[[Path], None],
    path: Path,
    *,
    nodata: int,
    resampling: str,
    tags: dict[str, str],
    blocksize: int = BLOCK,
) -> None:
    """A COG at ``path`` from the plain tiled GeoTIFF ``write_tiled`` writes to a staging file.

    The staging file sits beside the output and goes whatever happens; the COG appears under
    its name only once complete (:func:`~tasks.core.export_files.staged`).
    """
    staging = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.staging.tif")
    try:
        write_tiled(staging)
        profile = cog_profiles.get("deflate")
        profile.update(blockxsize=blocksize, blockysize=blocksize)
        with staged(path) as target:
            cog_translate(
                str(staging),
                str(target),
                profile,
                nodata=nodata,
                overview_resampling=resampling,
                in_memory=False,
                quiet=True,
                additional_cog_metadata=tags,
            )
    finally:
        staging.unlink(missing_ok=True)


def _write_tiled(layer: ExportLayer, path: Path) -> None:
    """The layer as a plain tiled GeoTIFF, one store chunk at a time (never the whole step)."""
    height, width = layer.shape
    profile = {
        "driver": "GTiff", "dtype": "uint8", "count": 1, "height": height, "width": width,
        "crs": layer.crs, "transform": layer.transform, "nodata": layer.nodata, "tiled": True,
        "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate", "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for window in layer.windows():
            row0, row1, col0, col1 = window
            dst.write(layer.read(window), 1, window=Window(col0, row0, col1 - col0, row1 - row0))
        table = {
            v: (*color_rgb255(c, f"class {v} colour").tolist(), 255)
            for v, c in zip(layer.values, layer.colors, strict=True)
        }
        table[layer.nodata] = (0, 0, 0, 0)
        dst.write_colormap(1, table)
        dst.update_tags(**_class_tags(layer))
        dst.set_band_description(1, layer.var)


def _class_tags(layer: ExportLayer) -> dict[str, str]:
    names = dict(zip(layer.values, layer.names, strict=True))
    return {
        "class_names": json.dumps([names[v] for v in layer.values]),
        "class_values": json.dumps(list(layer.values)),
        "class_colors": json.dumps(list(layer.colors)),
        "cube_store": layer.store,
        "cube_variable": layer.var,
        "cube_time": layer.time,
        **{f"CLASS_{v}": n for v, n in names.items()},
    }
