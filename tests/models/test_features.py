"""Comparator features: tiny DINOv2 in the real HF format, and SegEarth-OV's CLIP tokens."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from terrawatch.errors import WeightsNotFoundError
from terrawatch.models.features import ClipFeatures, Dinov2Features, FeatureExtractor
from terrawatch.models.segearth import SegEarthOV
from tests.models.change_fixtures import planted_pair, save_tiny_dinov2

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


@pytest.fixture(scope="module")
def tiny_dinov2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_dinov2(tmp_path_factory.mktemp("tiny-dinov2") / "dinov2")


@pytest.fixture(scope="module")
def segmenter(tiny_model_files) -> SegEarthOV:
    return SegEarthOV.from_pretrained(
        weights=tiny_model_files["clip"], upsampler="bilinear", device="cpu"
    )


def _uint8_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(3, height, width, generator=generator) * 255).round().to(torch.uint8)


def test_dinov2_features_have_one_token_per_whole_patch(tiny_dinov2_dir):
    extractor = Dinov2Features.from_pretrained(tiny_dinov2_dir, device="cpu")
    features = extractor.features(planted_pair(size=64).t1[:, :60, :45])
    assert features.shape == (32, 60 // 14, 45 // 14) and features.dtype == torch.float32


def test_dinov2_features_equal_the_reference_processor_path(tiny_dinov2_dir):
    """Reference: HF processor with do_resize=False, do_center_crop=False, then the model."""
    from transformers import BitImageProcessor, Dinov2Model

    image = _uint8_image(60, 45)
    processor = BitImageProcessor(do_resize=False, do_center_crop=False, **IMAGENET)
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]
    model = Dinov2Model.from_pretrained(str(tiny_dinov2_dir)).eval()
    with torch.inference_mode():
        tokens = model(pixel_values=pixels).last_hidden_state[0, 1:]
    expected = tokens.T.reshape(32, 60 // 14, 45 // 14)
    extractor = Dinov2Features.from_pretrained(tiny_dinov2_dir, device="cpu")
    assert torch.allclose(extractor.features(image.float() / 255), expected, atol=1e-5)


def test_dinov2_is_found_in_the_weights_directory(tiny_dinov2_dir, tmp_path, monkeypatch):
    shutil.copytree(tiny_dinov2_dir, tmp_path / "dinov2-base")
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(tmp_path))
    extractor = Dinov2Features.from_pretrained(device="cpu")
    assert extractor.provenance()["weights"] == "dinov2-base"
    assert len(extractor.provenance()["weights_sha256"]) == 64


def test_missing_dinov2_weights_offline_raise_one_clear_error():
    with pytest.raises(WeightsNotFoundError, match=r"dinov2-base.*terrawatch weights fetch"):
        Dinov2Features.from_pretrained(device="cpu")


def test_dinov2_rejects_an_image_smaller_than_a_patch(tiny_dinov2_dir):
    extractor = Dinov2Features.from_pretrained(tiny_dinov2_dir, device="cpu")
    with pytest.raises(ValueError, match="smaller than one 14x14 DINOv2 patch"):
        extractor.features(torch.rand(3, 10, 40))


def test_clip_features_of_one_window_are_the_segmenters_patch_tokens(segmenter):
    image = _uint8_image(224, 224).float() / 255
    extractor = ClipFeatures(segmenter)
    normalised = (image.unsqueeze(0) - segmenter.mean) / segmenter.std
    with torch.inference_mode():
        expected, _ = segmenter.encoder(normalised)
    assert isinstance(extractor, FeatureExtractor)
    assert torch.allclose(extractor.features(image), expected[0], atol=1e-5)


def test_clip_features_cover_the_image_with_one_token_per_started_patch(segmenter):
    features = ClipFeatures(segmenter).features(_uint8_image(250, 300).float() / 255)
    assert features.shape == (32, 16, 19)
    assert torch.isfinite(features).all()


def test_clip_features_of_an_image_smaller_than_a_window(segmenter):
    features = ClipFeatures(segmenter).features(_uint8_image(40, 70).float() / 255)
    assert features.shape == (32, 3, 5)


def test_clip_features_reject_a_stride_larger_than_the_window(segmenter):
    with pytest.raises(ValueError, match="stride_patches <= window_patches"):
        ClipFeatures(segmenter, window_patches=4, stride_patches=5)
