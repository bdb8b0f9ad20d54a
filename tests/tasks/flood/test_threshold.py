"""The threshold member's rules on arrays: scene thresholds, the decrease test, the reference."""

from __future__ import annotations

import numpy as np

from terrawatch.tasks.core.speckle import lee
from terrawatch.tasks.flood.stack import DbStack
from terrawatch.tasks.flood.threshold import (
    ASHMAN_D_MIN,
    GLOBAL_THRESHOLD_DB,
    ashman_d,
    scene_threshold,
    water_probability,
)
from terrawatch.tasks.flood.threshold_member import EXCLUDE_LOW_BACKSCATTER, threshold_view
from tests.flows.flood_event import backscatter_db, plant, speckled


def _scene(flooded: bool, seed: int, size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    event = plant(size)
    vv, vh = backscatter_db(event, flooded)
    rng = np.random.default_rng(seed)
    to_db = [np.clip(10 * np.log10(lee(speckled(b, rng), 7)), lo, hi)
             for b, (lo, hi) in ((vv, (-25, 0)), (vh, (-32, -5)))]  # fmt: skip
    return to_db[0], to_db[1]


def test_split_based_threshold_lies_between_water_and_land():
    vv, vh = _scene(True, 0)
    found = scene_threshold(vv, "vv")
    assert found.method == "split-otsu" and found.tiles >= 3
    assert -20.0 < found.db < -13.0
    assert -27.0 < scene_threshold(vh, "vh").db < -19.0


def test_scene_without_water_falls_back_to_the_global_threshold():
    rng = np.random.default_rng(1)
    land = 10 * np.log10(lee(speckled(np.full((160, 160), -9.0), rng), 7))
    found = scene_threshold(land, "vv")
    assert found.method == "global-fallback" and found.db == GLOBAL_THRESHOLD_DB["vv"]


def test_ashman_d_separates_two_modes_and_not_one():
    rng = np.random.default_rng(2)
    assert ashman_d(rng.normal(-23, 1, 500), rng.normal(-9, 1.5, 500)) > 5
    one = rng.normal(-9, 1.5, 1000)  # halves of one mode: D about 2.67
    assert ashman_d(one[one < -9], one[one >= -9]) < ASHMAN_D_MIN


def test_dark_pixel_without_a_decrease_is_not_new_water():
    dark = np.array([0.95, 0.95, 0.95], np.float32)
    post = np.array([-19.0, -19.0, -19.0], np.float32)
    before = np.array([-9.0, -18.5, np.nan], np.float32)
    never = np.zeros(3, bool)
    probability = water_probability(dark, post, before, never)
    assert probability[0] > 0.9  # 10 dB darker than before: new water
    assert probability[1] < 0.5  # as dark before (e.g. a wet field), no decrease
    assert probability[2] > 0.9  # no reference: darkness alone
    assert water_probability(dark, post, before, np.ones(3, bool))[1] > 0.9  # permanent water


def test_reference_stack_gives_reference_water_and_exclusion():
    post = DbStack({"vv": np.array([[[-24.0, -9.0, -24.0]]], np.float32)}, ("p",),
                   np.array(["2024-05-12T05:00"], "datetime64[ns]"))  # fmt: skip
    ref = np.array([[[-24.0, -9.0, -9.0]], [[-24.0, -9.0, -9.5]], [[-23.0, -10.0, -8.5]]])
    days = np.array(["2024-05-01", "2024-05-04", "2024-05-07"], "datetime64[ns]")
    reference = DbStack({"vv": ref.astype(np.float32)}, ("a", "b", "c"), days)
    view = threshold_view(post, reference, {k: {"vv": -16.0} for k in ("p", "a", "b", "c")})
    assert view.reference_water.tolist() == [[1, 0, 0]]
    assert view.exclusion.tolist() == [[EXCLUDE_LOW_BACKSCATTER, 0, 0]]
    assert (view.probability > 0.5).tolist() == [[True, False, True]]
    assert view.observed_at.tolist() == [[1715490000] * 3]
