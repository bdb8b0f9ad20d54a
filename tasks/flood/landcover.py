"""A land-cover cube given to a flood run (``--landcover-cube``): exclusion bits and km² per class.

SAR cannot see flood water under dense forest (the canopy scatters the pulse back) or between
buildings (double bounce makes flooded streets bright), so those pixels are excluded as GFM
does. A class is urban or forest by its name or a synonym (:data:`URBAN_WORDS`,
:data:`FOREST_WORDS`). The cube's latest time step is resampled (nearest) onto the flood grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from terrawatch.errors import InputError
from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.core.grid import GridSpec

EXCLUDE_URBAN = 2
"""``exclusion`` bit: an urban land-cover class."""
EXCLUDE_FOREST = 4
"""``exclusion`` bit: a dense-forest land-cover class."""
URBAN_WORDS = ("building", "buildings", "urban", "built-up", "built up", "city", "settlement")
"""Class names or synonyms counted as urban."""
FOREST_WORDS = ("forest", "tree", "trees", "dense forest", "woodland", "tree cover")
"""Class names or synonyms counted as dense forest."""


def check_landcover_cube(path: str) -> list[dict]:
    """The cube's class table; refuses a path that is no terrawatch land-cover cube.

    Raises:
        InputError: naming ``--landcover-cube`` and what to give instead.
    """
    import zarr

    if "://" not in path and not Path(path).exists():
        raise InputError(f"--landcover-cube {path!r} does not exist; give a land-cover Zarr store")
    try:
        group = zarr.open_group(path, mode="r")
        classes = group.attrs["classes"]
        group["landcover"]
    except Exception as err:  # any reason it is not a land-cover cube
        raise InputError(
            f"--landcover-cube {path!r} is not a terrawatch land-cover cube (a Zarr store with a "
            f"'landcover' variable and a 'classes' attribute, as `terrawatch landcover` writes): "
            f"{err}"
        ) from err
    return list(classes)


def class_bits(classes: list[dict]) -> np.ndarray:
    """Exclusion bits per class value (index 0..255)."""
    bits = np.zeros(256, np.uint8)
    for entry in classes:
        words = {w.strip().lower() for w in [entry["name"], *entry.get("synonyms", [])]}
        if words & set(URBAN_WORDS):
            bits[entry["value"]] |= EXCLUDE_URBAN
        if words & set(FOREST_WORDS):
            bits[entry["value"]] |= EXCLUDE_FOREST
    return bits


def read_landcover(path: str, grid: GridSpec, window: tuple[slice, slice] | None = None):
    """The latest land-cover labels on ``grid`` (or a window of it), nearest resampling; 255
    outside the cube."""
    from odc.geo.xr import xr_reproject

    from terrawatch.tasks.core.cube_store import open_cube

    cube = open_cube(path, mask_and_scale=False)
    labels = cube["landcover"].isel(time=-1)
    geobox = grid.geobox[window] if window is not None else grid.geobox
    out = xr_reproject(labels, geobox, resampling="nearest", dst_nodata=NODATA)
    return np.asarray(out.values, dtype=np.uint8)


def landcover_exclusion(path: str, grid: GridSpec, window: tuple[slice, slice]) -> np.ndarray:
    """Urban and forest exclusion bits over a window of the flood grid."""
    classes = check_landcover_cube(path)
    return class_bits(classes)[read_landcover(path, grid, window)]


def flooded_by_class(path: str, grid: GridSpec, flooded: np.ndarray) -> list[dict]:
    """Flooded km² per land-cover class (and outside the land-cover cube)."""
    classes = check_landcover_cube(path)
    labels = read_landcover(path, grid)
    counts = np.bincount(labels[flooded == 1], minlength=256)
    pixel_km2 = grid.resolution**2 / 1e6
    names = {entry["value"]: entry["name"] for entry in classes}
    rows = [
        {"land cover": names.get(value, "outside the land-cover cube"),
         "flooded_km2": round(int(counts[value]) * pixel_km2, 6)}
        for value in [*sorted(names), NODATA] if counts[value] or value in names
    ]  # fmt: skip
    return rows
