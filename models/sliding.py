"""Sliding-window placement and padding, as SegEarth-OV's ``forward_slide`` places windows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """One crop of an image: ``image[:, :, top:top+height, left:left+width]``."""

    image: int
    """Index of the image in the batch."""
    top: int
    """First row."""
    left: int
    """First column."""
    height: int
    """Rows (the window size, or the image height when smaller)."""
    width: int
    """Columns."""


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis; the last window is shifted inward to end at the border.

    Same count as the reference, ``max(length - window + stride - 1, 0) // stride + 1``.
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be > 0, got window={window}, stride={stride}")
    count = max(length - window + stride - 1, 0) // stride + 1
    return [max(min(i * stride + window, length) - window, 0) for i in range(count)]


def plan_windows(batch: int, height: int, width: int, window: int, stride: int) -> list[Window]:
    """All windows of a batch of equally sized images, image-major."""
    rows = window_starts(height, window, stride)
    cols = window_starts(width, window, stride)
    return [
        Window(image, top, left, min(window, height), min(window, width))
        for image in range(batch)
        for top in rows
        for left in cols
    ]


def pad_to_multiple(height: int, width: int, multiple: int) -> tuple[int, int, int, int]:
    """Symmetric zero padding ``(left, right, top, bottom)`` up to a multiple of the patch size.

    Only windows smaller than the window size (images smaller than one window) need it.
    """
    pad_w = -width % multiple
    pad_h = -height % multiple
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2
