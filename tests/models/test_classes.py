"""The class list: parsed once from any form, carried as one value, read back from a cube."""

from __future__ import annotations

import subprocess
import sys

import pytest

from terrawatch.errors import InputError, InputNotFoundError
from terrawatch.models.classes import ClassNames, parse_class_names
from terrawatch.tasks.core.worker_model import ModelSpec


def test_entries_files_and_values_give_the_same_class_list(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("water, river\nbuilding,roof\n\ntree\n", encoding="utf-8")
    from_file = parse_class_names(path)
    from_entries = parse_class_names(["water,river", "building,roof", "tree"])
    assert from_file == from_entries
    assert from_file.names == ("water", "building", "tree")
    assert from_file.queries == ("water", "river", "building", "roof", "tree")
    assert from_file.query_class == (0, 0, 1, 1, 2)
    assert parse_class_names(from_file.entries) == from_file
    assert parse_class_names(from_file) is from_file  # a parsed list is never parsed again


def test_the_cube_attribute_reads_back_as_the_same_value():
    classes = parse_class_names(["background", "bare land,bareland", "Gewässer,水体"])
    attrs = [
        {"value": i, "name": n, "synonyms": list(s), "color": "#000000"}
        for i, (n, s) in enumerate(zip(classes.names, classes.synonyms, strict=True))
    ]
    assert ClassNames.from_attrs(attrs) == classes


def test_the_worker_spec_carries_the_parsed_value():
    classes = parse_class_names(["water,river", "land"])
    spec = ModelSpec(classes, factory="x:y")
    assert spec.classes is classes
    assert ModelSpec(("water,river", "land"), factory="x:y") == spec  # entries parse the same
    assert hash(ModelSpec(classes, factory="x:y")) == hash(spec)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "empty"),
        (["water", ""], "empty class name"),
        (["water,river", "river"], "repeats the query words"),
        ("water", "a list of names or a class-name file"),
    ],
)
def test_bad_class_lists_are_input_errors(value, message):
    with pytest.raises(InputError, match=message):
        parse_class_names(value)


def test_a_missing_class_file_is_named(tmp_path):
    with pytest.raises(InputNotFoundError, match="does not exist"):
        parse_class_names(tmp_path / "nope.txt")


def test_parsing_classes_does_not_import_torch():
    code = (
        "import sys; from terrawatch.models.classes import parse_class_names; "
        "parse_class_names(['a,b']); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
