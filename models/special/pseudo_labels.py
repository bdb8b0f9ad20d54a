"""SegEarth-OV at two scales fused into class probabilities, with BvSB confidence (§8.2).

For each scale s in (1, 2): zoom the RGB by s (cubic spline), take SegEarth-OV's class
probabilities, zoom them back (cubic spline) and average, ``P = mean_s P_s``. The pseudo-label
is ``argmax P`` and its confidence BvSB = ``P(1) - P(2)`` (best minus second best).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy import ndimage

SCALES = (1.0, 2.0)


class ProbabilityModel(Protocol):
    """What the fusion needs of a segmenter: SegEarth-OV's ``predict_logits`` (class scores)."""

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class PseudoLabels:
    """The zero-shot map SPECIAL learns from."""

    probabilities: np.ndarray
    """Fused class probabilities ``[C, H, W]`` (float32)."""
    labels: np.ndarray
    """``argmax`` class index ``[H, W]`` (int16)."""
    confidence: np.ndarray
    """BvSB: best minus second-best fused probability ``[H, W]`` (float32, 0..1)."""


def zoom_to(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Cubic-spline zoom of ``[C, H, W]`` to exactly ``shape`` (scipy's ``zoom``, order 3)."""
    factors = (1.0, shape[0] / array.shape[1], shape[1] / array.shape[2])
    out = ndimage.zoom(array, factors, order=3, grid_mode=False)
    return out[:, : shape[0], : shape[1]]


def fuse_scales(
    model: ProbabilityModel, rgb: np.ndarray, scales: Sequence[float] = SCALES
) -> PseudoLabels:
    """Two-scale pseudo-labels of one RGB image ``[3, H, W]`` in 0..1.

    The zoomed RGB is clipped to 0..1 (the cubic spline overshoots at edges and SegEarth-OV
    accepts only 0..1); the reference feeds the overshoot to CLIP unclipped.
    """
    height, width = rgb.shape[1:]
    fused = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = rgb if size == (height, width) else zoom_to(rgb, size)
        image = np.clip(image, 0.0, 1.0).astype(np.float32)
        probs = model.predict_logits(torch.from_numpy(image)[None])[0].float().cpu().numpy()
        if probs.shape[1:] != (height, width):
            probs = zoom_to(probs, (height, width))
        fused = probs / len(scales) if fused is None else fused + probs / len(scales)
    return pseudo_labels_from_probabilities(fused)


def pseudo_labels_from_probabilities(probabilities: np.ndarray) -> PseudoLabels:
    """Labels and BvSB confidence of class probabilities ``[C, H, W]``."""
    probs = probabilities.astype(np.float32, copy=False)
    if probs.shape[0] < 2:
        raise ValueError("BvSB needs at least two classes")
    top2 = -np.partition(-probs, 1, axis=0)[:2]
    labels = probs.argmax(axis=0).astype(np.int16)
    return PseudoLabels(probs, labels, np.clip(top2[0] - top2[1], 0.0, 1.0))
