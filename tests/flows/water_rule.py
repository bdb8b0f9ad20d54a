"""Test double of the segmenter only: SegEarth-OV's inference API with a fixed water rule.

Plugged in through ``ModelSpec.factory = "tests.flows.water_rule:build"``, so every pipeline
step (search, SAR loading, speckle filter, composites, tiling, cube writes, publishing) runs for
real and only the model's answer is deterministic: a pixel is water where the first channel is
dark. On the SAR ``grey`` composite that channel is VV scaled from -25..0 dB, and calm water is
the darkest surface there (below about -16 dB, :data:`THRESHOLD`); on optical input it is red.

The Dask worker processes import this module by name. They are spawned with the test process's
``sys.path`` (multiprocessing's spawn start method replays it), which holds the repository root,
so ``tests.flows.water_rule`` imports there as it does here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from terrawatch.models.classes import ClassNames, parse_class_names

THRESHOLD = 0.35
"""First-channel value below which a pixel is water (VV: -25 + 0.35 x 25 = -16.25 dB)."""
SHARPNESS = 20.0
"""Slope of the water score around the threshold."""


class WaterRule:
    """``set_classes``, ``classes``, ``predict``, ``predict_logits``, ``provenance``, ``device``."""

    def __init__(self, sensor: str = "sar") -> None:
        self.sensor = sensor
        self.device = torch.device("cpu")
        self._classes: ClassNames | None = None
        self._water: Tensor | None = None

    @property
    def classes(self) -> ClassNames:
        """The current classes."""
        if self._classes is None:
            raise RuntimeError("no classes set: call set_classes([...]) first")
        return self._classes

    def set_classes(self, names: Sequence[str]) -> ClassNames:
        """Classes with a synonym containing ``water`` are the water classes."""
        classes = parse_class_names(names)
        flags = [any("water" in word.lower() for word in words) for words in classes.synonyms]
        self._classes, self._water = classes, torch.tensor(flags)
        return classes

    def predict_logits(self, images: Tensor) -> Tensor:
        """Scores ``[B, C, H, W]``: water classes sigmoid(darkness), the others its complement."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        water = torch.sigmoid(SHARPNESS * (THRESHOLD - images[:, 0].float()))
        scores = [water if flag else 1.0 - water for flag in self._water.tolist()]
        return torch.stack(scores, dim=1)

    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Labels ``uint8 [B, H, W]`` and confidence ``[B, H, W]``, as SegEarth-OV's."""
        confidence, labels = self.predict_logits(images).max(dim=1)
        return labels.to(torch.uint8), confidence

    def provenance(self) -> dict[str, Any]:
        """What the cube records about the model."""
        rule = f"water where channel 0 < {THRESHOLD} (sharpness {SHARPNESS})"
        return {
            "backbone": "water-rule",
            "sensor": self.sensor,
            "rule": rule,
            "clip_sha256": hashlib.sha256(rule.encode()).hexdigest(),
        }


def build(spec: Any, device: str | None = None) -> WaterRule:
    """The ``ModelSpec.factory`` entry point."""
    return WaterRule(spec.sensor)
