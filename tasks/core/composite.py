"""The model's input from a band cube: the RGB composite (fixed stretch) and best-pixel mosaic."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from terrawatch.errors import InputError

RGB = ("red", "green", "blue")


REFLECTANCE_STRETCH: tuple[float, float] = (0.0, 0.3)
"""Default display stretch for surface reflectance: ``reflectance / 0.3`` clipped to 0..1.

Land surface reflectance in the visible bands is mostly below 0.3 (bright bare soil and
urban roofs reach it; only snow and cloud go well beyond), so this keeps contrast for the
model without a per-tile percentile. It is fixed on purpose: a per-tile or per-date
stretch would make neighbouring chunks and dates look different to the model.
"""


IDENTITY_STRETCH: tuple[float, float] = (0.0, 1.0)
"""Stretch for 8-bit display imagery already scaled by 1/255: identity."""


def _check_stretch(stretch: tuple[float, float]) -> tuple[float, float]:
    ok = isinstance(stretch, Sequence) and len(stretch) == 2
    ok = ok and all(isinstance(v, int | float) and math.isfinite(v) for v in stretch)
    if not ok or not stretch[1] > stretch[0]:
        raise InputError(
            f"stretch must be (low, high) finite numbers with low < high, got {stretch!r}"
        )
    return float(stretch[0]), float(stretch[1])


def rgb_composite(ds: xr.Dataset, stretch: tuple[float, float] | None = None) -> xr.DataArray:
    """Model input: float32 ``[time, band=3 (red, green, blue), y, x]`` in 0..1, NaN if invalid.

    ``(value - low) / (high - low)`` clipped to 0..1. ``stretch=None`` uses the cube's
    ``display_range``: ``(0, 0.3)`` for reflectance (:data:`REFLECTANCE_STRETCH`, fixed so
    tiles and dates are comparable), ``(0, 1)`` (identity) for 8-bit imagery. The band axis
    is one dask chunk, so each model tile is one block.

    Raises:
        InputError: a red/green/blue variable is missing, or a bad stretch.
    """
    missing = [band for band in RGB if band not in ds.data_vars]
    if missing:
        raise InputError(f"ds lacks bands {missing}; load it with bands including {list(RGB)}")
    low, high = _check_stretch(stretch or tuple(ds.attrs.get("display_range", REFLECTANCE_STRETCH)))
    rgb = xr.concat(
        [ds[band] for band in RGB], dim=xr.DataArray(list(RGB), dims="band", name="band")
    )
    if (low, high) != IDENTITY_STRETCH:  # identity: skip two passes over the tile
        rgb = (rgb - low) / (high - low)
    rgb = rgb.clip(0.0, 1.0).astype(np.float32, copy=False)
    rgb = rgb.transpose(..., "band", "y", "x")
    if rgb.chunks is not None:
        rgb = rgb.chunk({"band": len(RGB)})
    rgb.attrs = {"long_name": "RGB composite scaled to 0..1", "stretch": [low, high]}
    return rgb.rename("rgb")


def rgb_array(
    bands: Mapping[str, np.ndarray], stretch: tuple[float, float] = REFLECTANCE_STRETCH
) -> np.ndarray:
    """:func:`rgb_composite` of one eager window: float32 ``[3 (red, green, blue), y, x]``.

    Same stretch and clipping (NaN stays NaN), in one new buffer, in place: a tile task's
    composite without xarray's copies (:func:`tasks.core.load.read_window` gives ``bands``).

    Raises:
        InputError: a red/green/blue array is missing, or a bad stretch.
    """
    missing = [band for band in RGB if band not in bands]
    if missing:
        raise InputError(f"bands lacks {missing}; read it with bands including {list(RGB)}")
    low, high = _check_stretch(stretch)
    rgb = np.empty((len(RGB), *np.shape(bands["red"])), np.float32)
    for index, band in enumerate(RGB):
        rgb[index] = bands[band]
    if (low, high) != IDENTITY_STRETCH:
        rgb -= np.float32(low)
        rgb /= np.float32(high - low)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def best_pixel_composite(rgb: xr.DataArray) -> xr.Dataset:
    """Collapse ``time``: per pixel, the first observation (in ``time`` order) valid in all bands.

    The caller orders the time steps (e.g. least cloudy first with ``rgb.isel(time=order)``).

    Returns:
        Dataset with ``rgb`` ``[band, y, x]`` (NaN where no step is valid), ``valid``
        ``[y, x]`` bool and ``source_index`` ``[y, x]`` int16 (position along ``time`` of the
        chosen step, -1 where none).

    Raises:
        InputError: ``rgb`` has no ``time`` or ``band`` dimension.
    """
    if "time" not in rgb.dims or "band" not in rgb.dims:
        raise InputError(f"rgb must have dims including time and band, got {rgb.dims!r}")
    ok = rgb.notnull().all("band")
    found = ok.isel(time=0, drop=True)
    out = xr.where(found, rgb.isel(time=0, drop=True), np.float32(np.nan), keep_attrs=True)
    source = xr.where(found, np.int16(0), np.int16(-1))
    for step in range(1, rgb.sizes["time"]):
        valid = ok.isel(time=step, drop=True)
        take = valid & ~found
        out = xr.where(take, rgb.isel(time=step, drop=True), out, keep_attrs=True)
        source = xr.where(take, np.int16(step), source)
        found = found | valid
    out = out.transpose("band", ...)
    return xr.Dataset({"rgb": out, "valid": found, "source_index": source.astype(np.int16)})
