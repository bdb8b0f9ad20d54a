"""DynamicEarth's identify step: class of each mask on each date, and the change rules.

The reference (``identifier/segearth_ov_ext.py``, ``identifier/utils.py``) takes the mean of
SegEarth-OV's class probabilities over each mask and its argmax, separately on t1 and t2, then
keeps a mask when the classes differ (land-cover rule) and, for instance classes, when the class
on the mask's own date is a target (``shared/reference/algorithms.md`` §3.1 step 3).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from terrawatch.models.proposals import mask_pixel_chunks

Identifier = Callable[[Tensor], Tensor]
"""images ``[B, 3, H, W]`` in 0..1 -> class probabilities ``[B, K, H, W]``
(:meth:`models.segearth.SegEarthOV.predict_logits` is one)."""


def mask_class_probs(probs: Tensor, masks: Tensor, boxes: Tensor | None = None) -> Tensor:
    """Mean class probability over each mask: ``[K, H, W]``, bool ``[N, H, W]`` -> ``[N, K]``.

    Means are taken at full resolution (the reference nearest-resizes the masks to the 448 px
    probability map, where tiny masks can vanish and give NaN). An empty mask gets an all-zero
    row, never NaN: its argmax is class 0 on both dates, so no rule reports it. Accumulated from
    the masks' set pixels a few nearby masks at a time (``boxes``: the masks' exclusive boxes,
    computed when omitted), in float32 on the masks' device.
    """
    if probs.ndim != 3 or masks.ndim != 3 or probs.shape[1:] != masks.shape[1:]:
        raise ValueError(
            f"need probs [K, H, W] and masks [N, H, W] of the same H, W, got "
            f"{tuple(probs.shape)} and {tuple(masks.shape)}"
        )
    classes = probs.shape[0]
    per_pixel = probs.to(masks.device, torch.float32).reshape(classes, -1).T.contiguous()
    out = per_pixel.new_zeros(masks.shape[0], classes)
    for indices, mask, pixel in mask_pixel_chunks(masks, boxes):
        size = len(indices)
        sums = per_pixel.new_zeros(size, classes).index_add_(0, mask, per_pixel[pixel])
        area = torch.bincount(mask, minlength=size).clamp_min(1).to(sums.dtype)
        out[indices] = sums / area[:, None]
    return out


def instance_rule(class1: Tensor, class2: Tensor, origin: Tensor, targets: Tensor) -> Tensor:
    """bool ``[N]``: classes differ and the class on the mask's own date is a target class.

    A mask proposed on t1 (origin 0) is judged by its t1 class, one from t2 by its t2 class, as
    the reference's ``cls1[:n1] + cls2[n1:]``; targets generalise its "class != 0" to any set.
    """
    own = torch.where(origin == 0, class1, class2)
    return (class1 != class2) & torch.isin(own, targets.to(own.device))


def landcover_rule(class1: Tensor, class2: Tensor) -> Tensor:
    """bool ``[N]``: the class differs between the dates."""
    return class1 != class2
