"""AlignEarth distillation losses: symmetric InfoNCE and 1 − cos on [CLS] and on region means.

Eqs. 10–12 of Li et al. (arXiv 2508.18067, §4.2) as written in ``shared/reference/
algorithms.md`` §2.3. Teacher features (optical chips, frozen encoder) come first, student
features (SAR chips) second; all features are the projected tokens (after ``ln_post``/``proj``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from terrawatch.errors import InputError

MAX_LOGIT_SCALE = 100.0
"""Upper bound of 1/τ (τ >= 0.01), as CLIP clamps its own logit scale; not in the paper."""


def log_inverse_temperature(temperature: float) -> float:
    """Initial value of the learnable parameter ``s = log(1/τ)`` (CLIP's convention).

    The parameter is the log of the *inverse* temperature, so ``exp(s)`` multiplies the
    cosines; τ = 0.07 gives s = +2.659. Learning ``log(1/τ)`` keeps τ positive.
    """
    if not 0.0 < temperature < 1.0:
        raise InputError(f"temperature must be in (0, 1), got {temperature!r}; the paper uses 0.07")
    return math.log(1.0 / temperature)


def infonce_cls(teacher_cls: Tensor, student_cls: Tensor, log_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE over a batch of N pairs (eq. 10).

    ``−(1/N) Σ_i [log softmax_j(sim(o_opt^i, o_sar^j)/τ)_i + log softmax_j(sim(o_sar^i,
    o_opt^j)/τ)_i]``: the two cross-entropies are *summed*, as the paper writes the formula
    (CLIP averages them; the factor 2 only rescales this term's weight).

    Args:
        teacher_cls: ``[N, D]`` optical [CLS] features.
        student_cls: ``[N, D]`` SAR [CLS] features.
        log_scale: scalar ``log(1/τ)``; ``exp`` of it is clamped at :data:`MAX_LOGIT_SCALE`.
    """
    _check_pairs(teacher_cls, student_cls, "cls features", dims=2)
    teacher, student = F.normalize(teacher_cls, dim=-1), F.normalize(student_cls, dim=-1)
    logits = log_scale.exp().clamp(max=MAX_LOGIT_SCALE) * (teacher @ student.T)
    target = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


def cls_distill(teacher_cls: Tensor, student_cls: Tensor) -> Tensor:
    """``1 − cos(O_opt_cls, O_sar_cls)``, averaged over the batch (eq. 11)."""
    _check_pairs(teacher_cls, student_cls, "cls features", dims=2)
    return (1.0 - F.cosine_similarity(teacher_cls, student_cls, dim=-1)).mean()


def region_means(patches: Tensor, regions: int = 7) -> Tensor:
    """Means of the patch tokens ``[B, D, h, w]`` over ``regions`` x ``regions`` regions.

    Non-overlapping regions when ``h`` and ``w`` are multiples of ``regions`` (14 x 14 tokens of
    a 224 chip: 2 x 2 tokens each). Otherwise adaptive average pooling's nearly equal bins,
    which may share one row or column of tokens: the paper only uses 224-pixel chips
    [UNVERIFIED] and defines no other case.
    """
    if patches.ndim != 4:
        raise ValueError(f"patch features must be [B, D, h, w], got {tuple(patches.shape)}")
    height, width = patches.shape[-2:]
    if regions < 1 or height < regions or width < regions:
        raise ValueError(
            f"regions={regions!r} needs a token grid of at least {regions}x{regions}, got "
            f"{height}x{width}; use larger chips or fewer regions"
        )
    return F.adaptive_avg_pool2d(patches, regions)


def region_distill(teacher_patches: Tensor, student_patches: Tensor, regions: int = 7) -> Tensor:
    """``(1/K²) Σ_ij (1 − cos(f̄_opt^ij, f̄_sar^ij))`` on K x K region means (eq. 12), K = 7."""
    _check_pairs(teacher_patches, student_patches, "patch features", dims=4)
    teacher = region_means(teacher_patches, regions)
    student = region_means(student_patches, regions)
    return (1.0 - F.cosine_similarity(teacher, student, dim=1)).mean()


def _check_pairs(teacher: Tensor, student: Tensor, what: str, dims: int) -> None:
    if teacher.shape != student.shape or teacher.ndim != dims:
        raise ValueError(
            f"teacher and student {what} must have the same {dims}-d shape, got "
            f"{tuple(teacher.shape)} and {tuple(student.shape)}"
        )
