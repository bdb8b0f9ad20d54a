"""DynamicEarth's comparators: latent bi-temporal matching (θ rule) and instance correspondence.

``bitemporal_match`` follows DynamicEarth's ``bi_match.py`` (an extension of AnyChange): the
feature maps of both dates are bilinearly upsampled (``align_corners=True``) to the image, each
mask's mean feature is taken on both dates, and a mask is changed when
``-cos(z1, z2) > cos(θ)``, i.e. ``cos(z1, z2) < cos(180° - θ)`` (θ = 145° -> cos < 0.819).
``instance_ceg`` follows ``ins_ceg.py``: a mask is changed when the sum of its IoUs with the
other date's masks is at most 0.01 (``shared/reference/algorithms.md`` §3.1-3.2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from terrawatch.models.proposals import MaskSet, mask_pixel_chunks


def interpolation_weights(
    size_out: int, size_in: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor, Tensor]:
    """1-D linear interpolation with ``align_corners=True`` as ``(low, high, weight_high)``.

    Output sample ``i`` is ``(1 - weight_high[i]) * x[low[i]] + weight_high[i] * x[high[i]]``,
    the source sample ``i * (size_in - 1) / (size_out - 1)`` as ``F.interpolate`` computes it.
    """
    scale = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    source = torch.arange(size_out, dtype=torch.float64, device=device) * scale
    low = source.floor().long().clamp(max=size_in - 1)
    high = (low + 1).clamp(max=size_in - 1)
    return low, high, (source - low).float()


def interpolation_matrix(size_out: int, size_in: int, device: torch.device | str = "cpu") -> Tensor:
    """``[size_out, size_in]`` matrix ``A`` of :func:`interpolation_weights`.

    Bilinear upsampling (``align_corners=True``) of a map ``X [h, w]`` to ``[H, W]`` is
    ``A X Bᵀ`` with ``A = interpolation_matrix(H, h)`` and ``B = interpolation_matrix(W, w)``.
    """
    low, high, weight = interpolation_weights(size_out, size_in, device)
    matrix = torch.zeros(size_out, size_in, dtype=torch.float32, device=device)
    rows = torch.arange(size_out, device=device)
    matrix.index_put_((rows, low), 1 - weight, accumulate=True)
    matrix.index_put_((rows, high), weight, accumulate=True)
    return matrix


def mask_mean_features(features: Tensor, masks: Tensor, boxes: Tensor | None = None) -> Tensor:
    """Mean over each mask of the features bilinearly upsampled to the masks' size.

    ``features [C, h, w]``, bool ``masks [N, H, W]`` -> ``[N, C]``, without materialising the
    ``[C, H, W]`` upsampled map. Upsampling is linear and separable, ``U = A F Bᵀ`` with the 1-D
    interpolation matrices ``A [H, h]``, ``B [W, w]``, so the sum over a mask ``M`` is
    ``Σ_{y,x} M[y,x] U[:, y, x] = Σ_{a,b} F[:, a, b] (Aᵀ M B)[a, b]``. ``A`` and ``B`` have two
    non-zeros per row, so ``Aᵀ M B`` is accumulated exactly from the mask's set pixels (four
    source samples each) into an ``[N, h * w]`` weight matrix, then contracted with ``F``: the
    cost is O(extent of the masks + N * h * w * C) (see :func:`mask_pixel_chunks`; ``boxes``
    are the masks' exclusive boxes, computed when omitted). Empty masks give zero vectors, not
    NaN. Computed in float32 on the masks' device.
    """
    if features.ndim != 3 or masks.ndim != 3:
        raise ValueError(
            f"need features [C, h, w] and masks [N, H, W], got {tuple(features.shape)} and "
            f"{tuple(masks.shape)}"
        )
    device = masks.device
    channels, grid_h, grid_w = features.shape
    count, height, width = masks.shape
    flat = features.to(device, torch.float32).reshape(channels, grid_h * grid_w)
    rows = interpolation_weights(height, grid_h, device)
    cols = interpolation_weights(width, grid_w, device)
    out = flat.new_zeros(count, channels)
    for indices, mask, pixel in mask_pixel_chunks(masks, boxes):
        size = len(indices)
        y, x = pixel // width, pixel % width
        weights = flat.new_zeros(size * grid_h * grid_w)
        base = mask * (grid_h * grid_w)
        for row, row_weight in ((rows[0][y], 1 - rows[2][y]), (rows[1][y], rows[2][y])):
            for col, col_weight in ((cols[0][x], 1 - cols[2][x]), (cols[1][x], cols[2][x])):
                weights.index_add_(0, base + row * grid_w + col, row_weight * col_weight)
        area = torch.bincount(mask, minlength=size).clamp_min(1).to(flat.dtype)
        out[indices] = (weights.view(size, -1) @ flat.T) / area[:, None]
    return out


def bitemporal_match(
    masks: MaskSet, features1: Tensor, features2: Tensor, theta_deg: float = 145.0
) -> tuple[Tensor, Tensor]:
    """Changed flags (bool ``[N]``) and cosine (float ``[N]``) of each mask's mean features.

    changed ⇔ ``-cos(z1, z2) > cos(theta_deg)``, exactly DynamicEarth's
    ``change_confidence > angle_to_cosine(θ)``. A mask whose mean feature is zero on a date has
    cosine 0.
    """
    if not 0.0 <= theta_deg <= 180.0:
        raise ValueError(f"theta_deg must be within 0..180 degrees, got {theta_deg!r}")
    if features1.shape != features2.shape:
        raise ValueError(
            f"features of both dates must have the same shape, got {tuple(features1.shape)} "
            f"and {tuple(features2.shape)}"
        )
    channels = features1.shape[0]
    both = torch.cat([features1.to(masks.masks.device), features2.to(masks.masks.device)])
    means = mask_mean_features(both, masks.masks, masks.boxes())
    cosine = F.cosine_similarity(means[:, :channels], means[:, channels:], dim=1)
    changed = -cosine > math.cos(math.radians(theta_deg))
    return changed, cosine


def instance_ceg(masks: MaskSet, iou_threshold: float = 0.01) -> Tensor:
    """bool ``[N]``: masks without a counterpart on the other date.

    A mask of date d is changed when the sum of its mask IoUs with all masks of the other date
    is ``<= iou_threshold``; when the other date has no masks, all of this date's masks are.
    Only pairs whose boxes overlap are compared (others have IoU 0).
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be within 0..1, got {iou_threshold!r}")
    boxes = masks.boxes()
    areas = masks.areas().tolist()
    first = torch.nonzero(masks.origin == 0).flatten()
    second = torch.nonzero(masks.origin == 1).flatten()
    iou_sum = [0.0] * len(masks)
    if len(first) and len(second):
        b1, b2 = boxes[first], boxes[second]
        top_left = torch.maximum(b1[:, None, :2], b2[None, :, :2])
        bottom_right = torch.minimum(b1[:, None, 2:], b2[None, :, 2:])
        pairs = torch.nonzero(((bottom_right - top_left) > 0).all(dim=2))
        corners = torch.cat([top_left, bottom_right], dim=2)[pairs[:, 0], pairs[:, 1]].long()
        for a, b, (x0, y0, x1, y1) in zip(
            first[pairs[:, 0]].tolist(), second[pairs[:, 1]].tolist(), corners.tolist(), strict=True
        ):
            inter = int((masks.masks[a, y0:y1, x0:x1] & masks.masks[b, y0:y1, x0:x1]).sum())
            if inter:
                iou = inter / (areas[a] + areas[b] - inter)
                iou_sum[a] += iou
                iou_sum[b] += iou
    sums = torch.tensor(iou_sum, dtype=torch.float64, device=boxes.device)
    return sums <= iou_threshold
