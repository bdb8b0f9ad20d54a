"""A team's own labels (``--labels FILE``) rasterised onto an image grid as clean samples.

GeoPackage, GeoJSON (any format GDAL reads via pyogrio) or GeoParquet (with pyarrow) polygons or
points, with a column of class names that must match the run's classes. Checked before heavy
work: unknown class names, no class column, features outside the image. The land-cover flow
reads and checks the file once (:func:`load_user_labels`, :func:`check_inside`) and rasterises
it per tile (:func:`rasterise_labels`), so no scene-size label raster is ever held.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from rasterio import features
from rasterio.transform import array_bounds
from shapely.geometry import box

from terrawatch.errors import InputError, InputNotFoundError

if TYPE_CHECKING:
    import geopandas as gpd

CLASS_COLUMNS = ("class", "label", "class_name", "name")
"""Columns searched for the class names, in this order, when none is named."""
CLASS_INDEX = "class_index"
"""Column :func:`load_user_labels` adds: the class's index in the run's class list."""


def load_user_labels(
    path: str | Path, class_names: Sequence[str], column: str | None = None
) -> gpd.GeoDataFrame:
    """The label features with their class index (:data:`CLASS_INDEX`); names checked.

    Raises:
        InputNotFoundError: no such file. InputError: unreadable, no class column, or class
        names that are not among ``class_names`` (matched case-insensitively).
    """
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
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty].copy()
    frame[CLASS_INDEX] = [index[c] for c in given.loc[frame.index]]
    frame.attrs["source"] = name
    return frame


def check_inside(
    frame: gpd.GeoDataFrame, crs, bounds: tuple[float, float, float, float]
) -> gpd.GeoDataFrame:
    """``frame`` in ``crs``; every feature must touch ``bounds`` (left, bottom, right, top).

    Raises:
        InputError: a CRS on one side only, or features outside the bounds (counted).
    """
    name = frame.attrs.get("source", "")
    if frame.crs is not None and crs is not None:
        frame = frame.to_crs(crs)
    elif (frame.crs is None) != (crs is None):
        raise InputError(f"--labels {name!r} and the image must both have a CRS (or neither)")
    outside = int((~frame.geometry.intersects(box(*bounds))).sum())
    if outside:
        raise InputError(
            f"--labels {name!r}: {outside} of {len(frame)} features lie outside the image "
            "(or the --aoi grid); drop them or use labels for this scene"
        )
    return frame


def label_shapes(frame: gpd.GeoDataFrame) -> tuple[tuple[Any, int], ...]:
    """(geometry, class index) pairs: plain values that travel to a task."""
    return tuple(zip(frame.geometry, (int(c) for c in frame[CLASS_INDEX]), strict=True))


def rasterise_labels(
    shapes: Sequence[tuple[Any, int]], transform: Affine, shape: tuple[int, int]
) -> np.ndarray:
    """Class index per pixel ``int16 [H, W]`` (``-1`` unlabelled) of ``shapes`` (grid CRS)."""
    if not shapes:
        return np.full(shape, -1, np.int16)
    return features.rasterize(shapes, out_shape=shape, transform=transform, fill=-1, dtype="int16")


def read_user_labels(
    path: str | Path,
    class_names: Sequence[str],
    profile: dict,
    shape: tuple[int, int],
    column: str | None = None,
) -> np.ndarray:
    """Class index per pixel ``int16 [H, W]`` (``-1`` unlabelled) from a vector label file."""
    transform = profile.get("transform")
    frame = load_user_labels(path, class_names, column)
    if transform is None:
        raise InputError("--labels needs a georeferenced image (it has no transform)")
    frame = check_inside(frame, profile.get("crs"), array_bounds(shape[0], shape[1], transform))
    return rasterise_labels(label_shapes(frame), transform, shape)
