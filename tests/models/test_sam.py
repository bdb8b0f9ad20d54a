"""SAM proposer on a tiny random-weight SamModel in the real HF format; HF weights lookup."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from terrawatch.errors import WeightsNotFoundError
from terrawatch.models.hf_weights import HF_REGISTRY, fetch, resolve_hf_model
from terrawatch.models.proposals import MaskProposer, masks_to_boxes, merge_bitemporal
from terrawatch.models.sam import SamProposer, SamSettings
from tests.models.change_fixtures import planted_pair, save_confident_tiny_sam, save_tiny_sam

OPEN = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}  # random weights predict IoU ~0


@pytest.fixture(scope="module")
def tiny_sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam(tmp_path_factory.mktemp("tiny-sam") / "sam")


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return planted_pair(size=64).t1[:, :48, :40]


def test_tiny_sam_loads_from_a_directory_and_proposes_masks(tiny_sam_dir, image):
    proposer = SamProposer.from_pretrained(tiny_sam_dir, device="cpu", points_per_side=4, **OPEN)
    masks = proposer.propose(image)
    assert 0 < len(masks) <= 4 * 4 * 3
    assert masks.masks.dtype == torch.bool and masks.masks.shape[1:] == (48, 40)
    assert masks.scores.dtype == torch.float32
    assert torch.equal(masks.origin, torch.zeros(len(masks), dtype=torch.int64))


def test_sam_masks_come_best_score_first_without_box_duplicates(tiny_sam_dir, image):
    proposer = SamProposer.from_pretrained(tiny_sam_dir, device="cpu", points_per_side=4, **OPEN)
    masks = proposer.propose(image)
    assert torch.all(masks.scores[:-1] >= masks.scores[1:])
    assert torch.equal(masks.boxes(), masks_to_boxes(masks.masks))
    boxes = masks.boxes() - torch.tensor([0.0, 0.0, 1.0, 1.0])
    iou = box_iou(boxes, boxes) - torch.eye(len(masks))
    assert float(iou.max()) <= 0.7


def test_sam_drops_masks_below_the_predicted_iou_threshold(tiny_sam_dir, image):
    proposer = SamProposer.from_pretrained(tiny_sam_dir, device="cpu", points_per_side=4)
    masks = proposer.propose(image)  # published 0.5 threshold; random weights predict ~0
    assert len(masks) == 0 and masks.masks.shape == (0, 48, 40)


def test_sam_defaults_are_the_reference_settings():
    assert SamSettings() == SamSettings(
        points_per_side=32,
        points_per_batch=64,
        pred_iou_thresh=0.5,
        stability_score_thresh=0.95,
        stability_score_offset=0.9,
        box_nms_thresh=0.7,
    )


def test_sam_provenance_names_settings_and_weights_hash(tiny_sam_dir):
    proposer = SamProposer.from_pretrained(tiny_sam_dir, device="cpu", points_per_side=4)
    info = proposer.provenance()
    expected = hashlib.sha256((tiny_sam_dir / "model.safetensors").read_bytes()).hexdigest()
    assert info["weights_sha256"] == expected
    assert info["settings"]["points_per_side"] == 4 and info["name"] == "sam"
    assert isinstance(proposer, MaskProposer)


def test_sam_is_found_in_the_weights_directory(tiny_sam_dir, tmp_path, monkeypatch, image):
    shutil.copytree(tiny_sam_dir, tmp_path / "sam-vit-huge")
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(tmp_path))
    proposer = SamProposer.from_pretrained(device="cpu", points_per_side=2, **OPEN)
    assert proposer.provenance()["weights"] == "sam-vit-huge"


def test_missing_sam_weights_offline_raise_one_clear_error():
    with pytest.raises(WeightsNotFoundError, match=r"sam-vit-huge.*huggingface-cli download"):
        SamProposer.from_pretrained(device="cpu")


def test_explicit_directory_without_weights_is_rejected(tmp_path):
    with pytest.raises(
        WeightsNotFoundError, match=r"does not hold config\.json and model\.safetensors"
    ):
        SamProposer.from_pretrained(tmp_path, device="cpu")


def test_unknown_sam_setting_is_rejected(tiny_sam_dir):
    with pytest.raises(TypeError, match=r"unknown SAM settings \['points'\]"):
        SamProposer.from_pretrained(tiny_sam_dir, device="cpu", points=8)


def test_out_of_range_sam_threshold_is_rejected():
    with pytest.raises(ValueError, match=r"pred_iou_thresh must be within 0\.\.1"):
        SamSettings(pred_iou_thresh=1.5)


def test_hf_registry_pins_revisions_and_fetch_refuses_offline(tmp_path, monkeypatch):
    assert {"sam-vit-huge", "dinov2-base"} <= set(HF_REGISTRY)
    assert all(len(entry.revision) == 40 for entry in HF_REGISTRY.values())
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="downloads are off"):
        fetch("sam-vit-huge")


def test_unknown_hf_model_name_lists_the_available_ones():
    with pytest.raises(KeyError, match="available: \\['dinov2-base', 'sam-vit-huge'\\]"):
        resolve_hf_model("sam-vit-tiny")


# --- the reference's filters on masks that should pass them ---------------------------------


@pytest.fixture(scope="module")
def confident_sam(tiny_sam_dir, tmp_path_factory) -> Path:
    return save_confident_tiny_sam(tmp_path_factory.mktemp("confident") / "sam", tiny_sam_dir)


def test_confident_masks_survive_the_reference_thresholds_on_a_planted_image(confident_sam):
    pair = planted_pair(size=64)
    proposer = SamProposer.from_pretrained(confident_sam, device="cpu", points_per_side=4)
    assert proposer.settings.pred_iou_thresh == 0.5  # the reference's, not loosened
    assert proposer.settings.stability_score_thresh == 0.95
    first, second = proposer.propose(pair.t1), proposer.propose(pair.t2)
    assert len(first) >= 1 and len(second) >= 1
    assert torch.allclose(first.scores, torch.full_like(first.scores, 0.9))
    assert bool(first.masks.flatten(1).any(dim=1).all())
    merged = merge_bitemporal(first.with_origin(0), second.with_origin(1))  # area < 0.8 kept
    assert len(merged) >= 1


def test_predicted_iou_at_or_below_the_threshold_drops_the_mask(confident_sam, tmp_path, image):
    doubtful = save_confident_tiny_sam(tmp_path / "sam", confident_sam, iou=0.45)
    assert (
        len(SamProposer.from_pretrained(doubtful, device="cpu", points_per_side=4).propose(image))
        == 0
    )
    lenient = SamProposer.from_pretrained(
        doubtful, device="cpu", points_per_side=4, pred_iou_thresh=0.4
    )
    assert len(lenient.propose(image)) >= 1


def test_unstable_masks_are_dropped_by_the_stability_filter(confident_sam, tmp_path, image):
    soft = save_confident_tiny_sam(tmp_path / "sam", confident_sam, sharpness=1e-7)  # logits ~0
    assert (
        len(SamProposer.from_pretrained(soft, device="cpu", points_per_side=4).propose(image)) == 0
    )
    unfiltered = SamProposer.from_pretrained(
        soft, device="cpu", points_per_side=4, stability_score_thresh=0.0
    )
    assert len(unfiltered.propose(image)) >= 1
