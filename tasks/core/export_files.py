"""Output files of ``terrawatch export``: the format from the suffix, written whole or not at all.

Every file is written under a temporary name beside the target and renamed onto it only when
complete, so a failure or an interrupt never leaves a half-written file or clobbers an
existing one; an existing target is refused unless ``overwrite`` is given.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd

from terrawatch.errors import InputError, InputNotFoundError, OutputExistsError

RASTER_SUFFIXES = (".tif", ".tiff")
VECTOR_SUFFIXES = (".parquet", ".gpkg", ".geojson")
_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON"}


def output_format(path: str | Path, overwrite: bool = False) -> str:
    """``"cog"`` or ``"vector"`` from the suffix of ``--to``; checks the folder and the file.

    Raises:
        InputError: An unknown suffix.
        InputNotFoundError: The output folder does not exist.
        OutputExistsError: The file exists and ``overwrite`` is False.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in RASTER_SUFFIXES + VECTOR_SUFFIXES:
        raise InputError(
            f"--to {str(path)!r}: unknown format {suffix or '(no suffix)'!r}; end the name with "
            f"one of {', '.join(RASTER_SUFFIXES + VECTOR_SUFFIXES)}"
        )
    if not path.parent.is_dir():
        raise InputNotFoundError(
            f"--to {str(path)!r}: the folder {str(path.parent)!r} does not exist; create it first"
        )
    if path.exists() and not overwrite:
        raise OutputExistsError(f"--to {str(path)!r} exists; pass --overwrite to replace it")
    return "cog" if suffix in RASTER_SUFFIXES else "vector"


@contextmanager
def staged(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` (same suffix) that replaces ``path`` on success."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".aux.xml").unlink(missing_ok=True)


def write_vectors(frame: gpd.GeoDataFrame, path: str | Path, layer: str) -> Path:
    """Write features as GeoParquet, GeoPackage (layer ``layer``) or GeoJSON (WGS 84, RFC 7946).

    GeoJSON is reprojected to EPSG:4326 because RFC 7946 allows no other CRS; the areas and
    lengths in the attributes were measured in the cube's CRS before.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    with staged(path) as tmp:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix == ".geojson":
            frame.to_crs(4326).to_file(tmp, driver="GeoJSON", engine="pyogrio", RFC7946="YES")
        else:
            frame.to_file(tmp, driver=_DRIVERS[suffix], layer=layer, engine="pyogrio")
    return path
