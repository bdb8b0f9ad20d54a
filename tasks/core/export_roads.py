"""Road centerlines as a line graph: the raster-to-graph baseline of road extraction.

The road class of one time step is thinned to a one-pixel skeleton
(``skimage.morphology.skeletonize``); the skeleton's pixels form a graph of 8-neighbours
(a diagonal step is dropped where a 4-neighbour path joins the same two pixels, so a staircase
is a chain, not a triangle). Pixels with one neighbour are ends, with three or more junctions
(adjacent junction pixels are one junction at their centroid). The chains of two-neighbour
pixels between them become edges of a networkx multigraph. Spurs (an edge with a free end,
shorter than ``min_spur`` metres, hanging off a junction) are the skeleton's whiskers and are
removed, and the nodes left with two edges are dissolved so each line runs from a junction or
end to the next. Each LineString carries its length in metres and the degree of its end nodes.

The skeleton is made by chunk: each store chunk's road mask is read with a halo of
:data:`HALO` pixels around it, thinned, and only the chunk's own skeleton pixels are kept.
Thinning removes one layer of boundary pixels per pass and decides from a pixel's 3×3
neighbourhood, so the window's cut edge changes the skeleton only within about the road's
width of that edge; with roads narrower than the halo the chunks' skeletons join into exactly
the skeleton of the whole step (a test checks it). The graph is then built from the skeleton's
pixel coordinates (a sparse list, as long as the roads, not as large as the step), so an
8-neighbour pair across a chunk seam joins the two chunks' chains like any other pair. Road
areas wider than the halo (squares, car parks) may get a slightly different skeleton near a
seam, never a broken one.
"""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.morphology import skeletonize

from terrawatch.errors import InputError
from terrawatch.tasks.core.export_source import ExportLayer, metres_per_unit

ROAD_CLASS = "road"
"""The class (name or synonym in the cube's class table) whose pixels are roads."""
SPUR_PIXELS = 10
"""Default spur threshold in pixels (``min_spur`` is given in metres)."""
HALO = 64
"""Pixels read around each chunk for its skeleton: roads up to about this wide thin exactly."""

_OFFSETS = ((0, 1), (1, -1), (1, 0), (1, 1))  # each undirected 8-neighbour pair once


def road_centerlines(
    layer: ExportLayer, *, class_name: str = ROAD_CLASS, min_spur: float | None = None
) -> gpd.GeoDataFrame:
    """Centerlines of the road class of ``layer``.

    Args:
        layer: A land-cover layer whose class table has ``class_name``.
        class_name: The road class (``--objects roads`` uses :data:`ROAD_CLASS`).
        min_spur: Spurs shorter than this many metres are pruned (default
            :data:`SPUR_PIXELS` pixels).

    Returns:
        Columns ``class``, ``length_m``, ``start_degree``, ``end_degree``, ``start_node``,
        ``end_node`` and ``geometry`` (LineStrings in the cube's CRS through pixel centres).
    """
    if min_spur is not None and min_spur < 0:
        raise InputError(f"--min-spur must be >= 0 metres, got {min_spur!r}")
    value = layer.value_of(class_name, "--objects roads")
    spur_px = SPUR_PIXELS if min_spur is None else min_spur / layer.pixel_size_m
    graph = pixel_graph(*skeleton_pixels(layer, value))
    prune_spurs(graph, spur_px)
    dissolve_pass_through(graph)
    return _lines_frame(graph, layer, layer.name_of(value))


def skeleton_pixels(layer: ExportLayer, value: int, halo: int = HALO) -> tuple[np.ndarray, ...]:
    """``(rows, cols)`` of the skeleton of the pixels of ``value``, thinned chunk by chunk."""
    height, width = layer.shape
    rows, cols = [], []
    for row0, row1, col0, col1 in layer.windows():
        top, left = max(row0 - halo, 0), max(col0 - halo, 0)
        grown = (top, min(row1 + halo, height), left, min(col1 + halo, width))
        skeleton = skeletonize(layer.read(grown) == value)
        r, c = np.nonzero(skeleton[row0 - top : row1 - top, col0 - left : col1 - left])
        rows.append(r + row0)
        cols.append(c + col0)
    return np.concatenate(rows), np.concatenate(cols)


def skeleton_graph(skeleton: np.ndarray) -> nx.MultiGraph:
    """The graph of a skeleton image (see :func:`pixel_graph`)."""
    return pixel_graph(*np.nonzero(skeleton))


def pixel_graph(rows: np.ndarray, cols: np.ndarray) -> nx.MultiGraph:
    """Junctions and ends as nodes (``pos`` = (row, col)), pixel chains as edges (``path``).

    ``rows``/``cols`` are the skeleton's pixels, in any order.
    """
    lookup = _PixelLookup(rows, cols)
    rows, cols = lookup.rows, lookup.cols
    pairs = _pixel_pairs(lookup)
    n = rows.size
    adjacency = coo_matrix(
        (
            np.ones(2 * len(pairs)),
            (np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]),
        ),
        shape=(n, n),
    ).tocsr()
    degree = np.diff(adjacency.indptr)
    is_node = degree != 2
    # adjacent node pixels are one node (a junction drawn over several pixels)
    node_links = pairs[is_node[pairs[:, 0]] & is_node[pairs[:, 1]]]
    sub = coo_matrix((np.ones(len(node_links)), (node_links[:, 0], node_links[:, 1])), shape=(n, n))
    _, cluster = connected_components(sub, directed=False)
    graph = nx.MultiGraph()
    points = np.stack([rows, cols], axis=1).astype(np.float64)
    for c in np.unique(cluster[is_node]):
        members = np.flatnonzero((cluster == c) & is_node)
        graph.add_node(int(c), pos=tuple(points[members].mean(axis=0)))
    visited = np.zeros(n, bool)
    for start in np.flatnonzero(is_node):
        for nxt in adjacency.indices[adjacency.indptr[start] : adjacency.indptr[start + 1]]:
            if is_node[nxt] or visited[nxt]:
                continue
            chain, end = _walk(adjacency, is_node, visited, start, nxt)
            _add_edge(graph, int(cluster[start]), int(cluster[end]), points[chain])
    for loop_start in np.flatnonzero(~is_node & ~visited):  # closed rings without a node
        if visited[loop_start]:
            continue
        c = int(cluster[loop_start])
        graph.add_node(c, pos=tuple(points[loop_start]))
        visited[loop_start] = True
        nxt = adjacency.indices[adjacency.indptr[loop_start]]
        is_node[loop_start] = True
        chain, _ = _walk(adjacency, is_node, visited, loop_start, nxt)
        _add_edge(graph, c, c, points[chain])
    graph.remove_nodes_from([node for node, deg in graph.degree if deg == 0])
    return graph


def prune_spurs(graph: nx.MultiGraph, spur_px: float) -> None:
    """Remove edges shorter than ``spur_px`` from a free end to a junction (degree >= 3)."""
    spurs = []
    for u, v, key, data in graph.edges(keys=True, data=True):
        degrees = sorted((graph.degree(u), graph.degree(v)))
        if u != v and degrees[0] == 1 and degrees[1] >= 3 and data["length"] < spur_px:
            spurs.append((u, v, key))
    for u, v, key in spurs:
        if graph.degree(u) >= 3 or graph.degree(v) >= 3:  # still a spur after earlier removals
            graph.remove_edge(u, v, key)
    graph.remove_nodes_from([node for node, deg in list(graph.degree) if deg == 0])


def dissolve_pass_through(graph: nx.MultiGraph) -> None:
    """Join the two edges of every node of degree 2 into one edge (no junction there)."""
    for node in list(graph.nodes):
        if graph.degree(node) != 2 or graph.number_of_edges(node, node):
            continue
        (u1, v1, k1, d1), (u2, v2, k2, d2) = graph.edges(node, keys=True, data=True)
        a = d1["path"] if _starts_at(graph, d1["path"], node) is False else d1["path"][::-1]
        b = d2["path"] if _starts_at(graph, d2["path"], node) else d2["path"][::-1]
        graph.remove_edge(u1, v1, k1)
        graph.remove_edge(u2, v2, k2)
        graph.remove_node(node)
        _add_edge(graph, v1 if u1 == node else u1, v2 if u2 == node else u2, np.vstack([a, b[1:]]))


def _starts_at(graph: nx.MultiGraph, path: np.ndarray, node: int) -> bool:
    """Whether ``path`` starts at ``node`` (its first point is the node's position)."""
    pos = np.asarray(graph.nodes[node]["pos"])
    return bool(np.linalg.norm(path[0] - pos) <= np.linalg.norm(path[-1] - pos))


class _PixelLookup:
    """Index of a skeleton pixel by (row, col) among sorted sparse pixels (-1: not skeleton)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray) -> None:
        self._stride = int(cols.max()) + 3 if cols.size else 3
        keys = self._key(np.asarray(rows, np.int64), np.asarray(cols, np.int64))
        order = np.argsort(keys, kind="stable")
        self.rows, self.cols, self._keys = rows[order], cols[order], keys[order]

    def _key(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return (rows + 1) * self._stride + (cols + 1)

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        keys = self._key(rows, cols)
        at = np.minimum(np.searchsorted(self._keys, keys), max(self._keys.size - 1, 0))
        found = self._keys.size > 0
        hit = (self._keys[at] == keys) if found else np.zeros(keys.shape, bool)
        return np.where(hit, at, -1)


def _pixel_pairs(lookup: _PixelLookup) -> np.ndarray:
    """``(m, 2)`` pixel indices of 8-neighbours, without diagonals that a 4-path also joins."""
    rows, cols = lookup.rows.astype(np.int64), lookup.cols.astype(np.int64)
    here = np.arange(rows.size)
    out = []
    for dr, dc in _OFFSETS:
        other = lookup(rows + dr, cols + dc)
        both = other >= 0
        if dr and dc:  # diagonal: skip where the L-corner pixel of either side is skeleton
            both &= (lookup(rows + dr, cols) < 0) & (lookup(rows, cols + dc) < 0)
        out.append(np.stack([here[both], other[both]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def _walk(adjacency, is_node: np.ndarray, visited: np.ndarray, start: int, nxt: int):
    """Follow a chain of two-neighbour pixels from ``start`` through ``nxt`` to a node pixel."""
    chain, prev, cur = [start, nxt], start, nxt
    while not is_node[cur]:
        visited[cur] = True
        neighbours = adjacency.indices[adjacency.indptr[cur] : adjacency.indptr[cur + 1]]
        options = [p for p in neighbours if p != prev]
        if not options:
            break
        prev, cur = cur, options[0]
        chain.append(cur)
    return np.asarray(chain), cur


def _add_edge(graph: nx.MultiGraph, u: int, v: int, path: np.ndarray) -> None:
    """An edge whose polyline runs from node ``u``'s position through ``path`` to ``v``'s."""
    path = np.vstack([graph.nodes[u]["pos"], path[1:-1], graph.nodes[v]["pos"]])
    length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
    graph.add_edge(u, v, path=path, length=length)


def _lines_frame(graph: nx.MultiGraph, layer: ExportLayer, name: str) -> gpd.GeoDataFrame:
    t = layer.transform
    rows = []
    for u, v, data in graph.edges(data=True):
        path = data["path"]
        cols, rws = path[:, 1] + 0.5, path[:, 0] + 0.5  # pixel centres
        xy = np.stack([t.a * cols + t.b * rws + t.c, t.d * cols + t.e * rws + t.f], axis=1)
        rows.append((u, v, graph.degree(u), graph.degree(v), shapely.linestrings(xy)))
    unit = metres_per_unit(layer.crs)
    geoms = [r[4] for r in rows]
    return gpd.GeoDataFrame(
        {
            "class": [name] * len(rows),
            "length_m": shapely.length(np.asarray(geoms, dtype=object)) * unit if rows else [],
            "start_degree": [r[2] for r in rows],
            "end_degree": [r[3] for r in rows],
            "start_node": [r[0] for r in rows],
            "end_node": [r[1] for r in rows],
        },
        geometry=gpd.GeoSeries(geoms, crs=layer.crs),
    )
