"""Output files of ``terrawatch export``: the format from the suffix, written whole or not at all.

Every file is written under a temporary name beside the target and renamed onto it only when
complete, so a failure or an interrupt never leaves a half-written file or clobbers an
existing one; an existing target is refused unless ``overwrite`` is given.

Vectors are written as a stream of batches (:func:`write_vector_batches`), so an export holds
one batch of features in memory, never the whole output: GeoParquet through
``pyarrow.parquet.ParquetWriter`` (a WKB column and the GeoParquet 1.0 ``geo`` metadata, which
``geopandas.read_parquet`` reads with the CRS), GeoPackage and GeoJSON through
``pyogrio.write_arrow`` fed by a ``pyarrow.RecordBatchReader`` (one GDAL dataset, so GeoJSON
keeps its RFC 7946 layer options).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

import geopandas as gpd
import pyarrow as pa
import shapely

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
    return write_vector_batches([frame], path, layer)[0]


def write_vector_batches(
    batches: Iterable[gpd.GeoDataFrame], path: str | Path, layer: str
) -> tuple[Path, int]:
    """Write a stream of feature batches (same columns and CRS) to one file; count them.

    Only one batch is in memory at a time. The layer's geometry type is the first non-empty
    batch's (``Unknown`` when it mixes types). With no feature at all, an empty file with the
    columns of the last batch is written.

    Returns:
        The path and the number of features written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    batches = iter(batches)
    empty = None
    for first in batches:
        if len(first):
            break
        empty = first
    else:
        if empty is None:
            raise ValueError("write_vector_batches needs at least one batch (it may be empty)")
        with staged(path) as tmp:
            _write_whole(empty, tmp, layer)
        return path, 0
    counted = _Counted(chain([first], batches))
    with staged(path) as tmp:
        if suffix == ".parquet":
            _write_parquet(counted, tmp)
        else:
            _write_ogr(counted, tmp, layer, suffix)
    return path, counted.count


class _Counted:
    """Batches passed through as they are, counting their features."""

    def __init__(self, batches: Iterator[gpd.GeoDataFrame]) -> None:
        self._batches = batches
        self.count = 0

    def __iter__(self) -> Iterator[gpd.GeoDataFrame]:
        for batch in self._batches:
            if len(batch):
                self.count += len(batch)
                yield batch


def _write_whole(frame: gpd.GeoDataFrame, tmp: Path, layer: str) -> None:
    suffix = tmp.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    elif suffix == ".geojson":
        frame.to_crs(4326).to_file(tmp, driver="GeoJSON", engine="pyogrio", RFC7946="YES")
    else:
        frame.to_file(tmp, driver=_DRIVERS[suffix], layer=layer, engine="pyogrio")


def _table(frame: gpd.GeoDataFrame) -> pa.Table:
    """Attributes as Arrow columns and the geometry as WKB (``geometry``)."""
    attrs = pa.Table.from_pandas(frame.drop(columns=frame.geometry.name), preserve_index=False)
    wkb = pa.array(shapely.to_wkb(frame.geometry.values), type=pa.binary())
    return attrs.replace_schema_metadata(None).append_column("geometry", wkb)


def _geometry_type(frame: gpd.GeoDataFrame) -> str:
    kinds = frame.geom_type.unique()
    return str(kinds[0]) if len(kinds) == 1 else "Unknown"


def _write_parquet(batches: Iterable[gpd.GeoDataFrame], tmp: Path) -> None:
    """GeoParquet 1.0: WKB geometry and the ``geo`` metadata (CRS as PROJJSON)."""
    import pyarrow.parquet as pq

    writer = None
    try:
        for frame in batches:
            table = _table(frame)
            if writer is None:
                geo = {
                    "version": "1.0.0",
                    "primary_column": "geometry",
                    "columns": {
                        "geometry": {
                            "encoding": "WKB",
                            "geometry_types": sorted(set(frame.geom_type)),
                            "crs": frame.crs.to_json_dict() if frame.crs else None,
                        }
                    },
                }
                schema = table.schema.with_metadata({"geo": json.dumps(geo)})
                writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


def _write_ogr(batches: Iterable[gpd.GeoDataFrame], tmp: Path, layer: str, suffix: str) -> None:
    """GeoPackage or GeoJSON (reprojected to WGS 84, RFC 7946) through one GDAL dataset."""
    import pyogrio

    geojson = suffix == ".geojson"
    frames = (f.to_crs(4326) if geojson else f for f in batches)
    first = next(frames)
    schema = _table(first).schema

    def record_batches() -> Iterator[pa.RecordBatch]:
        for frame in chain([first], frames):
            yield from _table(frame).cast(schema).to_batches()

    reader = pa.RecordBatchReader.from_batches(schema, record_batches())
    pyogrio.write_arrow(
        reader,
        tmp,
        layer=layer,
        driver=_DRIVERS[suffix],
        geometry_name="geometry",
        geometry_type=_geometry_type(first),
        crs=first.crs.to_wkt() if first.crs else None,
        layer_options={"RFC7946": "YES"} if geojson else None,
    )
