"""Which flood members run: ``--method`` against the weights and scenes at hand.

``auto`` runs every member that can: the weights-free ``threshold`` member always, ``alignearth``
where its weights are found (or a ``--model-factory`` segmenter is given), ``optical`` with
``--optical`` scenes and weights. Naming a member (or ``ensemble``, all three) makes its weights
required: a missing file is the usual one-line WeightsNotFoundError.
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
        optical: Whether optical scenes are searched (``--optical``).

    Raises:
        InputError: ``--method optical`` without ``--optical``.
        WeightsNotFoundError: a member named by ``--method`` lacks its weights.
    """
    method = model.method
    if method == "threshold":
        return ("threshold",)
    if method == "optical" and not optical:
        raise InputError(
            "--method optical needs optical scenes: add --optical (cloud-free Sentinel-2 after "
            "the event), or use --method auto"
        )
    if method == "optical":
        resolve_optical_weights(model)
        return ("optical",)
    if method in ("alignearth", "ensemble"):
        model.resolve_weights(optical=optical and method == "ensemble")
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
        try:
            resolve_optical_weights(model)
            members.append("optical")
        except WeightsNotFoundError as err:
            if model.optical_weights:
                raise
            logger.warning("no optical CLIP weights (%s); --method auto runs without it", err)
    if members == ["threshold"]:
        logger.warning(
            "no segmenter weights: --method auto runs the weights-free threshold member only"
        )
    return tuple(members)


def resolve_optical_weights(model: FloodModelOptions) -> None:
    """The optical CLIP's checkpoint (nothing for a ``factory`` segmenter)."""
    if model.factory:
        return
    from terrawatch.models.weights import resolve_weights

    resolve_weights(model.backbone, model.optical_weights)
