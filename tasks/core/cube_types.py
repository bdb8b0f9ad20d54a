"""Value types and input checks shared by every cube: class table, time step, plan, product kind.

:class:`ClassTable`, :class:`TimeStep` and :class:`CubePlan` are what callers hand to and get
from the ``prepare_*`` functions of :mod:`tasks.landcover.cube`, :mod:`tasks.change.cube` and
:mod:`tasks.flood.cube`; :class:`CubeKind` holds the names and messages that tell the products
apart inside the shared store machinery (:mod:`tasks.core.cube_store`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from terrawatch.errors import InputError
from terrawatch.tasks.core.defaults import check_chunk  # noqa: F401  (one chunk rule)

NODATA = 255
"""Fill value of the uint8 data variables: no data, or tile not written yet."""


RESERVED_ATTRS = frozenset(
    {"title", "Conventions", "classes", "grid", "proj:code", "proj:wkt2", "spatial:dimensions",
     "spatial:transform", "spatial:shape", "spatial:bbox", "software", "software_version",
     "created", "time_steps"}
)  # fmt: skip
"""Group attributes the store owns; provenance keys must not use them."""


@dataclass(frozen=True)
class ClassTable:
    """The class list of a cube: label value ``i`` is ``names[i]``."""

    names: tuple[str, ...]
    """One display name per class, e.g. ``("background", "bareland", ...)``."""
    synonyms: tuple[tuple[str, ...], ...]
    """Prompt words per class; the first one is the display name."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "synonyms", tuple(tuple(s) for s in self.synonyms))
        _check_classes(self.names, self.synonyms)
        words = self._words()
        if len(set(words)) != len(words):
            raise InputError(
                f"class names {self.names!r} give duplicate CF flag words {words!r} "
                "(spaces become '_', other symbols are dropped); rename the classes"
            )

    @classmethod
    def from_synonyms(cls, synonyms: list[list[str]] | tuple[tuple[str, ...], ...]) -> ClassTable:
        """Build the table from prompt words per class (first word = display name)."""
        return cls(tuple(s[0] if s else "" for s in synonyms), tuple(tuple(s) for s in synonyms))

    @property
    def flag_values(self) -> np.ndarray:
        """CF ``flag_values``: ``uint8`` 0..n-1."""
        return np.arange(len(self.names), dtype=np.uint8)

    @property
    def flag_meanings(self) -> str:
        """CF ``flag_meanings``: blank-separated CF-safe words, one per class."""
        return " ".join(self._words())

    @property
    def colors(self) -> tuple[str, ...]:
        """Hex colour per class, the same as the quicklooks
        (:func:`tasks.core.render.class_colors`)."""
        from terrawatch.tasks.core.render import class_colors

        return tuple(class_colors(self.names))

    def to_attrs(self) -> list[dict[str, Any]]:
        """JSON form stored in the group attribute ``classes``."""
        return [
            {"value": i, "name": n, "synonyms": list(s), "color": c}
            for i, (n, s, c) in enumerate(zip(self.names, self.synonyms, self.colors, strict=True))
        ]

    def _words(self) -> list[str]:
        return [re.sub(r"[^0-9A-Za-z_-]", "", re.sub(r"\s+", "_", n.strip())) for n in self.names]


@dataclass(frozen=True)
class TimeStep:
    """One period of the cube."""

    time: str
    """ISO date of the period start: the ``time`` coordinate value."""
    end: str
    """ISO date of the period end."""
    items: tuple[str, ...]
    """STAC item ids used for this step."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        start, end = parse_time(self.time, "step.time"), parse_time(self.end, "step.end")
        if end < start:
            raise InputError(f"step.end {self.end!r} is before step.time {self.time!r}; swap them")
        if not all(isinstance(i, str) and i for i in self.items):
            raise InputError(f"step.items must be non-empty strings (STAC ids), got {self.items!r}")

    @property
    def time64(self) -> np.datetime64:
        """The time coordinate value."""
        return parse_time(self.time, "step.time")

    def to_attrs(self) -> dict[str, Any]:
        """JSON form of the step in the ``time_steps`` group attribute."""
        return {"time": self.time, "end": self.end, "items": list(self.items)}


def check_earlier_step(step: TimeStep, name: str, message: str) -> None:
    """``step.<name>`` must be a :class:`TimeStep` that ends before ``step`` starts.

    Args:
        step: A step with an earlier period (a change pair, a flood event).
        name: Attribute of the earlier period, e.g. ``"before"``.
        message: Error when it ends too late; ``str.format`` fields ``earlier`` and ``step``.
    """
    earlier = getattr(step, name)
    if not isinstance(earlier, TimeStep):
        raise InputError(f"{name} must be a TimeStep, got {type(earlier).__name__}")
    if parse_time(earlier.end, f"{name}.end") >= step.time64:
        raise InputError(message.format(earlier=earlier, step=step))


@dataclass(frozen=True)
class CubePlan:
    """What :func:`prepare_step` left to do for one time step."""

    store: str
    """Store path or fsspec URL."""
    time_index: int
    """Index of the step on the ``time`` axis."""
    chunk: int
    """Zarr chunk (tile) size in pixels."""
    n_tiles: tuple[int, int]
    """(rows, cols) of tiles (chunks)."""
    todo: tuple[tuple[int, int], ...]
    """(tile_row, tile_col) still to write, row-major."""
    already_complete: bool
    """True when every tile of the step is written (nothing to do, store untouched)."""


@dataclass(frozen=True)
class CubeKind:
    """The product-specific names and messages of the shared store life cycle."""

    name: str
    """Product in messages: ``<store> is not a terrawatch <name>``, e.g. ``"change cube"``."""
    title: str
    """Group attribute ``title`` of a new store."""
    data_var: str
    """A ``(time, y, x)`` variable whose shape and chunks stand for the grid's."""
    required: tuple[str, ...]
    """Variables and coordinates every store of the product has."""
    label: str
    """The store in the mismatch message: ``existing <label> ... does not match``."""
    log_name: str
    """The store in log lines: ``created <log_name> ...``."""
    unit: str
    """One time step in log lines: ``"step"``, ``"pair"``, ``"event"``."""
    out_of_order: str
    """Message for a step older than the store's last: ``str.format`` fields time, store, last."""
    already_in: str
    """Message for a step stored with other periods or items: fields time, store, stored,
    wanted (step records) and found (the stored record's value per key, None if missing)."""


def class_attrs(classes: ClassTable) -> dict[str, Any]:
    """CF flag and STAC ``classification:classes`` attributes of a class-index variable."""
    colors = classes.colors
    stac = [
        {"value": i, "name": w, "description": n, "color_hint": c.lstrip("#").upper()}
        for i, (w, n, c) in enumerate(zip(classes._words(), classes.names, colors, strict=True))
    ]
    return {
        "long_name": "land cover class",
        "flag_values": classes.flag_values,
        "flag_meanings": classes.flag_meanings,
        "flag_colors": " ".join(colors),
        "classification:classes": stac,
    }


def check_provenance(provenance: dict) -> None:
    """``provenance`` must be a JSON-serialisable dict that leaves the reserved keys alone."""
    if not isinstance(provenance, dict):
        raise InputError(f"provenance must be a dict, got {type(provenance).__name__}")
    clash = sorted(RESERVED_ATTRS & set(provenance))
    if clash:
        raise InputError(
            f"provenance keys {clash!r} clash with cube attributes; rename them "
            f"(reserved: {sorted(RESERVED_ATTRS)!r})"
        )
    try:
        json.dumps(provenance, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"provenance must be JSON-serialisable (str, numbers, lists, dicts): {err}; convert "
            "paths and arrays to str/list"
        ) from err


def check_tile_uint8(name: str, array: np.ndarray, shape: tuple[int, int]) -> None:
    """``array`` must be a uint8 numpy array of the tile's shape."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape != shape:
        raise InputError(
            f"{name} must be a uint8 numpy array of this tile's shape {shape!r}, got "
            f"{type(array).__name__} {getattr(array, 'dtype', None)} "
            f"{getattr(array, 'shape', None)!r}; crop to the tile and cast with .astype(np.uint8)"
        )


def check_tile_array(
    name: str, array: np.ndarray, shape: tuple[int, int], n_values: int, nodata_ok: bool = True
) -> None:
    """uint8 of the tile's shape holding 0..n_values-1 (or the no-data value if allowed)."""
    check_tile_uint8(name, array, shape)
    bad = np.unique(array[(array >= n_values) & ((array != NODATA) | (not nodata_ok))])
    if bad.size:
        allowed = f"0..{n_values - 1}" + (f" and {NODATA} (no data)" if nodata_ok else "")
        raise InputError(f"{name} holds value(s) {bad[:10].tolist()!r}; allowed are {allowed}")


def check_index(store: str, shape: tuple[int, ...], time_index: int, tile: tuple[int, int]) -> None:
    """Check a (time_index, tile) against a ``tile_done``-shaped (time, rows, cols)."""
    if not 0 <= time_index < shape[0]:
        raise InputError(
            f"time_index {time_index!r} is out of range for {store!r}, which has {shape[0]} time "
            "step(s); use CubePlan.time_index from prepare_cube"
        )
    if len(tile) != 2 or not all(0 <= t < n for t, n in zip(tile, shape[1:], strict=True)):
        raise InputError(
            f"tile {tile!r} is outside the {tuple(shape[1:])!r} (rows, cols) tiles of {store!r}; "
            "use a tile from CubePlan.todo"
        )


def _check_classes(names: tuple[str, ...], synonyms: tuple[tuple[str, ...], ...]) -> None:
    if not 1 <= len(names) < NODATA:
        raise InputError(f"classes: need 1..{NODATA - 1} names (255 = no data), got {len(names)}")
    if not all(isinstance(n, str) and n.strip() for n in names) or len(set(names)) != len(names):
        raise InputError(f"class names must be unique non-empty strings, got {names!r}")
    if len(synonyms) != len(names):
        raise InputError(
            f"classes: {len(names)} names but {len(synonyms)} synonym lists; give one per class"
        )
    for name, words in zip(names, synonyms, strict=True):
        if not words or words[0] != name or not all(isinstance(w, str) and w for w in words):
            raise InputError(
                f"synonyms for class {name!r} must be non-empty strings starting with the name "
                f"itself, got {words!r}"
            )


def parse_time(value: str, name: str) -> np.datetime64:
    """ISO date or datetime (a time zone is converted to UTC) as naive ``datetime64[ns]``."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be an ISO date like '2024-06-01', got {value!r}") from err
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(when, "ns")
