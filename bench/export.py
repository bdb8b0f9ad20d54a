"""Benchmark polygonising a cube's land cover by chunk, against reading it, with peak memory.

A synthetic land-cover cube of ``--size``² pixels (chunks of ``--chunk``) is written once: four
classes in 32-pixel blocks of a random coarse map, so regions straddle every chunk seam, plus
single-pixel speckle. Each measurement runs in a fresh process so its peak RSS is its own:
reading every chunk of the step (the floor), and the polygon export to GeoParquet
(``export_layer``: tracing per chunk, seam merging, coverage cleaning, batches streamed to the
file). The same export runs on a cube of half the side, so the two peaks show how memory grows
with the cube: it should not (a chunk, the seam strip and one batch of polygons). One summary
line::

    python bench/export.py [--size 8192] [--chunk 1024]

With ``--roads`` the cube is a grid of 7-pixel roads every 256 pixels on background and the
export is the road centerlines (skeleton by chunk with a halo, graph stitched across seams),
measured the same way.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.landcover.cube import prepare_cube, write_tile

CLASSES = parse_class_names(["background", "building", "road", "water"])
BLOCK = 32


ROAD_EVERY, ROAD_HALF_WIDTH = 256, 3


def write_cube(store: str, size: int, chunk: int, seed: int = 0, roads: bool = False) -> None:
    """The synthetic cube (one step), written chunk by chunk (a road grid with ``roads``)."""
    grid = GridSpec("EPSG:32632", 10.0, 300_000.0, 5_600_000.0, 300_000.0 + 10 * size,
                    5_600_000.0 + 10 * size)  # fmt: skip
    prepare_cube(store, grid, CLASSES, TimeStep("2024-06-01", "2024-06-30", ("synthetic",)),
                 {"run_id": "bench"}, chunk=chunk)  # fmt: skip
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(CLASSES.names), (size // BLOCK, size // BLOCK), dtype=np.uint8)
    for row in range(0, size, chunk):
        for col in range(0, size, chunk):
            part = coarse[
                row // BLOCK : (row + chunk) // BLOCK, col // BLOCK : (col + chunk) // BLOCK
            ]
            labels = np.kron(part, np.ones((BLOCK, BLOCK), np.uint8))
            speckle = rng.random(labels.shape) < 0.001
            labels[speckle] = rng.integers(0, len(CLASSES.names), int(speckle.sum()))
            if roads:
                labels = _road_tile(row, col, labels.shape)
            conf = np.full(labels.shape, 80, np.uint8)
            write_tile(store, 0, (row // chunk, col // chunk), labels, conf, chunk)


def _road_tile(row: int, col: int, shape: tuple[int, int]) -> np.ndarray:
    """Background with the roads of the grid that cross this tile (class 2)."""
    rows, cols = np.arange(row, row + shape[0]), np.arange(col, col + shape[1])
    on_row = np.abs((rows + ROAD_EVERY // 2) % ROAD_EVERY - ROAD_EVERY // 2) <= ROAD_HALF_WIDTH
    on_col = np.abs((cols + ROAD_EVERY // 2) % ROAD_EVERY - ROAD_EVERY // 2) <= ROAD_HALF_WIDTH
    return np.where(on_row[:, None] | on_col[None, :], 2, 0).astype(np.uint8)


def measure(store: str, what: str) -> dict:
    """Run in this process: seconds and peak RSS of reading or polygonising the step."""
    from terrawatch.tasks.core.export import export_layer
    from terrawatch.tasks.core.export_source import open_layer

    layer = open_layer(store)
    start = time.perf_counter()
    if what == "read":
        pixels = sum(layer.read(w).size for w in layer.windows())
        count = 0
    elif what == "roads":
        from terrawatch.tasks.core.export_roads import road_centerlines

        pixels, count = layer.shape[0] * layer.shape[1], len(road_centerlines(layer))
    else:
        pixels = layer.shape[0] * layer.shape[1]
        count = export_layer(layer, f"{store}.polygons.parquet")[1]
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak_mb, "pixels": pixels, "polygons": count}


def in_fresh_process(store: str, what: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", what, "--store", store],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="cube side in pixels")
    parser.add_argument("--chunk", type=int, default=1024, help="store chunk in pixels")
    parser.add_argument("--roads", action="store_true", help="road centerlines of a road grid")
    parser.add_argument("--measure", choices=("read", "polygons", "roads"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.store, args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        full, half = f"{tmp}/full.zarr", f"{tmp}/half.zarr"
        write_cube(full, args.size, args.chunk, roads=args.roads)
        write_cube(half, args.size // 2, args.chunk, roads=args.roads)
        what = "roads" if args.roads else "polygons"
        read = in_fresh_process(full, "read")
        poly = in_fresh_process(full, what)
        small = in_fresh_process(half, what)
    verb, noun = ("centerlines", "lines") if args.roads else ("polygonise", "polygons")
    print(
        f"export {args.size}² (chunk {args.chunk}): read {read['seconds']:.1f} s "
        f"(peak {read['peak_mb']:.0f} MB), {verb} {poly['seconds']:.1f} s "
        f"({poly['polygons']} {noun}, {poly['pixels'] / poly['seconds'] / 1e6:.1f} Mpx/s, "
        f"peak {poly['peak_mb']:.0f} MB; {args.size // 2}²: {small['polygons']} {noun}, "
        f"peak {small['peak_mb']:.0f} MB)"
    )


if __name__ == "__main__":
    main()
