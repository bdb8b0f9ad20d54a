"""Polygons per class from a cube layer, one chunk at a time, merged across chunk seams, streamed.

Each store chunk is read alone: its connected regions of one class (4-connectivity, the same
rule as ``rasterio.features.shapes``) are labelled with scikit-image and traced with
``rasterio.features.shapes`` in *pixel* coordinates offset by the chunk's integer origin, so
the two sides of a seam share exactly the same coordinates. A region that does not touch an
inner seam is finished at once. The others wait, with the ids of the pixels on each side of
the seams. Chunks are traced a row of chunks at a time; after each row the waiting pieces that
meet across a seam with the same class are grouped (``scipy.sparse.csgraph``) and unioned with
shapely, and every group that does not reach down into the next row of chunks is finished.
Holes are kept (the traced polygons carry them and the union keeps them). Finished polygons
leave in batches of about :data:`CLEAN_BATCH` (:func:`polygon_batches`), which the export
writes to its file one by one, so memory holds one chunk, the strip of ids along one seam, the
polygons still waiting at it and one batch: it does not grow with the cube.

The polygons form a valid coverage (``shapely.coverage_is_valid``: neighbours share identical
edges, no gaps or overlaps): every edge is split at each pixel corner, then
``shapely.coverage_simplify`` removes the collinear vertices on both sides of every shared edge
alike. Streamed, this runs every :data:`CLEAN_BATCH` finished polygons over those not yet
written, keeping the set's outer boundary as it is: an edge is cleaned only once both its
polygons are in the set, and a polygon that touches a piece still waiting at a seam stays in
the set (cleaned edges and all) for the next batch, while the others are written. The
coverage's own outline (no data, the cube's edge) keeps its pixel-corner vertices.

``simplify`` (metres) is the limit of streaming: topology-keeping simplification of the
outline too needs the whole coverage (``shapely.coverage_simplify`` over all polygons at
once, as before), so with it the finished polygons are held until the last chunk and memory
grows with the output; without it, memory is flat.

``min_area`` (m²) sieves the class raster before tracing (:mod:`tasks.core.export_sieve`):
smaller regions are absorbed into their largest neighbour, so the polygons still cover every
valid pixel.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
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
CLEAN_BATCH = 2000
"""Finished polygons cleaned and written together (bounds the memory of an export)."""


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

    def extend(self, other: _Pieces) -> None:
        for name in ("geoms", "values", "pixels", "conf_sum", "conf_n"):
            getattr(self, name).extend(getattr(other, name))

    def take(self, keep: np.ndarray) -> _Pieces:
        """The pieces where ``keep`` is True."""
        out = _Pieces()
        for name in ("geoms", "values", "pixels", "conf_sum", "conf_n"):
            setattr(out, name, [x for x, k in zip(getattr(self, name), keep, strict=True) if k])
        return out

    def __len__(self) -> int:
        return len(self.geoms)


def polygonize(
    layer: ExportLayer,
    values: Collection[int] | None = None,
    *,
    simplify: float = 0.0,
    min_area: float = 0.0,
) -> gpd.GeoDataFrame:
    """One polygon per connected region of one class, in the cube's CRS, as one frame.

    The whole output in memory; ``terrawatch export`` writes :func:`polygon_batches` instead.

    Args:
        layer: The cube variable and time step.
        values: Only these class values (default: every class; no data is never traced).
        simplify: Tolerance in metres of the topology-keeping simplification (0 = none).
        min_area: Regions smaller than this many m² are absorbed into their neighbours first.

    Returns:
        Columns ``value`` (class value), ``class`` (its name), ``area_m2``, ``confidence``
        (mean percent of the region's pixels; NaN when the cube has none) and ``geometry``,
        sorted by value and decreasing area.
    """
    frame = pd.concat(list(polygon_batches(layer, values, simplify=simplify, min_area=min_area)))
    return frame.sort_values(["value", "area_m2"], ascending=[True, False], ignore_index=True)


def polygon_batches(
    layer: ExportLayer,
    values: Collection[int] | None = None,
    *,
    simplify: float = 0.0,
    min_area: float = 0.0,
) -> Iterator[gpd.GeoDataFrame]:
    """The polygons of :func:`polygonize` in batches of finished, cleaned polygons.

    Yields at least one frame (empty when nothing is traced), in the order the chunk rows
    finish them.
    """
    if simplify < 0 or min_area < 0:
        raise InputError(
            f"--simplify ({simplify!r}) and --min-area ({min_area!r}) must be >= 0 "
            "(metres and square metres)"
        )
    wanted = np.asarray(sorted(values if values is not None else layer.values), dtype=np.int32)
    tolerance_px = simplify / layer.pixel_size_m
    pieces = _finished_pieces(layer, wanted, min_area)
    if tolerance_px > 0:  # the whole coverage at once, so its outline is simplified too
        everything = _Pieces()
        for finished, _ in pieces:
            everything.extend(finished)
        geoms = np.asarray(everything.geoms, dtype=object)
        if geoms.size:
            everything.geoms = list(
                shapely.coverage_simplify(shapely.segmentize(geoms, 1.0), tolerance_px)
            )
        yield _frame(layer, everything)
        return
    ready, fresh = _Pieces(), 0  # the first ``fresh`` pieces of ``ready`` were never cleaned
    for finished, waiting in pieces:
        finished.extend(ready)
        ready, fresh = finished, fresh + len(finished) - len(ready)
        if fresh >= CLEAN_BATCH:
            ready.geoms = _clean_coverage(ready.geoms, fresh)
            held = _touching(ready.geoms, [piece[0] for piece in waiting.values()])
            if not held.all():
                yield _frame(layer, ready.take(~held))
            ready, fresh = ready.take(held), 0
    ready.geoms = _clean_coverage(ready.geoms, fresh)
    yield _frame(layer, ready)


def _touching(geoms: list, others: list) -> np.ndarray:
    """Per geometry: whether it touches one of ``others`` (pieces not finished yet)."""
    held = np.zeros(len(geoms), bool)
    if geoms and others:
        held[shapely.STRtree(others).query(geoms, predicate="intersects")[0]] = True
    return held


def _frame(layer: ExportLayer, pieces: _Pieces) -> gpd.GeoDataFrame:
    """A batch of finished, cleaned pieces in the cube's CRS, with their attributes."""
    geoms = shapely.transform(np.asarray(pieces.geoms, dtype=object), _to_crs(layer.transform))
    area = shapely.area(geoms) * metres_per_unit(layer.crs) ** 2
    conf_n = np.asarray(pieces.conf_n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.asarray(pieces.conf_sum, dtype=np.float64) / conf_n
    values_arr = np.asarray(pieces.values, dtype=np.int64)
    columns = {
        "value": values_arr,
        "class": pd.Series([layer.name_of(int(v)) for v in values_arr], dtype=object),
        **_value_columns(layer, values_arr),
        "area_m2": np.asarray(area, dtype=np.float64),
        "confidence": np.where(conf_n > 0, confidence, np.nan),
    }
    return gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(geoms, crs=layer.crs))


def _clean_coverage(geoms: list, fresh: int) -> list:
    """Polygons whose shared edges match vertex for vertex, without collinear vertices.

    A vertex at every pixel corner of the ``fresh`` (first, never cleaned) polygons makes
    neighbours' shared edges identical (the others kept theirs on every edge not yet
    cleaned); the coverage simplifier then removes collinear vertices on both sides alike,
    keeping the set's outer boundary as it is.
    """
    if not geoms:
        return geoms
    todo = np.asarray(geoms, dtype=object)
    todo[:fresh] = shapely.segmentize(todo[:fresh], 1.0)
    return list(shapely.coverage_simplify(todo, _COLLINEAR, simplify_boundary=False))


def _value_columns(layer: ExportLayer, values: np.ndarray) -> dict[str, list[str]]:
    """The layer's extra attributes per value as columns (e.g. ``from_class``, ``to_class``)."""
    keys = dict.fromkeys(k for attrs in layer.value_attrs.values() for k in attrs)
    return {k: [layer.value_attrs[int(v)].get(k, "") for v in values] for k in keys}


def _chunk_rows(layer: ExportLayer) -> Iterator[list[tuple[int, int, int, int]]]:
    """The store chunks' windows, one list per row of chunks."""
    row: list[tuple[int, int, int, int]] = []
    for window in layer.windows():
        if row and window[0] != row[0][0]:
            yield row
            row = []
        row.append(window)
    if row:
        yield row


def _finished_pieces(
    layer: ExportLayer, wanted: np.ndarray, min_area: float
) -> Iterator[tuple[_Pieces, dict[int, tuple]]]:
    """Trace the chunks a row at a time; yield the regions finished by each chunk and by the
    merge at the end of each row, each time with the pieces still waiting.

    ``waiting`` holds the pieces on a seam by region id; ``above`` the ids of the pixel row
    just above the current chunk row (ids of waiting groups after the merge).
    """
    from terrawatch.tasks.core.export_sieve import sieved_reader

    read = sieved_reader(layer, min_area)
    height, width = layer.shape
    waiting: dict[int, tuple] = {}
    above = np.zeros(width, np.int64)
    next_id = 1
    for windows in _chunk_rows(layer):
        finished, seams = _Pieces(), []
        left = np.zeros(0, np.int64)
        below = np.zeros(width, np.int64)
        for window in windows:
            row0, row1, col0, col1 = window
            vals = read(window)
            image = np.where(np.isin(vals, wanted), vals.astype(np.int32), _OUTSIDE)
            local = label(image, background=_OUTSIDE, connectivity=1).astype(np.int64)
            count = int(local.max())
            ids = np.where(local > 0, local + (next_id - 1), 0)
            seams += _seam_pairs(ids[0, :], above[col0:col1], ids[:, 0], left)
            on_seam = _seam_ids(local, row0 > 0, row1 < height, col0 > 0, col1 < width)
            stats = _region_stats(local, vals, layer.read_confidence(window), count)
            origin = Affine.translation(col0, row0)
            for geojson, region in shapes(
                local.astype(np.int32), mask=local > 0, connectivity=4, transform=origin
            ):
                region = int(region)
                piece = (shape(geojson), *(int(s[region]) for s in stats[:2]))
                piece += tuple(float(s[region]) for s in stats[2:])
                if on_seam[region]:
                    waiting[region + next_id - 1] = piece
                else:
                    finished.add(*piece)
            if row1 < height:
                below[col0:col1] = ids[-1, :]
            left = ids[:, -1]
            next_id += count
            yield finished, waiting
            finished = _Pieces()
        above = _merge_waiting(waiting, seams, below, finished)
        yield finished, waiting
    assert not waiting, "every region is finished after the last row of chunks"


def _merge_waiting(
    waiting: dict[int, tuple], seams: list[np.ndarray], below: np.ndarray, finished: _Pieces
) -> np.ndarray:
    """Union the waiting pieces that meet across a seam with the same class, in place.

    Groups that reach the pixel row ``below`` (the next chunk row's upper neighbour) keep
    waiting under one id; the others are added to ``finished``. Returns ``below`` with each
    id replaced by its group's id.
    """
    ids = np.fromiter(waiting, np.int64, len(waiting))
    if not ids.size:
        return below
    order = np.argsort(ids)
    ids = ids[order]
    pairs = np.concatenate(seams) if seams else np.zeros((0, 2), np.int64)
    pairs = pairs[np.isin(pairs, ids).all(axis=1)] if pairs.size else pairs
    pos = np.searchsorted(ids, pairs) if pairs.size else pairs
    values = np.asarray([waiting[i][1] for i in ids])
    if pos.size:
        pos = pos[values[pos[:, 0]] == values[pos[:, 1]]]
    n = ids.size
    graph = coo_matrix((np.ones(len(pos)), (pos[:, 0], pos[:, 1])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    reach = np.zeros(n, bool)
    on_below = np.unique(below[below > 0])
    reach[np.searchsorted(ids, on_below[np.isin(on_below, ids)])] = True
    group_reach = np.zeros(group.max() + 1, bool)
    np.logical_or.at(group_reach, group, reach)
    sort = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[sort])) + 1
    new_id = ids.copy()
    for members in np.split(sort, bounds):
        pieces = [waiting.pop(int(ids[m])) for m in members]
        geoms = [p[0] for p in pieces]
        merged = (
            geoms[0] if len(geoms) == 1 else shapely.union_all(geoms),
            pieces[0][1],
            *(sum(p[k] for p in pieces) for k in (2, 3, 4)),
        )
        if group_reach[group[members[0]]]:
            keep = int(ids[members[0]])
            waiting[keep] = merged
            new_id[members] = keep
        else:
            finished.add(*merged)
    lookup = np.searchsorted(ids, below)
    known = (below > 0) & (lookup < n) & (ids[np.minimum(lookup, n - 1)] == below)
    return np.where(known, new_id[np.minimum(lookup, n - 1)], below)


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


def _to_crs(transform: Affine):
    """Pixel (col, row) coordinates to the cube's CRS, for ``shapely.transform``."""
    a, b, c, d, e, f = transform[:6]

    def apply(xy: np.ndarray) -> np.ndarray:
        col, row = xy[:, 0], xy[:, 1]
        return np.stack([a * col + b * row + c, d * col + e * row + f], axis=1)

    return apply
