"""Text that pictures can draw: a font chain covering the names, else a transliteration.

Class names come in any script (``Gewässer``, ``水体``). matplotlib's default DejaVu Sans has no
CJK glyphs and draws boxes with a "Glyph missing" warning per character. Here every character
is looked up in the fonts matplotlib knows (their character maps, read once per process): the
fonts that cover the rest join the default as matplotlib's font fallback chain (a system with
Noto CJK, e.g. the Docker image's ``fonts-noto-cjk``, draws the names as they are); characters
no installed font covers are transliterated (``水体`` -> ``Shui Ti``), so no box is ever drawn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache, lru_cache

from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from text_unidecode import unidecode

_NOT_FALLBACKS = frozenset({"Last Resort High-Efficiency"})
"""Fonts that cover every code point with a box: exactly what a fallback must not draw."""

_PREFERRED = ("Noto Sans", "Source Han Sans", "WenQuanYi", "Droid Sans", "DejaVu Sans")
"""Fallback families tried first, by name prefix: sans-serif faces that match the default."""


def drawable_texts(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """``texts`` as the default font chain can draw them, and that chain (family names).

    Returns:
        The texts (characters no font covers are transliterated; ``$`` escaped so no text
        turns into mathtext) and the font families to pass as ``fontfamily``/``prop``.
    """
    base_path, base_family = _default_font()
    base = _charmap(base_path)
    families = [base_family]
    out = []
    for text in texts:
        out.append(_drawable(str(text), base, families).replace("$", r"\$") or "?")
    return out, families


def _mark_missing(text: str, base: frozenset[int], families: list[str]) -> str:
    """``text`` with each character no font covers replaced by NUL; covering fonts join."""
    marked = []
    for ch in text:
        family = None if ord(ch) in base or ch.isspace() else _font_for(ord(ch))
        if family is not None and family not in families:
            families.append(family)
        marked.append(ch if ord(ch) in base or ch.isspace() or family is not None else "\x00")
    return "".join(marked)


def _drawable(text: str, base: frozenset[int], families: list[str]) -> str:
    """``text`` with the runs of characters no font covers transliterated."""
    marked = _mark_missing(text, base, families)
    parts, last = [], 0
    for run in re.finditer(r"\x00+", marked):
        spelled = unidecode(text[run.start() : run.end()]).strip()
        before, after = marked[run.start() - 1 : run.start()], marked[run.end() : run.end() + 1]
        pad_left = " " if before.isalnum() and spelled else ""
        pad_right = " " if after.isalnum() and spelled else ""
        parts += [marked[last : run.start()], pad_left, spelled, pad_right]
        last = run.end()
    parts.append(marked[last:])
    return " ".join("".join(parts).split()) if last else text


@lru_cache(maxsize=1)
def _default_font() -> tuple[str, str]:
    """Path and family of the font matplotlib uses for sans-serif text."""
    path = str(font_manager.findfont(font_manager.FontProperties(family=["sans-serif"])))
    return path, FT2Font(path).family_name


@cache
def _charmap(path: str) -> frozenset[int]:
    return frozenset(FT2Font(path).get_charmap())


@lru_cache(maxsize=4096)
def _font_for(codepoint: int) -> str | None:
    """The family of an installed regular font that has a glyph for ``codepoint``, if any."""
    for entry in _fallback_candidates():
        try:
            if codepoint in _charmap(str(entry.fname)):
                return entry.name
        except (OSError, RuntimeError):  # an unreadable font file: skip it
            continue
    return None


@lru_cache(maxsize=1)
def _fallback_candidates() -> list:
    """Regular upright fonts, preferred families first."""
    entries = [
        f
        for f in font_manager.fontManager.ttflist
        if f.name not in _NOT_FALLBACKS and f.style == "normal" and f.weight in (400, "normal")
    ]

    def rank(entry) -> tuple[int, str]:
        for i, prefix in enumerate(_PREFERRED):
            if entry.name.startswith(prefix):
                return i, entry.name
        return len(_PREFERRED), entry.name

    return sorted(entries, key=rank)
