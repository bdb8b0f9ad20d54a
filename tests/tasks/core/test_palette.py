"""Colours by meaning: the same colour for a class in quicklooks, GeoTIFF tables, cube and STAC."""

from __future__ import annotations

import colorsys

import pytest

from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core import render
from terrawatch.tasks.core.cube_types import class_attrs, classes_attr
from terrawatch.tasks.core.palette import MEANING_COLORS, OTHER_COLORS, class_colors, meaning_of
from tests.conftest import shared_data


def _hsv(hex_color: str) -> tuple[float, float, float]:
    rgb = [int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    return colorsys.rgb_to_hsv(*rgb)


def test_openearthmap_classes_are_coloured_by_meaning():
    classes = parse_class_names(shared_data("classnames", "cls_openearthmap.txt"))
    colors = dict(zip(classes.names, class_colors(classes.synonyms), strict=True))
    hue, saturation, value = _hsv(colors["tree"])
    assert 0.25 < hue < 0.45 and value < 0.5, "tree is dark green, not brown"
    hue, saturation, _ = _hsv(colors["water"])
    assert 0.55 < hue < 0.7 and saturation > 0.7, "water is a saturated blue"
    assert colors["grass"] != colors["tree"] and _hsv(colors["grass"])[2] > 0.7  # light green
    assert colors["cropland"] == MEANING_COLORS["cropland"]
    assert colors["building"] == MEANING_COLORS["building"]
    assert colors["road"] == MEANING_COLORS["road"]
    assert colors["bareland"] == MEANING_COLORS["bare soil"]
    assert colors["background"] == MEANING_COLORS["background"]
    assert len(set(colors.values())) == len(colors)


@pytest.mark.parametrize(
    ("name", "meaning"),
    [
        ("river", "water"), ("Lake", "water"), ("Wasser", "water"), ("Gewässer", "water"),
        ("水体", "water"), ("water body", "water"), ("forest", "tree"), ("tree cover", "tree"),
        ("Wald", "tree"), ("meadow", "grass"), ("agricultural land", "cropland"),
        ("Gebäude", "building"), ("built-up", "building"), ("Straße", "road"),
        ("bare_soil", "bare soil"), ("snow", "snow"), ("clouds", "cloud"), ("shrubland", "shrub"),
        ("wetland", "wetland"), ("beach", "sand"), ("impervious surface", "impervious"),
    ],
)  # fmt: skip
def test_synonyms_in_several_languages_find_their_meaning(name, meaning):
    assert meaning_of(name) == meaning


def test_order_does_not_change_a_classes_colour():
    assert class_colors(["water", "tree"]) == class_colors(["tree", "water"])[::-1]


def test_unknown_names_never_take_a_meanings_colour_and_repeats_stay_distinct():
    colors = class_colors(["ship", "car", "water", "river", "plane"])
    assert colors[2] == MEANING_COLORS["water"]
    assert colors[3] != colors[2]  # a second water-like class is told apart
    assert [colors[0], colors[1], colors[3], colors[4]] == list(OTHER_COLORS[:4])
    assert class_colors(["ship", "car", "water", "river", "plane"]) == colors  # deterministic


def test_cube_table_cf_colours_stac_hints_and_pictures_agree():
    classes = parse_class_names(["tree,forest", "water,river", "ship"])
    colors = class_colors(classes.synonyms)
    attrs = class_attrs(classes)
    assert [entry["color"] for entry in classes_attr(classes)] == colors
    assert attrs["flag_colors"].split() == colors
    assert ["#" + c["color_hint"].lower() for c in attrs["classification:classes"]] == colors
    assert render.class_colors(["tree,forest", "water,river", "ship"]) == colors
