"""Consensus of the flood members per pixel: water by majority, likelihood from agreement.

Each member (``threshold``, ``alignearth``, ``optical``) hands in where it observed the pixel
and its probability of water there. A member that did not observe a pixel does not vote on it.
Water is where most observing members say water (probability >= 0.5); a tie is settled by
the pooled probability. ``likelihood`` is that pooled probability in percent: the members'
log-odds added up (the logarithmic opinion pool of independent members; each probability
clipped to :data:`PROBABILITY_CLIP`, so that no single member decides alone with certainty).
Two members sure of water give more than either alone, a disagreement lands near the more
certain one's side but far from 0 or 100, and ``source`` has one bit per observing member.
A member with several views of a pixel (``optical``: its NDWI/MNDWI rule and, with weights, its
segmenter) votes once there, with the mean of its views' probabilities (:func:`merge_views`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terrawatch.tasks.core.cube_types import NODATA

MEMBERS = ("threshold", "alignearth", "optical")
"""Ensemble members; member ``i`` is bit ``2**i`` of the ``source`` layer."""
MEMBER_BITS = {name: 1 << i for i, name in enumerate(MEMBERS)}
"""``source`` bit of each member."""
PROBABILITY_CLIP = (0.005, 0.995)
"""A member's probability is clipped to this range before pooling (finite log-odds)."""


@dataclass(frozen=True)
class Vote:
    """One member's view of a tile."""

    member: str
    """A name of :data:`MEMBERS`."""
    observed: np.ndarray
    """bool: where the member saw the ground."""
    probability: np.ndarray
    """float water probability 0..1 (ignored where not observed)."""


@dataclass(frozen=True)
class Consensus:
    """The ensemble's layers over a tile."""

    water: np.ndarray
    """uint8 1 water, 0 not water, 255 no member observed the pixel."""
    likelihood: np.ndarray
    """uint8 0..100 pooled water probability, 255 where no member observed."""
    source: np.ndarray
    """uint8 bit flags of the members that observed the pixel (0: none)."""


def merge_views(votes: list[Vote]) -> list[Vote]:
    """One vote per member: where several views of one member observed a pixel, their mean."""
    merged: dict[str, Vote] = {}
    for vote in votes:
        seen = vote.observed & np.isfinite(vote.probability)
        prob = np.where(seen, vote.probability, np.nan).astype(np.float32)
        earlier = merged.get(vote.member)
        if earlier is None:
            merged[vote.member] = Vote(vote.member, seen, prob)
            continue
        both = earlier.observed & seen
        mean = np.where(both, 0.5 * (earlier.probability + prob), earlier.probability)
        mean = np.where(seen & ~earlier.observed, prob, mean).astype(np.float32)
        merged[vote.member] = Vote(vote.member, earlier.observed | seen, mean)
    return list(merged.values())


def consensus(votes: list[Vote], shape: tuple[int, int]) -> Consensus:
    """Majority of the observing members per pixel, and their pooled probability as likelihood."""
    votes = merge_views(votes)
    count = np.zeros(shape, np.int16)
    water_votes = np.zeros(shape, np.int16)
    log_odds = np.zeros(shape, np.float32)
    source = np.zeros(shape, np.uint8)
    for vote in votes:
        seen = vote.observed & np.isfinite(vote.probability)
        prob = np.clip(np.where(seen, vote.probability, 0.5), *PROBABILITY_CLIP)
        count += seen
        water_votes += seen & (prob >= 0.5)
        log_odds += np.where(seen, np.log(prob / (1 - prob)), 0.0).astype(np.float32)
        source[seen] |= MEMBER_BITS[vote.member]
    observed = count > 0
    pooled = 1.0 / (1.0 + np.exp(-log_odds))
    water = (2 * water_votes > count) | ((2 * water_votes == count) & (pooled >= 0.5))
    water_layer = np.where(observed, water, NODATA).astype(np.uint8)
    likelihood = np.where(observed, np.rint(100 * pooled), NODATA).astype(np.uint8)
    return Consensus(water_layer, likelihood, source)
