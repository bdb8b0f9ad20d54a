"""AlignEarth on SAR: checkpoint loading (GELU, open_clip format), sensor defaults, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from terrawatch.errors import WeightsNotFoundError
from terrawatch.models.clip_backbone import clip_activation, encode_tokens, load_clip
from terrawatch.models.segearth import SegEarthOV
from terrawatch.models.weights import weights_dir
from tests.conftest import build_tiny_clip, openai_format_state_dict
from tests.models.distill_fixtures import build_tiny_gelu_clip, save_open_clip_training_checkpoint
from tests.models.reference_impl import reference_scores

CLASSES = [["water", "river"], ["building"], ["farmland", "grass"]]


@pytest.fixture(scope="module")
def alignearth_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny AlignEarth-like checkpoint in open_clip's training-checkpoint format."""
    path = tmp_path_factory.mktemp("alignearth") / "AlignEarth-SAR-ViT-B-16.pt"
    return save_open_clip_training_checkpoint(build_tiny_gelu_clip(seed=3), path)


def _sar(path: Path, simfeatup: Path | None, **kwargs) -> SegEarthOV:
    upsampler = "simfeatup" if simfeatup else "bilinear"
    return SegEarthOV.from_pretrained(
        weights=path,
        sensor="sar",
        upsampler=upsampler,
        upsampler_weights=simfeatup,
        device="cpu",
        **kwargs,
    )


def _image(seed: int, size: int = 224) -> torch.Tensor:
    torch.manual_seed(seed)
    grey = torch.rand(1, 1, size // 8, size // 8)
    grey = torch.nn.functional.interpolate(grey, size=(size, size), mode="bilinear")
    return grey.expand(1, 3, size, size).contiguous()  # SAR: one band repeated on 3 channels


def test_sar_selects_sclip_over_the_last_two_layers(alignearth_path, tiny_simfeatup_path):
    model = _sar(alignearth_path, tiny_simfeatup_path)
    assert (model.settings.attention, model.settings.last_n_layers) == ("sclip", 2)
    assert model.upsampler is not None and model.settings.gba_lambda == 0.3


def test_open_clip_checkpoint_loads_with_gelu_and_its_own_weights(alignearth_path):
    model = _sar(alignearth_path, None)
    original = build_tiny_gelu_clip(seed=3)
    assert clip_activation(model.clip) == "gelu"
    image = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = encode_tokens(original.visual, image)
        loaded = encode_tokens(model.clip.visual, image)
    assert torch.allclose(loaded[0], expected[0], atol=1e-5)
    assert torch.allclose(loaded[1], expected[1], atol=1e-5)


def test_explicit_activation_overrides_the_sensor_default(alignearth_path):
    model = _sar(alignearth_path, None, activation="quickgelu")
    assert clip_activation(model.clip) == "quickgelu"
    assert model.provenance()["activation"] == "quickgelu"


def test_sar_segmentation_matches_the_reference(alignearth_path, tiny_simfeatup_path):
    model = _sar(alignearth_path, tiny_simfeatup_path, resize_long_side=None)
    model.set_classes([",".join(c) for c in CLASSES])
    image = _image(0)
    expected = reference_scores(
        model.clip, model.upsampler, image[0], CLASSES, variant="sclip", last_n=2, resize=None
    )
    assert torch.allclose(model.predict_logits(image)[0], expected, atol=2e-4)
    labels, _ = model.predict(image)
    assert labels.shape == (1, 224, 224) and int(labels.max()) < len(CLASSES)


def test_explicit_settings_override_the_sar_defaults(alignearth_path):
    model = _sar(alignearth_path, None, attention="segearth", last_n_layers=1, prob_thd=0.3)
    settings = model.settings
    assert (settings.attention, settings.last_n_layers, settings.prob_thd) == ("segearth", 1, 0.3)


def test_provenance_records_the_sensor(alignearth_path, tiny_clip_path):
    sar = _sar(alignearth_path, None).provenance()
    optical = SegEarthOV.from_pretrained(
        weights=tiny_clip_path, upsampler="bilinear", device="cpu"
    ).provenance()
    assert (sar["sensor"], sar["activation"]) == ("sar", "gelu")
    assert (optical["sensor"], optical["activation"]) == ("optical", "quickgelu")


def test_alignearth_weights_are_found_in_the_weights_directory(alignearth_path):
    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(alignearth_path, folder / "AlignEarth-SAR-ViT-B-16.pt")
    try:
        model = SegEarthOV.from_pretrained(sensor="sar", upsampler="bilinear", device="cpu")
        assert model.provenance()["clip_weights"] == "AlignEarth-SAR-ViT-B-16.pt"
    finally:
        shutil.rmtree(folder)


def test_missing_alignearth_weights_offline_name_the_file():
    with pytest.raises(WeightsNotFoundError, match=r"AlignEarth-SAR-ViT-B-16\.pt.*offline"):
        SegEarthOV.from_pretrained(sensor="sar", upsampler="bilinear", device="cpu")


def test_sar_with_another_backbone_is_refused(alignearth_path):
    with pytest.raises(ValueError, match="published for ViT-B-16 only"):
        SegEarthOV.from_pretrained("ViT-B-32", weights=alignearth_path, sensor="sar")


def test_unknown_sensor_is_refused(alignearth_path):
    with pytest.raises(ValueError, match=r"sensor must be one of \('optical', 'sar'\)"):
        SegEarthOV.from_pretrained(weights=alignearth_path, sensor="radar")


def test_student_of_the_wrong_patch_size_is_refused(tmp_path):
    path = tmp_path / "student-b32.pt"
    save_open_clip_training_checkpoint(build_tiny_gelu_clip(patch=32), path)
    with pytest.raises(ValueError, match=r"patch size 32, but backbone 'ViT-B-16' needs 16"):
        _sar(path, None)


def test_bare_image_tower_checkpoint_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "visual-only.pt"
    torch.save(build_tiny_gelu_clip().visual.state_dict(), path)
    with pytest.raises(ValueError, match=r"bare image tower.*save the full CLIP model"):
        _sar(path, None)


def test_activation_recorded_in_a_checkpoint_is_used_unless_overridden(tmp_path):
    path = tmp_path / "recorded.pt"
    state = openai_format_state_dict(build_tiny_clip())
    torch.save({"state_dict": state, "activation": "gelu"}, path)
    assert clip_activation(load_clip(path)) == "gelu"
    assert clip_activation(load_clip(path, "quickgelu")) == "quickgelu"


def test_unknown_activation_is_refused(tiny_clip_path):
    with pytest.raises(ValueError, match=r"activation must be one of \('quickgelu', 'gelu'\)"):
        load_clip(tiny_clip_path, "relu")
