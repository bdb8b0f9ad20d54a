"""Describe a local GeoTIFF as a STAC Item so the pipeline can search and load it."""

from __future__ import annotations

import copy
import datetime as dtm
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rasterio
import shapely
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import transform_geom
from rasterio.windows import Window
from shapely.geometry import box, mapping, shape

from terrawatch.errors import InputError, InputNotFoundError, OutputExistsError

log = logging.getLogger(__name__)

STAC_VERSION = "1.1.0"
"""The STAC version written; pystac ships its core schemas, so validation needs no network."""
_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DENSIFY = 20
"""Footprint edges are cut into this many segments before reprojection to lon/lat."""
_COLOUR_NAMES = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue"}
_NAMES_BY_COUNT = {3: ("red", "green", "blue"), 4: ("red", "green", "blue", "nir")}
_STAC_DTYPES = {"complex64": "cfloat32", "complex128": "cfloat64", "complex_int16": "cint16"}
_GEOTIFF = "image/tiff; application=geotiff"


def make_local_item(
    image: str | Path,
    *,
    datetime: str | None = None,
    collection: str = "local",
    item_id: str | None = None,
) -> dict:
    """Build a STAC Item dict (1.1.0; eo, projection, raster) for one local GeoTIFF.

    The footprint is the raster's extent reprojected to EPSG:4326; the datetime comes from
    ``datetime``, else the TIFFTAG_DATETIME tag, else the file's modification time.

    Raises:
        FileNotFoundError: the image does not exist.
        InputError: the file is not a readable raster, has no CRS, or an id is malformed.
    """
    path = Path(image).expanduser().absolute()
    if not (isinstance(collection, str) and _ID_RE.match(collection)):
        raise InputError(
            f"collection={collection!r} must be a non-empty id of letters, digits, '.', '_', '-'"
        )
    with _open_raster(path) as src:
        ident = _item_id(path, item_id)
        geometry, bbox = _footprint(src)
        gsd = _gsd(src)
        item = {
            "type": "Feature",
            "stac_version": STAC_VERSION,
            "stac_extensions": list(_EXTENSIONS),
            "id": ident,
            "collection": collection,
            "geometry": geometry,
            "bbox": bbox,
            "properties": {
                "datetime": _item_datetime(src, path, datetime),
                **_projection(src),
                "gsd": gsd,
            },
            "assets": {"image": _asset(src, path, gsd)},
            "links": [_collection_link(collection)],
        }
    _validate(item, path)
    return item


def add_local_item(
    image: str | Path, catalog_dir: str | Path, *, overwrite: bool = False, **kw: Any
) -> Path:
    """Write the item for ``image`` to ``<catalog_dir>/<id>.json`` and return that path.

    Keyword arguments go to :func:`make_local_item`. An item with the same id is replaced only
    with ``overwrite=True``; one with that id in another file of the folder is never replaced.
    """
    item = make_local_item(image, **kw)
    folder = Path(catalog_dir).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"catalog_dir={str(folder)!r} is a file; give a folder")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{item['id']}.json"
    _check_id_free(folder, item["id"], target, overwrite)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(item, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, target)
    _update_collection(folder, item)
    log.info("wrote STAC item %s for %s to %s", item["id"], image, target)
    return target


def _collection_link(collection: str) -> dict[str, str]:
    """STAC 1.1 requires a rel=collection link whenever an Item names its collection."""
    return {
        "rel": "collection",
        "href": f"./{collection}.collection.json",
        "type": "application/json",
    }


def _update_collection(folder: Path, item: dict) -> Path:
    """Create or widen the minimal Collection the item links to (extent = union of items)."""
    path = folder / _collection_link(item["collection"])["href"][2:]
    when = item["properties"]["datetime"]
    bbox, interval = list(item["bbox"]), [when, when]
    try:
        old = json.loads(path.read_text())["extent"] if path.is_file() else None
        if old is not None:
            old_bbox, old_interval = old["spatial"]["bbox"][0], old["temporal"]["interval"][0]
            bbox = [*map(min, bbox[:2], old_bbox[:2]), *map(max, bbox[2:], old_bbox[2:])]
            stamps = [*interval, *old_interval]
            interval = [min(stamps, key=_stamp), max(stamps, key=_stamp)]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        log.warning("rewriting unreadable collection file %s (%s)", path, err)
    collection = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": item["collection"],
        "description": "Local imagery added with `terrawatch catalog add`.",
        "license": "other",
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
        "links": [],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(collection, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _check_id_free(folder: Path, item_id: str, target: Path, overwrite: bool) -> None:
    from terrawatch.tasks.core.catalog import load_local_items

    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"item {item_id!r} already exists at {str(target)!r}; pass overwrite=True "
            "(--overwrite) to replace it, or item_id= (--id) to add it under another id"
        )
    for item, source in load_local_items(folder):
        if item["id"] == item_id and Path(source) != target:
            raise OutputExistsError(
                f"item {item_id!r} is already in {source!r} in catalog {str(folder)!r}; remove "
                "it there, or pass item_id= (--id) to add this image under another id"
            )


@contextmanager
def _open_raster(path: Path) -> Iterator[Any]:
    """Open the raster, refusing missing, unreadable or un-georeferenced files by name."""
    if not path.is_file():
        raise InputNotFoundError(f"image {str(path)!r} does not exist; give a GeoTIFF file path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
    except RasterioError as err:
        raise InputError(
            f"image {str(path)!r} is not a readable raster ({err}); give a GeoTIFF"
        ) from err
    with src:
        _require_crs(src, path)
        try:  # the last pixel: a truncated file fails here rather than in the pipeline
            src.read(1, window=Window(src.width - 1, src.height - 1, 1, 1))
        except RasterioError as err:
            raise InputError(
                f"image {str(path)!r} is broken (truncated or corrupt), its pixels cannot be "
                f"read: {err.__cause__ or err}"
            ) from err
        yield src


def _require_crs(src: Any, path: Path) -> None:
    if src.crs is not None:
        return
    n_gcps = len(src.gcps[0])
    why = (
        f" (only {n_gcps} GCPs: it is in radar/sensor geometry, e.g. a Sentinel-1 GRD)"
        if n_gcps
        else ""
    )
    raise InputError(
        f"image {str(path)!r} has no CRS{why}; map-project it first, e.g. "
        "`gdalwarp -t_srs EPSG:32632 in.tif out.tif`, and add the warped file"
    )


def _item_id(path: Path, item_id: str | None) -> str:
    if item_id is not None:
        if not (isinstance(item_id, str) and _ID_RE.match(item_id)):
            raise InputError(
                f"item_id={item_id!r} must start with a letter or digit and hold only "
                "letters, digits, '.', '_', '-'"
            )
        return item_id
    ident = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._-")
    if not ident:
        raise InputError(f"cannot derive an item id from file name {path.name!r}; pass item_id=")
    return ident


def _footprint(src: Any) -> tuple[dict, list[float]]:
    """Raster extent as a densified lon/lat polygon (GeoJSON) and its bbox."""
    left, bottom, right, top = src.bounds
    ring = shapely.segmentize(
        box(left, bottom, right, top), max(right - left, top - bottom) / _DENSIFY
    )
    geometry = transform_geom(src.crs, "EPSG:4326", mapping(ring), precision=7)
    geometry = json.loads(json.dumps(geometry))
    bbox = [round(v, 7) for v in shape(geometry).bounds]
    return geometry, bbox


def _projection(src: Any) -> dict[str, Any]:
    authority = src.crs.to_authority()
    code = f"{authority[0]}:{authority[1]}" if authority else None
    props: dict[str, Any] = {
        "proj:code": code,
        "proj:epsg": int(authority[1]) if authority and authority[0] == "EPSG" else None,
        "proj:shape": [src.height, src.width],
        "proj:transform": [float(v) for v in list(src.transform)[:6]],
        "proj:bbox": [float(v) for v in src.bounds],
    }
    if code is None:
        props["proj:wkt2"] = src.crs.to_wkt()
    return props


def _gsd(src: Any) -> float:
    """Pixel size in metres (the larger axis); approximate for geographic CRSs."""
    res = max(abs(src.res[0]), abs(src.res[1]))
    if src.crs.is_projected:
        return round(res * src.crs.linear_units_factor[1], 6)
    return round(res * 111_320.0, 3)  # metres per degree of latitude


def _item_datetime(src: Any, path: Path, given: str | None) -> str:
    """ISO UTC datetime from the argument, the TIFF tag, or the file mtime (logged)."""
    if given is not None:
        when, source = _parse_given(given), "the datetime argument"
    else:
        when, source = _tiff_datetime(src), "TIFFTAG_DATETIME"
        if when is None:
            stamp = path.stat().st_mtime
            when, source = dtm.datetime.fromtimestamp(stamp, tz=dtm.UTC), "the file mtime"
    log.info("%s: datetime %s taken from %s", path.name, when.isoformat(), source)
    return when.astimezone(dtm.UTC).isoformat().replace("+00:00", "Z")


def _stamp(text: str) -> dtm.datetime:
    return dtm.datetime.fromisoformat(text)


def _parse_given(text: str) -> dtm.datetime:
    try:
        when = dtm.datetime.fromisoformat(str(text).strip())
    except ValueError as err:
        raise InputError(
            f"datetime={text!r} is not ISO 8601; use e.g. '2024-05-01' or '2024-05-01T10:30:00Z'"
        ) from err
    return when if when.tzinfo else when.replace(tzinfo=dtm.UTC)


def _tiff_datetime(src: Any) -> dtm.datetime | None:
    tag = src.tags().get("TIFFTAG_DATETIME")
    if not tag:
        return None
    try:
        return dtm.datetime.strptime(tag.strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=dtm.UTC)
    except ValueError:
        log.warning("TIFFTAG_DATETIME %r is not 'YYYY:MM:DD HH:MM:SS'; ignored", tag)
        return None


def _asset(src: Any, path: Path, gsd: float) -> dict[str, Any]:
    media_type = _GEOTIFF + ("; profile=cloud-optimized" if _is_cog(src) else "")
    return {
        "href": str(path),
        "type": media_type,
        "title": path.name,
        "roles": ["data"],
        "eo:bands": _eo_bands(src),
        "raster:bands": [_raster_band(src, i, gsd) for i in range(src.count)],
    }


def _is_cog(src: Any) -> bool:
    """Written by GDAL's COG driver, or tiled with internal overviews."""
    if src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "").upper() == "COG":
        return True
    return bool(src.profile.get("tiled")) and bool(src.overviews(1))


def _eo_bands(src: Any) -> list[dict[str, str]]:
    """Common names from colour interpretation tags, else by band count (3: RGB, 4: RGBN)."""
    from terrawatch.tasks.core.spectral_image import band_wavelengths_nm

    by_count = _NAMES_BY_COUNT.get(src.count)
    centres = band_wavelengths_nm(src)  # recorded for SPECIAL's spectral refinement
    bands = []
    for i, interp in enumerate(src.colorinterp):
        if interp in _COLOUR_NAMES:
            common: str | None = _COLOUR_NAMES[interp]
        elif interp == ColorInterp.alpha:
            common = None
        else:
            common = by_count[i] if by_count else None
        fallback = "alpha" if interp == ColorInterp.alpha else f"band{i + 1}"
        band = {"name": src.descriptions[i] or common or fallback}
        if common:
            band["common_name"] = common
        if centres[i] is not None:
            band["center_wavelength"] = round(centres[i] / 1000.0, 4)  # µm, as eo:bands
        bands.append(band)
    return bands


def _raster_band(src: Any, i: int, gsd: float) -> dict[str, Any]:
    dtype = src.dtypes[i]
    band: dict[str, Any] = {"data_type": _STAC_DTYPES.get(dtype, dtype), "spatial_resolution": gsd}
    nodata = src.nodatavals[i]
    if nodata is not None:
        band["nodata"] = _json_nodata(nodata, dtype)
    scale, offset = src.scales[i], src.offsets[i]
    if dtype != "uint8" and (scale != 1 or offset != 0):
        band["scale"], band["offset"] = float(scale), float(offset)
    return band


def _json_nodata(value: float, dtype: str) -> float | int | str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return int(value) if "int" in dtype else float(value)


def _validate(item: dict, path: Path) -> None:
    """Parse with pystac and validate against the bundled core schema (no network)."""
    import pystac

    pystac.Item.from_dict(copy.deepcopy(item))
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    try:
        validator = JsonSchemaSTACValidator()
    except ImportError:  # jsonschema missing: the pystac parse above is the check
        return
    validator.validate_core(item, pystac.STACObjectType.ITEM, STAC_VERSION, href=str(path))
