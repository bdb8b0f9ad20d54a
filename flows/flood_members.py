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
    if method in ("alignearth", "optical", "ensemble"):
        model.resolve_weights(optical=optical and method != "alignearth")
        named = {"alignearth": ("alignearth",), "optical": ("optical",)}
        return named.get(method, ("threshold", "alignearth", *(("optical",) if optical else ())))
    members = ["threshold"]
    try:
        model.resolve_weights(optical=optical)
    except WeightsNotFoundError as err:
        if model.weights or (optical and model.optical_weights):
            raise  # a path the user gave must exist
        logger.warning(
            "no segmenter weights (%s); --method auto runs the weights-free threshold member only",
            err,
        )
        return tuple(members)
    members.append("alignearth")
    if optical:
        members.append("optical")
    return tuple(members)
