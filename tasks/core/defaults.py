"""Defaults and limits that the tasks and the flows' option groups share: one home each.

The flows' option groups (:mod:`terrawatch.flows.options`) and the task dataclasses take these
values from here, so a default is changed in one place. This module imports nothing heavy: the
command line reads it to build its ``--help``.
"""

from __future__ import annotations

from terrawatch.errors import InputError

HALO = 112
"""Pixels read around each output chunk for context (the segmenter's window stride)."""

MIN_CHUNK = 64
"""Smallest output chunk (tile) side in pixels: smaller tiles are mostly halo."""

SENSOR_GSD: dict[str, float] = {"sentinel-2": 10.0, "sentinel-1": 10.0, "landsat": 30.0}
"""Inference pixel size (m) per collection-name prefix: the sensor's finest common band."""

SAR_SPECKLE = "lee"
"""Speckle filter of SAR composites (``lee``, ``refined_lee`` or None)."""

SAR_SPECKLE_WINDOW = 7
"""Speckle filter window in pixels (refined Lee is defined on 7x7 only)."""

SAR_COMPOSITE = "grey"
"""SAR model input: ``grey`` (co-pol in 3 channels, what AlignEarth was shown on)."""


def check_chunk(chunk: int) -> None:
    """Refuse a chunk that is not an int of at least :data:`MIN_CHUNK` pixels.

    Raises:
        InputError: ``chunk`` is not an int, or smaller than :data:`MIN_CHUNK`.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < MIN_CHUNK:
        raise InputError(
            f"chunk must be an int >= {MIN_CHUNK} (pixels per tile side), got {chunk!r}"
        )
