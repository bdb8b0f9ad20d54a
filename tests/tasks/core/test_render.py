"""Tests for tasks/render.py: class colours, colorize, quicklook PNGs and class-area tables."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from terrawatch.tasks.core.palette import MEANING_COLORS, OTHER_COLORS
from terrawatch.tasks.core.render import (
    BACKGROUND_COLOR,
    CHANGE_COLOR,
    change_quicklook_png,
    class_area_table,
    class_colors,
    colorize,
    label_histogram,
    quicklook_png,
)

CLASSES = ["water", "building", "road", "tree"]


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


def _decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _colours_in(png: bytes) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in p) for p in np.unique(_decode(png).reshape(-1, 3), axis=0)}


# --- palette and class colours --------------------------------------------------------------


def test_colours_of_unknown_names_are_distinct_and_never_a_meanings_colour():
    rgb = np.array([_rgb(c) for c in OTHER_COLORS], float)
    distances = [np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2)]
    assert len(OTHER_COLORS) >= 20 and min(distances) > 40
    assert not set(OTHER_COLORS) & set(MEANING_COLORS.values())


def test_unknown_names_take_other_colours_in_class_order():
    names = [f"class {i}" for i in range(len(OTHER_COLORS) + 2)]
    colors = class_colors(names)
    assert colors[:3] == list(OTHER_COLORS[:3])
    assert colors[len(OTHER_COLORS) + 1] == OTHER_COLORS[1]
    assert class_colors(["ship", "water"]) == [OTHER_COLORS[0], MEANING_COLORS["water"]]


@pytest.mark.parametrize("name", ["background", "Clutter", "clutter,background", "others"])
def test_background_like_classes_are_grey(name):
    assert class_colors(["water", name]) == [MEANING_COLORS["water"], BACKGROUND_COLOR]


# --- colorize and label_histogram -----------------------------------------------------------


def test_colorize_paints_each_class():
    labels = np.array([[0, 1], [1, 0]], np.uint8)
    rgb = colorize(labels, ["#ff0000", "#0000ff"])
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    np.testing.assert_array_equal(rgb[0], [[255, 0, 0], [0, 0, 255]])


def test_colorize_paints_nodata_black():
    rgb = colorize(np.array([[0, 255]], np.uint8), ["#ffffff"])
    np.testing.assert_array_equal(rgb[0, 1], [0, 0, 0])


def test_colorize_honours_a_custom_nodata_value():
    rgb = colorize(np.array([[0, 7]], np.int64), ["#ffffff"], nodata=7, nodata_color="#00ff00")
    np.testing.assert_array_equal(rgb[0], [[255, 255, 255], [0, 255, 0]])


def test_colorize_rejects_ids_without_colour():
    with pytest.raises(ValueError, match=r"class id\(s\) \[2\] but only 2 colours"):
        colorize(np.array([[0, 2]], np.uint8), ["#ffffff", "#000000"])


def test_colorize_rejects_invalid_colour():
    with pytest.raises(ValueError, match=r"colors\[1\]='not-a-colour' is not a colour"):
        colorize(np.zeros((2, 2), np.uint8), ["#ffffff", "not-a-colour"])


def test_label_histogram_counts_every_value():
    labels = np.array([[0, 0, 1], [255, 255, 255]], np.uint8)
    counts = label_histogram(labels)
    assert counts.shape == (256,) and (counts[0], counts[1], counts[255], counts.sum()) == (
        2,
        1,
        3,
        6,
    )


# --- quicklook_png --------------------------------------------------------------------------


def test_quicklook_legend_shows_every_class_colour():
    # only class 0 is in the image, so classes 1..3 can only come from the legend
    png = quicklook_png(np.zeros((64, 64), np.uint8), CLASSES)
    assert {_rgb(c) for c in class_colors(CLASSES)} <= _colours_in(png)


def test_quicklook_shows_the_rgb_image_beside_the_labels():
    rgb = np.zeros((3, 64, 64), np.float32)
    rgb[0] = 0.2  # -> (51, 0, 0)
    labels_only = _decode(quicklook_png(np.zeros((64, 64), np.uint8), CLASSES))
    png = quicklook_png(np.zeros((64, 64), np.uint8), CLASSES, rgb=rgb)
    assert (51, 0, 0) in _colours_in(png) and _decode(png).shape[1] > labels_only.shape[1]


def test_quicklook_size_is_bounded_by_max_size():
    # 1500 x 900 at max_size=300 -> stride 5 -> a 300 x 180 panel, plus title and legend
    shape = _decode(quicklook_png(np.zeros((1500, 900), np.uint8), CLASSES, max_size=300)).shape
    assert 300 <= shape[0] <= 300 + 150 and 180 <= shape[1] <= 300 + 60


def test_quicklook_downsamples_a_huge_map_without_copying_it():
    # a 20k x 20k read-only view of one value: any full-size copy would cost gigabytes
    huge = np.broadcast_to(np.uint8(1), (20000, 20000))
    height, width, _ = _decode(quicklook_png(huge, CLASSES, max_size=256)).shape
    assert height <= 256 + 150 and width <= 256 + 60


def test_quicklook_rejects_rgb_of_another_shape():
    with pytest.raises(ValueError, match=r"rgb must be \[3, H, W\] with H, W = \(64, 64\)"):
        quicklook_png(np.zeros((64, 64), np.uint8), CLASSES, rgb=np.zeros((3, 32, 32)))


def test_quicklook_rejects_colours_not_matching_classes():
    with pytest.raises(ValueError, match="colors has 1 entries but class_names has 4"):
        quicklook_png(np.zeros((8, 8), np.uint8), CLASSES, colors=["#ffffff"])


def test_quicklook_rejects_non_positive_max_size():
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        quicklook_png(np.zeros((8, 8), np.uint8), CLASSES, max_size=0)


# --- class_area_table -----------------------------------------------------------------------


def test_class_area_table_arithmetic():
    # 10 m pixels (100 m²): 300 px = 0.03 km², 100 px = 0.01 km²; nodata left out of shares
    rows = class_area_table({0: 300, 1: 100, 255: 50}, ["water", "tree", "road"], 100.0)
    assert rows == [
        {"class": "water", "pixels": 300, "area_km2": pytest.approx(0.03), "share_percent": 75.0},
        {"class": "tree", "pixels": 100, "area_km2": pytest.approx(0.01), "share_percent": 25.0},
        {"class": "road", "pixels": 0, "area_km2": 0.0, "share_percent": 0.0},
    ]


def test_class_area_table_accepts_a_histogram():
    counts = label_histogram(np.array([[0, 1, 1, 255]], np.uint8))
    rows = class_area_table(counts, ["a", "b"], 0.25)
    assert [(r["pixels"], r["area_km2"], r["share_percent"]) for r in rows] == [
        (1, pytest.approx(0.25e-6), pytest.approx(100 / 3)),
        (2, pytest.approx(0.5e-6), pytest.approx(200 / 3)),
    ]


def test_class_area_table_with_nothing_classified_has_zero_shares():
    rows = class_area_table({255: 9}, ["a"], 1.0)
    assert rows == [{"class": "a", "pixels": 0, "area_km2": 0.0, "share_percent": 0.0}]


def test_class_area_table_rejects_unknown_class_ids():
    with pytest.raises(ValueError, match=r"5 pixels of class id 3 but class_names has 2"):
        class_area_table({0: 1, 3: 5}, ["a", "b"], 1.0)


@pytest.mark.parametrize("area", [0.0, -1.0, float("nan")])
def test_class_area_table_rejects_bad_pixel_area(area):
    with pytest.raises(ValueError, match="pixel_area_m2 must be a positive finite area"):
        class_area_table({0: 1}, ["a"], area)


# --- change_quicklook_png -------------------------------------------------------------------


def _change_pair(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t1 = np.zeros((3, size, size), np.float32)
    t2 = np.full((3, size, size), 0.5, np.float32)
    return t1, t2, np.zeros((size, size), bool)


def test_change_quicklook_draws_the_outline():
    t1, t2, changed = _change_pair(128)
    changed[40:80, 40:80] = True
    png = change_quicklook_png(t1, t2, changed)
    assert _rgb(CHANGE_COLOR) in _colours_in(png) and (128, 128, 128) in _colours_in(png)


def test_change_quicklook_has_three_panels():
    t1, t2, changed = _change_pair(128)
    height, width, _ = _decode(change_quicklook_png(t1, t2, changed)).shape
    assert width >= 3 * 256 > height  # small panels are shown at 256 px


def test_change_quicklook_keeps_a_one_pixel_change_when_downsampling():
    t1, t2, changed = _change_pair(2000)
    changed[1001, 1001] = True  # not on the stride grid of max_size=100 (step 20)
    png = change_quicklook_png(t1, t2, changed, max_size=100)
    assert _rgb(CHANGE_COLOR) in _colours_in(png)


def test_change_quicklook_rejects_mismatched_images():
    t1, t2, changed = _change_pair(64)
    with pytest.raises(ValueError, match=r"t2_rgb must be \[3, H, W\] with H, W = \(64, 64\)"):
        change_quicklook_png(t1, t2[:, :32], changed)
