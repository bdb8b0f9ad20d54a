"""The class list: one value from the command line to the model's prompts and the cube's table.

Parsed once (``--classes``, a class file, a list of entries; synonyms and validation), carried
as that same frozen value to the workers (:class:`~terrawatch.tasks.core.worker_model.ModelSpec`)
and the cube writer, and read back from a cube's ``classes`` attribute as the same type. Plain
Python on purpose: the command line parses it without importing torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from text_unidecode import unidecode

from terrawatch.errors import InputError, InputNotFoundError

FLAG_WORD = re.compile(r"[A-Za-z0-9_.+\-@]+")
"""A CF ``flag_meanings`` word: letters, digits and ``_ . + - @`` (CF 1.9, section 3.5)."""


@dataclass(frozen=True)
class ClassNames:
    """Classes, each with one or more synonyms; every synonym is its own text query.

    Class ``i`` is label value ``i`` in a cube; its first synonym is its display name.
    """

    synonyms: tuple[tuple[str, ...], ...]
    """Per class its words; the first one is the display name."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "synonyms", tuple(tuple(words) for words in self.synonyms))

    def __len__(self) -> int:
        return len(self.synonyms)

    @property
    def names(self) -> tuple[str, ...]:
        """Display name per class."""
        return tuple(words[0] for words in self.synonyms)

    @property
    def queries(self) -> tuple[str, ...]:
        """All synonyms, flattened in class order."""
        return tuple(word for words in self.synonyms for word in words)

    @property
    def query_class(self) -> tuple[int, ...]:
        """Class index of each query."""
        return tuple(i for i, words in enumerate(self.synonyms) for _ in words)

    @property
    def entries(self) -> list[str]:
        """One ``"word,synonym"`` entry per class: the JSON form of flow parameters."""
        return [",".join(words) for words in self.synonyms]

    @property
    def flag_words(self) -> tuple[str, ...]:
        """CF ``flag_meanings`` words, one per class (see :func:`flag_words`)."""
        return flag_words(self.names)

    @classmethod
    def from_attrs(cls, classes: Sequence[Mapping]) -> ClassNames:
        """The class list of a cube's ``classes`` group attribute (``synonyms`` per class).

        Raises:
            InputError: the table is not one entry per value 0..n-1 whose name is its first
                synonym (a damaged or hand-edited cube); the legend would be misaligned.
        """
        for i, entry in enumerate(classes):
            synonyms = entry.get("synonyms") if isinstance(entry, Mapping) else None
            if (
                not isinstance(synonyms, Sequence)
                or not synonyms
                or entry.get("value") != i
                or entry.get("name") != synonyms[0]
            ):
                raise InputError(
                    f"the cube's class table is damaged at entry {i}: {entry!r}; each entry needs "
                    f"value {i}, a name and synonyms starting with that name"
                )
        return parse_class_names([",".join(entry["synonyms"]) for entry in classes])


def flag_words(names: Sequence[str]) -> tuple[str, ...]:
    """One CF ``flag_meanings`` word per class name, unique, never empty.

    CF words allow only ``[A-Za-z0-9_.+-@]``, so names in other scripts are transliterated
    (``Gewässer`` -> ``Gewasser``, ``Straße`` -> ``Strasse``, ``水体`` -> ``Shui_Ti``), blanks
    become ``_`` and other symbols go; a name with nothing left becomes ``class_<value>`` and a
    word already taken gets ``_<value>``. The exact names stay in the cube's ``classes`` table;
    these words exist so that ``flag_meanings.split()`` lines up with ``flag_values``.
    """
    words: list[str] = []
    for value, name in enumerate(names):
        word = re.sub(r"[^A-Za-z0-9_.+\-@]", "", re.sub(r"\s+", "_", unidecode(name).strip()))
        word = word.strip("_") or f"class_{value}"
        while word in words:
            word = f"{word}_{value}"
        words.append(word)
    return tuple(words)


def check_flag_meanings(flag_meanings: str, n_values: int, where: str) -> None:
    """``flag_meanings`` must be ``n_values`` CF words (written by :func:`flag_words`).

    Raises:
        InputError: a different count or a word outside ``[A-Za-z0-9_.+-@]``.
    """
    words = str(flag_meanings).split(" ")
    if len(words) != n_values or not all(FLAG_WORD.fullmatch(w) for w in words):
        raise InputError(
            f"{where}: flag_meanings {flag_meanings!r} is not {n_values} CF words (one per flag "
            "value, letters, digits and _.+-@ only); the legend would be misaligned. Rewrite the "
            "attribute from the 'classes' table, or write the cube again"
        )


def parse_class_names(names_or_path: ClassNames | str | Path | Sequence[str]) -> ClassNames:
    """Classes from a class-name file or a list; a :class:`ClassNames` is returned as it is.

    The file format is the reference's: one class per line (line index = class index),
    comma-separated synonyms, whitespace stripped, last newline optional. A list holds one class
    per entry, with the same comma convention for synonyms (``["water", "tree,forest"]``).

    Raises:
        InputError: no classes, an empty class or synonym, or a duplicated query word.
        InputNotFoundError: a path that does not exist.
    """
    if isinstance(names_or_path, ClassNames):
        return names_or_path
    if isinstance(names_or_path, Path) or (
        isinstance(names_or_path, str) and _looks_like_path(names_or_path)
    ):
        path = Path(names_or_path)
        if not path.is_file():
            raise InputNotFoundError(f"class-name file {str(path)!r} does not exist")
        lines = path.read_text(encoding="utf-8").splitlines()
        entries = [line for line in lines if line.strip()]
        source = f"class-name file {str(path)!r}"
    elif isinstance(names_or_path, str):
        raise InputError(
            f"classes must be a list of names or a class-name file path, got the string "
            f"{names_or_path!r}; pass a list such as ['water', 'tree,forest']"
        )
    else:
        entries = list(names_or_path)
        source = "class list"
    if not entries:
        raise InputError(f"{source} is empty: give at least one class name, e.g. ['water', 'tree']")
    synonyms = tuple(_split_synonyms(entry, source) for entry in entries)
    queries = [word for words in synonyms for word in words]
    duplicates = sorted({word for word in queries if queries.count(word) > 1})
    if duplicates:
        raise InputError(
            f"{source} repeats the query words {duplicates}; each word may appear once"
        )
    return ClassNames(synonyms)


def _looks_like_path(text: str) -> bool:
    return os.sep in text or text.endswith(".txt") or Path(text).is_file()


def _split_synonyms(entry: str, source: str) -> tuple[str, ...]:
    if not isinstance(entry, str):
        raise InputError(f"{source}: class names must be strings, got {entry!r}")
    synonyms = tuple(word.strip() for word in entry.split(","))
    if not all(synonyms):
        raise InputError(f"{source}: empty class name or synonym in {entry!r}")
    return synonyms
