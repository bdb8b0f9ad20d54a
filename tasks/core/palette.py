"""Class colours by meaning: water is blue and trees are dark green, whatever order they come in.

One palette for every picture and table a cube produces (quicklooks, label GeoTIFF colour
tables, the cube's ``classes`` / ``flag_colors`` attributes and STAC ``color_hint``), so an
analyst reads the same colour for the same class everywhere. A class is matched by any of its
synonyms (case-, accent- and separator-insensitive; a few German, French, Spanish and Chinese
words too), then by its last English word ("tree cover" -> tree, "water body" -> water).
Names without a meaning here get colours from :data:`OTHER_COLORS`, which no meaning uses, in
class order, so the result is deterministic for a class list. Plain Python: no matplotlib.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from text_unidecode import unidecode

_MEANINGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (meaning, colour, words); colours follow common land-cover legends (ESA WorldCover,
    # Dynamic World, CORINE) where they agree: blue water, dark green trees, yellow crops
    ("water", "#1f65c1", ("water", "waters", "waterbody", "water body", "river", "rivers", "lake",
     "lakes", "sea", "ocean", "pond", "reservoir", "stream", "canal", "lagoon", "open water",
     "permanent water", "wasser", "gewasser", "fluss", "eau", "agua", "rio", "水", "水体",
     "水域", "河", "河流", "湖", "湖泊", "海")),
    ("flooded", "#6ec6ff", ("flood", "flooded", "flooding", "inundation", "inundated",
     "flood water", "floodwater", "uberschwemmung", "hochwasser")),
    ("wetland", "#7a87c6", ("wetland", "wetlands", "marsh", "swamp", "bog", "fen",
     "flooded vegetation", "herbaceous wetland", "feuchtgebiet", "sumpf", "湿地")),
    ("mangrove", "#00b36b", ("mangrove", "mangroves")),
    ("tree", "#1b6b2f", ("tree", "trees", "forest", "forests", "woodland", "wood", "woods",
     "tree cover", "dense tree cover", "canopy", "wald", "baum", "baume", "foret", "bosque",
     "arbol", "树", "树木", "森林", "林地")),
    ("shrub", "#9a9b3a", ("shrub", "shrubs", "shrubland", "bush", "bushes", "scrub", "heath",
     "strauch", "gebusch", "灌木")),
    ("grass", "#8fd16a", ("grass", "grassland", "meadow", "pasture", "lawn", "rangeland",
     "greenery", "vegetation", "low vegetation", "green space", "herbaceous", "gras", "wiese",
     "grunland", "herbe", "pasto", "草", "草地", "植被")),
    ("cropland", "#f2d13b", ("crop", "crops", "cropland", "croplands", "agriculture",
     "agricultural", "agricultural land", "agriculture land", "farmland", "farm",
     "arable land", "paddy", "rice", "acker", "ackerland", "landwirtschaft", "cultivo", "农田",
     "耕地")),
    ("building", "#d7191c", ("building", "buildings", "roof", "roofs", "house", "houses",
     "built-up", "built up", "builtup", "built area", "urban", "city", "village", "settlement",
     "facade", "gebaude", "haus", "dach", "batiment", "edificio", "建筑", "建筑物", "房屋")),
    ("road", "#5e5e5e", ("road", "roads", "roadway", "street", "streets", "highway",
     "motorway", "strasse", "weg", "route", "carretera", "calle", "道路", "公路")),
    ("impervious", "#b07aa1", ("impervious", "impervious surface", "impervious surfaces",
     "pavement", "paved", "developed", "developed space", "parking", "parking lot", "concrete",
     "asphalt", "versiegelt")),
    ("railway", "#3d2b1f", ("railway", "railroad", "rail", "railways", "bahn", "铁路")),
    ("bare soil", "#d2b48c", ("bare", "bare soil", "bare land", "bareland", "bare ground",
     "bareground", "barren", "barren land", "soil", "dirt", "earth", "boden", "sol", "suelo",
     "裸地", "裸土")),
    ("rock", "#8b7d6b", ("rock", "rocks", "stone", "gravel", "quarry", "fels")),
    ("sand", "#f3e3b3", ("sand", "sandy", "beach", "dune", "dunes", "desert", "strand",
     "sable", "arena", "沙", "沙地", "沙漠")),
    ("snow", "#ffffff", ("snow", "ice", "glacier", "snow and ice", "snow/ice", "schnee", "eis",
     "neige", "nieve", "雪", "冰")),
    ("cloud", "#d0d0d0", ("cloud", "clouds", "haze", "cirrus", "wolke", "wolken", "nuage",
     "nube", "云")),
    ("shadow", "#3b3b5c", ("shadow", "shadows", "cloud shadow", "schatten")),
    ("background", "#a0a0a0", ("background", "clutter", "others", "other", "void",
     "unlabeled", "unlabelled", "unknown", "hintergrund", "sonstige")),
)  # fmt: skip

MEANING_COLORS: dict[str, str] = {meaning: color for meaning, color, _ in _MEANINGS}
"""Colour per meaning, e.g. ``MEANING_COLORS["water"]``."""

OTHER_COLORS: tuple[str, ...] = (
    "#7b2cbf",  # purple
    "#ff7f0e",  # orange
    "#e377c2",  # pink
    "#17becf",  # cyan
    "#8c564b",  # brown
    "#bcbd22",  # olive
    "#3f007d",  # indigo
    "#ff1493",  # deep pink
    "#00429d",  # navy
    "#fdae61",  # apricot
    "#c51b7d",  # magenta
    "#01665e",  # dark teal
    "#800026",  # maroon
    "#e6ab02",  # mustard
    "#40e0d0",  # turquoise
    "#4daf4a",  # leaf green
    "#cc6600",  # rust
    "#66c2a5",  # mint
    "#fb9a99",  # salmon
    "#00ff00",  # lime
)
"""Colours of classes with no known meaning, in class order; none of them is a meaning's."""


def _key(word: str) -> str:
    """Compare names regardless of case, accents, ``_``/``-`` and repeated blanks."""
    return " ".join(re.sub(r"[_\-]+", " ", word.casefold()).split())


def _ascii_key(word: str) -> str:
    return _key(unidecode(word))


_LOOKUP: dict[str, str] = {}
for _meaning, _, _words in _MEANINGS:
    for _word in _words:
        _LOOKUP.setdefault(_key(_word), _meaning)
        _LOOKUP.setdefault(_ascii_key(_word), _meaning)


def meaning_of(synonyms: str | Sequence[str]) -> str | None:
    """The meaning (a key of :data:`MEANING_COLORS`) of a class, or None when unknown.

    Args:
        synonyms: The class's words (its display name first), or one name where commas
            separate synonyms (``"tree,forest"``).
    """
    words = synonyms.split(",") if isinstance(synonyms, str) else list(synonyms)
    for exact in (_key, _ascii_key):
        for word in words:
            found = _LOOKUP.get(exact(word))
            if found:
                return found
    for word in words:  # the head word of an English phrase comes last: "tree cover"
        for part in reversed(_ascii_key(word).split(" ")):
            found = _LOOKUP.get(part)
            if found:
                return found
    return None


def class_colors(classes: Sequence[str | Sequence[str]]) -> list[str]:
    """Hex colour per class, by meaning; unknown names get distinct :data:`OTHER_COLORS`.

    Args:
        classes: Per class its synonyms (display name first), or its name with commas
            between synonyms.

    Returns:
        One ``#rrggbb`` per class, deterministic for the list. A meaning already taken by an
        earlier class (``river`` and ``lake`` as two classes) gives the later one an other
        colour, so two classes never share a colour (while the colours last).
    """
    colors: list[str] = []
    others = iter(OTHER_COLORS * (1 + len(classes) // len(OTHER_COLORS)))
    for entry in classes:
        meaning = meaning_of(entry)
        color = MEANING_COLORS[meaning] if meaning else None
        colors.append(color if color and color not in colors else next(others))
    return colors
