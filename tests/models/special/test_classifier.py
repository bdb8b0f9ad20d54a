"""The pluggable classifier: any tile size in, per-pixel class logits out."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from terrawatch.errors import InputError
from terrawatch.models.special.classifier import build_classifier


@pytest.mark.parametrize("size", [(37, 50), (8, 8), (5, 3)])
def test_fcn_keeps_the_tile_size(size):
    model = build_classifier("fcn", bands=7, classes=4)
    logits = model(torch.rand(2, 7, *size))
    assert logits.shape == (2, 4, *size)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_fcn_sees_a_pixel_s_neighbours_and_its_spectrum():
    torch.manual_seed(0)
    model = build_classifier("fcn", bands=3, classes=2).eval()
    x = torch.rand(1, 3, 16, 16)
    changed = x.clone()
    changed[0, 1, 8, 8] += 1.0
    diff = (model(changed) - model(x)).abs().sum(1)[0]
    assert diff[8, 8] > 0 and diff[8, 9] > 0 and diff[0, 0] < diff[8, 8]


def test_unknown_classifier_and_missing_mamba_kernels_say_what_to_do():
    with pytest.raises(InputError, match="unknown classifier"):
        build_classifier("transformer", 4, 2)
    if importlib.util.find_spec("mamba_ssm") is None:
        with pytest.raises(InputError, match=r"mamba_ssm.*fcn"):
            build_classifier("mambahsi", 4, 2)
