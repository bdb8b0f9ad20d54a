"""Comparators: exact mask means of upsampled features, the θ rule, instance correspondence."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from terrawatch.models.comparator import (
    bitemporal_match,
    instance_ceg,
    interpolation_matrix,
    mask_mean_features,
)
from terrawatch.models.proposals import MaskSet


def _naive_means(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The reference: upsample to H x W (bilinear, align_corners=True), mean over each mask."""
    up = F.interpolate(features[None], size=masks.shape[1:], mode="bilinear", align_corners=True)
    return torch.stack([up[0][:, mask].mean(dim=1) for mask in masks])


def _single(mask: torch.Tensor, origin: int = 0) -> MaskSet:
    return MaskSet(mask[None], torch.ones(1), torch.tensor([origin]))


@pytest.mark.parametrize(("size_out", "size_in"), [(23, 4), (31, 6), (5, 5), (9, 1), (1, 3)])
def test_interpolation_matrix_reproduces_bilinear_align_corners(size_out, size_in):
    signal = torch.randn(1, 1, 1, size_in)
    expected = F.interpolate(signal, size=(1, size_out), mode="bilinear", align_corners=True)
    matrix = interpolation_matrix(size_out, size_in)
    assert torch.allclose(matrix @ signal.flatten(), expected.flatten(), atol=1e-6)


def test_mask_means_equal_upsample_then_mean():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(5, 4, 6, generator=generator)
    masks = torch.rand(6, 23, 31, generator=generator) > 0.6
    masks[0] = False
    masks[0, 3:9, 20:27] = True  # a compact blob
    masks[1] = False
    masks[1, 22, 30] = True  # a single corner pixel
    expected = _naive_means(features, masks)
    assert torch.allclose(mask_mean_features(features, masks), expected, atol=1e-5)


def test_empty_mask_gets_a_zero_mean_not_nan():
    features = torch.randn(3, 2, 2)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[1, 2:4, 2:4] = True
    means = mask_mean_features(features, masks)
    assert torch.equal(means[0], torch.zeros(3)) and torch.isfinite(means).all()


def _rotated_pair(angle_deg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Constant 2-d feature maps at t1 and t2 whose vectors are ``angle_deg`` apart."""
    angle = math.radians(angle_deg)
    first = torch.tensor([1.0, 0.0]).view(2, 1, 1).expand(2, 3, 3)
    second = torch.tensor([math.cos(angle), math.sin(angle)]).view(2, 1, 1).expand(2, 3, 3)
    return first, second


@pytest.mark.parametrize(("angle", "expected"), [(34.99, False), (35.01, True), (90.0, True)])
def test_theta_145_flags_masks_whose_features_turned_more_than_35_degrees(angle, expected):
    masks = _single(torch.ones(12, 12, dtype=torch.bool))
    changed, cosine = bitemporal_match(masks, *_rotated_pair(angle), theta_deg=145.0)
    assert changed.tolist() == [expected]
    assert cosine.item() == pytest.approx(math.cos(math.radians(angle)), abs=1e-6)


def test_theta_rule_is_minus_cosine_above_cos_theta():
    masks = _single(torch.ones(6, 6, dtype=torch.bool))
    for theta in (110.0, 135.0, 155.0):
        limit = 180.0 - theta
        below, _ = bitemporal_match(masks, *_rotated_pair(limit - 0.05), theta_deg=theta)
        above, _ = bitemporal_match(masks, *_rotated_pair(limit + 0.05), theta_deg=theta)
        assert (below.item(), above.item()) == (False, True)


def test_bitemporal_match_rejects_features_of_different_shapes():
    masks = _single(torch.ones(6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="features of both dates must have the same shape"):
        bitemporal_match(masks, torch.randn(2, 3, 3), torch.randn(2, 3, 4))


def test_bitemporal_match_rejects_theta_outside_0_180():
    masks = _single(torch.ones(6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"theta_deg must be within 0\.\.180"):
        bitemporal_match(masks, torch.randn(2, 3, 3), torch.randn(2, 3, 3), theta_deg=200.0)


def _box(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    mask = torch.zeros(20, 20, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_instance_ceg_flags_masks_without_counterpart_on_the_other_date():
    masks = MaskSet(
        torch.stack([_box(0, 4, 0, 4), _box(10, 14, 10, 14), _box(1, 5, 1, 5), _box(0, 4, 12, 16)]),
        torch.ones(4),
        torch.tensor([0, 0, 1, 1]),
    )
    assert instance_ceg(masks).tolist() == [False, True, False, True]


def test_instance_ceg_ignores_a_sliver_overlap_below_the_iou_threshold():
    big_t1 = _box(0, 20, 0, 10)  # 200 px
    touching_t2 = _box(0, 1, 9, 11)  # shares 1 px: IoU = 1 / 201 < 0.01
    masks = MaskSet(torch.stack([big_t1, touching_t2]), torch.ones(2), torch.tensor([0, 1]))
    assert instance_ceg(masks).tolist() == [True, True]
    assert instance_ceg(masks, iou_threshold=0.001).tolist() == [False, False]


def test_instance_ceg_flags_every_mask_when_the_other_date_has_none():
    masks = MaskSet(torch.stack([_box(0, 4, 0, 4)]), torch.ones(1), torch.tensor([1]))
    assert instance_ceg(masks).tolist() == [True]
