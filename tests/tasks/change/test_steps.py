"""``auto`` proposer/comparator: SAM + DINOv2 when both models are in the weights directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from terrawatch.errors import InputError, WeightsNotFoundError
from terrawatch.flows.options import ChangeOptions
from terrawatch.tasks.change.steps import choose_steps
from tests.models.change_fixtures import save_tiny_dinov2, save_tiny_sam


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-hf")
    return {
        "sam-vit-huge": save_tiny_sam(root / "sam-vit-huge"),
        "dinov2-base": save_tiny_dinov2(root / "dinov2-base"),
    }


def _weights_dir(tmp_path: Path, monkeypatch, tiny_hf, names: tuple[str, ...]) -> Path:
    root = tmp_path / "weights"
    root.mkdir()
    for name in names:
        shutil.copytree(tiny_hf[name], root / name)
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(root))
    return root


def test_auto_picks_sam_and_dinov2_when_both_are_in_the_weights_dir(tmp_path, monkeypatch, tiny_hf):
    root = _weights_dir(tmp_path, monkeypatch, tiny_hf, ("sam-vit-huge", "dinov2-base"))
    steps = choose_steps("auto", "auto")
    assert (steps.proposer, steps.comparator) == ("sam", "dinov2")
    # workers load from the directories found here, whatever their own environment says
    assert steps.proposer_weights == str(root / "sam-vit-huge")
    assert steps.comparator_weights == str(root / "dinov2-base")
    assert "published DynamicEarth method SAM + DINOv2" in steps.reason
    assert ChangeOptions().chosen_rule() == "instance"


@pytest.mark.parametrize("present", [(), ("sam-vit-huge",), ("dinov2-base",)])
def test_auto_falls_back_to_superpixels_and_clip_naming_what_is_missing(
    tmp_path, monkeypatch, tiny_hf, present
):
    root = _weights_dir(tmp_path, monkeypatch, tiny_hf, present)
    steps = choose_steps("auto", "auto")
    assert (steps.proposer, steps.comparator) == ("superpixel", "clip")
    assert steps.proposer_weights is None and steps.comparator_weights is None
    for name in {"sam-vit-huge", "dinov2-base"} - set(present):
        assert f"{name} (looked in {root / name})" in steps.reason
    assert "terrawatch weights fetch sam-vit-huge dinov2-base" in steps.reason
    assert ChangeOptions().chosen_rule() == "landcover"


def test_an_incomplete_model_folder_does_not_count_as_present(tmp_path, monkeypatch, tiny_hf):
    root = _weights_dir(tmp_path, monkeypatch, tiny_hf, ("sam-vit-huge", "dinov2-base"))
    (root / "dinov2-base" / "model.safetensors").unlink()  # e.g. an interrupted copy
    assert choose_steps("auto", "auto").proposer == "superpixel"


def test_explicit_weights_directories_count_as_present(tmp_path, tiny_hf):
    steps = choose_steps("auto", "auto", str(tiny_hf["sam-vit-huge"]), str(tiny_hf["dinov2-base"]))
    assert (steps.proposer, steps.comparator) == ("sam", "dinov2")
    assert steps.proposer_weights == str(tiny_hf["sam-vit-huge"])


def test_one_auto_step_is_chosen_on_its_own_weights(tmp_path, monkeypatch, tiny_hf):
    _weights_dir(tmp_path, monkeypatch, tiny_hf, ("sam-vit-huge",))
    steps = choose_steps("auto", "clip")
    assert (steps.proposer, steps.comparator) == ("sam", "clip")
    assert "auto proposer: sam, sam-vit-huge is present" in steps.reason
    steps = choose_steps("superpixel", "auto")
    assert (steps.proposer, steps.comparator) == ("superpixel", "clip")
    assert "auto comparator: clip, dinov2-base is missing" in steps.reason


def test_explicit_choices_pass_through_unchanged(tmp_path, monkeypatch, tiny_hf):
    _weights_dir(tmp_path, monkeypatch, tiny_hf, ("sam-vit-huge", "dinov2-base"))
    steps = choose_steps("superpixel", "clip")
    assert (steps.proposer, steps.comparator, steps.proposer_weights) == (
        "superpixel",
        "clip",
        None,
    )
    assert steps.reason == "as requested: superpixel + clip"


def test_explicit_sam_without_weights_still_fails_with_the_missing_weights_error():
    options = ChangeOptions(proposer="sam")
    assert options.chosen_steps().proposer == "sam"
    with pytest.raises(WeightsNotFoundError, match=r"sam-vit-huge.*not found.*offline"):
        options.resolve_weights()


def test_auto_never_downloads_and_resolves_nothing_when_weights_are_missing():
    ChangeOptions().resolve_weights()  # offline, empty weights dir: no error, no download


def test_unknown_proposer_is_refused_naming_the_flag():
    with pytest.raises(InputError, match=r"--proposer must be one of \('auto'"):
        choose_steps("slic", "auto")
