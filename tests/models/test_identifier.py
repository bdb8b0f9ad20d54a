"""Identify step: mean class probabilities over masks and the instance / land-cover rules."""

from __future__ import annotations

import pytest
import torch

from terrawatch.models.identifier import instance_rule, landcover_rule, mask_class_probs


def test_mask_class_probs_is_the_mean_probability_over_each_mask():
    probs = torch.zeros(3, 4, 4)
    probs[0] = 1.0
    probs[:, :, 2:] = torch.tensor([0.1, 0.2, 0.7]).view(3, 1, 1)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :, 1:3] = True  # half class-0 pixels, half the 0.1/0.2/0.7 ones
    masks[1, 0, 3] = True
    expected = torch.tensor([[0.55, 0.1, 0.35], [0.1, 0.2, 0.7]])
    assert torch.allclose(mask_class_probs(probs, masks), expected)


def test_empty_mask_gets_zero_probabilities_instead_of_nan():
    probs = torch.softmax(torch.randn(3, 5, 5), dim=0)
    masks = torch.zeros(1, 5, 5, dtype=torch.bool)
    assert torch.equal(mask_class_probs(probs, masks), torch.zeros(1, 3))


def test_mask_class_probs_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="of the same H, W"):
        mask_class_probs(torch.rand(3, 5, 5), torch.zeros(1, 5, 6, dtype=torch.bool))


def test_instance_rule_judges_each_mask_by_the_class_on_its_own_date():
    # class1, class2, origin -> keep with targets {1 (building)}
    class1 = torch.tensor([1, 0, 0, 1, 1, 2])
    class2 = torch.tensor([0, 1, 1, 0, 1, 1])
    origin = torch.tensor([0, 1, 0, 1, 0, 1])
    keep = instance_rule(class1, class2, origin, torch.tensor([1]))
    # demolished (t1 mask, t1 building); new (t2 mask, t2 building); t1 mask of background;
    # t2 mask of background; unchanged building; t2 mask turned building from class 2
    assert keep.tolist() == [True, True, False, False, False, True]


def test_instance_rule_with_several_targets():
    class1, class2 = torch.tensor([2, 3]), torch.tensor([0, 0])
    origin = torch.tensor([0, 0])
    keep = instance_rule(class1, class2, origin, torch.tensor([2, 5]))
    assert keep.tolist() == [True, False]


def test_landcover_rule_keeps_every_class_change():
    class1 = torch.tensor([0, 3, 2, 4])
    class2 = torch.tensor([0, 2, 2, 1])
    assert landcover_rule(class1, class2).tolist() == [False, True, False, True]
