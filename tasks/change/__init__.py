"""Change: open-vocabulary change between two periods (DynamicEarth M-C-I / I-M-C).

The detector's choices and defaults live here, in a module that imports nothing, so the flow's
options and the command line's ``--help`` name them without loading the change tasks.
"""

PROPOSERS: tuple[str, ...] = ("superpixel", "sam")
"""Mask proposers: weights-free SLIC superpixels, or SAM."""
COMPARATORS: tuple[str, ...] = ("clip", "dinov2")
"""Feature comparators: the segmenter's CLIP patch tokens, or DINOv2."""
DEFAULT_PROPOSER = "superpixel"
DEFAULT_COMPARATOR = "clip"
