"""Reduced-resolution levels of a cube for fast viewing (the zarr-conventions multiscales).

At the end of a run each time step gets levels that halve the resolution until the longer side
fits :data:`OVERVIEW_MIN_SIDE` pixels: class and flag variables by *mode* (the most frequent
valid value of each block; averaging class ids would invent classes), likelihoods such as
``confidence`` by the *mean* of the valid pixels. Each level is a Zarr group
``overviews/<factor>`` of the store with the cube's own layout (``time``, ``y``, ``x``,
``spatial_ref``), so ``xr.open_zarr(store, group="overviews/4", decode_coords="all")`` opens it
with its CRS, and the root declares them in a ``multiscales`` attribute (convention
``d35379db-88df-4056-af3a-620245f8e347``: one layout entry per level with its scale and
resampling method). A block that holds no valid pixel is no data (255).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

import dask.array as da
import numpy as np
import odc.geo.xr
import xarray as xr
import zarr

from terrawatch.tasks.core.cube_store import TIME_ENCODING, ZARR_FORMAT, open_cube
from terrawatch.tasks.core.cube_types import CLASS_DIM, NODATA

logger = logging.getLogger(__name__)

OVERVIEW_MIN_SIDE = 256
"""Levels are added until the longer side of the coarsest fits this many pixels."""
GROUP = "overviews"
MULTISCALES_CONVENTION: dict[str, str] = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v1/README.md",
    "uuid": "d35379db-88df-4056-af3a-620245f8e347",
    "name": "multiscales",
    "description": "Multiscale layout of zarr datasets",
}
_ENCODING_ATTRS = frozenset({"_FillValue", "coordinates", "grid_mapping"})
MEAN_VARIABLES = frozenset({"confidence", "probability"})
"""Likelihoods: their levels are block means; every other variable is categorical (mode)."""


def overview_factors(shape: tuple[int, int]) -> list[int]:
    """2, 4, 8, ... until ``max(shape) / factor`` fits :data:`OVERVIEW_MIN_SIDE`."""
    longest = max(shape)
    if longest <= OVERVIEW_MIN_SIDE:
        return []
    return [2**k for k in range(1, math.ceil(math.log2(longest / OVERVIEW_MIN_SIDE)) + 1)]


def write_overviews(store: str, time_index: int, rewrite: bool = True) -> list[int]:
    """Write (or rewrite) every level of one time step; returns the factors written.

    ``rewrite=False`` (a rerun that wrote no tile) writes only the levels the step lacks, so
    rerunning a finished step changes no file of the store.
    """
    cube = open_cube(store, mask_and_scale=False)
    factors = overview_factors((cube.sizes["y"], cube.sizes["x"]))
    names = overview_variables(cube)
    if not rewrite:
        factors = [f for f in factors if not has_overview(store, f, time_index)]
        if not factors:
            # a run killed after its last tile, before the declaration: its rerun has no
            # tile to write but must still declare the layout (a cube without levels too)
            every = overview_factors((cube.sizes["y"], cube.sizes["x"]))
            if not _declared(store, every):
                _declare(store, every, names)
            return []
    step = cube.isel(time=[time_index])
    for factor in factors:
        level = _level(step, names, factor)
        _write_level(store, f"{GROUP}/{factor}", level, cube["time"].values[time_index])
    _declare(store, overview_factors((cube.sizes["y"], cube.sizes["x"])), names)
    logger.info("overviews of %s step %d: factors %s", store, time_index, factors)
    return factors


def overview_variables(cube: xr.Dataset) -> list[str]:
    """The variables that get levels: those on ``(time, y, x)`` and the per-class ones on
    ``(time, class, y, x)`` (the land-cover ``probability``)."""
    return [
        n
        for n, v in cube.data_vars.items()
        if v.dims in (("time", "y", "x"), ("time", CLASS_DIM, "y", "x"))
    ]


def _level(step: xr.Dataset, names: list[str], factor: int) -> xr.Dataset:
    """One time step reduced by ``factor`` on the grid of ``geobox.zoom_out(factor)``."""
    geobox = step.odc.geobox.zoom_out(factor)
    coords = dict(odc.geo.xr.xr_coords(geobox, crs_coord_name="spatial_ref"))
    level = xr.Dataset(coords={**coords, "time": step["time"]})
    if any(CLASS_DIM in step[name].dims for name in names):
        level = level.assign_coords({CLASS_DIM: step[CLASS_DIM]})
    height, width = geobox.shape.yx
    for name in names:
        fill = _fill(step[name])
        reduce = functools.partial(
            _block_mean if name in MEAN_VARIABLES else _block_mode, fill=fill
        )
        data = step[name].data
        if not isinstance(data, da.Array):
            data = da.from_array(np.asarray(data))
        lead = data.ndim - 2  # time, and class for a per-class variable
        y, x = lead, lead + 1
        pad = (*((0, 0),) * lead, (0, height * factor - data.shape[y]),
               (0, width * factor - data.shape[x]))  # fmt: skip
        padded = da.pad(data, pad, mode="constant", constant_values=fill)
        side = factor * max(1, -(-data.chunksize[y] // factor))
        padded = padded.rechunk((*(1,) * lead, side, side))
        reduced = da.coarsen(reduce, padded, {y: factor, x: factor}, trim_excess=False)
        attrs = {k: v for k, v in step[name].attrs.items() if k not in _ENCODING_ATTRS}
        chunk = (*(1,) * lead, min(height, data.chunksize[y]), min(width, data.chunksize[x]))
        reduced = reduced.astype(data.dtype).rechunk(chunk)
        dims = step[name].dims
        level[name] = (dims, reduced, {**attrs, "grid_mapping": "spatial_ref"})
        level[name].encoding = {"_FillValue": fill, "chunks": chunk}
    return level


def _fill(var: xr.DataArray) -> int:
    return int(var.encoding.get("_FillValue", NODATA))


def _block_mode(
    blocks: np.ndarray, axis: tuple[int, ...] | None = None, fill: int = NODATA
) -> np.ndarray:
    """Most frequent valid value of each block (ties: the smallest value); ``fill`` if none."""
    if axis is None:  # dask asks for the output type with an empty array
        return blocks
    moved = np.moveaxis(blocks, axis, tuple(range(blocks.ndim - len(axis), blocks.ndim)))
    flat = moved.reshape(*moved.shape[: moved.ndim - len(axis)], -1)
    values = np.unique(flat[flat != fill])
    if not values.size:
        return np.full(flat.shape[:-1], fill, blocks.dtype)
    counts = np.stack([(flat == v).sum(axis=-1) for v in values], axis=-1)
    out = values[np.argmax(counts, axis=-1)].astype(blocks.dtype)
    out[counts.max(axis=-1) == 0] = fill
    return out


def _block_mean(
    blocks: np.ndarray, axis: tuple[int, ...] | None = None, fill: int = NODATA
) -> np.ndarray:
    """Rounded mean of the valid pixels of each block; ``fill`` if none."""
    if axis is None:  # dask asks for the output type with an empty array
        return blocks
    valid = blocks != fill
    total = np.where(valid, blocks, 0).sum(axis=axis, dtype=np.float64)
    count = valid.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.rint(total / count)
    return np.where(count > 0, mean, fill).astype(blocks.dtype)


def _write_level(store: str, group: str, level: xr.Dataset, time: np.datetime64) -> None:
    """Append the step to the level, or rewrite it in place when the level has it already."""
    level["time"].encoding = dict(TIME_ENCODING)
    try:
        existing = xr.open_zarr(store, group=group, consolidated=False, chunks=None)
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        existing = None
    if existing is None:
        level.to_zarr(store, group=group, mode="w-", zarr_format=ZARR_FORMAT, consolidated=False)
        return
    hits = np.flatnonzero(existing["time"].values == time)
    if hits.size:
        index = int(hits[0])
        region = level.drop_vars(["spatial_ref", "x", "y", CLASS_DIM], errors="ignore")
        region.to_zarr(store, group=group, region={"time": slice(index, index + 1)},
                       consolidated=False)  # fmt: skip
    else:
        level.to_zarr(store, group=group, append_dim="time", consolidated=False)


def _declare(store: str, factors: list[int], names: list[str]) -> None:
    """The root's ``multiscales`` layout (and convention entry); then re-consolidate."""
    root = zarr.open_group(store, mode="r+", use_consolidated=False)
    methods = {n: ("mean" if n in MEAN_VARIABLES else "mode") for n in names}
    layout: list[dict[str, Any]] = [{"asset": ".", "transform": {"scale": [1.0, 1.0]}}]
    layout += [
        {"asset": f"{GROUP}/{f}", "derived_from": ".", "transform": {"scale": [float(f)] * 2},
         "resampling_method": "mode", "terrawatch:resampling": methods}
        for f in factors
    ]  # fmt: skip
    uuid = MULTISCALES_CONVENTION["uuid"]
    conventions = [c for c in root.attrs.get("zarr_conventions", []) if c.get("uuid") != uuid]
    root.attrs.update(
        {"multiscales": {"layout": layout, "resampling_method": "mode"},
         "zarr_conventions": [*conventions, dict(MULTISCALES_CONVENTION)]}
    )  # fmt: skip
    zarr.consolidate_metadata(store, zarr_format=ZARR_FORMAT)


def _declared(store: str, factors: list[int]) -> bool:
    """Whether the root declares exactly these levels (and the convention)."""
    attrs = zarr.open_group(store, mode="r", use_consolidated=False).attrs
    layout = attrs.get("multiscales", {}).get("layout", [])
    uuids = [c.get("uuid") for c in attrs.get("zarr_conventions", [])]
    assets = [e.get("asset") for e in layout]
    wanted = [".", *(f"{GROUP}/{f}" for f in factors)]
    return assets == wanted and MULTISCALES_CONVENTION["uuid"] in uuids


def open_overview(store: str, factor: int) -> xr.Dataset:
    """One level as a cube (CRS decoded, values as stored)."""
    import rioxarray  # noqa: F401

    return xr.open_zarr(
        store, group=f"{GROUP}/{factor}", decode_coords="all", mask_and_scale=False,
        consolidated=False,
    )  # fmt: skip


def has_overview(store: str, factor: int, time_index: int) -> bool:
    """Whether level ``factor`` holds the store's step ``time_index`` (written by this run)."""
    try:
        level = open_overview(store, factor)
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return False
    times = open_cube(store, mask_and_scale=False)["time"].values
    return time_index < times.size and times[time_index] in level["time"].values
