"""Weight resolution and checkpoint loading through the real code paths."""

from __future__ import annotations

import shutil

import pytest
import torch

from terrawatch.errors import WeightsNotFoundError
from terrawatch.models.clip_backbone import load_clip
from terrawatch.models.segearth import SegEarthOV
from terrawatch.models.weights import resolve_weights, weights_dir
from tests.conftest import build_tiny_clip, openai_format_state_dict


def test_tiny_openai_format_checkpoint_loads_with_its_architecture(tiny_clip_path):
    model = load_clip(tiny_clip_path)
    assert model.visual.conv1.kernel_size == (16, 16)
    assert model.visual.proj.shape == (64, 32)
    saved = torch.load(tiny_clip_path, weights_only=True)
    for key, value in saved.items():
        assert torch.equal(model.state_dict()[key], value.float()), key


def test_checkpoint_with_wrong_keys_fails_clearly(tmp_path):
    state = openai_format_state_dict(build_tiny_clip())
    del state["visual.proj"]
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing keys \['visual\.proj'\]"):
        load_clip(path)


def test_weights_directory_is_used_when_no_path_is_given(tiny_model_files):
    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_model_files["clip"], folder / "ViT-B-16.pt")
    shutil.copy(tiny_model_files["simfeatup"], folder / "xclip_jbu_one_million_aid.ckpt")
    try:
        assert resolve_weights("ViT-B-16") == folder / "ViT-B-16.pt"
        model = SegEarthOV.from_pretrained(device="cpu")
        assert model.provenance()["clip_weights"] == "ViT-B-16.pt"
    finally:
        shutil.rmtree(folder)


def test_explicit_path_wins_and_must_exist(tmp_path, tiny_clip_path):
    assert resolve_weights("ViT-B-16", tiny_clip_path) == tiny_clip_path
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights("ViT-B-16", tmp_path / "nope.pt")


def test_missing_simfeatup_offline_names_the_checkpoint(tiny_clip_path):
    with pytest.raises(WeightsNotFoundError, match=r"xclip_jbu_one_million_aid\.ckpt"):
        SegEarthOV.from_pretrained(weights=tiny_clip_path, device="cpu")


def test_bilinear_upsampler_needs_no_simfeatup_file(tiny_clip_path):
    model = SegEarthOV.from_pretrained(weights=tiny_clip_path, upsampler="bilinear", device="cpu")
    assert model.upsampler is None


def test_backbone_patch_size_must_match_the_weights(tiny_clip_path):
    with pytest.raises(ValueError, match=r"patch size 16.*needs 32"):
        SegEarthOV.from_pretrained("ViT-B-32", weights=tiny_clip_path, upsampler="bilinear")


def test_simfeatup_of_other_width_is_refused(tiny_clip_path, tmp_path):
    from terrawatch.models.simfeatup import JBUOne, save_simfeatup_checkpoint

    path = tmp_path / "wide.ckpt"
    save_simfeatup_checkpoint(JBUOne(feat_dim=48), path)
    with pytest.raises(ValueError, match="48-d features"):
        SegEarthOV.from_pretrained(weights=tiny_clip_path, upsampler_weights=path, device="cpu")
