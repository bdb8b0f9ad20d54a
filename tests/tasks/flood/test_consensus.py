"""Consensus of the members: majority of those that observed a pixel, likelihood from agreement."""

from __future__ import annotations

import numpy as np

from terrawatch.tasks.flood.consensus import MEMBER_BITS, Vote, consensus

SHAPE = (1, 4)
ALL = np.ones(SHAPE, bool)


def _vote(member: str, probability: list[float], observed=ALL) -> Vote:
    return Vote(member, observed, np.array([probability], np.float32))


def test_agreement_raises_likelihood_and_disagreement_lowers_it():
    alone = consensus([_vote("threshold", [0.8, 0.8, 0.2, 0.8])], SHAPE)
    both = consensus(
        [_vote("threshold", [0.8, 0.8, 0.2, 0.8]), _vote("alignearth", [1.0, 0.0, 0.0, 0.9])],
        SHAPE,
    )
    assert alone.likelihood.tolist() == [[80, 80, 20, 80]]
    assert both.likelihood[0, 0] > alone.likelihood[0, 0]  # agree on water
    assert both.likelihood[0, 1] < alone.likelihood[0, 1]  # disagree
    assert both.likelihood[0, 2] < alone.likelihood[0, 2]  # agree on land
    assert both.water.tolist() == [[1, 0, 0, 1]]  # a tie goes to the mean probability


def test_a_member_that_did_not_observe_a_pixel_does_not_vote():
    blind = np.array([[True, False, False, True]])
    votes = [
        _vote("threshold", [0.9, 0.9, 0.9, 0.9]),
        _vote("alignearth", [0.0, 0.0, 0.0, 0.1], observed=blind),
        _vote("optical", [0.0, 0.0, 0.0, 0.0], observed=blind),
    ]
    found = consensus(votes, SHAPE)
    assert found.water.tolist() == [[0, 1, 1, 0]]  # outvoted where all three saw it
    assert found.likelihood[0, 1] == 90  # only the threshold member's view counts there
    assert found.likelihood[0, 0] < 10  # two sure members outweigh one
    bits = MEMBER_BITS["threshold"] | MEMBER_BITS["alignearth"] | MEMBER_BITS["optical"]
    assert found.source.tolist() == [[bits, 1, 1, bits]]


def test_no_member_observed_is_no_data():
    found = consensus([_vote("threshold", [0.9] * 4, observed=np.zeros(SHAPE, bool))], SHAPE)
    assert found.water.tolist() == [[255] * 4] and found.likelihood.tolist() == [[255] * 4]
    assert found.source.tolist() == [[0] * 4]


def test_a_member_with_two_views_votes_once_with_their_mean():
    """The optical member's rule and segmenter: one vote, their mean where both saw it."""
    first = np.array([[True, True, False, False]])
    second = np.array([[True, False, True, False]])
    both = consensus(
        [_vote("threshold", [0.1, 0.1, 0.1, 0.1]), _vote("optical", [0.9, 0.9, 0.5, 0.5], first),
         _vote("optical", [0.7, 0.5, 0.8, 0.5], second)],
        SHAPE,
    )  # fmt: skip
    assert both.source.tolist() == [[5, 5, 5, 1]]
    # pooled log-odds of 0.1 and the optical mean 0.8 (first pixel), 0.9, 0.8, and 0.1 alone
    expect = [1 / (1 + 0.9 / 0.1 * 0.2 / 0.8), 1 / (1 + 0.9 / 0.1 * 0.1 / 0.9), 0.0, 0.1]
    expect[2] = expect[0]
    assert both.likelihood.tolist() == [[round(100 * p) for p in expect]]
