"""Pseudo-labels degraded the way zero-shot maps are, and the accuracy measures of the tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score


def zero_shot_like(
    truth: np.ndarray,
    valid: np.ndarray,
    classes: int,
    seed: int,
    block: int = 6,
    flip_fraction: float = 0.25,
    blur_sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, BvSB) from ground truth: coarse blocks, flipped blocks, blurred confidence.

    CLIP sees 16-pixel patches, so its map is blocky (each ``block`` x ``block`` cell takes its
    majority class); it is confidently wrong on whole regions (``flip_fraction`` of the cells get
    another class); its confidence is smooth and drops at region borders (BvSB of the Gaussian-
    blurred one-hot map, with multiplicative noise).
    """
    rng = np.random.default_rng(seed)
    labelled = truth >= 0
    nearest = ndimage.distance_transform_edt(~labelled, return_distances=False, return_indices=True)
    filled = truth[tuple(nearest)]
    height, width = truth.shape
    labels = np.empty_like(filled)
    for top in range(0, height, block):
        for left in range(0, width, block):
            cell = filled[top : top + block, left : left + block]
            majority = np.bincount(cell.ravel(), minlength=classes).argmax()
            if rng.random() < flip_fraction:
                majority = (majority + rng.integers(1, classes)) % classes
            labels[top : top + block, left : left + block] = majority
    one_hot = np.stack(
        [ndimage.gaussian_filter((labels == c).astype(float), blur_sigma) for c in range(classes)]
    )
    top2 = -np.sort(-one_hot, axis=0)[:2]
    confidence = (top2[0] - top2[1]) * rng.uniform(0.5, 1.0, truth.shape)
    labels = labels.astype(np.int16)
    labels[~valid] = -1
    return labels, confidence.astype(np.float32)


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """OA, AA (mean per-class recall) and Cohen's kappa over the labelled pixels."""
    mask = truth >= 0
    y, p = truth[mask], predicted[mask]
    return {
        "OA": float(accuracy_score(y, p)),
        "AA": float(balanced_accuracy_score(y, p)),
        "kappa": float(cohen_kappa_score(y, p)),
    }


def labelled_pixels(truth: np.ndarray, count: int, classes: int, seed: int) -> np.ndarray:
    """``count`` ground-truth pixels, as many per class (``-1`` elsewhere), as a team that
    labels each class would give them (``--labels``); drawn with ``seed``."""
    rng = np.random.default_rng(1000 + seed)
    clean = np.full(truth.shape, -1, np.int16)
    for c in range(classes):
        rows, cols = np.nonzero(truth == c)
        take = count // classes + (1 if c < count % classes else 0)
        pick = rng.choice(len(rows), min(take, len(rows)), replace=False)
        clean[rows[pick], cols[pick]] = c
    return clean
