"""Spectrum -> RGB by linear interpolation between the neighbouring band centres (§8.1).

SPECIAL feeds CLIP an RGB image made from the spectrum: for each target wavelength (R 655,
G 553, B 451 nm) a fractional band index ``t`` is interpolated from the band-centre list and the
two neighbouring bands are mixed, ``(1 - frac t) X[floor t] + frac t X[ceil t]``. No sensor
response curves. A target outside the band range clamps to the nearest band (``np.interp``'s
rule, as the reference's function does), which is logged because that channel is then a copy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from terrawatch.errors import InputError

logger = logging.getLogger(__name__)

RGB_WAVELENGTHS_NM = (655.0, 553.0, 451.0)
"""The R, G, B targets of SPECIAL (author's reply in the reference repository's issue #4)."""
RGB_PERCENTILE = 0.1
"""Percent clipped at each end of the RGB stretch (the reference's q=0.001)."""
SPECTRUM_PERCENTILE = 0.01
"""Percent clipped at each end of the spectrum's stretch (the reference's q=0.0001)."""


def band_positions(wavelengths_nm: Sequence[float], targets_nm: Sequence[float]) -> np.ndarray:
    """Fractional band indices of ``targets_nm`` in the ascending band-centre list."""
    centres = np.asarray(wavelengths_nm, dtype=np.float64)
    if centres.ndim != 1 or len(centres) < 2:
        raise InputError("at least two band centre wavelengths are needed to interpolate RGB")
    if np.any(np.diff(centres) <= 0):
        raise InputError(
            f"band centre wavelengths must be strictly increasing, got {centres.tolist()}; "
            "sort the bands by wavelength and drop duplicates"
        )
    targets = np.asarray(targets_nm, dtype=np.float64)
    outside = targets[(targets < centres[0]) | (targets > centres[-1])]
    if outside.size:
        logger.info(
            "RGB targets %s nm lie outside the bands (%.0f-%.0f nm): nearest band used",
            outside.tolist(),
            centres[0],
            centres[-1],
        )
    return np.interp(targets, centres, np.arange(len(centres), dtype=np.float64))


def spectral_to_rgb(
    spectra: np.ndarray,
    wavelengths_nm: Sequence[float],
    targets_nm: Sequence[float] = RGB_WAVELENGTHS_NM,
) -> np.ndarray:
    """Interpolated bands ``[3, H, W]`` (float32, same units as ``spectra [B, H, W]``)."""
    if spectra.ndim != 3 or spectra.shape[0] != len(wavelengths_nm):
        raise InputError(
            f"spectra must be [bands, H, W] with one wavelength per band; got shape "
            f"{spectra.shape} and {len(wavelengths_nm)} wavelengths"
        )
    positions = band_positions(wavelengths_nm, targets_nm)
    lower = np.floor(positions).astype(int)
    upper = np.ceil(positions).astype(int)
    frac = (positions - lower).astype(np.float32)[:, None, None]
    data = spectra.astype(np.float32, copy=False)
    return (1.0 - frac) * data[lower] + frac * data[upper]


def percentile_stretch(image: np.ndarray, percent: float, valid: np.ndarray | None = None):
    """Clip at global low/high percentiles over all channels jointly, then scale to 0..1.

    The reference's ``rsshow``: one pair of limits for every channel (so band ratios survive),
    no gamma. NaN and pixels outside ``valid`` are ignored for the limits and set to 0.
    """
    low, high = stretch_limits(image, percent, valid)
    return fixed_stretch(image, low, high, valid)


def stretch_limits(
    image: np.ndarray, percent: float, valid: np.ndarray | None = None
) -> tuple[float, float]:
    """The low/high percentiles of :func:`percentile_stretch` (all channels jointly).

    Raises:
        InputError: no finite valid value.
    """
    mask = np.isfinite(image)
    if valid is not None:
        mask &= np.broadcast_to(valid, image.shape)
    values = image[mask]
    if values.size == 0:
        raise InputError("the image has no valid pixels to stretch")
    low, high = np.percentile(values, [percent, 100.0 - percent])
    return float(low), float(high)


def fixed_stretch(
    image: np.ndarray, low: float, high: float, valid: np.ndarray | None = None
) -> np.ndarray:
    """``image`` clipped to ``low..high`` and scaled to 0..1 (float32); NaN/invalid -> 0.

    With limits computed once for a whole scene, every tile of it gets the same mapping (a
    stretch per tile would shift each tile's colours and features: seams).
    """
    data = image.astype(np.float32, copy=True)
    mask = np.isfinite(data)
    if valid is not None:
        mask &= np.broadcast_to(valid, data.shape)
    out = np.clip((data - low) / ((high - low) or 1.0), 0.0, 1.0)
    out[~mask] = 0.0
    return out
