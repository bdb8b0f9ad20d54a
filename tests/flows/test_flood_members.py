"""``--method``: which flood members run with the weights at hand (offline, empty weights dir)."""

from __future__ import annotations

import pytest

from terrawatch.errors import InputError, WeightsNotFoundError
from terrawatch.flows.flood_members import flood_members, optical_segmenter
from terrawatch.flows.options import FloodModelOptions

RULE = "tests.flows.water_rule:build"


def test_auto_without_any_weights_runs_the_weights_free_members():
    assert flood_members(FloodModelOptions(), optical=False) == ("threshold",)
    # post-event Sentinel-2 scenes: the optical member's NDWI/MNDWI rule needs no weights
    assert flood_members(FloodModelOptions(), optical=True) == ("threshold", "optical")


def test_the_optical_segmenter_joins_only_with_its_weights(tmp_path):
    assert optical_segmenter(FloodModelOptions()) is False  # empty weights dir: rule alone
    assert optical_segmenter(FloodModelOptions(factory=RULE)) is True
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        optical_segmenter(FloodModelOptions(optical_weights=str(tmp_path / "missing.pt")))


def test_auto_adds_every_segmenter_that_can_run():
    model = FloodModelOptions(factory=RULE)
    assert flood_members(model, optical=False) == ("threshold", "alignearth")
    assert flood_members(model, optical=True) == ("threshold", "alignearth", "optical")


def test_named_members_need_their_weights():
    assert flood_members(FloodModelOptions(method="threshold"), optical=False) == ("threshold",)
    with pytest.raises(WeightsNotFoundError):
        flood_members(FloodModelOptions(method="alignearth"), optical=False)
    with pytest.raises(WeightsNotFoundError):
        flood_members(FloodModelOptions(method="ensemble"), optical=False)
    assert flood_members(FloodModelOptions(method="ensemble", factory=RULE), optical=True) == (
        "threshold", "alignearth", "optical",
    )  # fmt: skip


def test_a_weights_path_the_user_gave_must_exist_even_in_auto(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        flood_members(FloodModelOptions(weights=str(tmp_path / "missing.pt")), optical=False)


def test_optical_method_without_optical_scenes_is_refused_with_the_fix():
    with pytest.raises(InputError, match=r"--method optical needs cloud-free optical scenes.*"
                       r"drop --no-optical"):  # fmt: skip
        flood_members(FloodModelOptions(method="optical", factory=RULE), optical=False)
    assert flood_members(FloodModelOptions(method="optical"), optical=True) == ("optical",)
