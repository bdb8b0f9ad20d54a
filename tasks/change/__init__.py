"""Change: open-vocabulary change between two periods (DynamicEarth M-C-I / I-M-C).

The detector's choices and defaults live here, in a module that imports nothing, so the flow's
options and the command line's ``--help`` name them without loading the change tasks.
"""

PROPOSERS: tuple[str, ...] = ("auto", "superpixel", "sam")
"""Mask proposers: ``auto`` (:mod:`tasks.change.steps`), weights-free SLIC superpixels, or SAM."""
COMPARATORS: tuple[str, ...] = ("auto", "clip", "dinov2")
"""Feature comparators: ``auto``, the segmenter's CLIP patch tokens, or DINOv2."""
DEFAULT_PROPOSER = "auto"
"""SAM when its weights (and DINOv2's) are in the weights directory, else superpixels."""
DEFAULT_COMPARATOR = "auto"
"""DINOv2 when its weights (and SAM's) are in the weights directory, else CLIP."""
BUILT_PROPOSERS: tuple[str, ...] = ("superpixel", "sam")
"""What a worker builds: ``auto`` is resolved in the flow's inputs step."""
BUILT_COMPARATORS: tuple[str, ...] = ("clip", "dinov2")
