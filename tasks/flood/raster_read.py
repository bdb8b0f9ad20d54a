"""One raster band on a window of the flood grid: the DEM and the reference water products.

These are single-band COGs outside the SAR/optical item model (no bands to resolve, no
reflectance scaling), so they are warped straight onto the window with a rasterio WarpedVRT:
only the blocks under the window are read, whatever the file's CRS and resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from terrawatch.tasks.core.grid import GridSpec


def read_on_grid(
    href: str,
    grid: GridSpec,
    window: tuple[slice, slice] | None,
    resampling: Resampling = Resampling.bilinear,
) -> np.ndarray:
    """The raster's first band on ``window`` of ``grid`` as float32, NaN outside or no data."""
    box = grid.geobox[window] if window is not None else grid.geobox
    with rasterio.open(href) as src:
        declared = {"src_nodata": src.nodata} if src.nodata is not None else {}
        with WarpedVRT(src, crs=str(box.crs), transform=box.affine, width=box.shape.x,
                       height=box.shape.y, resampling=resampling, nodata=np.nan,
                       dtype="float32", **declared) as vrt:  # fmt: skip
            return vrt.read(1)


def first_valid_on_grid(
    hrefs: Sequence[str],
    grid: GridSpec,
    window: tuple[slice, slice] | None,
    resampling: Resampling = Resampling.bilinear,
) -> np.ndarray:
    """Several rasters (tiles of one product) mosaicked on the window: the first valid value."""
    out = np.full(grid.geobox[window].shape.yx if window else grid.shape, np.nan, np.float32)
    for href in hrefs:
        missing = ~np.isfinite(out)
        if not missing.any():
            break
        layer = read_on_grid(href, grid, window, resampling)
        out[missing] = layer[missing]
    return out
