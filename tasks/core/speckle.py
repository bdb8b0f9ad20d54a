"""SAR speckle filters (Lee, refined Lee) on linear intensity, NaN-aware and chunk-safe."""

from __future__ import annotations

import math
import numbers

import dask.array as da
import numpy as np
from scipy.ndimage import correlate, uniform_filter

from terrawatch.errors import InputError

SPECKLE_FILTERS = ("lee", "refined_lee")
"""Filters :func:`speckle_filter` knows."""

DEFAULT_ENL = 4.4
"""Equivalent number of looks of Sentinel-1 IW GRDH (the ESA product specification's value,
also in Planetary Computer items as ``sar:looks_equivalent_number``); used when an item has none.
"""

REFINED_LEE_WINDOW = 7
"""Refined Lee is defined on a 7 x 7 window of 3 x 3 sub-windows (Lee 1981)."""


def _check(window: int, enl: float) -> None:
    whole = isinstance(window, numbers.Integral) and not isinstance(window, bool)
    if not (whole and window >= 3 and window % 2 == 1):
        raise InputError(f"window must be an odd int >= 3 (pixels per side), got {window!r}")
    number = isinstance(enl, numbers.Real) and not isinstance(enl, bool)
    if not (number and math.isfinite(enl) and enl > 0):
        raise InputError(
            f"enl (equivalent number of looks) must be a number > 0, got {enl!r}; "
            f"Sentinel-1 IW GRDH has {DEFAULT_ENL}"
        )


def _masked_stats(
    x: np.ndarray, valid: np.ndarray, kernel: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray]:
    """Local mean and variance over the valid pixels under ``kernel`` (an int: a square box).

    Pixels outside the array and NaN pixels count as absent, not as zeros, so a block padded
    with NaN gives the same numbers as the whole array: that makes the filters chunk-safe.
    """
    filled = np.where(valid, x, 0.0)
    if isinstance(kernel, int):  # running-sum box filter, scaled from mean to sum

        def total(a: np.ndarray) -> np.ndarray:
            return uniform_filter(a, size=kernel, mode="constant", cval=0.0) * kernel**2

    else:

        def total(a: np.ndarray) -> np.ndarray:
            return correlate(a, kernel, mode="constant", cval=0.0)

    # the running sum leaves ~1e-16 residues where no pixel is valid: counts are whole numbers
    count = np.rint(total(valid.astype(np.float64)))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total(filled) / count, np.nan)
        var = np.maximum(total(filled * filled) / count - mean * mean, 0.0)
    return mean, var


def _mmse(x: np.ndarray, mean: np.ndarray, var: np.ndarray, enl: float) -> np.ndarray:
    """Lee's minimum-mean-square-error estimate from local statistics.

    Multiplicative speckle of intensity has squared coefficient of variation ``cu2 = 1/ENL``.
    The weight ``b = (var - cu2 mean^2) / ((1 + cu2) var)``, clipped to 0..1, is ~0 in
    homogeneous areas (output = local mean) and ~1 on edges and point targets (output = pixel).
    """
    cu2 = 1.0 / enl
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = (var - cu2 * mean * mean) / ((1.0 + cu2) * var)
    weight = np.clip(np.nan_to_num(weight, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    return mean + weight * (x - mean)


def lee(intensity: np.ndarray, window: int = 7, enl: float = DEFAULT_ENL) -> np.ndarray:
    """Lee (1980) filter of a 2-D linear-power image on a ``window`` x ``window`` box.

    NaN pixels stay NaN and are left out of their neighbours' statistics.

    Raises:
        InputError: ``window`` not an odd int >= 3, or ``enl`` <= 0.
    """
    _check(window, enl)
    x = np.asarray(intensity, dtype=np.float64)
    valid = np.isfinite(x)
    mean, var = _masked_stats(x, valid, window)
    return np.where(valid, _mmse(x, mean, var, enl), np.nan).astype(np.float32)


def _half_windows() -> list[np.ndarray]:
    """The 8 non-symmetric 7x7 windows of refined Lee, as pairs (side a, side b) per direction.

    Directions, matching :func:`_gradients`: 0 horizontal edge (up / down half), 1 vertical
    edge (left / right half), 2 edge along the anti-diagonal (upper-left / lower-right
    triangle), 3 edge along the diagonal (upper-right / lower-left triangle). Each half
    includes the edge line through the centre.
    """
    i, j = np.indices((REFINED_LEE_WINDOW, REFINED_LEE_WINDOW))
    c, last = REFINED_LEE_WINDOW // 2, REFINED_LEE_WINDOW - 1
    halves = [i <= c, i >= c, j <= c, j >= c, i + j <= last, i + j >= last, j >= i, i >= j]
    return [h.astype(np.float64) for h in halves]


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[y, x] = a[y + dy, x + dx]``, NaN beyond the edge."""
    pad = max(abs(dy), abs(dx))
    padded = np.pad(a, pad, constant_values=np.nan)
    h, w = a.shape
    return padded[pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def _gradients(mean3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge direction (0..3) and side (0 = a, 1 = b) per pixel from the 3x3 sub-window means.

    The nine sub-window means ``s[0..8]`` (row-major, centres 2 px apart) give four gradient
    magnitudes; the largest names the edge direction, and the pixel takes the half window on
    the side whose sub-window mean is closer to the centre one.
    """
    step = (REFINED_LEE_WINDOW - 3) // 2
    s = [_shift(mean3, dy, dx) for dy in (-step, 0, step) for dx in (-step, 0, step)]
    pairs = [(1, 7), (3, 5), (0, 8), (2, 6)]
    side = np.zeros(mean3.shape, dtype=np.int64)
    with np.errstate(invalid="ignore"):  # NaN sub-windows (no valid pixel) lose every contest
        grads = np.stack([np.abs(s[a] - s[b]) for a, b in pairs])
        direction = np.argmax(np.nan_to_num(grads, nan=-1.0), axis=0)
        for d, (a, b) in enumerate(pairs):
            closer_b = np.abs(s[4] - s[b]) < np.abs(s[4] - s[a])
            side = np.where((direction == d) & closer_b, 1, side)
    return direction, side


def refined_lee(intensity: np.ndarray, enl: float = DEFAULT_ENL) -> np.ndarray:
    """Refined Lee (Lee 1981) filter of a 2-D linear-power image, on a 7 x 7 window.

    Like :func:`lee`, but the local statistics come from the half of the window on the
    pixel's own side of the strongest edge, so edges stay sharp while flat areas are smoothed.
    Implemented from the paper's description (as also used by the Sentinel-1 ARD recipes for
    Google Earth Engine, Mullissa et al. 2021): 3 x 3 sub-window means, 4 gradient
    directions, 8 non-symmetric windows; no code was copied.

    Raises:
        InputError: ``enl`` <= 0.
    """
    _check(REFINED_LEE_WINDOW, enl)
    # NaN margin: sub-windows reaching past the edge see the same (absent) pixels as they do
    # in a dask block padded by map_overlap, so whole-array and chunked results agree
    margin = REFINED_LEE_WINDOW // 2
    x = np.pad(np.asarray(intensity, dtype=np.float64), margin, constant_values=np.nan)
    valid = np.isfinite(x)
    mean3, _ = _masked_stats(x, valid, 3)
    direction, side = _gradients(mean3)
    mean = np.full(x.shape, np.nan)
    var = np.full(x.shape, np.nan)
    for k, kernel in enumerate(_half_windows()):
        pick = (direction == k // 2) & (side == k % 2)
        if pick.any():
            m, v = _masked_stats(x, valid, kernel)
            mean, var = np.where(pick, m, mean), np.where(pick, v, var)
    out = np.where(valid, _mmse(x, mean, var, enl), np.nan).astype(np.float32)
    return out[margin:-margin, margin:-margin]


def check_speckle(method: str, window: int, enl: float = DEFAULT_ENL) -> None:
    """Validate speckle options before any work.

    Raises:
        InputError: unknown method, bad window or enl, or refined_lee with window != 7.
    """
    if method not in SPECKLE_FILTERS:
        raise InputError(f"speckle must be None or one of {SPECKLE_FILTERS}, got {method!r}")
    _check(window, enl)
    if method == "refined_lee" and window != REFINED_LEE_WINDOW:
        raise InputError(
            f"window must be {REFINED_LEE_WINDOW} for speckle='refined_lee' (the published "
            f"algorithm is defined on 7x7), got {window!r}; use speckle='lee' for other sizes"
        )


def _filter_2d(method: str, window: int, enl: float):
    if method == "lee":
        return lambda a: lee(a, window, enl)
    return lambda a: refined_lee(a, enl)


def _apply(block: np.ndarray, method: str, window: int, enl: float) -> np.ndarray:
    run = _filter_2d(method, window, enl)
    out = np.empty(block.shape, dtype=np.float32)
    for index in np.ndindex(block.shape[:-2]):
        out[index] = run(block[index])
    return out


def speckle_filter(
    intensity: da.Array | np.ndarray, method: str, window: int = 7, enl: float = DEFAULT_ENL
) -> da.Array | np.ndarray:
    """Speckle-filter linear power over the last two axes (``[..., y, x]``).

    Apply it to linear intensity (gamma0, sigma0, DN^2), before any dB conversion: the
    speckle model is multiplicative in power. A dask array is filtered lazily with
    ``map_overlap`` (depth ``window // 2``, NaN beyond the array edge), which gives exactly the
    result of filtering the whole array at once, whatever the chunking.

    Args:
        intensity: linear power, NaN where invalid.
        method: ``"lee"`` (box ``window``) or ``"refined_lee"`` (7 x 7, ``window`` must be 7).
        window: window side in pixels, odd. 7 (70 m at 10 m pixels) is the common choice
            for Sentinel-1 GRD/RTC: enough looks to cut speckle variance ~10x in flat areas
            while edges keep most contrast.
        enl: equivalent number of looks of the input (Sentinel-1 IW GRDH: 4.4).

    Raises:
        InputError: unknown method, bad window or enl, or refined_lee with window != 7.
    """
    check_speckle(method, window, enl)
    if not isinstance(intensity, da.Array):
        return _apply(np.asarray(intensity), method, window, enl)
    ndim = intensity.ndim
    depth = {axis: (window // 2 if axis >= ndim - 2 else 0) for axis in range(ndim)}
    boundary = {axis: (np.nan if axis >= ndim - 2 else "none") for axis in range(ndim)}
    return intensity.astype(np.float32).map_overlap(
        _apply,
        depth=depth,
        boundary=boundary,
        dtype=np.float32,
        method=method,
        window=window,
        enl=enl,
    )
