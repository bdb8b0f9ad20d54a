"""A team's own labels (``--labels FILE``) rasterised onto an image grid as clean samples.

GeoPackage, GeoJSON (any format GDAL reads via pyogrio) or GeoParquet (with pyarrow) polygons or
points, with a column of class names that must match the run's classes. Checked before heavy
work: unknown class names, no class column, features outside the image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio import features
from rasterio.transform import array_bounds
from shapely.geometry import box

from terrawatch.errors import InputError, InputNotFoundError

CLASS_COLUMNS = ("class", "label", "class_name", "name")
"""Columns searched for the class names, in this order, when none is named."""


def read_user_labels(
    path: str | Path,
    class_names: Sequence[str],
    profile: dict,
    shape: tuple[int, int],
    column: str | None = None,
) -> np.ndarray:
    """Class index per pixel ``int16 [H, W]`` (``-1`` unlabelled) from a vector label file."""
    import geopandas as gpd

    name = os.fspath(path)
    if not Path(name).exists():
        raise InputNotFoundError(f"--labels file {name!r} does not exist; check the path")
    try:
        if Path(name).suffix.lower() in {".parquet", ".geoparquet"}:
            frame = gpd.read_parquet(name)
        else:
            frame = gpd.read_file(name)
    except ImportError as err:
        raise InputError(
            f"--labels {name!r}: GeoParquet needs pyarrow ({err}); "
            "pip install pyarrow, or give a GeoPackage/GeoJSON"
        ) from err
    except Exception as err:  # pyogrio/GDAL raise their own types for unreadable files
        raise InputError(f"--labels {name!r} is not a readable vector file ({err})") from err
    column = column or next((c for c in CLASS_COLUMNS if c in frame.columns), None)
    if column is None or column not in frame.columns:
        raise InputError(
            f"--labels {name!r} has no class column (looked for {', '.join(CLASS_COLUMNS)}); "
            f"its columns: {[c for c in frame.columns if c != 'geometry']}"
        )
    index = {n.lower(): i for i, n in enumerate(class_names)}
    given = frame[column].astype(str).str.strip().str.lower()
    unknown = sorted(set(given) - set(index))
    if unknown:
        raise InputError(
            f"--labels {name!r}: class names {unknown} are not among the classes "
            f"{list(class_names)}; fix the {column!r} column or the --classes list"
        )
    crs, transform = profile.get("crs"), profile.get("transform")
    if transform is None:
        raise InputError("--labels needs a georeferenced image (it has no transform)")
    if frame.crs is not None and crs is not None:
        frame = frame.to_crs(crs)
    elif (frame.crs is None) != (crs is None):
        raise InputError(f"--labels {name!r} and the image must both have a CRS (or neither)")
    grid = box(*array_bounds(shape[0], shape[1], transform))
    outside = int((~frame.geometry.intersects(grid)).sum())
    if outside:
        raise InputError(
            f"--labels {name!r}: {outside} of {len(frame)} features lie outside the image; "
            "drop them or use labels for this scene"
        )
    shapes = [(geom, index[c]) for geom, c in zip(frame.geometry, given, strict=True)]
    return features.rasterize(shapes, out_shape=shape, transform=transform, fill=-1, dtype="int16")
