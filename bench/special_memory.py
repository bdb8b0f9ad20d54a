"""Peak memory (RSS) of SPECIAL's training step (``landcover --refine special``) by scene size.

For each size a child process writes a synthetic 8-band Sentinel-2-like GeoTIFF of SIZE x SIZE
pixels (uint16 with scale/offset, 512-pixel tiles), adds it to a local catalog, fills the zero-
shot scratch store with smooth pseudo-labels (no CLIP: this measures the training step only) and
runs :func:`terrawatch.tasks.landcover.special.train_scene` (1 epoch, no warm-up, so PCA, the
GMMs and the predictions of the noisy-label stage all run). The training holds at most
``--training-pixels`` pixels (``SpecialSettings.training_pixels``), so past that budget its peak
should not grow with the scene. One summary line::

    python bench/special_memory.py [--sizes 1024,3072] [--training-pixels 4194304]
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

BANDS = ("B02", "B03", "B04", "B05", "B06", "B08", "B11", "B12")
CLASSES = ["water", "tree", "grass", "bare soil"]
CHUNK = 512


def _write_scene(path: Path, size: int) -> None:
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from scipy import ndimage

    rng = np.random.default_rng(0)
    coarse = rng.random((len(BANDS), size // 64 + 2, size // 64 + 2))
    profile = dict(driver="GTiff", width=size, height=size, count=len(BANDS), dtype="uint16",
                   crs="EPSG:32632", transform=from_origin(300000, 5700000, 10, 10), tiled=True,
                   blockxsize=512, blockysize=512)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = BANDS
        dst.scales, dst.offsets = (1e-4,) * len(BANDS), (0.0,) * len(BANDS)
        for top in range(0, size, CHUNK):
            rows = np.arange(top, min(top + CHUNK, size)) / 64.0
            cols = np.arange(size) / 64.0
            grid = np.meshgrid(rows, cols, indexing="ij")
            for b in range(len(BANDS)):
                field = ndimage.map_coordinates(coarse[b], grid, order=1)
                dn = 500 + 3000 * field + rng.normal(0, 50, field.shape)
                dst.write(dn.astype(np.uint16), b + 1, window=Window(0, top, size, len(rows)))


def _child(size: int, training_pixels: int) -> None:
    import zarr

    from terrawatch.models.special.training import SpecialSettings
    from terrawatch.tasks.core.grid import GridSpec
    from terrawatch.tasks.core.local_item import add_local_item
    from terrawatch.tasks.core.tile_runner import tile_windows
    from terrawatch.tasks.landcover.special import create_scratch, special_jobs, train_scene

    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "scene.tif"
        _write_scene(image, size)
        item = json.loads(add_local_item(image, Path(tmp) / "catalog", item_id="s").read_text())
        grid = GridSpec("EPSG:32632", 10.0, 300000, 5700000 - 10 * size, 300000 + 10 * size,
                        5700000)  # fmt: skip
        store = str(Path(tmp) / "cube.zarr")
        scratch = create_scratch(store, 0, grid, CHUNK)
        tiles = tuple((r, c) for r in range(-(-size // CHUNK)) for c in range(-(-size // CHUNK)))
        jobs = special_jobs(store, 0, tiles, CHUNK, grid, (item,), halo=0, loader="odc",
                            lease=None, scratch=scratch)  # fmt: skip
        group = zarr.open_group(scratch, mode="r+")
        rng = np.random.default_rng(1)
        for job in jobs:
            core, _ = tile_windows(grid, job.tile, CHUNK, 0)
            shape = (core[0].stop - core[0].start, core[1].stop - core[1].start)
            rows = np.arange(core[0].start, core[0].stop)[:, None] // 37
            cols = np.arange(core[1].start, core[1].stop)[None, :] // 53
            group["labels"][core] = ((rows + cols) % len(CLASSES)).astype(np.uint8)
            group["confidence"][core] = rng.random(shape).astype(np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        settings = SpecialSettings(epochs=1, warmup_epochs=0, iterations=2,
                                   training_pixels=training_pixels)  # fmt: skip
        started = time.perf_counter()
        _, provenance = train_scene(jobs, CLASSES, settings)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        held = provenance["training_pixels_held"]
        print(json.dumps({"size": size, "before_mb": before, "peak_mb": peak, "held": held,
                          "seconds": seconds}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1024,3072", help="scene sides in pixels")
    parser.add_argument("--training-pixels", type=int, default=None,
                        help="budget (default: SpecialSettings' default)")  # fmt: skip
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.training_pixels is None:
        from terrawatch.models.special.training import SpecialSettings

        args.training_pixels = SpecialSettings().training_pixels
    if args.child:
        _child(args.child, args.training_pixels)
        return
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(size),
             "--training-pixels", str(args.training_pixels)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = ", ".join(
        f"{r['size']}x{r['size']} ({r['size'] ** 2 / 1e6:.1f} MP, {r['held'] / 1e6:.2f} MP held): "
        f"peak {r['peak_mb']:.0f} MB (setup {r['before_mb']:.0f} MB, train {r['seconds']:.0f} s)"
        for r in results
    )
    print(f"special training step, {len(BANDS)} bands, budget "
          f"{args.training_pixels / 1e6:.1f} MP: {rows}")  # fmt: skip


if __name__ == "__main__":
    main()
