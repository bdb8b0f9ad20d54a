"""Which flood members run: ``--method`` against the weights and scenes at hand.

``auto`` runs every member that can: the weights-free ``threshold`` member always, ``alignearth``
where its weights are found (or a ``--model-factory`` segmenter is given), ``optical`` where
post-event optical scenes were found (on by default, ``--no-optical`` turns it off): its
weights-free NDWI/MNDWI rule on Sentinel-2 scenes, joined by the SegEarth-OV segmenter's water
classes where the optical CLIP weights are found. Naming ``alignearth`` (or ``ensemble``) makes
its weights required: a missing file is the usual one-line WeightsNotFoundError. The optical
segmenter is never required (its member runs weights-free), but a ``--optical-weights`` path
given must exist.
"""

from __future__ import annotations

import logging

from terrawatch.errors import InputError, WeightsNotFoundError
from terrawatch.flows.options import FloodModelOptions

logger = logging.getLogger(__name__)


def flood_members(model: FloodModelOptions, optical: bool) -> tuple[str, ...]:
    """The members of a run, in :data:`tasks.flood.consensus.MEMBERS` order.

    Args:
        model: The model options (``method``, weights, factory).
        optical: Whether the optical member can run: post-event optical scenes were found that
            its NDWI/MNDWI rule can read, or any with the optical segmenter's weights
            (:func:`optical_segmenter`).

    Raises:
        InputError: ``--method optical`` without usable optical scenes.
        WeightsNotFoundError: a member named by ``--method`` lacks its weights.
    """
    method = model.method
    if method == "threshold":
        return ("threshold",)
    if method == "optical" and not optical:
        raise InputError(
            "--method optical needs cloud-free optical scenes after the event: none were found "
            "that the member can read (Sentinel-2 L2A with green, NIR, SWIR1 and SCL bands, or "
            "any optical scene with SegEarth-OV weights); drop --no-optical, widen --post-days, "
            "raise --max-cloud, or use --method auto"
        )
    if method == "optical":
        return ("optical",)
    if method in ("alignearth", "ensemble"):
        model.resolve_weights(optical=False)
        if method == "alignearth":
            return ("alignearth",)
        return ("threshold", "alignearth", *(("optical",) if optical else ()))
    members = ["threshold"]
    try:
        model.resolve_weights(optical=False)
        members.append("alignearth")
    except WeightsNotFoundError as err:
        if model.weights:
            raise  # a path the user gave must exist
        logger.warning("no AlignEarth weights (%s); --method auto runs without it", err)
    if optical:
        members.append("optical")
    if members == ["threshold"]:
        logger.warning(
            "no segmenter weights: --method auto runs the weights-free threshold member only"
        )
    return tuple(members)


def optical_segmenter(model: FloodModelOptions) -> bool:
    """Whether the optical segmenter can join the optical member: its weights are found (or a
    ``--model-factory`` builds it).

    Raises:
        WeightsNotFoundError: a ``--optical-weights`` path given does not exist.
    """
    try:
        resolve_optical_weights(model)
    except WeightsNotFoundError as err:
        if model.optical_weights:
            raise  # a path the user gave must exist
        logger.warning(
            "no optical CLIP weights (%s); the optical member runs its NDWI/MNDWI rule alone", err
        )
        return False
    return True


def resolve_optical_weights(model: FloodModelOptions) -> None:
    """The optical CLIP's checkpoint (nothing for a ``factory`` segmenter)."""
    if model.factory:
        return
    from terrawatch.models.weights import resolve_weights

    resolve_weights(model.backbone, model.optical_weights)
