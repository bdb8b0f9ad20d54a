"""Find scenes for an AOI and period in a STAC API or a local catalog folder (flow step 1)."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import shapely
from prefect import task
from prefect.cache_policies import NO_CACHE
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from terrawatch.errors import CatalogUnreachableError, InputError, NoScenesError, TerrawatchError

log = logging.getLogger(__name__)

_TIMEOUT_S = 15.0
"""Connect and read timeout for every STAC API request: fail fast when offline."""
_OVERFETCH = 10
"""When cloud cover can only be filtered here, fetch up to this many times max_items."""
OFFLINE_ENV = "TERRAWATCH_OFFLINE"
"""When set to 1/true, only STAC APIs on loopback addresses are contacted."""
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_OFFLINE_HINT = (
    "To run offline, pass --catalog DIR with a local catalog folder made by "
    "`terrawatch catalog add IMAGE.tif --catalog DIR`, and load the model weights from a "
    "local weights directory; run `terrawatch doctor` for a full check."
)


@dataclass(frozen=True)
class CatalogConfig:
    """A named STAC API and the collection searched when none is given."""

    url: str
    default_collection: str
    sign_hrefs: bool = False
    """Sign asset hrefs with ``planetary_computer.sign_inplace`` (SAS tokens)."""

    def modifier(self) -> Callable[[Any], Any] | None:
        """The pystac-client ``modifier`` for this catalog (imported lazily)."""
        if not self.sign_hrefs:
            return None
        import planetary_computer

        return planetary_computer.sign_inplace


CATALOGS: dict[str, CatalogConfig] = {
    "earth-search": CatalogConfig("https://earth-search.aws.element84.com/v1", "sentinel-2-l2a"),
    "planetary-computer": CatalogConfig(
        "https://planetarycomputer.microsoft.com/api/stac/v1", "sentinel-2-l2a", sign_hrefs=True
    ),
}


@dataclass(frozen=True)
class SearchResult:
    """Items found, sorted by (datetime, id), plus why every other candidate was dropped."""

    items: tuple[dict, ...]
    dropped: tuple[tuple[str, str], ...]
    catalog: str

    @property
    def ids(self) -> tuple[str, ...]:
        """Item ids in result order."""
        return tuple(item["id"] for item in self.items)


# --------------------------------------------------------------------------------------- inputs


def parse_aoi(aoi: str | Sequence[float] | dict | Path) -> tuple[dict, tuple[float, ...]]:
    """Turn a bbox string, 4 floats, a GeoJSON dict or a .geojson file into (geometry, bbox).

    Coordinates are lon/lat (EPSG:4326). Returns a GeoJSON geometry dict and its
    (west, south, east, north) bounds.
    """
    if isinstance(aoi, Path) or (isinstance(aoi, str) and _looks_like_path(aoi)):
        geom = _geojson_to_shape(_read_json_file(Path(aoi)), source=str(aoi))
    elif isinstance(aoi, str):
        geom = _bbox_shape(_split_bbox_string(aoi))
    elif isinstance(aoi, dict):
        geom = _geojson_to_shape(aoi, source="aoi dict")
    elif isinstance(aoi, Sequence):
        geom = _bbox_shape(aoi)
    else:
        raise InputError(
            f"aoi={aoi!r} has type {type(aoi).__name__}; give 'W,S,E,N', 4 numbers, "
            "a GeoJSON dict or a .geojson file path"
        )
    _check_lonlat(geom)
    return json.loads(json.dumps(mapping(geom))), tuple(float(v) for v in geom.bounds)


def _looks_like_path(text: str) -> bool:
    return "," not in text or text.lower().endswith((".json", ".geojson"))


def _read_json_file(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"aoi file {str(path)!r} does not exist; give an existing .geojson file")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"aoi file {str(path)!r} is not readable GeoJSON: {err}") from err


def _split_bbox_string(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError as err:
        raise InputError(
            f"aoi={text!r} is not a bbox; write it as 'W,S,E,N' in degrees, "
            "e.g. '6.9,50.9,7.0,51.0'"
        ) from err


def _bbox_shape(values: Sequence[Any]) -> BaseGeometry:
    try:
        west, south, east, north = (float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"aoi={values!r} must be 4 numbers (west, south, east, north) in degrees"
        ) from err
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise InputError(f"aoi={values!r} has a non-finite value; give 4 finite degrees")
    if west >= east or south >= north:
        raise InputError(
            f"aoi={values!r} is empty or inverted: need west < east and south < north "
            "(order W,S,E,N); an AOI across the antimeridian must be split in two"
        )
    return box(west, south, east, north)


def _geojson_to_shape(doc: Any, source: str) -> BaseGeometry:
    if not isinstance(doc, dict) or "type" not in doc:
        raise InputError(f"aoi from {source} is not a GeoJSON object (no 'type' member)")
    try:
        if doc["type"] == "FeatureCollection":
            geom = shapely.union_all([shape(f["geometry"]) for f in doc.get("features", [])])
        elif doc["type"] == "Feature":
            geom = shape(doc["geometry"])
        else:
            geom = shape(doc)
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.ShapelyError) as err:
        raise InputError(f"aoi from {source} is not valid GeoJSON geometry: {err!r}") from err
    if geom.is_empty:
        raise InputError(f"aoi from {source} is an empty geometry; give at least one polygon")
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise InputError(
            f"aoi from {source} is an invalid geometry ({reason}); fix or buffer(0) it"
        )
    return geom


def _check_lonlat(geom: BaseGeometry) -> None:
    west, south, east, north = geom.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise InputError(
            f"aoi bounds {geom.bounds!r} are outside lon -180..180 / lat -90..90; give lon/lat "
            "degrees (EPSG:4326), longitude first"
        )


def _parse_when(value: str | date, name: str, *, end: bool) -> datetime:
    """Parse a period bound; a bare date covers its whole day (UTC)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError as err:
            raise InputError(
                f"{name}={value!r} is not a date; use 'YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM:SSZ'"
            ) from err
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime.combine(value, time.max if end else time.min)
    else:
        raise InputError(f"{name}={value!r} must be an ISO date string, a date or a datetime")
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class _Query:
    """Validated search parameters shared by both backends."""

    geometry: dict
    bbox: tuple[float, ...]
    start: datetime
    end: datetime
    collections: tuple[str, ...] | None
    max_cloud: float | None
    max_items: int | None
    region: BaseGeometry = field(compare=False)

    @property
    def is_box(self) -> bool:
        return self.region.equals(box(*self.bbox))

    @property
    def datetime_range(self) -> str:
        return f"{_iso(self.start)}/{_iso(self.end)}"

    def describe(self) -> str:
        bbox = ", ".join(f"{v:.5f}" for v in self.bbox)
        cloud = "none" if self.max_cloud is None else f"{self.max_cloud:g} %"
        return (
            f"AOI bbox ({bbox}), period {self.datetime_range}, "
            f"collections {list(self.collections) if self.collections else 'any'}, "
            f"cloud limit {cloud}"
        )


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _make_query(
    aoi: Any,
    start: str | date,
    end: str | date,
    collections: Sequence[str] | None,
    max_cloud: float | None,
    max_items: int | None,
) -> _Query:
    geometry, bbox = parse_aoi(aoi)
    t0, t1 = _parse_when(start, "start", end=False), _parse_when(end, "end", end=True)
    if t0 > t1:
        raise InputError(f"start={start!r} is after end={end!r}; swap them")
    if collections is not None:
        if isinstance(collections, str):
            collections = [collections]
        collections = tuple(collections)
        if not collections or not all(isinstance(c, str) and c for c in collections):
            raise InputError(
                f"collections={collections!r} must be None or non-empty collection ids, "
                "e.g. ['sentinel-2-l2a']"
            )
    if max_cloud is not None and (
        isinstance(max_cloud, bool)
        or not isinstance(max_cloud, int | float)
        or not 0 <= max_cloud <= 100
    ):
        raise InputError(f"max_cloud={max_cloud!r} must be a percentage in 0..100 or None")
    if max_items is not None and (
        isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1
    ):
        raise InputError(f"max_items={max_items!r} must be a positive integer or None")
    return _Query(geometry, bbox, t0, t1, collections, max_cloud, max_items, shape(geometry))


# ---------------------------------------------------------------------------- filtering + drops


class _Drops:
    """Records and logs every dropped item with a countable category."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []

    def add(self, item_id: str, category: str, detail: str) -> None:
        self.records.append((item_id, category, detail))
        log.info("dropped item %s: %s (%s)", item_id, category, detail)

    def as_tuples(self) -> tuple[tuple[str, str], ...]:
        return tuple((item_id, f"{cat} ({detail})") for item_id, cat, detail in self.records)

    def summary(self) -> str:
        counts = Counter(cat for _, cat, _ in self.records)
        return ", ".join(f"{n} {cat}" for cat, n in counts.most_common()) or "nothing dropped"


def _item_interval(item: dict) -> tuple[datetime, datetime] | None:
    props = item.get("properties") or {}
    try:
        if props.get("datetime"):
            when = _parse_stamp(props["datetime"])
            return when, when
        return _parse_stamp(props["start_datetime"]), _parse_stamp(props["end_datetime"])
    except (KeyError, TypeError, ValueError):
        return None


def _parse_stamp(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def _item_shape(item: dict) -> BaseGeometry | None:
    try:
        if item.get("geometry"):
            return shape(item["geometry"])
        if item.get("bbox"):
            bbox = list(item["bbox"])
            if len(bbox) == 6:  # 3-D bbox: (w, s, zmin, e, n, zmax)
                bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
            return box(*bbox[:4])
    except (TypeError, ValueError, AttributeError, shapely.errors.ShapelyError):
        return None
    return None


def _reject(item: dict, query: _Query) -> tuple[str, str] | None:
    """The first reason this item does not match, or None when it matches."""
    if query.collections and item.get("collection") not in query.collections:
        return "wrong collection", f"collection {item.get('collection')!r}"
    geom = _item_shape(item)
    if geom is None:
        return "no usable geometry", "no geometry or bbox"
    if not geom.intersects(query.region):
        return "outside AOI", f"bbox {[round(v, 4) for v in geom.bounds]}"
    interval = _item_interval(item)
    if interval is None:
        return "no usable datetime", "no datetime or start/end_datetime"
    if interval[1] < query.start or interval[0] > query.end:
        return "outside period", _iso(interval[0])
    cloud = (item.get("properties") or {}).get("eo:cloud_cover")
    if query.max_cloud is not None and cloud is not None and cloud > query.max_cloud:
        return f"over cloud limit {query.max_cloud:g}", f"eo:cloud_cover {cloud:g}"
    return None


def _select(candidates: Iterable[tuple[dict, str]], query: _Query, drops: _Drops) -> list[dict]:
    """Filter, de-duplicate, sort by (datetime, id) and cut to max_items (keeping the latest)."""
    kept: dict[str, tuple[dict, str]] = {}
    for item, source in candidates:
        reason = _reject(item, query)
        if reason is not None:
            drops.add(item["id"], *reason)
        elif item["id"] in kept:
            drops.add(item["id"], "duplicate id", f"{source}; kept {kept[item['id']][1]}")
        else:
            kept[item["id"]] = (item, source)
    items = sorted((item for item, _ in kept.values()), key=_sort_key)
    if query.max_cloud is not None:
        for item in items:
            if (item.get("properties") or {}).get("eo:cloud_cover") is None:
                log.info("item %s has no eo:cloud_cover; kept despite max_cloud", item["id"])
    if query.max_items is not None and len(items) > query.max_items:
        cut = len(items) - query.max_items
        for item in items[:cut]:
            drops.add(item["id"], f"over max_items {query.max_items}", "older items dropped first")
        items = items[cut:]
    return items


def _sort_key(item: dict) -> tuple[datetime, str]:
    interval = _item_interval(item)
    return (interval[0] if interval else datetime.min.replace(tzinfo=UTC)), item["id"]


# -------------------------------------------------------------------------------- local backend


def load_local_items(root: Path) -> list[tuple[dict, str]]:
    """Every STAC Item under a folder (or in one JSON file) with its source file.

    Files are read in sorted path order; relative asset hrefs become absolute paths.
    Unreadable JSON is skipped with a warning; JSON holding no Items is skipped silently.
    """
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if _is_json(p))
    found: list[tuple[dict, str]] = []
    for path in files:
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            log.warning("local catalog: skipping %s, not readable JSON (%s)", path, err)
            continue
        items = list(_items_in(doc))
        if not items:
            log.debug("local catalog: %s holds no STAC Items; skipped", path)
        found.extend((_absolute_hrefs(item, path.parent), str(path)) for item in items)
    return found


def _is_json(path: Path) -> bool:
    return path.suffix.lower() in (".json", ".geojson") and path.is_file()


def _items_in(doc: Any) -> Iterator[dict]:
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        doc = doc.get("features") or []
    for obj in doc if isinstance(doc, list) else [doc]:
        if isinstance(obj, dict) and obj.get("type") == "Feature" and _has_item_members(obj):
            yield obj


def _has_item_members(obj: dict) -> bool:
    return isinstance(obj.get("id"), str) and isinstance(obj.get("assets"), dict)


def _absolute_hrefs(item: dict, folder: Path) -> dict:
    """Copy of item whose relative asset hrefs are absolute paths (relative to folder)."""
    item = copy.deepcopy(item)
    for asset in item["assets"].values():
        href = asset.get("href") if isinstance(asset, dict) else None
        if isinstance(href, str) and not urlparse(href).scheme and not os.path.isabs(href):
            asset["href"] = os.path.normpath(os.path.join(os.path.abspath(folder), href))
    return item


def _search_local(root: Path, query: _Query, drops: _Drops) -> list[dict]:
    candidates = load_local_items(root)
    if not candidates:
        raise NoScenesError(
            f"local catalog {str(root)!r} holds no STAC Items; add imagery with "
            "`terrawatch catalog add IMAGE.tif --catalog DIR`"
        )
    present = sorted({str(item.get("collection")) for item, _ in candidates})
    missing = [c for c in query.collections or () if c not in present]
    if missing:
        raise InputError(
            f"collections {missing!r} not found in local catalog {str(root)!r}; it has "
            f"{present!r}. Pass one of those (or collections=None for all)"
        )
    return _select(candidates, query, drops)


# ----------------------------------------------------------------------------- STAC API backend


def _refuse_remote_when_offline(url: str) -> None:
    """With TERRAWATCH_OFFLINE=1 only loopback STAC APIs may be contacted."""
    offline = os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    if offline and urlparse(url).hostname not in _LOOPBACK_HOSTS:
        raise CatalogUnreachableError(
            f"Not contacting the STAC catalog {url!r}: offline mode is on ({OFFLINE_ENV}="
            f"{os.environ[OFFLINE_ENV]!r}); unset it to search online. {_OFFLINE_HINT}"
        )


@contextmanager
def _network_errors(url: str) -> Iterator[None]:
    """Turn failures to reach or use the STAC API in pystac-client into one ConnectionError."""
    import requests
    from pystac_client.exceptions import APIError

    try:
        yield
    except (APIError, requests.RequestException) as err:
        cause: BaseException | None = err
        while cause is not None:
            if isinstance(cause, requests.ConnectionError | requests.Timeout):
                raise CatalogUnreachableError(
                    f"Could not reach the STAC catalog {url!r}: {_network_reason(cause)}. Check "
                    f"the URL and the network. {_OFFLINE_HINT}"
                ) from err
            cause = cause.__cause__ or cause.__context__
        raise CatalogUnreachableError(
            f"The STAC catalog {url!r} answered with an error: {err}. Check the URL; if it is "
            f"right, the service may be down: try again later. {_OFFLINE_HINT}"
        ) from err


def _network_reason(err: BaseException) -> str:
    """The socket's reason (``Connection refused``, ``Name or service not known``, a timeout)
    from urllib3's nested wrappers, else the error's own text."""
    text = str(err)
    reasons = re.findall(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if reasons:
        return reasons[-1].strip()
    if "timed out" in text.lower():
        return "the connection timed out"
    return text


def _open_client(url: str, modifier: Callable[[Any], Any] | None) -> Any:
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    retry = Retry(
        total=3,
        connect=1,
        read=1,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,
    )
    stac_io = StacApiIO(timeout=_TIMEOUT_S, max_retries=retry)
    return Client.open(url, modifier=modifier, stac_io=stac_io)


def _check_api_collections(client: Any, collections: Sequence[str], url: str) -> None:
    from pystac_client.exceptions import APIError

    missing = []
    for name in collections:
        try:
            found = client.get_collection(name)
        except APIError as err:
            if getattr(err, "status_code", None) not in (400, 404):
                raise
            found = None
        if found is None:
            missing.append(name)
    if missing:
        available = sorted(c.id for c in client.get_collections())
        shown = available[:60] + (["..."] if len(available) > 60 else [])
        raise InputError(
            f"collections {missing!r} not found in STAC catalog {url!r}; available: {shown!r}"
        )


def _search_kwargs(query: _Query, filter_supported: bool) -> dict[str, Any]:
    """pystac-client search arguments; CQL2 cloud filter only when the server conforms."""
    kwargs: dict[str, Any] = {"datetime": query.datetime_range}
    if query.collections:
        kwargs["collections"] = list(query.collections)
    if query.is_box:
        kwargs["bbox"] = list(query.bbox)
    else:
        kwargs["intersects"] = query.geometry
    cloud_on_server = query.max_cloud is not None and filter_supported
    if cloud_on_server:
        kwargs["filter"] = {
            "op": "<=",
            "args": [{"property": "eo:cloud_cover"}, query.max_cloud],
        }
        kwargs["filter_lang"] = "cql2-json"
    if query.max_items is not None:
        server_filters_all = query.max_cloud is None or cloud_on_server
        kwargs["max_items"] = query.max_items * (1 if server_filters_all else _OVERFETCH)
    return kwargs


def _search_api(url: str, query: _Query, drops: _Drops, modifier: Any) -> list[dict]:
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.warnings import DoesNotConformTo

    _refuse_remote_when_offline(url)
    with _network_errors(url):
        client = _open_client(url, modifier)
        if query.collections:
            _check_api_collections(client, query.collections, url)
        filter_supported = client.conforms_to(ConformanceClasses.FILTER)
        if query.max_cloud is not None and not filter_supported:
            log.info("%s does not advertise CQL2 filter; cloud cover filtered client-side", url)
        kwargs = _search_kwargs(query, filter_supported)
        log.info("searching %s with %s", url, kwargs)
        try:
            found = list(client.search(**kwargs).items_as_dicts())
        except DoesNotConformTo as err:
            raise InputError(
                f"catalog={url!r} has no STAC API item search ({err}); for a static catalog, "
                "download it and pass its folder as catalog"
            ) from err
    return _select(((_absolute_url_hrefs(item), url) for item in found), query, drops)


def _absolute_url_hrefs(item: dict) -> dict:
    """Resolve relative asset hrefs of an API item against its self link."""
    self_href = next(
        (ln.get("href") for ln in item.get("links", []) if ln.get("rel") == "self"), None
    )
    if self_href:
        for asset in (item.get("assets") or {}).values():
            href = asset.get("href", "")
            if href and not urlparse(href).scheme and not href.startswith("/"):
                asset["href"] = urljoin(self_href, href)
    return item


# ----------------------------------------------------------------------------------- public API


def _resolve_catalog(catalog: str) -> tuple[str, CatalogConfig | None, Path | None]:
    """(resolved name, API config or None, local path or None)."""
    if catalog in CATALOGS:
        return CATALOGS[catalog].url, CATALOGS[catalog], None
    if urlparse(catalog).scheme in ("http", "https"):
        known = next(
            (c for c in CATALOGS.values() if c.url.rstrip("/") == catalog.rstrip("/")), None
        )
        return catalog, known or CatalogConfig(catalog, ""), None
    path = Path(catalog).expanduser()
    if not path.exists():
        raise InputError(
            f"catalog={catalog!r} is not a named catalog {sorted(CATALOGS)!r}, not an http(s) "
            "URL and no such local folder; create one with `terrawatch catalog add IMAGE.tif "
            "--catalog DIR` or fix the path"
        )
    return str(path.resolve()), None, path.resolve()


def search_items(
    catalog: str,
    aoi: str | Sequence[float] | dict | Path,
    start: str | date,
    end: str | date,
    collections: Sequence[str] | None = None,
    max_cloud: float | None = None,
    max_items: int | None = 100,
) -> SearchResult:
    """Search a named catalog, any STAC API URL or a local folder for matching items.

    Everything is validated before any network call. Results are sorted by (datetime, id);
    every candidate dropped here is reported with its reason. ``max_items`` keeps the latest.

    Raises:
        InputError: a bad parameter, an unknown collection, or a missing local catalog.
        NoScenesError: nothing matched; the message counts the drop reasons.
        ConnectionError: the STAC API could not be reached.
    """
    resolved, config, local = _resolve_catalog(str(catalog))
    if collections is None and config is not None and config.default_collection:
        collections = [config.default_collection]
    query = _make_query(aoi, start, end, collections, max_cloud, max_items)
    drops = _Drops()
    if local is not None:
        items = _search_local(local, query, drops)
    else:
        modifier = config.modifier() if config is not None else None
        items = _search_api(resolved, query, drops, modifier)
    if not items:
        raise NoScenesError(
            f"no scenes in {resolved!r} for {query.describe()}; dropped: {drops.summary()}. "
            "Widen the period or AOI, raise max_cloud, or check the collection"
        )
    log.info("found %d item(s) in %s; dropped: %s", len(items), resolved, drops.summary())
    return SearchResult(items=tuple(items), dropped=drops.as_tuples(), catalog=resolved)


def _retry_unless_user_error(task_: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry transient failures, never bad input or no scenes."""
    try:
        state.result()
    except TerrawatchError as err:
        return err.transient
    except Exception:
        return True
    return True


search_items_task = task(
    name="search-items",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_unless_user_error,
    cache_policy=NO_CACHE,
)(search_items)


OPTICAL_COLLECTIONS: tuple[str, ...] = ("sentinel-2-l2a",)
"""Optical collections searched by default (Sentinel-2 L2A: SCL cloud mask)."""


def default_sar_collections(catalog: str) -> list[str]:
    """``sentinel-1-rtc`` on Planetary Computer (terrain-corrected gamma0), else GRD."""
    pc = CATALOGS["planetary-computer"].url.rstrip("/")
    if catalog == "planetary-computer" or str(catalog).rstrip("/") == pc:
        return ["sentinel-1-rtc"]
    return ["sentinel-1-grd"]
