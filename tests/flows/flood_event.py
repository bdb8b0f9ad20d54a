"""A synthetic flood event with realistic SAR statistics, as local Sentinel-1 RTC COGs and items.

Used by the weights-free flood tests and by ``bench/flood.py``. The scene (``size`` pixels a
side at 10 m, UTM 33N) holds, in linear gamma0 with gamma-distributed speckle (ENL 4.4):

- land: fields of different brightness around -9 dB VV, with an incidence-angle gradient across
  range (columns: -2 dB from near to far range); VH 7 dB below VV;
- a permanent lake and a river: calm water, about -23 dB VV, in every scene;
- a dark sand field (-21 dB VV) and a radar-shadow strip (noise floor, -27 dB): dark in every
  scene, not water;
- the planted flood, dark after the event only: fields next to the lake and a patch elsewhere.

Reference scenes every 6 days before the event, one scene after it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from rasterio.transform import from_origin

from tests.conftest import shared_data

CRS = "EPSG:32633"
RES = 10.0
ENL = 4.4
EVENT = "2024-05-10"
TEMPLATE_FILE = "pc_sentinel-1-rtc_4items.json"


@dataclass(frozen=True)
class Event:
    """Where the synthetic event's features lie, as boolean masks of the scene grid."""

    size: int
    origin: tuple[float, float]
    lake: np.ndarray
    river: np.ndarray
    sand: np.ndarray
    shadow: np.ndarray
    flood: np.ndarray

    @property
    def water(self) -> np.ndarray:
        """Permanent water: lake and river."""
        return self.lake | self.river

    def aoi(self, inset: float = 0.0) -> str:
        """Lon/lat box of the scene, ``inset`` metres inside it."""
        to_lonlat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
        left, top = self.origin
        span = self.size * RES
        box = to_lonlat.transform_bounds(
            left + inset, top - span + inset, left + span - inset, top - inset
        )
        return ",".join(f"{v:.6f}" for v in box)

    def on_grid(self, mask: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``mask`` of the scene sampled at the cube's pixel centres ``x``, ``y``."""
        rows = np.floor((self.origin[1] - y) / RES).astype(int).clip(0, self.size - 1)
        cols = np.floor((x - self.origin[0]) / RES).astype(int).clip(0, self.size - 1)
        return mask[rows[:, None], cols[None, :]]


def plant(size: int, origin: tuple[float, float] = (500_000.0, 3_320_400.0)) -> Event:
    """The feature masks of a ``size`` x ``size`` scene."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    lake = (yy - 0.3) ** 2 + (xx - 0.3) ** 2 < 0.12**2
    river = np.abs(yy - (0.75 + 0.05 * np.sin(2 * np.pi * xx * 1.5))) < 0.025
    sand = (yy > 0.05) & (yy < 0.2) & (xx > 0.62) & (xx < 0.85)
    shadow = (xx > 0.92) & (xx < 0.95) & (yy < 0.6)
    fields = (yy > 0.18) & (yy < 0.5) & (xx > 0.3) & (xx < 0.55) & ~lake  # next to the lake
    patch = (yy > 0.45) & (yy < 0.62) & (xx > 0.62) & (xx < 0.85)
    flood = (fields | patch) & ~river & ~sand & ~shadow
    return Event(size, origin, lake, river, sand, shadow, flood)


def backscatter_db(event: Event, flooded: bool) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free VV and VH in dB of one acquisition."""
    size = event.size
    rng = np.random.default_rng(1000)  # the fields are the same in every scene
    cols = np.arange(size) / size
    gradient = -2.0 * cols[None, :]  # near range (west) brighter
    block = max(8, size // 16)
    fields = rng.uniform(-1.5, 1.5, (size // block + 1, size // block + 1))
    vv = -9.0 + np.kron(fields, np.ones((block, block)))[:size, :size] + gradient
    water = event.water | (event.flood if flooded else np.zeros_like(event.flood))
    vv = np.where(water, -23.0 + gradient, vv)
    vv = np.where(event.sand, -21.0, vv)
    vv = np.where(event.shadow, -27.0, vv)
    vh = vv - np.where(water | event.shadow, 6.0, 7.0)
    return vv.astype(np.float32), vh.astype(np.float32)


def speckled(db: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear power with gamma speckle of :data:`ENL` looks (mean 1)."""
    return (10 ** (db / 10) * rng.gamma(ENL, 1 / ENL, db.shape)).astype(np.float32)


def _write_cog(path: Path, data: np.ndarray, origin: tuple[float, float]) -> str:
    size = data.shape[0]
    profile = dict(driver="COG", dtype="float32", count=1, height=size, width=size, crs=CRS,
                   transform=from_origin(*origin, RES, RES), nodata=-32768.0,
                   blocksize=256 if size >= 512 else 64)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return str(path)


def _item(template: dict, event: Event, item_id: str, when: str, hrefs: dict) -> dict:
    to_lonlat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    left, top = event.origin
    span = event.size * RES
    west, south, east, north = to_lonlat.transform_bounds(left, top - span, left + span, top)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    item = copy.deepcopy(template)
    item.update(id=item_id, geometry={"type": "Polygon", "coordinates": [ring]},
                bbox=[west, south, east, north], links=[])  # fmt: skip
    item["properties"].update({
        "datetime": when, "start_datetime": when, "end_datetime": when,
        "sat:orbit_state": "descending", "sat:relative_orbit": 22,
        "sar:polarizations": ["VV", "VH"], "proj:epsg": 32633,
        "proj:shape": [event.size, event.size],
        "proj:transform": [RES, 0.0, left, 0.0, -RES, top, 0.0, 0.0, 1.0],
        "proj:bbox": [left, top - span, left + span, top],
    })  # fmt: skip
    assets = {}
    for pol, href in hrefs.items():
        asset = copy.deepcopy(template["assets"][pol])
        asset["href"] = href
        assets[pol] = asset
    item["assets"] = assets
    return item


def scene_dates(reference: int = 5) -> list[tuple[str, str, bool]]:
    """(id, datetime, flooded): ``reference`` scenes 6 days apart before the event, one after."""
    event = np.datetime64(EVENT, "D")
    dates = [(f"s1-ref-{i}", str(event - 6 * (reference - i)), False) for i in range(reference)]
    return [*dates, ("s1-post", str(event + 2), True)]


def write_event(root: Path, size: int, reference: int = 5, template: Path | None = None) -> Event:
    """The event's COGs under ``root/cogs`` and its items as a local catalog ``root/catalog``."""
    template_items = json.loads((template or shared_data("stac", TEMPLATE_FILE)).read_text())
    event = plant(size)
    catalog, cogs = root / "catalog", root / "cogs"
    catalog.mkdir(parents=True, exist_ok=True)
    cogs.mkdir(exist_ok=True)
    for seed, (item_id, day, flooded) in enumerate(scene_dates(reference)):
        rng = np.random.default_rng(seed)
        vv, vh = backscatter_db(event, flooded)
        hrefs = {
            "vv": _write_cog(cogs / f"{item_id}-vv.tif", speckled(vv, rng), event.origin),
            "vh": _write_cog(cogs / f"{item_id}-vh.tif", speckled(vh, rng), event.origin),
        }
        item = _item(template_items[0], event, item_id, f"{day}T05:00:00Z", hrefs)
        (catalog / f"{item_id}.json").write_text(json.dumps(item))
    return event


def csi(found: np.ndarray, truth: np.ndarray) -> float:
    """Critical success index: hits / (hits + misses + false alarms)."""
    hits = int((found & truth).sum())
    return hits / max(1, hits + int((~found & truth).sum()) + int((found & ~truth).sum()))


# --- a Sentinel-2 L2A scene of the event (the optical member) ---------------------------------

S2_REFLECTANCE = {  # green, nir, swir16 surface reflectance
    "land": (0.08, 0.30, 0.25),
    "water": (0.06, 0.02, 0.01),
    "sand": (0.25, 0.35, 0.45),
    "cloud": (0.50, 0.50, 0.35),  # MNDWI +0.18: water to the index, were it not masked
    "shadow": (0.02, 0.06, 0.04),
}
"""Typical reflectances; NDWI and MNDWI are negative on land and sand, positive on water."""
SCL_CLASS = {"land": 4, "water": 6, "sand": 5, "cloud": 9, "shadow": 3}
"""Scene Classification class of each surface: 4 vegetation, 6 water, 5 not vegetated, 9 cloud
high probability, 3 cloud shadow."""
S2_BANDS = {"green": "B03", "nir": "B08", "swir16": "B11", "scl": "SCL"}


def write_optical_scene(
    root: Path, event: Event, cloud: np.ndarray, when: str, item_id: str = "s2-post"
) -> Path:
    """A Sentinel-2 L2A item over the event (Earth Search asset keys, DN with BOA offset).

    After the event: the lake, the river and the planted flood are water, the sand bright;
    ``cloud`` (a mask of the scene) is cloud, with its shadow two rows below it.
    """
    surface = np.full((event.size, event.size), "land", dtype=object)
    surface[event.water | event.flood] = "water"
    surface[event.sand] = "sand"
    shadow = np.roll(cloud, 6, axis=0) & ~cloud
    shadow[:6] = False
    surface[shadow] = "shadow"
    surface[cloud] = "cloud"
    rng = np.random.default_rng(7)
    cogs, catalog = root / "cogs", root / "catalog"
    hrefs = {}
    for i, band in enumerate(("green", "nir", "swir16")):
        table = {name: values[i] for name, values in S2_REFLECTANCE.items()}
        reflectance = np.vectorize(table.get, otypes=[np.float32])(surface)
        reflectance *= rng.normal(1.0, 0.05, reflectance.shape).astype(np.float32)
        dn = np.clip((reflectance + 0.1) * 10_000, 1, 65535).astype(np.uint16)
        hrefs[band] = _write_band(cogs / f"{item_id}-{S2_BANDS[band]}.tif", dn, event.origin)
    scl = np.vectorize(SCL_CLASS.get, otypes=[np.uint8])(surface)
    hrefs["scl"] = _write_band(cogs / f"{item_id}-SCL.tif", scl, event.origin)
    item = _s2_item(event, item_id, when, hrefs)
    path = catalog / f"{item_id}.json"
    path.write_text(json.dumps(item))
    return path


def _write_band(path: Path, data: np.ndarray, origin: tuple[float, float]) -> str:
    size = data.shape[0]
    profile = dict(driver="COG", dtype=str(data.dtype), count=1, height=size, width=size, crs=CRS,
                   transform=from_origin(*origin, RES, RES), nodata=0, blocksize=128)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return str(path)


def _s2_item(event: Event, item_id: str, when: str, hrefs: dict[str, str]) -> dict:
    to_lonlat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    left, top = event.origin
    span = event.size * RES
    west, south, east, north = to_lonlat.transform_bounds(left, top - span, left + span, top)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    scaled = [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}]
    assets = {
        band: {
            "href": href,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            **(
                {"eo:bands": [{"name": band, "common_name": band}], "raster:bands": scaled}
                if band != "scl"
                else {"raster:bands": [{"nodata": 0, "data_type": "uint8"}]}
            ),
        }
        for band, href in hrefs.items()
    }
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "collection": "sentinel-2-l2a",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [west, south, east, north],
        "properties": {
            "datetime": when, "platform": "sentinel-2a", "eo:cloud_cover": 5.0,
            "s2:processing_baseline": "05.10", "proj:epsg": 32633,
            "proj:shape": [event.size, event.size],
            "proj:transform": [RES, 0.0, left, 0.0, -RES, top, 0.0, 0.0, 1.0],
        },
        "links": [], "assets": assets,
    }  # fmt: skip


# --- a DEM of the event (radar shadow and layover) ---------------------------------------------

BACKSLOPE_DEG = 70.0
"""The ridge's west face, under the radar-shadow strip: steeper than 90 - 37.5 (shadow)."""
FORESLOPE_DEG = 60.0
"""Its east face, towards the descending pass's sensor: steeper than 37.5 (layover)."""


def ridge_columns(event: Event) -> tuple[np.ndarray, np.ndarray]:
    """Scene columns of the ridge's west face (the shadow strip) and of its east face."""
    strip = np.flatnonzero(event.shadow.any(axis=0))
    height = np.tan(np.deg2rad(BACKSLOPE_DEG)) * RES * (len(strip))
    width = int(height / (np.tan(np.deg2rad(FORESLOPE_DEG)) * RES))
    east = np.arange(strip[-1] + 1, min(event.size, strip[-1] + width))
    return strip, east


def write_dem(root: Path, event: Event, collection: str = "cop-dem-glo-30") -> Path:
    """A DEM item of the event: flat at 50 m, a north-south ridge whose west face is the shadow
    strip; as a 10 m COG (the real Copernicus DEM is 30 m) in a DEM collection."""
    strip, _ = ridge_columns(event)
    back = np.tan(np.deg2rad(BACKSLOPE_DEG)) * RES
    fore = np.tan(np.deg2rad(FORESLOPE_DEG)) * RES
    cols = np.arange(event.size, dtype=np.float64)
    rise = (cols - (strip[0] - 1)) * back
    top = rise[strip[-1]]
    fall = top - (cols - strip[-1]) * fore
    profile = np.where(cols < strip[0], 0.0, np.where(cols <= strip[-1], rise, fall))
    dem = (50.0 + np.clip(profile, 0.0, None))[None, :].repeat(event.size, axis=0)
    href = _write_cog(root / "cogs" / "dem.tif", dem.astype(np.float32), event.origin)
    item = _s2_item(event, "dem-ridge", "2021-04-22T00:00:00Z", {})
    item.update(collection=collection, assets={"data": {"href": href, "roles": ["data"]}})
    item["properties"].pop("eo:cloud_cover")
    path = root / "catalog" / "dem-ridge.json"
    path.write_text(json.dumps(item))
    return path


# --- a reference water product of the event (JRC Global Surface Water) --------------------------


def wetland_regions(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two parts of the planted flood patch: a seasonal wetland that holds water in 70 % of the
    years (normal water) and a rarely wet one, 30 % (below the 50 % threshold: flood)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    seasonal = (yy > 0.56) & (yy < 0.62) & (xx > 0.76) & (xx < 0.85)
    rare = (yy > 0.45) & (yy < 0.52) & (xx > 0.76) & (xx < 0.85)
    return seasonal, rare


def write_gsw(root: Path, event: Event) -> Path:
    """A JRC GSW ``occurrence`` item (uint8 percent, 255 no data): 95 on the lake and the river,
    70 on the seasonal wetland, 30 on the rarely wet one, 0 elsewhere; 10 m (the real one is
    30 m)."""
    seasonal, rare = wetland_regions(event.size)
    occurrence = np.zeros((event.size, event.size), np.uint8)
    occurrence[event.water] = 95
    occurrence[seasonal] = 70
    occurrence[rare] = 30
    path = root / "cogs" / "gsw-occurrence.tif"
    profile = dict(driver="COG", dtype="uint8", count=1, height=event.size, width=event.size,
                   crs=CRS, transform=from_origin(*event.origin, RES, RES), nodata=255,
                   blocksize=256 if event.size >= 512 else 128)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(occurrence, 1)
    item = _s2_item(event, "gsw-event", "2021-01-01T00:00:00Z", {})
    item.update(collection="jrc-gsw", assets={"occurrence": {"href": str(path), "roles": ["data"]}})
    item["properties"].pop("eo:cloud_cover")
    out = root / "catalog" / "gsw-event.json"
    out.write_text(json.dumps(item))
    return out
