"""Step 2 for radar: Sentinel-1 RTC/GRD items -> dB backscatter cube scaled 0..1 -> 3 channels."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, NamedTuple

import dask.array as da
import numpy as np
import rasterio
import rasterio.errors
import shapely.geometry
import xarray as xr
from affine import Affine
from odc.geo.xr import xr_coords
from rasterio.enums import Resampling
from rasterio.warp import reproject

from terrawatch.errors import InputError, InputNotFoundError
from terrawatch.tasks.core.assets import URL, asset_href, last_block
from terrawatch.tasks.core.bands import item_label, resolve_band
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.item_groups import group_items, group_time
from terrawatch.tasks.core.load import (
    Array,
    check_items,
    check_load_options,
    fuse_first_valid,
    load_bands,
)
from terrawatch.tasks.core.speckle import DEFAULT_ENL, check_speckle, speckle_filter

log = logging.getLogger(__name__)

POLARIZATIONS = ("vv", "vh", "hh", "hv")
CO_POL = ("vv", "hh")
CROSS_POL = ("vh", "hv")
ORBITS = ("ascending", "descending")

DB_RANGES: dict[str, tuple[float, float]] = {
    "vv": (-25.0, 0.0),
    "hh": (-25.0, 0.0),
    "vh": (-32.0, -5.0),
    "hv": (-32.0, -5.0),
}
"""Backscatter (dB) mapped to 0..1 per polarisation; values outside are clipped.

Co-pol -25..0 dB is the common Sentinel-1 display range (Google Earth Engine examples; Sentinel
Hub's default shows -20..0): from calm water and smooth bare ground near the IW noise floor up to
dense forest and built-up areas; only strong double-bounce returns (buildings, ships) saturate,
which is what they look like in optical imagery too. Cross-pol returns are ~6-8 dB weaker
over vegetation and soil, so the VH window sits lower (-32..-5 dB) and is slightly wider to keep
water/soil contrast above the cross-pol noise floor. The ranges are fixed, like the optical
:data:`tasks.core.composite.REFLECTANCE_STRETCH`, so tiles and dates map identically (no per-tile
stretch).
"""

RATIO_DB_RANGE: tuple[float, float] = (0.0, 15.0)
"""Co-pol minus cross-pol (dB, i.e. the VV/VH power ratio) mapped to 0..1.

Volume scattering (vegetation) gives ~5-8 dB, surface scattering (bare soil, calm water)
~10-15 dB; natural surfaces rarely go below 0 dB.
"""

GRD_BETA_NOUGHT = 237.0
"""Calibration constant taking Sentinel-1 GRD DN to beta0: ``beta0 = DN^2 / 237^2``.

The GRD ``betaNought`` LUT (annotation/calibration/calibration-*.xml) holds 2.370000e+02 at every
pixel in the IW GRD calibration annotations seen; it is not read from the product here (the
measurement COG carries no annotation), so GRD output is *approximate, uncalibrated* beta0: no
thermal-noise removal, no terrain flattening, and on flat ground up to 2.4 dB brighter (near
range) to 0.15 dB darker (far range) than RTC gamma0 (gamma0 = beta0 * tan(incidence), IW
incidence 30-46 deg). The dataset says so in its ``radiometry`` attr. Use RTC (Planetary
Computer ``sentinel-1-rtc``) for quantitative work.
"""

SAR_COMPOSITES = ("grey", "dual")
"""``sar_composite`` choices (a polarisation name such as ``"vh"`` also works: grey of it)."""

_PROJ_KEYS = ("proj:epsg", "proj:code", "proj:wkt2", "proj:projjson")
_PRODUCT_POLS = {"DV": ("VV", "VH"), "DH": ("HH", "HV"), "SV": ("VV",), "SH": ("HH",)}
_MEASUREMENT = re.compile(r"measurement/[a-z0-9]+-(vv|vh|hh|hv)\.tiff?")
_Patch = Callable[[str], str] | None


class SarSummary(NamedTuple):
    """What :func:`check_sar_items` found common to all items."""

    orbit_state: str | None
    polarizations: tuple[str, ...]
    radar_geometry: bool


# --- item checks ------------------------------------------------------------------------------


def is_radar_geometry(item: dict) -> bool:
    """True when an item has no CRS at all (item or data assets): GRD in radar geometry.

    Such assets carry GCPs instead of a geotransform; odc-stac and stackstac cannot place them
    (stackstac #181), so :func:`load_sar` warps them with their GCPs.
    """
    holders = [item.get("properties", {}), *item.get("assets", {}).values()]
    return not any(h.get(key) is not None for h in holders for key in _PROJ_KEYS)


def _item_polarizations(item: dict) -> frozenset[str]:
    listed = item.get("properties", {}).get("sar:polarizations")
    if listed:
        return frozenset(str(p).lower() for p in listed)
    return frozenset(p for p in POLARIZATIONS if p in item.get("assets", {}))


def _describe(groups: dict, fmt: Callable = str) -> str:
    parts = []
    for key, ids in groups.items():
        shown = ", ".join(repr(i) for i in ids[:4])
        more = f" (+{len(ids) - 4} more)" if len(ids) > 4 else ""
        parts.append(f"{fmt(key)}: {shown}{more}")
    return "; ".join(parts)


def _by(items: list[dict], key: Callable[[dict], object]) -> dict:
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item.get("id"))
    return groups


def _check_polarizations(polarizations: Sequence[str]) -> tuple[str, ...]:
    pols = (
        tuple(str(p).lower() for p in polarizations) if not isinstance(polarizations, str) else ()
    )
    if not pols or len(set(pols)) != len(pols) or not set(pols) <= set(POLARIZATIONS):
        raise InputError(
            f"polarizations must be a non-empty sequence of distinct names from {POLARIZATIONS}, "
            f"got {polarizations!r}"
        )
    return pols


def check_sar_items(items: list[dict], polarizations: Sequence[str] | None = None) -> SarSummary:
    """Check that SAR items can share one cube (orbit, polarisations, geometry).

    All items need one orbit direction, one polarisation set, one geometry (all map-projected
    RTC, or all radar-geometry GRD), and must hold ``polarizations`` when given.
    Ascending and descending passes look at the ground from opposite sides (different
    layover, shadow and backscatter), and both fall on the same solar day, so mixing them would
    fuse unlike images into one time step and fake changes between dates.

    Raises:
        InputError: naming the offending item ids and how to filter them.
    """
    check_items(items)
    orbits = _by(items, lambda it: it.get("properties", {}).get("sat:orbit_state"))
    if len(orbits) > 1:
        raise InputError(
            f"items mix orbit directions (sat:orbit_state): {_describe(orbits)}. Ascending and "
            "descending passes see the ground from opposite sides; keep one: "
            "select_orbit(items, 'descending'), the CLI's --orbit ascending|descending, or a "
            "search query {'sat:orbit_state': {'eq': 'descending'}}"
        )
    pol_sets = _by(items, _item_polarizations)
    if len(pol_sets) > 1:
        raise InputError(
            f"items mix polarisation sets (sar:polarizations): "
            f"{_describe(pol_sets, lambda k: sorted(k))}. Keep items of one product type "
            "(e.g. dual-pol VV+VH, query {'sar:polarizations': {'eq': ['VV', 'VH']}})"
        )
    geometry = _by(items, is_radar_geometry)
    if len(geometry) > 1:
        raise InputError(
            "items mix map-projected RTC items and radar-geometry GRD items (no CRS): "
            f"{_describe(geometry, lambda k: 'GRD' if k else 'RTC')}. Their radiometry differs "
            "(gamma0 vs uncalibrated beta0); load one kind, preferably sentinel-1-rtc"
        )
    available = next(iter(pol_sets))
    if polarizations is not None:
        missing = [p for p in _check_polarizations(polarizations) if p not in available]
        if missing:
            raise InputError(
                f"polarizations {missing} are not in the items (they have {sorted(available)}); "
                "pick polarizations from those"
            )
    orbit = next(iter(orbits))
    if orbit is None:
        log.warning("SAR items carry no sat:orbit_state: orbit directions cannot be checked")
    return SarSummary(orbit, tuple(sorted(available)), next(iter(geometry)))


def select_orbit(items: list[dict], orbit: str) -> list[dict]:
    """The items of one orbit direction (``sat:orbit_state``); items lacking it are dropped.

    Raises:
        InputError: ``orbit`` is not ``"ascending"`` or ``"descending"``.
    """
    if orbit not in ORBITS:
        raise InputError(f"orbit must be one of {ORBITS}, got {orbit!r}")
    kept = [it for it in items if it.get("properties", {}).get("sat:orbit_state") == orbit]
    log.info("orbit %s: kept %d of %d items", orbit, len(kept), len(items))
    return kept


def check_sar_readable(
    items: list[dict], polarizations: Sequence[str] = ("vv", "vh"), patch_url: _Patch = None
) -> None:
    """Open the header (and last block) of every asset :func:`load_sar` would read.

    ``patch_url`` maps each href before opening it (e.g. ``planetary_computer.sign``), as in
    :func:`load_sar`.

    Catches what a lazy load cannot: a map-projected item whose file has no CRS (odc-stac would
    return an all-NaN image for it), a GRD file without GCPs, missing or truncated files.

    Raises:
        InputError: the item checks of :func:`check_sar_items` fail.
        FileNotFoundError: a local asset file is missing.
        ValueError: an asset cannot be read or placed (names the item and the href).
    """
    summary = check_sar_items(items, polarizations)
    for item in items:
        for pol in _check_polarizations(polarizations):
            ref = resolve_band(item, pol)
            href = asset_href(item, ref.asset)
            href = patch_url(href) if patch_url else href
            if not URL.match(href) and not Path(href).exists():
                raise InputNotFoundError(f"asset {pol!r} of {item_label(item)}: no file {href!r}")
            _check_sar_asset(item, href, ref.index, summary.radar_geometry)


def _check_sar_asset(item: dict, href: str, index: int, radar: bool) -> None:
    try:
        with rasterio.open(href) as src:
            if src.crs is None and not radar:
                raise InputError(
                    f"{item_label(item)} has proj:* metadata but its file {href!r} has no CRS "
                    "(radar geometry?); remove its proj:* fields so load_sar warps it with its "
                    "GCPs, or use the RTC product"
                )
            if src.crs is None and not src.gcps[0]:
                raise InputError(
                    f"{href!r} of {item_label(item)} has neither a CRS nor GCPs: it cannot be "
                    "placed on a map; use a georeferenced product"
                )
            src.read(index, window=last_block(src, index))
    except rasterio.errors.RasterioIOError as err:
        raise InputError(f"asset {href!r} of {item_label(item)} is not readable: {err}") from err


# --- readers: one item -> {pol: (1, y, x) float32 linear power, NaN invalid} -----------------


def _read_rtc(
    item: dict,
    grid: GridSpec,
    pols: tuple[str, ...],
    loader: str,
    chunks: int | None,
    patch: _Patch,
) -> dict[str, Array]:
    ds = load_bands([item], grid, pols, loader=loader, chunks=chunks, groupby="id", patch_url=patch)
    return {pol: ds[pol].data for pol in pols}


def _warp_block(
    href: str,
    index: int,
    affine: Affine,
    crs: str,
    nodata: float | None,
    block_info: dict | None = None,
) -> np.ndarray:
    (_, _), (y0, _), (x0, _) = block_info[None]["array-location"]
    shape = block_info[None]["chunk-shape"]
    out = np.full(shape[1:], np.nan, dtype=np.float32)
    with rasterio.open(href) as src:
        reproject(
            rasterio.band(src, index),
            out,
            src_nodata=nodata,
            dst_transform=affine * Affine.translation(x0, y0),
            dst_crs=crs,
            dst_nodata=np.nan,
            resampling=Resampling.nearest,
            # thin-plate spline through the GCPs: GDAL's default (an order-2 polynomial fit)
            # misses the IW GRD fixture's own GCPs by up to 190 m (mean 94 m); TPS hits them and
            # leave-one-out errors are ~12 m
            **({"SRC_METHOD": "GCP_TPS"} if src.crs is None else {}),
        )
    return out[None]


def warp_with_gcps(
    href: str, grid: GridSpec, *, index: int = 1, chunks: int = 1024, nodata: float | None = 0
) -> da.Array:
    """Lazy ``(1, y, x)`` float32 of one raster band warped onto ``grid`` with its GCPs.

    For radar-geometry files (Sentinel-1 GRD: GCPs, no CRS). Each ``chunks``-sized block opens
    the file and warps (nearest, thin-plate spline through the GCPs) only its own window, so
    the result matches ``grid.tiles(chunks)``. Pixels equal to ``nodata`` (GRD: DN 0, the
    no-data border) and pixels outside the image are NaN. The header is read here, so a file
    that cannot be placed fails now, not in a worker. Heights of the GCPs are ignored: relief
    displacement stays (use RTC in mountains).

    Raises:
        ValueError: the file has neither a CRS nor GCPs, or cannot be opened (names the href).
    """
    try:
        with rasterio.open(href) as src:
            gcps, gcp_crs = src.gcps
            placeable = src.crs is not None or (gcps and gcp_crs is not None)
            count = src.count
    except rasterio.errors.RasterioIOError as err:
        raise InputError(f"cannot open {href!r} to warp it: {err}") from err
    if not placeable:
        raise InputError(
            f"{href!r} has no CRS and no GCPs with a CRS: it cannot be placed on {grid.crs}"
        )
    if not 1 <= index <= count:
        raise InputError(f"{href!r} has {count} band(s); band {index} was asked for")
    return da.map_blocks(
        _warp_block,
        href=href,
        index=index,
        affine=grid.geobox.affine,
        crs=grid.crs,
        nodata=nodata,
        chunks=((1,), *grid.tiles(chunks).chunks),
        dtype=np.float32,
        meta=np.array((), dtype=np.float32),
    )


def _read_grd(
    item: dict, grid: GridSpec, pols: tuple[str, ...], chunks: int | None, patch: _Patch
) -> dict[str, Array]:
    out = {}
    for pol in pols:
        ref = resolve_band(item, pol)
        href = asset_href(item, ref.asset)
        href = patch(href) if patch else href
        dn = warp_with_gcps(href, grid, index=ref.index, chunks=chunks or max(grid.shape))
        if chunks is None:  # eager: one block, warped here
            dn = dn.compute(scheduler="synchronous")
        out[pol] = (dn / np.float32(GRD_BETA_NOUGHT)) ** 2  # DN^2 / A_beta^2 = beta0 (approx.)
    return out


# --- radiometry ---------------------------------------------------------------------------------


def _item_enl(item: dict) -> float:
    enl = item.get("properties", {}).get("sar:looks_equivalent_number")
    return float(enl) if isinstance(enl, int | float) and enl > 0 else DEFAULT_ENL


def _prepare(
    linear: dict[str, Array], item: dict, speckle: str | None, window: int
) -> tuple[dict[str, Array], Array]:
    """Non-positive power is no data; speckle-filter in linear power; one mask for all pols.

    numpy functions on purpose: they dispatch to dask for lazy cubes (NEP 18) and run directly
    on numpy for eager ones.
    """
    out = {}
    for pol, arr in linear.items():
        arr = np.where(arr > 0, arr, np.float32(np.nan)).astype(np.float32)
        out[pol] = speckle_filter(arr, speckle, window, _item_enl(item)) if speckle else arr
    valid = None
    for arr in out.values():
        valid = np.isfinite(arr) if valid is None else valid & np.isfinite(arr)
    return {pol: np.where(valid, arr, np.float32(np.nan)) for pol, arr in out.items()}, valid


def to_db(linear: da.Array | np.ndarray) -> da.Array | np.ndarray:
    """Linear power -> decibels, ``10 log10(x)``; NaN stays NaN."""
    return np.float32(10.0) * np.log10(linear)


def scale_db(db: da.Array | np.ndarray, db_range: tuple[float, float]) -> da.Array | np.ndarray:
    """``(db - low) / (high - low)`` clipped to 0..1, float32; NaN stays NaN."""
    low, high = (np.float32(v) for v in db_range)
    return ((db - low) / (high - low)).clip(0.0, 1.0).astype(np.float32)


def _check_sar_options(speckle: str | None, window: int, grd: str) -> None:
    if speckle is not None:
        check_speckle(speckle, window)
    if grd not in ("warp", "refuse"):
        raise InputError(f"grd must be 'warp' or 'refuse', got {grd!r}")


def load_sar(
    items: list[dict],
    grid: GridSpec,
    polarizations: Sequence[str] = ("vv", "vh"),
    *,
    loader: Literal["odc", "stackstac"] = "odc",
    speckle: Literal["lee", "refined_lee"] | None = None,
    window: int = 7,
    chunks: int | None = 1024,
    groupby: str = "solar_day",
    patch_url: _Patch = None,
    grd: Literal["warp", "refuse"] = "warp",
) -> xr.Dataset:
    """Lazy Sentinel-1 backscatter cube on exactly ``grid``: dB, clipped, scaled to 0..1.

    ``chunks=None`` reads eagerly into numpy instead, for a task that reads one tile: with one
    dask chunk per 1248² RTC tile the graph cost about as much as the reads (0.11-0.15 s lazy
    against 0.07-0.08 s eager unfiltered, 0.17-0.22 s against 0.13 s with Lee).

    RTC items (map-projected linear gamma0, e.g. Planetary Computer ``sentinel-1-rtc``) are read
    with :func:`tasks.core.load.load_bands` (``loader``, ``patch_url``, raster:bands nodata -32768).
    GRD items in radar geometry are warped onto ``grid`` with their GCPs
    (:func:`warp_with_gcps`, ``loader`` unused) and turned into approximate beta0 (see
    :data:`GRD_BETA_NOUGHT`), or refused with ``grd="refuse"``. Per item: power <= 0, NaN and
    nodata become invalid; ``speckle`` (``"lee"`` with a ``window`` x ``window`` box, or
    ``"refined_lee"``, 7 x 7) filters linear power before dB, chunk-safe, with the item's
    ``sar:looks_equivalent_number`` (else 4.4); a pixel is valid only where every polarisation
    is. Items are then mosaicked per ``groupby`` key as in ``load_bands``: first valid item in
    ``items`` order wins. ``window`` counts pixels of ``grid``.

    Returns:
        Dataset, dims ``(time, y, x)``, chunks ``(1, chunks, chunks)``: one float32 variable per
        polarisation, ``10 log10(power)`` mapped from :data:`DB_RANGES` to 0..1 (NaN where
        invalid); ``<co>_<cross>_ratio`` (co-pol minus cross-pol dB over
        :data:`RATIO_DB_RANGE`) when both are loaded; ``valid`` (bool). Attrs:
        ``stac_item_ids``, ``radiometry``, ``orbit_state``, ``speckle_filter``, ``display_range``.

    Raises:
        InputError: bad options, or the items fail :func:`check_sar_items`, or GRD with
            ``grd="refuse"``.
        ValueError: a GRD asset has neither CRS nor GCPs.
    """
    pols = _check_polarizations(polarizations)
    check_load_options(pols, loader, chunks, groupby)
    _check_sar_options(speckle, window, grd)
    summary = check_sar_items(items, pols)
    if summary.radar_geometry and grd == "refuse":
        raise InputError(
            f"items {[it.get('id') for it in items]} are GRD in radar geometry (GCPs, no CRS) "
            "and grd='refuse'; use the sentinel-1-rtc items of the same scenes, or grd='warp'"
        )
    layers = []
    for item in items:
        if summary.radar_geometry:
            linear = _read_grd(item, grid, pols, chunks, patch_url)
        else:
            linear = _read_rtc(item, grid, pols, loader, chunks, patch_url)
        layers.append(_prepare(linear, item, speckle, window))
    groups = group_items(items, groupby)
    fused = [fuse_first_valid([layers[i] for i in members]) for _, members in groups]
    log.debug("lazy SAR cube: %d items -> %d time steps on %s", len(items), len(groups), grid)
    filt = "none" if speckle is None else f"{speckle} {window}x{window} (linear power)"
    return _sar_dataset(fused, groups, items, grid, pols, summary, filt)


def _var_attrs(name: str, what: str, db_range: tuple[float, float]) -> dict:
    return {
        "long_name": f"{name} {what} in dB, clipped to {list(db_range)} dB and scaled to 0..1",
        "units": "1",
        "db_range": list(db_range),
        "grid_mapping": "spatial_ref",
    }


def _sar_dataset(
    fused: list[dict[str, Array]],
    groups: list[tuple[str, list[int]]],
    items: list[dict],
    grid: GridSpec,
    pols: tuple[str, ...],
    summary: SarSummary,
    filt: str,
) -> xr.Dataset:
    dims = ("time", "y", "x")
    what = "beta0 ~ DN^2/237^2 (uncalibrated GRD)" if summary.radar_geometry else "gamma0 (RTC)"
    db = {pol: to_db(np.concatenate([layer[pol] for layer in fused], axis=0)) for pol in pols}
    data = {
        pol: xr.DataArray(scale_db(db[pol], DB_RANGES[pol]), dims=dims).assign_attrs(
            _var_attrs(pol.upper(), what, DB_RANGES[pol])
        )
        for pol in pols
    }
    co = next((p for p in CO_POL if p in pols), None)
    cross = next((p for p in CROSS_POL if p in pols), None)
    if co and cross:
        ratio = scale_db(db[co] - db[cross], RATIO_DB_RANGE)
        name = f"{co.upper()}/{cross.upper()} ratio"
        data[f"{co}_{cross}_ratio"] = xr.DataArray(ratio, dims=dims).assign_attrs(
            _var_attrs(name, "power ratio", RATIO_DB_RANGE)
        )
    valid = np.isfinite(db[pols[0]])
    data["valid"] = xr.DataArray(valid, dims=dims, attrs={"long_name": "all polarisations valid"})
    times = np.array([group_time(items, members) for _, members in groups])
    coords = xr_coords(grid.geobox, crs_coord_name="spatial_ref")
    ds = xr.Dataset(data, coords={"time": times, **coords})
    ds.attrs.update(
        stac_item_ids=[",".join(items[i]["id"] for i in members) for _, members in groups],
        radiometry="beta0_approx_uncalibrated_grd" if summary.radar_geometry else "gamma0_rtc",
        orbit_state=summary.orbit_state or "unknown",
        polarizations=list(pols),
        speckle_filter=filt,
        display_range=[0.0, 1.0],
    )
    return ds


# --- the encoder's 3 channels --------------------------------------------------------------------


def _channels(ds: xr.Dataset, composite: str) -> list[str]:
    pols = [p for p in POLARIZATIONS if p in ds.data_vars]
    co = next((p for p in CO_POL if p in pols), None)
    cross = next((p for p in CROSS_POL if p in pols), None)
    if composite == "grey" and (co or pols):
        return [co or pols[0]] * 3
    if composite == "dual" and co and cross and f"{co}_{cross}_ratio" in ds.data_vars:
        return [co, cross, f"{co}_{cross}_ratio"]
    if composite in pols:
        return [composite] * 3
    raise InputError(
        f"composite must be one of {SAR_COMPOSITES} or a loaded polarisation {pols}, got "
        f"{composite!r}; 'dual' needs a co-pol and a cross-pol (load ('vv', 'vh'))"
    )


def sar_composite(ds: xr.Dataset, composite: str = "grey") -> xr.DataArray:
    """Model input from a :func:`load_sar` cube: float32 ``[time, band=3, y, x]`` in 0..1.

    ``"grey"`` (default): the co-pol (VV, else HH) repeated in all three channels. This is what
    the SAR encoder has been shown to work with: SegEarth-OV-2's AlignEarth inference reads SAR
    images as grey and mmcv's colour loading turns them into 3 identical channels before CLIP
    normalisation, and its training pairs are largely single-channel SAR. How AlignEarth was
    fed in training is unpublished (no training code), so a false-colour input would be
    untested ground for it. Co-pol, because it has the stronger signal and is present in every
    Sentinel-1 product. ``"dual"``: [co-pol, cross-pol, co/cross ratio], the usual Sentinel-1
    false-colour composite: more information and better for plain optical CLIP or for viewing,
    but out of distribution for AlignEarth. A polarisation name gives grey of that one.

    Band labels are ``red, green, blue`` like :func:`tasks.core.composite.rgb_composite`, so the
    result drops into the optical path (e.g. :func:`tasks.core.composite.best_pixel_composite`);
    attr ``channels`` says what each holds. NaN where invalid; the band axis is one dask chunk.

    Raises:
        InputError: unknown composite, or the variables it needs are missing.
    """
    names = _channels(ds, composite)
    rgb = xr.concat(
        [ds[name].drop_attrs() for name in names],
        dim=xr.DataArray(["red", "green", "blue"], dims="band", name="band"),
    )
    rgb = rgb.astype(np.float32).transpose(..., "band", "y", "x")
    if rgb.chunks is not None:
        rgb = rgb.chunk({"band": 3})
    rgb.attrs = {
        "long_name": f"SAR composite {composite!r} scaled to 0..1",
        "channels": names,
        "composite": composite,
    }
    return rgb.rename("rgb")


# --- GRD items from the AWS sentinel-s1-l1c layout -----------------------------------------------


def _utc(text: str) -> datetime:
    parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def orbit_from_local_time(when: datetime, longitude: float) -> str:
    """Orbit direction of a Sentinel-1 pass from its local solar time.

    Sentinel-1 flies a dawn-dusk sun-synchronous orbit (ascending node at 18:00 local time):
    descending passes cross at ~06:00, ascending at ~18:00. Unreliable within ~10 degrees of
    the poles, where local time wraps quickly.
    """
    local = when.astimezone(UTC) + timedelta(hours=longitude / 15.0)
    return "descending" if local.hour < 12 else "ascending"


def _measurements(folder: Path, info: dict) -> dict[str, dict]:
    assets = {}
    for name in sorted(set(info.get("filenameMap", {}).values())):
        match = _MEASUREMENT.fullmatch(name)
        if match and (folder / name).is_file():
            assets[match.group(1)] = {
                "href": str((folder / name).resolve()),
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "raster:bands": [{"data_type": "uint16", "nodata": 0}],
            }
    return assets


def grd_item_from_product_info(path: str | Path) -> dict:
    """A STAC item dict for a Sentinel-1 GRD product in the AWS ``sentinel-s1-l1c`` layout.

    Reads ``productInfo.json`` (id, times, mode, polarisation, footprint) and points one asset
    per local ``measurement/*.tiff`` at it. No ``proj:*`` fields: the files are in radar
    geometry, which :func:`load_sar` warps with their GCPs. ``sat:orbit_state`` is not in
    productInfo.json; it is derived from the local solar time (:func:`orbit_from_local_time`)
    and the property ``terrawatch:orbit_state_from`` says so.

    Raises:
        FileNotFoundError: no productInfo.json, or no measurement file beside it.
        InputError: an unknown polarisation code.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "productInfo.json"
    info = json.loads(path.read_text())
    pols = _PRODUCT_POLS.get(str(info.get("polarization")))
    if pols is None:
        raise InputError(
            f"{path}: polarization {info.get('polarization')!r} is not one of "
            f"{sorted(_PRODUCT_POLS)}"
        )
    assets = _measurements(path.parent, info)
    if not assets:
        raise FileNotFoundError(f"no measurement/*.tiff file beside {path}; download them first")
    footprint = {k: v for k, v in info["footprint"].items() if k != "crs"}
    geometry = shapely.geometry.shape(footprint)
    start, stop = _utc(info["startTime"]), _utc(info["stopTime"])
    mission = str(info.get("missionId", "S1"))
    props = {
        "datetime": (start + (stop - start) / 2).isoformat(),
        "start_datetime": start.isoformat(),
        "end_datetime": stop.isoformat(),
        "platform": f"sentinel-1{mission[2:].lower()}" if len(mission) == 3 else mission,
        "constellation": "sentinel-1",
        "sar:instrument_mode": info.get("mode"),
        "sar:product_type": info.get("productType"),
        "sar:polarizations": list(pols),
        "sat:absolute_orbit": info.get("absoluteOrbitNumber"),
        "sat:orbit_state": orbit_from_local_time(start, geometry.centroid.x),
        "terrawatch:orbit_state_from": "local solar time of the pass (not in productInfo.json)",
    }
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": info["id"],
        "collection": "sentinel-1-grd",
        "geometry": shapely.geometry.mapping(geometry),
        "bbox": list(geometry.bounds),
        "properties": props,
        "assets": assets,
        "links": [],
    }
