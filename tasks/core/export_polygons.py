"""Polygons per class from a cube layer, one chunk at a time, merged across chunk seams.

Each store chunk is read alone: its connected regions of one class (4-connectivity, the same
rule as ``rasterio.features.shapes``) are labelled with scikit-image and traced with
``rasterio.features.shapes`` in *pixel* coordinates offset by the chunk's integer origin, so
the two sides of a seam share exactly the same coordinates. A region that does not touch an
inner seam is final at once; the others wait, together with the ids of the pixels on each side
of every seam, and at the end the pieces that meet across a seam with the same class are
grouped (``scipy.sparse.csgraph.connected_components``) and unioned with shapely. Holes are kept
(the traced polygons carry them and the union keeps them). Memory holds one chunk, the strip of
ids along the seams and the polygons themselves, never the whole step.

The polygons form a valid coverage (``shapely.coverage_is_valid``: neighbours share identical
edges, no gaps or overlaps): every edge is split at each pixel corner, then
``shapely.coverage_simplify`` runs over all polygons at once, with ``simplify`` metres or a
tolerance that only removes collinear vertices, so both sides of a shared edge change alike.
``min_area`` (m²) then drops smaller polygons (their area becomes a gap in the coverage, as in
gdal_polygonize followed by a filter).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.features import shapes
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.geometry import shape
from skimage.measure import label

from terrawatch.errors import InputError
from terrawatch.tasks.core.export_source import ExportLayer, metres_per_unit

_OUTSIDE = -1  # label value of pixels that are no data or not asked for
_COLLINEAR = 0.01  # pixels: a tolerance that removes only collinear vertices
CLEAN_BATCH = 5000
"""Polygons cleaned together when no simplification is asked for (bounds the memory)."""


@dataclass
class _Pieces:
    """Traced regions: geometry in pixel coordinates and per-region pixel statistics."""

    geoms: list = field(default_factory=list)
    values: list[int] = field(default_factory=list)
    pixels: list[int] = field(default_factory=list)
    conf_sum: list[float] = field(default_factory=list)
    conf_n: list[float] = field(default_factory=list)

    def add(self, geom, value: int, pixels: int, conf_sum: float, conf_n: float) -> None:
        self.geoms.append(geom)
        self.values.append(value)
        self.pixels.append(pixels)
        self.conf_sum.append(conf_sum)
        self.conf_n.append(conf_n)


def polygonize(
    layer: ExportLayer,
    values: Collection[int] | None = None,
    *,
    simplify: float = 0.0,
    min_area: float = 0.0,
) -> gpd.GeoDataFrame:
    """One polygon per connected region of one class, in the cube's CRS.

    Args:
        layer: The cube variable and time step.
        values: Only these class values (default: every class; no data is never traced).
        simplify: Tolerance in metres of the topology-keeping simplification (0 = none).
        min_area: Drop polygons smaller than this many m² (after simplification).

    Returns:
        Columns ``value`` (class value), ``class`` (its name), ``area_m2``, ``confidence``
        (mean percent of the region's pixels; NaN when the cube has none) and ``geometry``.
    """
    if simplify < 0 or min_area < 0:
        raise InputError(
            f"--simplify ({simplify!r}) and --min-area ({min_area!r}) must be >= 0 "
            "(metres and square metres)"
        )
    wanted = np.asarray(sorted(values if values is not None else layer.values), dtype=np.int32)
    final, pending, seams = _trace_chunks(layer, wanted)
    _merge_pending(final, pending, seams)
    geoms = _clean_coverage(np.asarray(final.geoms, dtype=object), simplify / layer.pixel_size_m)
    geoms = shapely.transform(geoms, _to_crs(layer.transform))
    area = shapely.area(geoms) * metres_per_unit(layer.crs) ** 2
    conf_n = np.asarray(final.conf_n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.asarray(final.conf_sum, dtype=np.float64) / conf_n
    values_arr = np.asarray(final.values, dtype=np.int64)
    columns = {
        "value": values_arr,
        "class": [layer.name_of(int(v)) for v in values_arr],
        **_value_columns(layer, values_arr),
        "area_m2": area,
        "confidence": np.where(conf_n > 0, confidence, np.nan),
    }
    frame = gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(geoms, crs=layer.crs))
    if min_area > 0:
        frame = frame[frame["area_m2"] >= min_area]
    return frame.sort_values(["value", "area_m2"], ascending=[True, False], ignore_index=True)


def _clean_coverage(geoms: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Polygons whose shared edges match vertex for vertex, simplified by ``tolerance_px``.

    A vertex at every pixel corner makes neighbours' shared edges identical; the coverage
    simplifier then removes collinear vertices (or simplifies) on both sides alike. With a
    real tolerance the whole coverage is simplified at once. Without one, batches of
    :data:`CLEAN_BATCH` polygons are cleaned with their outer boundary kept as it is (every
    pixel corner), so memory holds one segmentized batch, not the whole coverage.
    """
    if not geoms.size:
        return geoms
    if tolerance_px > 0:
        return shapely.coverage_simplify(shapely.segmentize(geoms, 1.0), tolerance_px)
    out = np.empty_like(geoms)
    for start in range(0, geoms.size, CLEAN_BATCH):
        batch = shapely.segmentize(geoms[start : start + CLEAN_BATCH], 1.0)
        out[start : start + CLEAN_BATCH] = shapely.coverage_simplify(
            batch, _COLLINEAR, simplify_boundary=False
        )
    return out


def _value_columns(layer: ExportLayer, values: np.ndarray) -> dict[str, list[str]]:
    """The layer's extra attributes per value as columns (e.g. ``from_class``, ``to_class``)."""
    keys = dict.fromkeys(k for attrs in layer.value_attrs.values() for k in attrs)
    return {k: [layer.value_attrs[int(v)].get(k, "") for v in values] for k in keys}


def _trace_chunks(layer: ExportLayer, wanted: np.ndarray) -> tuple[_Pieces, _Pieces, list]:
    """Trace every chunk; return final pieces, pieces on a seam and the seam id pairs."""
    height, width = layer.shape
    final, pending = _Pieces(), _Pieces()
    pending_ids: dict[int, int] = {}  # global region id -> index in ``pending``
    above = np.zeros(width, np.int64)  # global ids of the row just above the current chunk row
    left = np.zeros(0, np.int64)  # global ids of the column left of the current chunk
    seams: list[np.ndarray] = []
    next_id = 0
    for window in layer.windows():
        row0, row1, col0, col1 = window
        vals = layer.read(window)
        image = np.where(np.isin(vals, wanted), vals.astype(np.int32), _OUTSIDE)
        local = label(image, background=_OUTSIDE, connectivity=1).astype(np.int64)
        count = int(local.max())
        ids = np.where(local > 0, local + next_id, 0)
        if col0 == 0:
            left = np.zeros(row1 - row0, np.int64)
        seams += _seam_pairs(ids[0, :], above[col0:col1], ids[:, 0], left)
        on_seam = _seam_ids(local, row0 > 0, row1 < height, col0 > 0, col1 < width)
        stats = _region_stats(local, vals, layer.read_confidence(window), count)
        origin = Affine.translation(col0, row0)
        for geojson, region in shapes(
            local.astype(np.int32), mask=local > 0, connectivity=4, transform=origin
        ):
            region = int(region)
            geom = shape(geojson)
            value, pixels, csum, cn = (s[region] for s in stats)
            if on_seam[region]:
                pending_ids[region + next_id] = len(pending.geoms)
                pending.add(geom, int(value), int(pixels), float(csum), float(cn))
            else:
                final.add(geom, int(value), int(pixels), float(csum), float(cn))
        above[col0:col1] = ids[-1, :]
        left = ids[:, -1]
        next_id += count
    pairs = [np.vectorize(pending_ids.__getitem__, otypes=[np.int64])(p) for p in seams if p.size]
    return final, pending, pairs


def _seam_pairs(
    top: np.ndarray, above: np.ndarray, first_col: np.ndarray, left: np.ndarray
) -> list[np.ndarray]:
    """``(n, 2)`` global region ids facing each other across the top and the left seam.

    Pairs of different classes are listed too; :func:`_merge_pending` drops them.
    """
    out = []
    for side, other in ((top, above), (first_col, left)):
        if other.size:
            both = (side > 0) & (other > 0)
            out.append(np.unique(np.stack([side[both], other[both]], axis=1), axis=0))
    return out


def _seam_ids(local: np.ndarray, top: bool, bottom: bool, left: bool, right: bool) -> np.ndarray:
    """Per local region id: whether it touches one of the chunk's inner seams."""
    flags = np.zeros(int(local.max()) + 1, bool)
    sides = ((top, local[0]), (bottom, local[-1]), (left, local[:, 0]), (right, local[:, -1]))
    for inner, edge in sides:
        if inner:
            flags[edge] = True
    flags[0] = False
    return flags


def _region_stats(
    local: np.ndarray, vals: np.ndarray, confidence: np.ndarray | None, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per local region id: class value, pixel count, confidence sum and confidence count."""
    flat = local.ravel()
    value = np.zeros(count + 1, np.int64)
    value[flat] = vals.ravel()
    pixels = np.bincount(flat, minlength=count + 1)
    if confidence is None:
        zero = np.zeros(count + 1)
        return value, pixels, zero, zero
    valid = (confidence.ravel() <= 100).astype(np.float64)
    csum = np.bincount(flat, weights=confidence.ravel() * valid, minlength=count + 1)
    cn = np.bincount(flat, weights=valid, minlength=count + 1)
    return value, pixels, csum, cn


def _merge_pending(final: _Pieces, pending: _Pieces, pairs: list[np.ndarray]) -> None:
    """Union the seam pieces that touch with the same class; append the results to ``final``."""
    n = len(pending.geoms)
    if not n:
        return
    edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    values = np.asarray(pending.values)
    edges = edges[values[edges[:, 0]] == values[edges[:, 1]]] if edges.size else edges
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    for members in np.split(order, bounds):
        geoms = [pending.geoms[i] for i in members]
        geom = geoms[0] if len(geoms) == 1 else shapely.union_all(geoms)
        final.add(
            geom,
            pending.values[members[0]],
            sum(pending.pixels[i] for i in members),
            sum(pending.conf_sum[i] for i in members),
            sum(pending.conf_n[i] for i in members),
        )


def _to_crs(transform: Affine):
    """Pixel (col, row) coordinates to the cube's CRS, for ``shapely.transform``."""
    a, b, c, d, e, f = transform[:6]

    def apply(xy: np.ndarray) -> np.ndarray:
        col, row = xy[:, 0], xy[:, 1]
        return np.stack([a * col + b * row + c, d * col + e * row + f], axis=1)

    return apply
