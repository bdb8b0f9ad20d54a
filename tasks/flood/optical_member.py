"""The weights-free ``optical`` member: water from NDWI and MNDWI on SCL-masked Sentinel-2 pixels.

Open water absorbs near- and shortwave infrared and reflects some green, so two normalised
differences separate it from land:

- NDWI = (green - NIR) / (green + NIR) (McFeeters 1996, IJRS 17(7)); water > 0;
- MNDWI = (green - SWIR1) / (green + SWIR1) (Xu 2006, IJRS 27(14)); water > 0, and it keeps
  built-up land (positive NDWI in some cities) out.

Both published thresholds are 0 (:data:`NDWI_THRESHOLD`, :data:`MNDWI_THRESHOLD`); a per-scene
Otsu threshold is not implemented: 0 is stable for calm and moderately turbid flood water, and
the consensus with the SAR members absorbs the scenes where it is not. A pixel's water
probability is the mean of the two logistic margins (index beyond its threshold over
:data:`MARGIN_SCALE`), as the threshold member averages its polarisations.

Only pixels Sentinel-2's Scene Classification (SCL) calls clear are observed:
:data:`SCL_NOT_OBSERVED` (no data, saturated or defective, cloud shadow, cloud medium and high
probability, thin cirrus, snow) leaves the member out of the vote there. Scenes without green,
NIR, SWIR1 and SCL bands (e.g. 8-bit RGB) are left to the optical segmenter.
Per pixel the earliest clear post-event scene decides (the latest before the event).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from terrawatch.errors import InputError
from terrawatch.tasks.core.bands import SCL_INVALID, resolve_band
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.load import read_window

logger = logging.getLogger(__name__)

SPECTRAL_BANDS: tuple[str, ...] = ("green", "nir", "swir16", "scl")
"""Bands the rule reads: Sentinel-2 B03, B08, B11 and the Scene Classification."""
NDWI_THRESHOLD = 0.0
"""McFeeters (1996): NDWI above 0 is water."""
MNDWI_THRESHOLD = 0.0
"""Xu (2006): MNDWI above 0 is water."""
MARGIN_SCALE = 0.05
"""Index units beyond a threshold that make a logistic margin of about 0.73 (0.15: 0.95)."""
SCL_SNOW = 11
"""SCL class snow and ice: bright in green, dark in SWIR, so MNDWI calls it water."""
SCL_NOT_OBSERVED: frozenset[int] = SCL_INVALID | {SCL_SNOW}
"""SCL classes where the member does not vote: 0 no data, 1 saturated or defective, 3 cloud
shadow, 8 and 9 cloud medium and high probability, 10 thin cirrus, 11 snow."""


@dataclass(frozen=True)
class SpectralView:
    """What the spectral rule found over one window."""

    observed: np.ndarray
    """bool: a clear pixel of some scene."""
    probability: np.ndarray
    """float32 water probability (NaN where not observed)."""
    observed_at: np.ndarray
    """int64 seconds since 1970-01-01 UTC of the deciding scene, -1 where none."""


def spectral_items(items: tuple[dict, ...] | list[dict]) -> tuple[dict, ...]:
    """The items that carry every band of :data:`SPECTRAL_BANDS` (others are skipped, logged)."""
    kept = []
    for item in items:
        try:
            for band in SPECTRAL_BANDS:
                resolve_band(item, band)
        except InputError as err:
            logger.info("optical scene %s left out of the NDWI/MNDWI rule: %s", item["id"], err)
            continue
        kept.append(item)
    return tuple(kept)


def _margin(beyond: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-beyond / MARGIN_SCALE))


def normalised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b), NaN where the sum is not positive."""
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (a - b) / total, np.nan).astype(np.float32)


def water_probability(green: np.ndarray, nir: np.ndarray, swir16: np.ndarray) -> np.ndarray:
    """Mean of the NDWI and MNDWI logistic margins over their thresholds (reflectance in)."""
    ndwi = normalised_difference(green, nir)
    mndwi = normalised_difference(green, swir16)
    return (0.5 * (_margin(ndwi - NDWI_THRESHOLD) + _margin(mndwi - MNDWI_THRESHOLD))).astype(
        np.float32
    )


def clear(scl: np.ndarray) -> np.ndarray:
    """Where the SCL class lets the member vote (NaN: no data)."""
    return np.isfinite(scl) & ~np.isin(scl, sorted(SCL_NOT_OBSERVED))


def _item_seconds(item: dict) -> int:
    props = item.get("properties", {})
    text = str(props.get("datetime") or props.get("start_datetime")).replace("Z", "")
    return int(np.datetime64(text.split("+")[0], "s").astype(np.int64))


def spectral_view(
    items: tuple[dict, ...],
    grid: GridSpec,
    window: tuple[slice, slice] | None,
    loader: str = "odc",
    *,
    latest_first: bool = False,
) -> SpectralView:
    """The rule over ``window`` of ``grid``: per pixel the first clear scene in time order."""
    subgrid = GridSpec.from_geobox(grid.geobox[window]) if window is not None else grid
    shape = subgrid.shape
    observed = np.zeros(shape, bool)
    probability = np.full(shape, np.nan, np.float32)
    seconds = np.full(shape, -1, np.int64)
    ordered = sorted(items, key=_item_seconds, reverse=latest_first)
    for item in ordered:
        read = read_window([item], subgrid, SPECTRAL_BANDS, loader=loader)  # type: ignore[arg-type]
        bands = read.bands
        take = read.valid & clear(bands["scl"]) & ~observed
        if not take.any():
            continue
        prob = water_probability(bands["green"], bands["nir"], bands["swir16"])
        take &= np.isfinite(prob)
        probability[take] = prob[take]
        seconds[take] = _item_seconds(item)
        observed |= take
        if observed.all():
            break
    return SpectralView(observed, probability, seconds)


def spectral_settings(pre: tuple[dict, ...], post: tuple[dict, ...]) -> dict:
    """The rule's settings and scenes, for the cube's provenance."""
    return {
        "rule": "water = mean of the logistic margins of NDWI (McFeeters 1996) and MNDWI "
        "(Xu 2006) over their thresholds >= 0.5",
        "ndwi_threshold": NDWI_THRESHOLD,
        "mndwi_threshold": MNDWI_THRESHOLD,
        "margin_scale": MARGIN_SCALE,
        "bands": list(SPECTRAL_BANDS),
        "scl_not_observed": sorted(SCL_NOT_OBSERVED),
        "items_pre": [i["id"] for i in pre],
        "items_post": [i["id"] for i in post],
    }
