"""The threshold member over one tile: water after the event, reference water and exclusion.

- Post-event: per pixel the earliest post-event scene that saw it (``observed_at``), dark against
  that scene's own threshold, and darker than before
  (:func:`tasks.flood.threshold.water_probability`).
- Reference (the scenes of the ``--reference-days`` window before the event): ``reference_water``
  where the pixel was dark in most scenes that saw it; the exclusion bit
  :data:`EXCLUDE_LOW_BACKSCATTER` where it was dark in every one of at least
  :data:`MIN_REFERENCE_SCENES` (sand, tarmac, radar shadow: SAR cannot see water arrive there;
  permanent water is dark in every scene too and is also ``reference_water``); the median dB is
  the "before" of the decrease test; the latest scene gives water before the event.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.flood.stack import DbStack
from terrawatch.tasks.flood.threshold import (
    GLOBAL_THRESHOLD_DB,
    dark_probability,
    water_probability,
)

EXCLUDE_LOW_BACKSCATTER = 1
"""``exclusion`` bit: below the water threshold in every reference scene."""
MIN_REFERENCE_SCENES = 2
"""Reference scenes a pixel needs before "dark in every one" excludes it."""
NO_TIME = -1
"""``observed_at`` where no post-event scene saw the pixel."""

Thresholds = dict[str, dict[str, float]]
"""Scene key (its item ids, comma-joined) -> polarisation -> threshold in dB."""


@dataclass(frozen=True)
class ThresholdView:
    """What the threshold member found over one tile window."""

    observed: np.ndarray
    """bool: a post-event scene saw the pixel."""
    probability: np.ndarray
    """float32 water probability after the event (NaN where not observed)."""
    observed_at: np.ndarray
    """int64 seconds since 1970-01-01 UTC of the post-event scene used, :data:`NO_TIME` if none."""
    pre_observed: np.ndarray
    """bool: a reference scene saw the pixel."""
    pre_probability: np.ndarray
    """float32 water probability in the latest reference scene that saw it."""
    reference_water: np.ndarray
    """uint8 1 water in most reference scenes, 0 not, 255 no reference scene."""
    exclusion: np.ndarray
    """uint8 exclusion bits (0: none)."""


def _scene_dark(stack: DbStack, index: int, thresholds: Thresholds) -> np.ndarray:
    found = thresholds.get(stack.keys[index], {})
    scene = {pol: db[index] for pol, db in stack.db.items()}
    return dark_probability(scene, {p: found.get(p, GLOBAL_THRESHOLD_DB[p]) for p in scene})


def _first_valid(layers: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel the first finite layer's value and that layer's index (-1: none)."""
    value = np.full(layers[0].shape, np.nan, np.float32)
    index = np.full(layers[0].shape, -1, np.int64)
    for i, layer in enumerate(layers):
        take = (index < 0) & np.isfinite(layer)
        value[take] = layer[take]
        index[take] = i
    return value, index


def threshold_view(
    post: DbStack, reference: DbStack | None, thresholds: Thresholds
) -> ThresholdView:
    """The member's layers over one window (both stacks on the same window)."""
    shape = post.co.shape[1:]
    dark_post = [_scene_dark(post, i, thresholds) for i in range(len(post.keys))]
    dark, which = _first_valid(dark_post)
    co_post, _ = _first_valid(list(post.co))
    observed = which >= 0
    seconds = post.times.astype("datetime64[s]").astype(np.int64)
    observed_at = np.where(observed, seconds[np.maximum(which, 0)], NO_TIME)
    reference_water = np.full(shape, NODATA, np.uint8)
    exclusion = np.zeros(shape, np.uint8)
    before = np.full(shape, np.nan, np.float32)
    pre_prob = np.full(shape, np.nan, np.float32)
    if reference is not None and reference.keys:
        dark_ref = np.stack(
            [_scene_dark(reference, i, thresholds) for i in range(len(reference.keys))]
        )
        seen = np.isfinite(dark_ref)
        n_seen, n_dark = seen.sum(0), (seen & (dark_ref >= 0.5)).sum(0)
        reference_water = np.where(n_seen > 0, 2 * n_dark > n_seen, NODATA).astype(np.uint8)
        always_dark = (n_seen >= MIN_REFERENCE_SCENES) & (n_dark == n_seen)
        exclusion[always_dark] |= EXCLUDE_LOW_BACKSCATTER
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: no reference
            before = np.nanmedian(reference.co, axis=0).astype(np.float32)
        pre_prob, _ = _first_valid(list(dark_ref[::-1]))  # the latest reference scene first
    probability = water_probability(dark, co_post, before, reference_water == 1)
    probability[~observed] = np.nan
    return ThresholdView(
        observed,
        probability,
        observed_at.astype(np.int64),
        np.isfinite(pre_prob),
        pre_prob,
        reference_water,
        exclusion,
    )


@dataclass(frozen=True)
class ThresholdPlan:
    """What a tile of the threshold member needs besides the post-event scenes: references only."""

    reference: tuple[dict, ...]
    """SAR items of the reference window (same orbit direction and polarisations as post)."""
    pols: tuple[str, ...]
    """Polarisations read: the co-pol and, where the scenes have it, the cross-pol."""
    thresholds: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]
    """Per scene key, (polarisation, threshold dB) pairs: hashable form of :data:`Thresholds`."""

    def scene_thresholds(self) -> Thresholds:
        """The thresholds as a dict."""
        return {key: dict(pairs) for key, pairs in self.thresholds}
