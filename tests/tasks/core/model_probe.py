"""Test double of the segmenter that records how many forward passes run at once.

Plugged in through ``ModelSpec.factory = "tests.tasks.core.model_probe:build"``; Dask worker
processes import it by name (spawned workers replay the test process's ``sys.path``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from terrawatch.models.classes import ClassNames, parse_class_names

FORWARD_SECONDS = 0.3
"""How long one forward pass takes: long enough for another tile's read to overlap it."""

_LOCK = threading.Lock()
_RUNNING = 0
_PEAK = 0


class SlowProbe:
    """``set_classes``, ``classes``, ``predict``, ``predict_logits``: class 0 everywhere."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self._classes: ClassNames | None = None

    @property
    def classes(self) -> ClassNames:
        """The current classes."""
        assert self._classes is not None
        return self._classes

    def set_classes(self, names: Sequence[str]) -> ClassNames:
        """Keep the classes."""
        self._classes = parse_class_names(names)
        return self._classes

    def predict_logits(self, images: Tensor) -> Tensor:
        """Scores ``[B, C, H, W]`` after :data:`FORWARD_SECONDS`, counting concurrent calls."""
        global _RUNNING, _PEAK
        with _LOCK:
            _RUNNING += 1
            _PEAK = max(_PEAK, _RUNNING)
        try:
            time.sleep(FORWARD_SECONDS)
            batch, _, height, width = images.shape
            scores = torch.zeros(batch, len(self.classes), height, width)
            scores[:, 0] = 1.0
            return scores
        finally:
            with _LOCK:
                _RUNNING -= 1

    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Labels ``uint8 [B, H, W]`` and confidence ``[B, H, W]``."""
        confidence, labels = self.predict_logits(images).max(dim=1)
        return labels.to(torch.uint8), confidence


def build(spec: Any, device: str | None) -> SlowProbe:
    """The factory named in ``ModelSpec.factory``."""
    return SlowProbe()


def peak_concurrent_forwards() -> int:
    """Most forward passes this process ever ran at the same time."""
    return _PEAK
