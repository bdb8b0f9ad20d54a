"""Two-scale SegEarth-OV pseudo-labels with BvSB confidence, through the real model API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from terrawatch.models.segearth import SegEarthOV
from terrawatch.models.special.pseudo_labels import (
    fuse_scales,
    pseudo_labels_from_probabilities,
    zoom_to,
)


@pytest.fixture(scope="module")
def tiny_segearth(tiny_model_files):
    model = SegEarthOV.from_pretrained(
        "ViT-B-16",
        weights=tiny_model_files["clip"],
        upsampler_weights=tiny_model_files["simfeatup"],
        device="cpu",
    ).with_settings(resize_long_side=None)
    model.set_classes(["water", "tree", "building"])
    return model


def test_fusion_averages_the_two_scales(tiny_segearth):
    torch.manual_seed(0)
    rgb = torch.rand(3, 40, 56).numpy()
    fused = fuse_scales(tiny_segearth, rgb)
    one = tiny_segearth.predict_logits(torch.from_numpy(rgb)[None])[0].numpy()
    two = tiny_segearth.predict_logits(
        torch.from_numpy(np.clip(zoom_to(rgb, (80, 112)), 0, 1).astype(np.float32))[None]
    )[0].numpy()
    expected = 0.5 * one + 0.5 * zoom_to(two, (40, 56))
    np.testing.assert_allclose(fused.probabilities, expected, atol=1e-5)
    assert fused.labels.shape == (40, 56)
    assert not np.allclose(fused.probabilities, one, atol=1e-4)  # scale 2 contributes


def test_bvsb_is_best_minus_second_best():
    probs = np.array([[[0.6, 0.2]], [[0.3, 0.5]], [[0.1, 0.3]]], dtype=np.float32)
    result = pseudo_labels_from_probabilities(probs)
    np.testing.assert_array_equal(result.labels, [[0, 1]])
    np.testing.assert_allclose(result.confidence, [[0.3, 0.2]], atol=1e-6)
