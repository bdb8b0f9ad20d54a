"""``--min-area`` without gaps: small regions absorbed into their neighbours, chunk by chunk.

``rasterio.features.sieve`` (GDAL's sieve filter, 4-connectivity like the polygons) replaces
every region smaller than the threshold by its largest neighbour, so the class raster keeps
covering every valid pixel; no data is masked out (never a region, never absorbing one). A
small region with no valid neighbour at all (an island in no data, such as a speck of change
in a change cube's unchanged area) has nothing to join and becomes no data: it is dropped,
and no gap opens between classes.

The polygon export reads one chunk at a time, so each chunk is sieved inside a window grown by
a halo of ``ceil(threshold)`` pixels (capped at one chunk side) and only its own pixels are
kept. A region smaller than the threshold spans fewer pixels than the halo in each direction,
so every such region that reaches into the chunk lies whole inside the window and is seen as
in the whole raster; a big region cut by the window's edge keeps at least as many pixels in
the window as the halo is wide between that edge and the chunk, so it is never taken for a
small one inside the chunk. The neighbour a small region joins is chosen by sizes counted in
the window: for a region beside a region cut by the window's edge, two chunks may choose
different neighbours for its two sides, but every pixel still gets a class. Thresholds above
the cap (long thin regions wider than a chunk) are sieved per window the same way, with the
same no-gap guarantee but without the whole-raster consistency.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from rasterio.features import sieve
from skimage.measure import label

from terrawatch.tasks.core.export_source import ExportLayer

Window = tuple[int, int, int, int]


def min_area_pixels(layer: ExportLayer, min_area: float) -> float:
    """``--min-area`` in m² as a number of the layer's pixels."""
    return min_area / layer.pixel_size_m**2


def sieved_reader(layer: ExportLayer, min_area: float) -> Callable[[Window], np.ndarray]:
    """``layer.read`` with regions smaller than ``min_area`` m² absorbed (plain read for 0)."""
    threshold = math.ceil(min_area_pixels(layer, min_area))
    if threshold <= 1:  # every region has at least one pixel
        return layer.read
    halo = min(threshold, max(layer.chunk_shape))
    height, width = layer.shape

    def read(window: Window) -> np.ndarray:
        row0, row1, col0, col1 = window
        grown = (max(row0 - halo, 0), min(row1 + halo, height))
        grown += (max(col0 - halo, 0), min(col1 + halo, width))
        vals = layer.read(grown)
        valid = vals != layer.nodata
        out = sieve(_sievable(vals), threshold, mask=valid, connectivity=4)
        out = np.where(valid, out, vals).astype(vals.dtype)
        cut = (grown[0] > 0, grown[1] < height, grown[2] > 0, grown[3] < width)
        out[_islands(out, layer.nodata, threshold, cut)] = layer.nodata
        return out[row0 - grown[0] : row1 - grown[0], col0 - grown[2] : col1 - grown[2]]

    return read


def _islands(
    vals: np.ndarray, nodata: int, threshold: int, cut: tuple[bool, bool, bool, bool]
) -> np.ndarray:
    """Pixels of regions still under ``threshold`` after the sieve (they touch only no data),
    except regions that reach a side of the window cut from the raster (``cut``: top,
    bottom, left, right), whose size the window cannot tell."""
    regions = label(vals.astype(np.int32), background=nodata, connectivity=1)
    small = np.bincount(regions.ravel()) < threshold
    small[0] = False
    sides = (regions[0], regions[-1], regions[:, 0], regions[:, -1])
    for is_cut, edge in zip(cut, sides, strict=True):
        if is_cut:
            small[edge] = False
    return small[regions]


def _sievable(vals: np.ndarray) -> np.ndarray:
    """The dtypes GDAL's sieve takes (uint8 and uint16 as they are, others as int32)."""
    return vals if vals.dtype in (np.uint8, np.uint16) else vals.astype(np.int32)
