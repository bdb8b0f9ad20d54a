"""Change detection end to end: planted changes, brightness invariance, real pair, bad input."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from terrawatch.models.change import ChangeDetector, ChangeResult
from terrawatch.models.features import ClipFeatures
from terrawatch.models.proposals import SuperpixelProposer
from terrawatch.models.segearth import SegEarthOV
from terrawatch.models.settings import ChangeSettings
from tests.models.change_fixtures import PAIR256, planted_pair, read_rgb


class ChromaticityFeatures:
    """Local mean chromaticity (colour / brightness), centred: blind to brightness by design."""

    name = "chromaticity"

    def features(self, image: torch.Tensor) -> torch.Tensor:
        chroma = image / image.sum(dim=0, keepdim=True).clamp_min(1e-6) - 1.0 / 3.0
        return F.avg_pool2d(chroma.unsqueeze(0), 2)[0]

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name}


class DominantColourIdentifier:
    """One-hot classes by dominant channel: 0 green (background), 1 red (building), 2 blue."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        dominant = images[:, [1, 0, 2]].argmax(dim=1)
        return F.one_hot(dominant, 3).permute(0, 3, 1, 2).float()

    def provenance(self) -> dict[str, Any]:
        return {"name": "dominant-colour"}


def _detector(**settings: Any) -> ChangeDetector:
    proposer = SuperpixelProposer(region_px=64)
    return ChangeDetector(
        proposer, ChromaticityFeatures(), DominantColourIdentifier(), ChangeSettings(**settings)
    )


def _dilated(mask: torch.Tensor, radius: int) -> torch.Tensor:
    kernel = 2 * radius + 1
    return F.max_pool2d(mask[None, None].float(), kernel, 1, radius)[0, 0].bool()


def _scores(result: ChangeResult, truth: torch.Tensor) -> tuple[float, float]:
    """Recall of the planted change; false change farther than one superpixel from it."""
    recall = float((result.changed & truth).sum() / truth.sum())
    false = float((result.changed & ~_dilated(truth, 8)).sum() / truth.numel())
    return recall, false


@pytest.fixture(scope="module")
def pair():
    return planted_pair(size=128, brightness=1.25)


@pytest.fixture(scope="module")
def mci_result(pair) -> ChangeResult:
    # superpixels tile both dates alike, so the cross-date NMS keeps either date's copy of a
    # cell; the land-cover rule judges it on both dates (the instance rule needs object masks)
    return _detector(mode="mci", rule="landcover").detect(pair.t1, pair.t2)


@pytest.fixture(scope="module")
def imc_result(pair) -> ChangeResult:
    return _detector(mode="imc").detect(pair.t1, pair.t2)


def test_mci_finds_planted_changes_despite_a_brightness_shift(pair, mci_result):
    recall, false = _scores(mci_result, pair.change)
    assert recall >= 0.9
    assert false < 0.05


def test_imc_finds_planted_changes_despite_a_brightness_shift(pair, imc_result):
    recall, false = _scores(imc_result, pair.change)
    assert recall >= 0.9
    assert false < 0.05


@pytest.mark.parametrize("mode", ["mci", "imc"])
def test_a_brightness_shift_alone_is_not_change(pair, mode):
    brighter = (pair.t1 * 1.25).clamp(0, 1)
    result = _detector(mode=mode, rule="landcover").detect(pair.t1, brighter)
    assert float(result.changed.float().mean()) < 0.05


def test_change_classes_name_what_was_there_before_and_after(pair, imc_result):
    result = imc_result
    assert set(result.class_from[pair.removed & result.changed].tolist()) == {2}
    assert set(result.class_to[pair.removed & result.changed].tolist()) == {0}
    assert set(result.class_to[pair.added & result.changed].tolist()) == {1}


def test_class_rasters_are_255_exactly_where_nothing_changed(mci_result):
    result = mci_result
    assert torch.equal(result.class_from == 255, ~result.changed)
    assert torch.equal(result.class_to == 255, ~result.changed)
    assert result.kept.shape == result.cosine.shape == (len(result.masks),)


def test_nothing_is_reported_outside_the_valid_pixels(pair):
    valid = torch.ones(128, 128, dtype=torch.bool)
    valid[:, 64:] = False
    result = _detector(mode="mci", rule="landcover").detect(pair.t1, pair.t2, valid=valid)
    assert not result.changed[:, 64:].any()
    assert result.changed[:, :64].any()
    assert not result.masks.masks[:, :, 64:].any()


def test_to_classes_filter_keeps_only_changes_into_those_classes(pair):
    result = _detector(mode="imc", to_classes=(1,)).detect(pair.t1, pair.t2)
    assert result.changed.any()
    assert set(result.class_to[result.changed].tolist()) == {1}


def test_timings_name_every_step(mci_result, imc_result):
    steps = {"propose", "compare", "identify", "paint", "total"}
    assert steps == set(mci_result.timings) == set(imc_result.timings)


def test_provenance_describes_the_steps():
    detector = _detector(mode="mci", rule="landcover", theta_deg=135.0)
    info = detector.provenance()
    assert info["theta_deg"] == 135.0 and info["rule"] == "landcover"
    assert info["proposer"]["name"] == "superpixel"
    assert info["identifier"] == repr(detector.identifier)


def test_real_pair_with_tiny_segearth_runs_end_to_end(tiny_model_files):
    if not PAIR256[0].is_file():
        pytest.skip(f"shared test data not available: {PAIR256[0]}")
    t1, t2 = read_rgb(PAIR256[0]), read_rgb(PAIR256[1])
    segmenter = SegEarthOV.from_pretrained(  # bilinear: SimFeatUp has its own tests
        weights=tiny_model_files["clip"], upsampler="bilinear", device="cpu", resize_long_side=None
    )
    segmenter.set_classes(["background", "building,house"])
    detector = ChangeDetector(
        SuperpixelProposer(region_px=512), ClipFeatures(segmenter), segmenter.predict_logits
    )
    result = detector.detect(t1, t2)
    assert result.changed.shape == (256, 256) and result.changed.dtype == torch.bool
    assert result.class_from.dtype == result.class_to.dtype == torch.uint8
    assert torch.equal(result.class_from == 255, ~result.changed)
    assert torch.equal(result.class_to == 255, ~result.changed)
    assert result.masks.masks.shape[1:] == (256, 256)
    assert torch.isfinite(result.cosine).all()
    assert detector.provenance()["identifier"]["clip_sha256"]


def test_images_of_different_shapes_are_rejected(pair):
    with pytest.raises(ValueError, match="t1 and t2 must have the same shape"):
        _detector().detect(pair.t1, pair.t2[:, :64])


def test_valid_mask_of_the_wrong_shape_is_rejected(pair):
    with pytest.raises(ValueError, match=r"valid must be bool \[H, W\]"):
        _detector().detect(pair.t1, pair.t2, valid=torch.ones(64, 64, dtype=torch.bool))


def test_class_lists_become_tuples_of_int():
    settings = ChangeSettings(targets=[1, 2], to_classes=[3])  # type: ignore[arg-type]
    assert settings.targets == (1, 2) and settings.to_classes == (3,)


def test_empty_target_list_is_rejected():
    with pytest.raises(ValueError, match="targets is empty"):
        ChangeSettings(targets=())


@pytest.mark.parametrize("theta", [90.0, 45.0, 181.0])
def test_theta_outside_90_180_is_rejected(theta):
    with pytest.raises(ValueError, match=r"theta_deg must be in \(90, 180\]"):
        ChangeSettings(theta_deg=theta)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("nms_iou", 1.5, r"nms_iou must be within 0\.0\.\.1\.0"),
        ("ceg_iou", -0.1, r"ceg_iou must be within 0\.0\.\.1\.0"),
        ("area_thresh", 0.0, r"area_thresh must be within \(0, 1\]"),
        ("mode", "cim", "mode must be 'mci' or 'imc'"),
        ("rule", "semantic", "rule must be 'instance' or 'landcover'"),
    ],
)
def test_out_of_range_settings_are_rejected(name, value, message):
    with pytest.raises(ValueError, match=message):
        ChangeSettings(**{name: value})


def test_target_beyond_the_identifiers_classes_is_rejected(pair):
    with pytest.raises(ValueError, match=r"targets=\[7\] names a class the identifier"):
        _detector(mode="imc", targets=(7,)).detect(pair.t1, pair.t2)


def test_identifier_with_only_background_has_no_target_class(pair):
    def background_only(images: torch.Tensor) -> torch.Tensor:
        return torch.ones(images.shape[0], 1, *images.shape[2:])

    settings = ChangeSettings(mode="imc")
    detector = ChangeDetector(
        SuperpixelProposer(region_px=64), ChromaticityFeatures(), background_only, settings
    )
    with pytest.raises(ValueError, match="no target class"):
        detector.detect(pair.t1, pair.t2)


def test_segmenter_targets_are_checked_when_the_detector_is_built(tiny_model_files):
    segmenter = SegEarthOV.from_pretrained(
        weights=tiny_model_files["clip"], upsampler="bilinear", device="cpu"
    )
    segmenter.set_classes(["background", "building"])
    with pytest.raises(ValueError, match=r"targets=\[2\] names a class the identifier"):
        ChangeDetector(
            SuperpixelProposer(),
            ClipFeatures(segmenter),
            segmenter.predict_logits,
            ChangeSettings(targets=(2,)),
        )
