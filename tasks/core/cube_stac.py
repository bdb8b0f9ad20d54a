"""STAC description of a cube: one Collection and one Item per time step, as static JSON.

Written (or rewritten, from the store's own metadata, so it always matches the cube) at the end
of every run into ``STORE.stac/`` beside the store, or the folder the user names
(``--stac``), on local disk or object storage (fsspec). The folder is a self-contained static
catalog with relative links (``collection.json``, ``<item id>/<item id>.json``), and a
terrawatch local catalog (``--catalog STORE.stac``) finds the steps like input scenes.

Content (STAC 1.1, pystac objects):

- datacube extension: ``cube:dimensions`` (x, y with extent, step and CRS; time with the
  steps; ``class`` with the class names where the cube has per-class variables) and
  ``cube:variables`` (every ``(time, y, x)`` and ``(time, class, y, x)`` variable, its flag
  values or unit);
- classification extension: ``classification:classes`` (value, name, description, colour
  hint: the cube's flags and palette) on the Item and on the Zarr asset;
- projection extension (``proj:code`` or ``proj:wkt2``, ``proj:bbox``, ``proj:shape``,
  ``proj:transform``) and raster extension (``raster:bands``: one per variable, dtype, nodata,
  resolution) on the Zarr asset;
- processing extension: ``processing:software`` (terrawatch and its version),
  ``processing:datetime`` and ``processing:lineage``; the step's provenance record (run id,
  model and weight hashes, prompts, catalog) under ``terrawatch:provenance``;
- ``derived_from`` links to the step's source items (a STAC API ``search?ids=`` URL, or the
  item's JSON file in a local catalog folder), titled with the item id;
- assets: ``data`` is the Zarr store (``application/vnd+zarr``, with the ``xarray`` open
  arguments), and each file made by ``terrawatch export`` for the step (``export-<name>``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pystac
import xarray as xr
from pyproj import CRS, Transformer

from terrawatch.tasks.core.atomic_write import write_whole
from terrawatch.tasks.core.cube_store import open_cube
from terrawatch.tasks.core.cube_types import CLASS_DIM
from terrawatch.tasks.core.export_source import categorical_vars

logger = logging.getLogger(__name__)

STAC_VERSION = "1.1.0"
EXTENSIONS = {
    "datacube": "https://stac-extensions.github.io/datacube/v2.2.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
    "projection": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
}
ZARR_MEDIA_TYPE = "application/vnd+zarr"
EXPORT_MEDIA_TYPES = {
    ".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".tiff": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".parquet": "application/vnd.apache.parquet",
    ".gpkg": "application/geopackage+sqlite3",
    ".geojson": "application/geo+json",
}
EXPORT_PREFIX = "export-"
"""Item asset keys of exported files; a rewrite of the Item keeps them."""
COLLECTION_FILE = "collection.json"


def default_stac_dir(store: str) -> str:
    """``STORE.stac`` beside the store (a path or URL)."""
    return store.rstrip("/") + ".stac"


def describe_cube(store: str, stac_dir: str | None = None) -> str:
    """Write the cube's Collection and one Item per time step; return the Collection's path.

    Items already in the folder keep their export assets; everything else is rebuilt from the
    store's metadata. Every file is written whole (:mod:`tasks.core.atomic_write`), the Items
    before the Collection that links them, so a reader never finds a Collection linking an
    Item that is missing or half written, even when the run fails half way (the previous
    Collection then still links its own, complete Items).
    """
    stac_dir = (stac_dir or default_stac_dir(store)).rstrip("/")
    cube = open_cube(store, mask_and_scale=False)
    collection_id = _collection_id(store)
    sources = _SourceLinks()
    items = [
        _item(cube, store, stac_dir, collection_id, index, sources)
        for index in range(cube.sizes["time"])
    ]
    for item in items:
        _keep_exports(item, _read_json(_item_path(stac_dir, item.id)))
    collection = _collection(cube, store, stac_dir, collection_id, items)
    for item in items:
        _write_json(
            _item_path(stac_dir, item.id),
            item.to_dict(include_self_link=False, transform_hrefs=False),
        )
    path = f"{stac_dir}/{COLLECTION_FILE}"
    _write_json(path, collection.to_dict(include_self_link=False, transform_hrefs=False))
    logger.info("described %s in %s (%d item(s))", store, path, len(items))
    return path


def add_export_asset(store: str, time: str, path: str, stac_dir: str | None = None) -> bool:
    """Add an exported file as an asset of the step's Item; False when there is no Item."""
    stac_dir = (stac_dir or default_stac_dir(store)).rstrip("/")
    item_path = _item_path(stac_dir, _item_id(_collection_id(store), time))
    item = _read_json(item_path)
    if item is None:
        return False
    name = Path(path).name
    item["assets"][EXPORT_PREFIX + name] = {
        "href": _relative(str(Path(path).resolve()), item_path),
        "type": EXPORT_MEDIA_TYPES.get(Path(path).suffix.lower(), "application/octet-stream"),
        "title": f"terrawatch export {name}",
        "roles": ["data"],
    }
    _write_json(item_path, item)
    return True


# --- building blocks -------------------------------------------------------------------------


def _collection_id(store: str) -> str:
    stem = Path(store.rstrip("/")).name.removesuffix(".zarr")
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in stem).strip("-") or "cube"


def _item_id(collection_id: str, time: str) -> str:
    return f"{collection_id}-{time}"


def _item_path(stac_dir: str, item_id: str) -> str:
    return f"{stac_dir}/{item_id}/{item_id}.json"


def _collection(
    cube: xr.Dataset, store: str, stac_dir: str, collection_id: str, items: list[pystac.Item]
) -> pystac.Collection:
    lonlat = _lonlat_bbox(cube)
    starts = [item.common_metadata.start_datetime for item in items]
    ends = [item.common_metadata.end_datetime for item in items]
    extent = pystac.Extent(
        pystac.SpatialExtent([lonlat]),
        pystac.TemporalExtent([[min(starts), max(ends)]] if items else [[None, None]]),
    )
    collection = pystac.Collection(
        id=collection_id,
        title=str(cube.attrs.get("title", "terrawatch cube")),
        description=f"{cube.attrs.get('title', 'terrawatch cube')}: the Zarr cube {store}, one "
        "item per time step (written by terrawatch at the end of every run).",
        extent=extent,
        license="other",
        stac_extensions=[EXTENSIONS["datacube"], EXTENSIONS["classification"]],
    )
    collection.extra_fields.update(
        {
            "cube:dimensions": _dimensions(cube, list(range(cube.sizes["time"]))),
            "cube:variables": _variables(cube),
            "classification:classes": _classes(cube),
        }
    )
    collection.add_asset("data", _zarr_asset(cube, store, f"{stac_dir}/{COLLECTION_FILE}"))
    collection.clear_links()
    for item in items:
        collection.add_link(
            pystac.Link("item", f"./{item.id}/{item.id}.json", pystac.MediaType.JSON, item.id)
        )
    collection.add_link(pystac.Link("root", f"./{COLLECTION_FILE}", pystac.MediaType.JSON))
    return collection


def _item(
    cube: xr.Dataset,
    store: str,
    stac_dir: str,
    collection_id: str,
    index: int,
    sources: _SourceLinks,
) -> pystac.Item:
    time = str(np.datetime_as_string(cube["time"].values[index], unit="D"))
    record = _record(cube, index)
    start, end = _period(record, time)
    bbox = _lonlat_bbox(cube)
    item = pystac.Item(
        id=_item_id(collection_id, time),
        geometry=_box(bbox),
        bbox=bbox,
        datetime=None,
        properties={"start_datetime": start, "end_datetime": end},
        collection=collection_id,
        stac_extensions=list(EXTENSIONS.values()),
    )
    provenance = record.get("provenance", {})
    item.properties.update(
        {
            "title": f"{cube.attrs.get('title', 'terrawatch cube')} {time}",
            "cube:dimensions": _dimensions(cube, [index]),
            "cube:variables": _variables(cube),
            "classification:classes": _classes(cube),
            "processing:software": {"terrawatch": str(cube.attrs.get("software_version"))},
            "processing:datetime": record.get("created") or cube.attrs.get("created"),
            "processing:lineage": "open-vocabulary segmentation of the source items by terrawatch"
            f" (run {provenance.get('run_id', 'unknown')})",
            "terrawatch:provenance": provenance,
            "terrawatch:time_index": index,
        }
    )
    item_path = _item_path(stac_dir, item.id)
    item.add_asset("data", _zarr_asset(cube, store, item_path, index))
    item.clear_links()
    item.add_link(pystac.Link("collection", f"../{COLLECTION_FILE}", pystac.MediaType.JSON))
    item.add_link(pystac.Link("parent", f"../{COLLECTION_FILE}", pystac.MediaType.JSON))
    item.add_link(pystac.Link("root", f"../{COLLECTION_FILE}", pystac.MediaType.JSON))
    for source_id in _source_ids(record):
        href = sources.href(str(provenance.get("catalog", "")), source_id)
        if href:
            item.add_link(pystac.Link("derived_from", href, pystac.MediaType.GEOJSON, source_id))
    return item


def _record(cube: xr.Dataset, index: int) -> dict[str, Any]:
    """The ``time_steps`` record of step ``index`` (matched by its time)."""
    time = str(np.datetime_as_string(cube["time"].values[index], unit="D"))
    for record in cube.attrs.get("time_steps", []):
        if str(record.get("time", ""))[:10] == time:
            return record
    return {}


def _period(record: Mapping[str, Any], time: str) -> tuple[str, str]:
    """Start and end of everything the step covers (a change pair's earlier period, a flood's
    pre-event window) as RFC 3339 instants."""
    starts, ends = [time], [str(record.get("end", time))]
    for value in record.values():
        if isinstance(value, Mapping) and "time" in value and "end" in value:
            starts.append(str(value["time"]))
            ends.append(str(value["end"]))
    return _instant(min(starts)), _instant(max(ends), end=True)


def _instant(date: str, end: bool = False) -> str:
    when = datetime.fromisoformat(date[:10])
    if end:
        when = when.replace(hour=23, minute=59, second=59)
    return when.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _source_ids(record: Mapping[str, Any]) -> list[str]:
    ids = list(record.get("items", []))
    for value in record.values():
        if isinstance(value, Mapping) and "items" in value:
            ids += [i for i in value["items"] if i not in ids]
    return ids


class _SourceLinks:
    """Where a source item can be fetched: a STAC API search by id, or its JSON file in a local
    catalog folder (each folder is read once per description)."""

    def __init__(self) -> None:
        self._local: dict[str, dict[str, str]] = {}

    def href(self, catalog: str, item_id: str) -> str | None:
        from terrawatch.tasks.core.catalog import CATALOGS, load_local_items

        url = CATALOGS[catalog].url if catalog in CATALOGS else catalog
        if url.startswith(("http://", "https://")):
            return f"{url.rstrip('/')}/search?ids={item_id}"
        if not url or "://" in url or not Path(url).expanduser().exists():
            return None
        if url not in self._local:
            found = load_local_items(Path(url).expanduser().resolve())
            self._local[url] = {item["id"]: str(Path(path).resolve()) for item, path in found}
        return self._local[url].get(item_id)


def _classes(cube: xr.Dataset) -> list[dict[str, Any]]:
    """The cube's class table in the classification extension's form (its flags and palette):
    the class variable's, else (a flood cube) the group's class table of the segmenter."""
    for name in categorical_vars(cube):
        classes = cube[name].attrs.get("classification:classes")
        if classes:
            return [dict(c) for c in classes]
    table = cube.attrs.get("classes") or []
    return [
        {
            "value": int(c["value"]),
            "name": re.sub(r"[^0-9A-Za-z_-]", "", re.sub(r"\s+", "_", str(c["name"]).strip())),
            "description": str(c["name"]),
            "color_hint": str(c.get("color", "#808080")).lstrip("#").upper(),
        }
        for c in table
    ]


def _flag_classes(var: xr.DataArray) -> list[dict[str, Any]]:
    """A flag variable's values as classification classes (value, name, colour if stored)."""
    if "classification:classes" in var.attrs:
        return [dict(c) for c in var.attrs["classification:classes"]]
    values = [int(v) for v in np.atleast_1d(var.attrs["flag_values"])]
    words = str(var.attrs.get("flag_meanings", "")).split()
    colors = str(var.attrs.get("flag_colors", "")).split()
    out = []
    for i, value in enumerate(values):
        entry: dict[str, Any] = {"value": value, "name": words[i] if i < len(words) else str(value)}
        if len(colors) == len(values):
            entry["color_hint"] = colors[i].lstrip("#").upper()
        out.append(entry)
    return out


def _dimensions(cube: xr.Dataset, indexes: list[int]) -> dict[str, Any]:
    transform = cube.attrs["spatial:transform"]
    left, bottom, right, top = cube.attrs["spatial:bbox"]
    system = _reference_system(cube)
    times = [
        _instant(str(np.datetime_as_string(cube["time"].values[i], unit="D"))) for i in indexes
    ]
    dimensions = {
        "x": {"type": "spatial", "axis": "x", "extent": [left, right], "step": transform[0],
              "reference_system": system},
        "y": {"type": "spatial", "axis": "y", "extent": [bottom, top], "step": transform[4],
              "reference_system": system},
        "time": {"type": "temporal", "extent": [min(times), max(times)] if times else [None, None],
                 "values": times},
    }  # fmt: skip
    if CLASS_DIM in cube.coords:  # per-class variables (the land-cover probability)
        dimensions[CLASS_DIM] = {
            "type": "class",
            "description": "class of the cube's class table (classification:classes)",
            "values": [str(v) for v in cube[CLASS_DIM].values],
        }
    return dimensions


def _variables(cube: xr.Dataset) -> dict[str, Any]:
    out = {}
    for name, var in cube.data_vars.items():
        if var.dims not in (("time", "y", "x"), ("time", CLASS_DIM, "y", "x")):
            continue
        entry: dict[str, Any] = {
            "dimensions": list(var.dims),
            "type": "data",
            "description": str(var.attrs.get("long_name", name)),
            "data_type": str(var.dtype),
            "nodata": _nodata(var),
        }
        if "flag_values" in var.attrs:
            entry["values"] = [int(v) for v in np.atleast_1d(var.attrs["flag_values"])]
            entry["classification:classes"] = _flag_classes(var)
        if "units" in var.attrs:
            entry["unit"] = str(var.attrs["units"])
        out[name] = entry
    return out


def _nodata(var: xr.DataArray) -> int | None:
    fill = var.encoding.get("_FillValue", var.attrs.get("_FillValue"))
    return None if fill is None else int(fill)


def _zarr_asset(
    cube: xr.Dataset, store: str, json_path: str, index: int | None = None
) -> pystac.Asset:
    variables = [n for n, v in cube.data_vars.items() if v.dims == ("time", "y", "x")]
    transform = [float(v) for v in cube.attrs["spatial:transform"]]
    fields: dict[str, Any] = {
        "xarray:open_kwargs": {"engine": "zarr", "consolidated": True, "decode_coords": "all"},
        "cube:variables_order": variables,
        "proj:bbox": [float(v) for v in cube.attrs["spatial:bbox"]],
        "proj:shape": [int(v) for v in cube.attrs["spatial:shape"]],
        "proj:transform": transform,
        "raster:bands": [
            {
                "name": n,
                "data_type": str(cube[n].dtype),
                "nodata": _nodata(cube[n]),
                "spatial_resolution": abs(transform[0]),
            }
            for n in variables
        ],
        "classification:classes": _classes(cube),
    }
    code = cube.attrs.get("proj:code")
    fields["proj:code"] = code
    if not code:
        fields["proj:wkt2"] = cube.attrs.get("proj:wkt2")
    if index is not None:
        fields["terrawatch:time_index"] = index
    return pystac.Asset(
        href=_relative(store, json_path),
        media_type=ZARR_MEDIA_TYPE,
        title="Zarr cube (all time steps; select this one by time)",
        roles=["data"],
        extra_fields=fields,
    )


def _reference_system(cube: xr.Dataset) -> int | str:
    code = str(cube.attrs.get("proj:code") or "")
    if code.upper().startswith("EPSG:"):
        return int(code.split(":")[1])
    return str(cube.attrs.get("proj:wkt2"))


def _lonlat_bbox(cube: xr.Dataset) -> list[float]:
    """The cube's footprint in lon/lat (edges densified before reprojection)."""
    crs = CRS.from_user_input(cube.attrs.get("proj:code") or cube.attrs["proj:wkt2"])
    to_lonlat = Transformer.from_crs(crs, 4326, always_xy=True)
    left, bottom, right, top = cube.attrs["spatial:bbox"]
    west, south, east, north = to_lonlat.transform_bounds(left, bottom, right, top, densify_pts=21)
    return [float(west), float(south), float(east), float(north)]


def _box(bbox: list[float]) -> dict[str, Any]:
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _relative(target: str, json_path: str) -> str:
    """``target`` relative to the JSON file's folder when both are local paths, else as is."""
    if "://" in target or "://" in json_path:
        return target
    return os.path.relpath(os.path.abspath(target), os.path.dirname(os.path.abspath(json_path)))


def _keep_exports(item: pystac.Item, old: dict[str, Any] | None) -> None:
    for key, asset in ((old or {}).get("assets") or {}).items():
        if key.startswith(EXPORT_PREFIX):
            item.add_asset(key, pystac.Asset.from_dict(asset))


def _read_json(path: str) -> dict[str, Any] | None:
    fs, fs_path = fsspec.core.url_to_fs(path)
    if not fs.exists(fs_path):
        return None
    with fs.open(fs_path, "r") as f:
        return json.load(f)


def _write_json(path: str, doc: dict[str, Any]) -> None:
    """Write whole or not at all, on disk and object stores (:mod:`tasks.core.atomic_write`)."""
    write_whole(path, json.dumps(doc, indent=2, allow_nan=False).encode())


def iter_items(stac_dir: str) -> Iterator[dict[str, Any]]:
    """The Item documents of a cube's STAC folder, in time order."""
    collection = _read_json(f"{stac_dir.rstrip('/')}/{COLLECTION_FILE}") or {}
    for link in collection.get("links", []):
        if link.get("rel") == "item":
            doc = _read_json(f"{stac_dir.rstrip('/')}/{link['href'].removeprefix('./')}")
            if doc is not None:
                yield doc
