"""Data-source quirks as data: band names, SCL cloud classes, reflectance scaling per collection."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import NamedTuple

import rasterio
import rasterio.errors

from terrawatch.errors import InputError

_COMMON = {"red": "red", "green": "green", "blue": "blue", "nir": "nir", "scl": "scl"}
_SAR = {"vv": "vv", "vh": "vh", "hh": "hh", "hv": "hv"}

BAND_ALIASES: dict[str, dict[str, str]] = {
    # Earth Search v1 (both collections) uses common-name asset keys.
    "sentinel-2-c1-l2a": dict(_COMMON),
    # Planetary Computer uses ESA band ids. Earth Search v1 publishes a collection with the same id
    # but common-name keys: an alias whose asset is missing falls through to "*" (see resolve_band).
    "sentinel-2-l2a": {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08", "scl": "SCL"},
    # `terrawatch catalog add`: one multi-band asset; bands are picked by eo:bands common_name.
    "local": {"red": "image", "green": "image", "blue": "image", "nir": "image"},
    # Sentinel-1: Planetary Computer `sentinel-1-rtc` (float32 linear gamma0 COGs) and
    # `sentinel-1-grd` (uint16 DN in radar geometry), and the items tasks.core.sar builds from the
    # AWS `sentinel-s1-l1c` productInfo.json, all key their assets by lower-case polarisation.
    "sentinel-1-rtc": dict(_SAR),
    "sentinel-1-grd": dict(_SAR),
    "*": _COMMON | _SAR,
}
"""Per collection id (or ``"*"``): canonical band name -> asset key."""

SCL_INVALID: frozenset[int] = frozenset({0, 1, 3, 8, 9, 10})
"""Sentinel-2 Scene Classification (SCL) classes masked as invalid.

0 no data, 1 saturated or defective, 3 cloud shadow, 8 cloud medium probability, 9 cloud high
probability, 10 thin cirrus. Kept: 2 dark area, 4 vegetation, 5 not vegetated, 6 water,
7 unclassified and 11 snow/ice (snow is a land-cover class the model should see).
"""

CATEGORICAL_BANDS: frozenset[str] = frozenset({"scl"})
"""Canonical bands holding class codes: never scaled, always resampled with nearest."""

DEFAULT_NODATA: dict[str, float | None] = {
    # Sentinel-2 L2A marks no data with DN 0 in every band (SCL class 0 too); Planetary Computer
    # items carry no raster:bands, so without this their zeros would pass as dark pixels.
    "sentinel-2-l2a": 0,
    "sentinel-2-c1-l2a": 0,
    # Planetary Computer RTC gamma0 marks no data with -32768 (its raster:bands say so too);
    # GRD DN 0 is the no-data border around the swath.
    "sentinel-1-rtc": -32768,
    "sentinel-1-grd": 0,
    "*": None,
}
"""Per collection: the nodata value assumed when an asset's ``raster:bands`` gives none."""

S2_QUANTIFICATION = 1e-4
"""Sentinel-2 L2A DN -> reflectance (QUANTIFICATION_VALUE 10000)."""
S2_BOA_OFFSET = -0.1
"""Reflectance offset for processing baseline >= 04.00 (BOA_ADD_OFFSET -1000 DN / 10000)."""
_BASELINE_04_START = datetime(2022, 1, 25, tzinfo=UTC)
_RASTER_FIELDS = ("raster:scale", "raster:offset", "scale", "offset", "data_type", "nodata")


class BandRef(NamedTuple):
    """Where one canonical band lives in an item: asset key, 1-based band index, band count."""

    asset: str
    index: int
    count: int

    @property
    def odc_name(self) -> str:
        """Band name as odc-stac spells it (``"image.2"`` for band 2 of a multi-band asset)."""
        return f"{self.asset}.{self.index}" if self.count > 1 else self.asset


def item_label(item: dict) -> str:
    """Short item description for error messages."""
    return f"item {item.get('id')!r} (collection {item.get('collection')!r})"


def asset_bands(asset: dict) -> list[dict]:
    """Per-band metadata of an asset: STAC 1.1 ``bands``, else ``eo:bands``/``raster:bands``."""
    for key in ("bands", "eo:bands", "raster:bands"):
        if asset.get(key):
            return list(asset[key])
    return [{}]


def _band_names(band: dict) -> set[str]:
    keys = ("name", "common_name", "eo:common_name")
    return {band[k] for k in keys if band.get(k)}


def _ref_in_asset(item: dict, key: str, band: str) -> BandRef | None:
    asset = item.get("assets", {}).get(key)
    if asset is None:
        return None
    meta = asset_bands(asset)
    if len(meta) == 1:
        names = _band_names(meta[0])
        return BandRef(key, 1, 1) if not names or band in names else None
    for idx, entry in enumerate(meta, start=1):
        if band in _band_names(entry):
            return BandRef(key, idx, len(meta))
    return None


def _ref_by_common_name(item: dict, band: str) -> BandRef | None:
    found = []
    for key, asset in item.get("assets", {}).items():
        meta = asset_bands(asset)
        for idx, entry in enumerate(meta, start=1):
            if band in _band_names(entry):
                found.append(BandRef(key, idx, len(meta)))
    # like odc-stac: a single-band asset beats a multi-band one (B04 beats the 3-band "visual")
    return min(found, key=lambda ref: (ref.count, ref.asset), default=None)


def resolve_band(item: dict, band: str) -> BandRef:
    """Find a canonical band in an item.

    Tried in order: the collection's alias, the ``"*"`` alias, then any asset whose
    ``eo:bands`` name or common_name equals ``band``.

    Raises:
        InputError: naming the item, the band and the asset keys it has.
    """
    table = BAND_ALIASES.get(str(item.get("collection")), {})
    for key in (table.get(band), BAND_ALIASES["*"].get(band)):
        ref = _ref_in_asset(item, key, band) if key else None
        if ref is not None:
            return ref
    ref = _ref_by_common_name(item, band)
    if ref is None:
        raise InputError(
            f"{item_label(item)} has no asset for band {band!r}; its assets are "
            f"{sorted(item.get('assets', {}))}. Add the asset, drop the item or pick other bands."
        )
    return ref


def _split_asset_key(item: dict, asset_key: str) -> tuple[str, int]:
    assets = item.get("assets", {})
    if asset_key not in assets and "." in asset_key:
        key, _, idx = asset_key.rpartition(".")
        if key in assets and idx.isdigit():
            return key, int(idx)
    if asset_key not in assets:
        raise InputError(f"{item_label(item)} has no asset {asset_key!r}; it has {sorted(assets)}")
    return asset_key, 1


def _raster_band(asset: dict, index: int) -> dict:
    bands = asset.get("bands") or asset.get("raster:bands") or [{}]
    band = bands[min(index, len(bands)) - 1]
    # STAC 1.1 may put raster fields on the asset itself; a per-band value wins over those
    shared = {k: v for k, v in asset.items() if k in _RASTER_FIELDS}
    return {k.removeprefix("raster:"): v for k, v in (shared | band).items() if v is not None}


def _is_s2_l2a(item: dict) -> bool:
    props = item.get("properties", {})
    if "s2:processing_baseline" in props or "sentinel:processing_baseline" in props:
        return True
    collection = str(item.get("collection", ""))
    return collection.startswith("sentinel-2") and "l2a" in collection


def _s2_needs_offset(item: dict) -> bool:
    props = item.get("properties", {})
    baseline = props.get("s2:processing_baseline") or props.get("sentinel:processing_baseline")
    try:
        return float(baseline) >= 4.0
    except (TypeError, ValueError):
        pass  # no usable baseline: baseline 04.00 products start on 2022-01-25
    when = props.get("datetime") or props.get("start_datetime")
    if when is None:
        return False
    parsed = datetime.fromisoformat(str(when))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)) >= _BASELINE_04_START


def _s2_scaling(item: dict, band: dict) -> tuple[float, float]:
    scale = band.get("scale", S2_QUANTIFICATION)
    if item.get("properties", {}).get("earthsearch:boa_offset_applied") is True:
        return float(scale), 0.0
    if band.get("offset") is not None:
        return float(scale), float(band["offset"])
    return float(scale), S2_BOA_OFFSET if _s2_needs_offset(item) else 0.0


@functools.lru_cache(maxsize=1024)
def _header_dtype(href: str, index: int) -> str:
    try:
        with rasterio.open(href) as src:
            return src.dtypes[index - 1]
    except (rasterio.errors.RasterioIOError, IndexError) as err:
        raise InputError(
            f"cannot read the data type of band {index} of {href!r} ({err}); "
            "add raster:bands data_type to the item or fix the file"
        ) from err


def reflectance_scaling(item: dict, asset_key: str) -> tuple[float, float]:
    """(scale, offset) taking an asset's stored values to surface reflectance (``DN*scale+offset``).

    Order of evidence:

    1. Sentinel-2 L2A: ``raster:bands`` scale (else 1e-4). Offset 0 when Earth Search says
       ``earthsearch:boa_offset_applied: true`` (its COGs already had BOA_ADD_OFFSET -1000 DN
       applied; its maintainers call this flag the truth over ``raster:bands`` offset), else
       ``raster:bands`` offset when given (Earth Search C1: -0.1), else -0.1 for processing
       baseline >= 04.00 (BOA_ADD_OFFSET -1000 DN, from 2022-01-25) and 0 before. Caveat: the
       Earth Search ``sentinel-2-l2a`` flag is wrong for some 2022-2025 scenes
       (Element84/earth-search #66, #71; cirrus-earth-search #33), which then come out 0.1 too
       dark or too bright; prefer ``sentinel-2-c1-l2a``, which is consistent.
    2. Any other item with ``raster:bands`` scale/offset: those.
    3. Otherwise by data type: uint8 (local aerial / display imagery) 1/255; floats as stored.

    ``asset_key`` may name one band of a multi-band asset as ``"image.2"``. Categorical bands
    (SCL) are returned as (1, 0).

    Raises:
        InputError: the asset is missing, or it is integer data with no known scaling.
        ValueError: the data type had to be read from the file, which cannot be opened.
    """
    key, index = _split_asset_key(item, asset_key)
    if any(table.get("scl") == key for table in BAND_ALIASES.values()):
        return 1.0, 0.0
    asset = item["assets"][key]
    band = _raster_band(asset, index)
    if _is_s2_l2a(item):
        return _s2_scaling(item, band)
    if band.get("scale") is not None or band.get("offset") is not None:
        return float(band.get("scale", 1.0)), float(band.get("offset", 0.0))
    dtype = band.get("data_type") or _header_dtype(asset["href"], index)
    if dtype == "uint8":
        return 1.0 / 255.0, 0.0
    if str(dtype).startswith("float"):
        return 1.0, 0.0
    raise InputError(
        f"cannot tell the reflectance scaling of asset {key!r} of {item_label(item)}: data type "
        f"{dtype!r} and no raster:bands scale/offset. Add raster:bands scale and offset to it."
    )


def default_nodata(item: dict, asset_key: str, index: int = 1) -> float | None:
    """Nodata value of a band: ``raster:bands`` nodata, else the collection default."""
    band = _raster_band(item["assets"][asset_key], index)
    if band.get("nodata") is not None:
        return band["nodata"]
    return DEFAULT_NODATA.get(str(item.get("collection")), DEFAULT_NODATA["*"])
