"""The weights-free ``threshold`` member: SAR water from backscatter thresholds and a decrease test.

Calm open water is a specular reflector: it sends the radar pulse away from the sensor and is
the darkest surface in a Sentinel-1 scene (about -20 to -30 dB in VV), while land returns
-15 to 0 dB. A scene holding both has a bimodal dB histogram, and the valley between the two
modes is the water threshold of that scene. Whole-scene histograms rarely show it (water is a
few percent of a scene), so the threshold is found split-based (Martinis et al. 2009, NHESS 9;
Chini et al. 2017, IEEE TGRS 55(12)): the scene is cut into tiles, the tiles whose own
histogram is clearly bimodal (Otsu's split, then Ashman's D, Ashman et al. 1994, AJ 108, of at least
:data:`ASHMAN_D_MIN`, with enough pixels on each side and a dark class dark enough to be water)
are pooled, and Otsu's threshold of the pooled pixels is the scene's. A scene without a bimodal
tile falls back to :data:`GLOBAL_THRESHOLD_DB`.

Per pixel, water needs both: darker than its scene's threshold, and either darker than before
the event by :data:`DECREASE_DB` (the change test) or already water before it (permanent
water does not get darker). A pixel's water probability is the product of two logistic
margins (dB beyond each threshold over :data:`MARGIN_SCALE_DB`), which the ensemble uses for
its likelihood (:mod:`tasks.flood.consensus`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.filters import threshold_otsu

GLOBAL_THRESHOLD_DB: dict[str, float] = {"vv": -18.0, "hh": -18.0, "vh": -24.0, "hv": -24.0}
"""Fallback water threshold per polarisation (dB) for a scene with no bimodal tile.

This project's choice, not a value taken from one published algorithm: calm water in
Sentinel-1 IW gamma0 lies at about -20 to -30 dB VV and -25 to -35 dB VH, the dark tail of dry
land (bare soil, short grass) at about -15 dB VV and -22 dB VH; -18 / -24 dB sit between the
two, inside the -15 to -20 dB VV range of the fixed thresholds used across the Sentinel-1
flood literature. Recorded per scene (``method: global-fallback``) in the cube's provenance.
"""
DECREASE_DB = -3.0
"""Post-minus-pre dB change a new water pixel must show (a halving of the backscatter)."""
MARGIN_SCALE_DB = 1.0
"""dB beyond a threshold that make a logistic margin of about 0.73 (3 dB: 0.95)."""
ASHMAN_D_MIN = 3.0
"""Ashman's D a tile's Otsu split must reach for the tile to count as bimodal.

Ashman et al. (1994) call two Gaussian modes separated at D > 2, but that is for fitted
components: the two halves of one Gaussian cut at its mean already give D = 2.67 (means
+-0.80 sigma, spreads 0.60 sigma), so on a hard split 3 is the least value a single mode
cannot reach. Water against land tiles score about 5-8."""
MIN_CLASS_FRACTION = 0.1
"""Least share of a tile's pixels on each side of its split for the tile to count."""
WATER_MEAN_MAX_DB: dict[str, float] = {"vv": -15.0, "hh": -15.0, "vh": -20.0, "hv": -20.0}
"""The dark mode of a bimodal tile must be at least this dark to be water (not two land types)."""
THRESHOLD_RANGE_DB: dict[str, tuple[float, float]] = {
    "vv": (-26.0, -12.0),
    "hh": (-26.0, -12.0),
    "vh": (-33.0, -17.0),
    "hv": (-33.0, -17.0),
}
"""A pooled threshold outside this range is not a water/land valley: use the fallback."""
TILE_PIXELS = 64
"""Side of the split tiles in pixels of the analysis grid (smaller grids use smaller tiles)."""


@dataclass(frozen=True)
class SceneThreshold:
    """The water threshold of one scene and polarisation, and how it was found."""

    pol: str
    """Polarisation, lower case."""
    db: float
    """Threshold in dB: water is darker."""
    method: str
    """``split-otsu`` (bimodal tiles found) or ``global-fallback``."""
    tiles: int
    """Bimodal tiles pooled (0 for the fallback)."""

    def to_attrs(self) -> dict:
        """JSON form for the cube's provenance."""
        return {
            "pol": self.pol,
            "db": round(self.db, 3),
            "method": self.method,
            "tiles": self.tiles,
        }


def ashman_d(low: np.ndarray, high: np.ndarray) -> float:
    """Ashman's D of two samples: mode separation in units of their pooled spread."""
    spread = np.sqrt(low.var() + high.var())
    return float(np.sqrt(2.0) * abs(high.mean() - low.mean()) / spread) if spread > 0 else np.inf


def bimodal_split(values: np.ndarray, pol: str) -> float | None:
    """Otsu's threshold of a tile's dB values when bimodal with a water mode, else None."""
    if values.size < 16 or np.ptp(values) == 0:
        return None
    split = float(threshold_otsu(values))
    low, high = values[values < split], values[values >= split]
    share = min(low.size, high.size) / values.size
    if share < MIN_CLASS_FRACTION or low.mean() > WATER_MEAN_MAX_DB[pol]:
        return None
    return split if ashman_d(low, high) >= ASHMAN_D_MIN else None


def scene_threshold(db: np.ndarray, pol: str, tile: int | None = None) -> SceneThreshold:
    """The split-based water threshold of one scene (``db``: 2-D dB, NaN where no data).

    Tiles with less than 90 % valid pixels are skipped; a scene without a bimodal tile, or
    whose pooled threshold falls outside :data:`THRESHOLD_RANGE_DB`, gets
    :data:`GLOBAL_THRESHOLD_DB`.
    """
    pol = pol.lower()
    side = tile or max(16, min(TILE_PIXELS, min(db.shape) // 4))
    pooled: list[np.ndarray] = []
    for y0 in range(0, db.shape[0] - side + 1, side):
        for x0 in range(0, db.shape[1] - side + 1, side):
            block = db[y0 : y0 + side, x0 : x0 + side]
            values = block[np.isfinite(block)]
            if values.size >= 0.9 * block.size and bimodal_split(values, pol) is not None:
                pooled.append(values)
    if pooled:
        value = float(threshold_otsu(np.concatenate(pooled)))
        low, high = THRESHOLD_RANGE_DB[pol]
        if low <= value <= high:
            return SceneThreshold(pol, value, "split-otsu", len(pooled))
    return SceneThreshold(pol, GLOBAL_THRESHOLD_DB[pol], "global-fallback", 0)


def _margin(db_beyond: np.ndarray) -> np.ndarray:
    """Logistic of dB beyond a threshold (positive: on the water side)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-db_beyond / MARGIN_SCALE_DB))


def dark_probability(post: dict[str, np.ndarray], thresholds: dict[str, float]) -> np.ndarray:
    """Mean over polarisations of the logistic margin below each scene threshold (NaN: no data)."""
    margins = [_margin(thresholds[pol] - db) for pol, db in post.items() if pol in thresholds]
    return np.mean(margins, axis=0).astype(np.float32)


def water_probability(
    dark: np.ndarray, post_co: np.ndarray, before_co: np.ndarray, water_before: np.ndarray
) -> np.ndarray:
    """Water probability of the threshold member: dark now, and darker than before or water then.

    Args:
        dark: :func:`dark_probability` of the post-event scene.
        post_co: Co-polarised dB after the event.
        before_co: Co-polarised dB before it (median of the reference scenes; NaN: none).
        water_before: Where the pixel was water in most reference scenes.
    """
    decrease = _margin(DECREASE_DB - (post_co - before_co))
    decrease = np.where(np.isfinite(before_co), decrease, 1.0)  # no reference: darkness alone
    return np.where(water_before, dark, dark * decrease).astype(np.float32)
