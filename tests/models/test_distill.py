"""AlignEarth distillation: losses, learning on synthetic pairs, checkpoints, resume, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from terrawatch.errors import WeightsNotFoundError
from terrawatch.models.clip_backbone import DenseCLIPEncoder, encode_tokens
from terrawatch.models.distill import Distiller, DistillSettings
from terrawatch.models.distill_losses import (
    cls_distill,
    infonce_cls,
    log_inverse_temperature,
    region_distill,
)
from terrawatch.models.segearth import SegEarthOV
from tests.conftest import build_tiny_clip
from tests.models.distill_fixtures import synthetic_pairs

STEPS = 60


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models are faster on one thread and immune to a busy machine's thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _distiller(**settings) -> Distiller:
    return Distiller(build_tiny_clip(), DistillSettings(**settings), device="cpu")


@pytest.fixture(scope="module")
def trained() -> tuple[Distiller, dict[str, float], dict[str, float]]:
    """A tiny student trained 60 steps; held-out cosines before and after."""
    distiller = _distiller(lr=1e-3)
    held_out = synthetic_pairs(torch.Generator().manual_seed(99), 32)
    before = distiller.cosine(*held_out)
    stream = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        distiller.train_step(*synthetic_pairs(stream, 8))
    return distiller, before, distiller.cosine(*held_out)


def test_every_loss_falls_during_distillation(trained):
    history = trained[0].history
    for name in ("loss", "infonce", "cls", "region"):
        late = sum(record[name] for record in history[-10:]) / 10
        assert late < 0.75 * history[0][name], name


def test_held_out_student_teacher_cosine_rises_well_above_its_start(trained):
    _, before, after = trained
    assert after["region"] > before["region"] + 0.5
    assert after["cls"] > before["cls"] + 0.05


def test_step_count_and_loss_history_are_kept(trained):
    distiller = trained[0]
    assert distiller.step == STEPS and distiller.chips_seen == 8 * STEPS
    assert [r["step"] for r in distiller.history] == list(range(1, STEPS + 1))


def test_teacher_stays_frozen(trained):
    distiller = trained[0]
    original = build_tiny_clip().visual.state_dict()
    for key, value in distiller.teacher.state_dict().items():
        assert torch.equal(value, original[key]), key


def test_saved_student_gives_the_same_features_through_the_inference_path(
    trained, tmp_path, tiny_simfeatup_path
):
    distiller = trained[0]
    path = distiller.save(tmp_path)
    model = SegEarthOV.from_pretrained(
        weights=path, sensor="sar", upsampler_weights=tiny_simfeatup_path, device="cpu"
    )
    image = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        for loaded, ours in zip(
            model.encoder(image),
            DenseCLIPEncoder(distiller.student, "sclip", 2)(image),
            strict=True,
        ):
            assert torch.allclose(loaded, ours, atol=1e-5)
        standard = zip(
            encode_tokens(model.clip.visual, image),
            encode_tokens(distiller.student, image),
            strict=True,
        )
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in standard)
    assert model.provenance()["activation"] == "quickgelu"  # recorded: the teacher's


def test_saved_checkpoint_keeps_the_original_text_tower(trained, tmp_path):
    path = trained[0].save(tmp_path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    original = build_tiny_clip().state_dict()
    text_keys = [k for k in original if not k.startswith("visual.")]
    assert text_keys and all(torch.equal(saved[k], original[k].float()) for k in text_keys)


def test_manifest_records_data_steps_losses_settings_and_teacher(tmp_path):
    data = {"source": "synthetic pairs", "chip": 224}
    distiller = Distiller(build_tiny_clip(), data=data, device="cpu")
    distiller.train_step(*synthetic_pairs(torch.Generator().manual_seed(0), 4))
    path = distiller.save(tmp_path)
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["data"] == data and manifest["step"] == 1
    assert [r["step"] for r in manifest["losses"]] == [1]
    assert manifest["settings"]["lr"] == 1e-4 and manifest["settings"]["regions"] == 7
    assert len(manifest["teacher"]["visual_sha256"]) == 64
    assert manifest["student"]["activation"] == "quickgelu"


def test_resume_continues_steps_history_and_optimiser_exactly(tmp_path):
    stream = torch.Generator().manual_seed(5)
    batches = [synthetic_pairs(stream, 4) for _ in range(4)]
    first = _distiller(lr=1e-3)
    for batch in batches[:3]:
        first.train_step(*batch)
    first.save(tmp_path)
    resumed = _distiller(lr=1e-3)
    assert resumed.resume(tmp_path) == 3
    assert resumed.history == first.history
    assert resumed.temperature == pytest.approx(first.temperature)
    expected, got = first.train_step(*batches[3]), resumed.train_step(*batches[3])
    assert got["step"] == 4 and len(resumed.history) == 4
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_resume_picks_the_newest_checkpoint(tmp_path):
    distiller = _distiller()
    batch = synthetic_pairs(torch.Generator().manual_seed(6), 4)
    for _ in range(2):
        distiller.train_step(*batch)
        distiller.save(tmp_path)
    assert _distiller().resume(tmp_path) == 2


def test_resume_of_an_empty_directory_starts_at_step_zero(tmp_path):
    assert _distiller().resume(tmp_path / "new") == 0


def test_student_checkpoint_of_another_architecture_is_refused(tmp_path):
    deeper = Distiller(build_tiny_clip(layers=3), device="cpu")
    deeper.save(tmp_path)
    with pytest.raises(ValueError, match=r"does not have the teacher's image-tower architecture"):
        _distiller().resume(tmp_path)


def test_resume_with_another_teacher_is_refused(tmp_path):
    Distiller(build_tiny_clip(seed=1), device="cpu").save(tmp_path)
    with pytest.raises(ValueError, match="was distilled from teacher"):
        _distiller().resume(tmp_path)


def test_infonce_matches_the_paper_formula():
    torch.manual_seed(0)
    opt, sar = torch.randn(5, 8), torch.randn(5, 8)
    tau = 0.07
    sim = F.normalize(opt, dim=-1) @ F.normalize(sar, dim=-1).T
    total = 0.0
    for i in range(5):
        total += math.log(
            math.exp(sim[i, i] / tau) / sum(math.exp(sim[i, j] / tau) for j in range(5))
        )
        total += math.log(
            math.exp(sim[i, i] / tau) / sum(math.exp(sim[j, i] / tau) for j in range(5))
        )
    scale = torch.tensor(log_inverse_temperature(tau))
    assert float(infonce_cls(opt, sar, scale)) == pytest.approx(-total / 5, rel=1e-5)


def test_log_inverse_temperature_is_positive_for_the_paper_value():
    assert log_inverse_temperature(0.07) == pytest.approx(math.log(1 / 0.07))
    assert _distiller().temperature == pytest.approx(0.07)


def test_region_loss_averages_7x7_regions_of_2x2_tokens():
    torch.manual_seed(1)
    opt, sar = torch.randn(2, 8, 14, 14), torch.randn(2, 8, 14, 14)
    expected = 0.0
    for i in range(7):
        for j in range(7):
            a = opt[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(dim=(2, 3))
            b = sar[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(dim=(2, 3))
            expected += (1 - F.cosine_similarity(a, b, dim=1)).mean() / 49
    assert float(region_distill(opt, sar, 7)) == pytest.approx(float(expected), rel=1e-5)


def test_cls_loss_is_zero_for_identical_features():
    features = torch.randn(3, 8)
    assert float(cls_distill(features, features)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_forward_is_the_standard_clip_forward():
    visual = build_tiny_clip().visual
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        _, cls = encode_tokens(visual, images)
        assert torch.allclose(cls, visual(images), atol=1e-5)


def test_chips_outside_the_unit_range_are_refused():
    with pytest.raises(ValueError, match=r"opt_chips must hold values in 0\.\.1"):
        _distiller().train_step(torch.rand(2, 3, 224, 224) * 255, torch.rand(2, 3, 224, 224))


def test_a_single_pair_is_refused():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        _distiller().train_step(torch.rand(1, 3, 224, 224), torch.rand(1, 3, 224, 224))


def test_chips_not_a_multiple_of_the_patch_size_are_refused():
    with pytest.raises(ValueError, match="multiples of the patch size 16"):
        _distiller().train_step(torch.rand(2, 3, 100, 100), torch.rand(2, 3, 100, 100))


def test_too_small_token_grid_for_the_regions_is_refused():
    with pytest.raises(ValueError, match=r"regions=7 needs a token grid of at least 7x7"):
        _distiller().train_step(torch.rand(2, 3, 96, 96), torch.rand(2, 3, 96, 96))


def test_unknown_setting_is_refused():
    with pytest.raises(TypeError, match=r"unknown distillation settings \['learning_rate'\]"):
        DistillSettings.from_kwargs(learning_rate=1e-3)


def test_missing_teacher_weights_offline_name_the_file():
    with pytest.raises(WeightsNotFoundError, match=r"ViT-B-16\.pt.*offline"):
        Distiller.from_pretrained(device="cpu")


def test_from_pretrained_records_the_teacher_file(tiny_clip_path: Path):
    distiller = Distiller.from_pretrained(tiny_clip_path, device="cpu")
    assert distiller.teacher_info["weights"] == tiny_clip_path.name
    assert len(distiller.teacher_info["sha256"]) == 64
