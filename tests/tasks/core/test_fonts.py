"""Names in any script are drawn with a font that has them, or transliterated: never boxes."""

from __future__ import annotations

import warnings

import numpy as np

from terrawatch.tasks.core.fonts import _default_font, _font_for, drawable_texts
from terrawatch.tasks.core.render import quicklook_png


def test_latin_names_are_drawn_as_given():
    texts, families = drawable_texts(["Wasser", "Gebäude", "Straße", "bare soil"])
    assert texts == ["Wasser", "Gebäude", "Straße", "bare soil"]
    assert families == [_default_font()[1]]


def test_a_character_outside_the_default_font_pulls_in_a_font_that_has_it():
    # U+1D15 is in DejaVu Serif (shipped with matplotlib) but not in DejaVu Sans
    texts, families = drawable_texts(["\u1d15 class"])
    assert texts == ["\u1d15 class"]
    assert families[1:] == [_font_for(0x1D15)] and families[1] is not None


def test_cjk_names_are_kept_where_a_font_has_them_else_transliterated():
    texts, families = drawable_texts(["水体", "Gebäude (水体)"])
    if _font_for(ord("水")) is None:  # no CJK font installed (e.g. CI without fonts-noto-cjk)
        assert texts == ["Shui Ti", "Gebäude (Shui Ti)"]
    else:
        assert texts == ["水体", "Gebäude (水体)"] and len(families) > 1


def test_mathtext_dollars_are_escaped_and_empty_names_drawn_as_a_mark():
    assert drawable_texts(["a$b$", "", "🂠"])[0][:2] == [r"a\$b\$", "?"]


def test_a_quicklook_of_cjk_names_emits_no_glyph_warning():
    labels = np.arange(5, dtype=np.uint8).repeat(40).reshape(20, 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = quicklook_png(
            labels, ["Wasser", "Gebäude", "Straße", "bare soil", "水体"], title="水体"
        )
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [w for w in caught if "missing from" in str(w.message)], [
        str(w.message) for w in caught
    ]
