"""Class names in any script survive into a cube: exact in the table, CF words in flag_meanings."""

from __future__ import annotations

from pathlib import Path

import pytest
import zarr

from terrawatch.errors import InputError
from terrawatch.models.classes import ClassNames, flag_words, parse_class_names
from terrawatch.tasks.core.cube_store import open_cube
from terrawatch.tasks.core.cube_types import TimeStep, classes_attr
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.landcover.cube import prepare_cube

ISSUE_CLASSES = ["Wasser,Gewässer", "Gebäude", "Straße", "bare soil", "水体"]
GRID = GridSpec("EPSG:32632", 10.0, 350_000.0, 5_640_000.0, 351_280.0, 5_641_280.0)
STEP = TimeStep("2024-06-01", "2024-06-30", ("local_1",))


def test_names_in_other_scripts_give_one_transliterated_word_each():
    words = flag_words(["Wasser", "Gebäude", "Straße", "bare soil", "水体"])
    assert words == ("Wasser", "Gebaude", "Strasse", "bare_soil", "Shui_Ti")


def test_a_name_with_nothing_left_gets_its_value_and_duplicates_get_a_suffix():
    assert flag_words(["water", "🌊", "++", "Gewässer", "Gewasser"]) == (
        "water",
        "class_1",
        "++",
        "Gewasser",
        "Gewasser_4",
    )
    assert flag_words(["class_1", "🌊"]) == ("class_1", "class_1_1")


def test_the_cube_keeps_exact_names_and_writes_one_cf_word_per_value(tmp_path: Path):
    store = str(tmp_path / "c.zarr")
    prepare_cube(store, GRID, parse_class_names(ISSUE_CLASSES), STEP, {}, chunk=128)
    cube = open_cube(store)
    meanings = cube.landcover.attrs["flag_meanings"]
    assert meanings == "Wasser Gebaude Strasse bare_soil Shui_Ti"
    assert len(meanings.split()) == len(cube.landcover.attrs["flag_values"]) == 5
    assert [c["name"] for c in cube.attrs["classes"]] == ["Wasser", "Gebäude", "Straße",
                                                          "bare soil", "水体"]  # fmt: skip
    assert ClassNames.from_attrs(cube.attrs["classes"]) == parse_class_names(ISSUE_CLASSES)
    stac = cube.landcover.attrs["classification:classes"]
    assert [c["title"] for c in stac] == ["Wasser", "Gebäude", "Straße", "bare soil", "水体"]
    assert [c["name"] for c in stac] == meanings.split()


def _damage_flag_meanings(store: str, meanings: str) -> None:
    array = zarr.open_array(store, path="landcover", mode="r+")
    array.attrs["flag_meanings"] = meanings
    zarr.consolidate_metadata(store)


def test_an_old_cube_with_misaligned_flag_meanings_is_read_from_its_class_table(
    tmp_path: Path, caplog
):
    store = str(tmp_path / "c.zarr")
    prepare_cube(store, GRID, parse_class_names(ISSUE_CLASSES), STEP, {}, chunk=128)
    _damage_flag_meanings(store, "Wasser Gebude Strae bare_soil ")  # what the issue found
    cube = open_cube(store)
    assert cube.landcover.attrs["flag_meanings"] == "Wasser Gebaude Strasse bare_soil Shui_Ti"
    assert "does not give one CF word per class" in caplog.text


def test_misaligned_flag_meanings_without_a_class_table_name_the_store(tmp_path: Path):
    store = str(tmp_path / "c.zarr")
    prepare_cube(store, GRID, parse_class_names(ISSUE_CLASSES), STEP, {}, chunk=128)
    group = zarr.open_group(store, mode="r+")
    del group.attrs["classes"]
    _damage_flag_meanings(store, "Wasser Gebude Strae bare_soil ")
    with pytest.raises(InputError, match=r"c.zarr landcover: flag_meanings .* is not 5 CF words"):
        open_cube(store)


def test_a_damaged_class_table_is_refused_when_read():
    table = classes_attr(parse_class_names(ISSUE_CLASSES))
    del table[1]
    with pytest.raises(InputError, match=r"class table is damaged at entry 1"):
        ClassNames.from_attrs(table)
