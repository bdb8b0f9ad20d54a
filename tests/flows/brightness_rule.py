"""Test double of the segmenter only: SegEarth-OV's inference API, classes by RGB brightness.

Plugged in through ``--model-factory tests.flows.brightness_rule:build`` (``ModelSpec.factory``)
because the tiny random CLIP of the fixtures gives every pixel the same class, and SPECIAL
cannot learn a class its zero-shot map never predicts. Class ``k`` of ``C`` scores by the
distance of the pixel's mean RGB to the grey ``(k + 0.5) / C``: dark, mid, bright surfaces.
Dask workers import it by name (see ``tests.flows.water_rule``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from terrawatch.models.classes import ClassNames, parse_class_names

SHARPNESS = 40.0


class BrightnessRule:
    """``set_classes``, ``classes``, ``predict``, ``predict_logits``, ``provenance``, ``device``."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self._classes: ClassNames | None = None

    @property
    def classes(self) -> ClassNames:
        if self._classes is None:
            raise RuntimeError("no classes set: call set_classes([...]) first")
        return self._classes

    def set_classes(self, names: Sequence[str]) -> ClassNames:
        self._classes = parse_class_names(names)
        return self._classes

    def predict_logits(self, images: Tensor) -> Tensor:
        """Probabilities ``[B, C, H, W]`` from the mean RGB's distance to each class grey."""
        count = len(self.classes.names)
        greys = (torch.arange(count, dtype=torch.float32) + 0.5) / count
        brightness = images.float().mean(dim=1, keepdim=True)
        distance = (brightness - greys.view(1, -1, 1, 1)) ** 2
        return torch.softmax(-SHARPNESS * distance * count, dim=1)

    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        confidence, labels = self.predict_logits(images).max(dim=1)
        return labels.to(torch.uint8), confidence

    def provenance(self) -> dict[str, Any]:
        rule = f"class by mean RGB brightness (sharpness {SHARPNESS})"
        return {
            "backbone": "brightness-rule",
            "rule": rule,
            "clip_sha256": hashlib.sha256(rule.encode()).hexdigest(),
        }


def build(spec: Any, device: str | None = None) -> BrightnessRule:
    """The ``ModelSpec.factory`` entry point."""
    return BrightnessRule()
