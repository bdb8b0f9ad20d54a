"""Value types and input checks shared by every cube: class checks, time step, plan, product kind.

:class:`TimeStep` and :class:`CubePlan` (with the class list, ``models.classes.ClassNames``)
are what callers hand to and get from the ``prepare_*`` functions of
:mod:`tasks.landcover.cube`, :mod:`tasks.change.cube` and
:mod:`tasks.flood.cube`. :class:`CubeKind` is a product's cube as data: its variables
(:class:`CubeVariable`: attributes, fill value, how a tile of it is checked), its coordinates on
``time`` (:class:`TimeCoord`), and the names and messages that tell the products apart; the
shared store machinery (:mod:`tasks.core.cube_store`) builds templates, checks tiles and writes
regions from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from terrawatch.errors import InputError
from terrawatch.models.classes import ClassNames, check_flag_meanings
from terrawatch.tasks.core.palette import class_colors as palette_colors

logger = logging.getLogger(__name__)

NODATA = 255
"""Fill value of the uint8 data variables: no data, or tile not written yet."""
CLASS_DIM = "class"
"""The dimension (and coordinate of class names) of per-class variables such as ``probability``."""


RESERVED_ATTRS = frozenset(
    {"title", "Conventions", "classes", "grid", "proj:code", "proj:wkt2", "spatial:dimensions",
     "spatial:transform", "spatial:shape", "spatial:bbox", "software", "software_version",
     "created", "time_steps", "zarr_conventions", "spatial:registration"}
)  # fmt: skip
"""Group attributes the store owns; provenance keys must not use them."""


def check_cube_classes(classes: ClassNames) -> None:
    """A cube's class list: 1..254 classes (255 is no data), unique names, one CF word each."""
    names = classes.names
    if not 1 <= len(names) < NODATA:
        raise InputError(f"classes: need 1..{NODATA - 1} names (255 = no data), got {len(names)}")
    if len(set(names)) != len(names):
        raise InputError(f"class names must be unique, got {names!r}")
    check_flag_meanings(" ".join(flag_words(classes)), len(names), "classes")


def flag_words(classes: ClassNames) -> list[str]:
    """CF ``flag_meanings`` words, one per class, unique (``models.classes.flag_words``)."""
    return list(classes.flag_words)


def check_class_flags(ds: Any, store: str) -> None:
    """Every class variable's ``flag_meanings`` has one CF word per ``flag_values`` entry.

    Checked when a cube (an ``xarray.Dataset``) is opened, so a legend read with ``.split()``
    is never misaligned. A cube written before names were transliterated (``'Wasser Gebude
    Strae bare_soil '``) is mended in memory from its exact ``classes`` table, with a warning;
    the store is not touched.

    Raises:
        InputError: the words are wrong and the class table cannot give them.
    """
    table = ds.attrs.get("classes")
    for name, var in ds.data_vars.items():
        if "flag_meanings" not in var.attrs or "flag_values" not in var.attrs:
            continue
        n_values = len(np.atleast_1d(var.attrs["flag_values"]))
        try:
            check_flag_meanings(var.attrs["flag_meanings"], n_values, f"{store} {name}")
        except InputError:
            if not isinstance(table, list) or len(table) != n_values:
                raise
            words = " ".join(flag_words(ClassNames.from_attrs(table)))
            logger.warning(
                "%s %s: flag_meanings %r does not give one CF word per class; read as %r from "
                "the classes table",
                store, name, var.attrs["flag_meanings"], words,
            )  # fmt: skip
            var.attrs["flag_meanings"] = words


def class_colors(classes: ClassNames) -> tuple[str, ...]:
    """Hex colour per class by meaning of any synonym (``tasks.core.palette``), as in pictures."""
    return tuple(palette_colors(classes.synonyms))


def classes_attr(classes: ClassNames) -> list[dict[str, Any]]:
    """The group attribute ``classes`` (read back with ``ClassNames.from_attrs``)."""
    return [
        {"value": i, "name": n, "synonyms": list(s), "color": c}
        for i, (n, s, c) in enumerate(
            zip(classes.names, classes.synonyms, class_colors(classes), strict=True)
        )
    ]


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

    @property
    def end64(self) -> np.datetime64:
        """The period end as a coordinate value."""
        return parse_time(self.end, "step.end")

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


TileCheck = Callable[[str, np.ndarray, tuple[int, int]], np.ndarray]
"""``(name in messages, array, tile shape)`` -> the array to store; raises InputError."""


@dataclass(frozen=True, eq=False)
class CubeVariable:
    """One ``(time, y, x)`` data variable of a cube kind: what it stores, how a tile is checked."""

    name: str
    """Variable name in the store."""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    """Attributes (``grid_mapping`` is added); class variables also get the class table's."""
    classes: bool = False
    """Holds class ids of the cube's class table: its CF flags, values 0..n_classes-1."""
    values: int = 0
    """Otherwise holds 0..values-1 (flag values)."""
    nodata_ok: bool = True
    """Whether a tile may hold the fill value (no data)."""
    nodata: int = NODATA
    """Its value in a tile without a valid input pixel (the all-nodata tile)."""
    encode: TileCheck | None = None
    """A product's own check and encoding of a tile array, instead of the value check."""
    derived: bool = False
    """Computed from the others when a tile is written (:attr:`CubeKind.finish`), not given."""
    label: str = ""
    """Its name in messages when writers know it by another one (default: ``name``)."""
    dtype: str = "uint8"
    """On-disk dtype; the value checks are those of uint8 flags."""
    fill_value: int = NODATA
    """``_FillValue`` of the variable: no data, or tile not written yet."""
    per_class: bool = False
    """One layer per class of the class table: dims ``(time, class, y, x)``, a tile array
    ``[n_classes, h, w]`` (the land-cover ``probability``)."""

    @property
    def dims(self) -> tuple[str, ...]:
        """The variable's dimensions in the store."""
        return ("time", CLASS_DIM, "y", "x") if self.per_class else ("time", "y", "x")

    def tile_shape(self, shape: tuple[int, int], n_classes: int) -> tuple[int, ...]:
        """The shape of one tile array of the variable for a tile of ``(h, w)`` pixels."""
        return (n_classes, *shape) if self.per_class else tuple(shape)

    def template_attrs(self, classes: ClassNames) -> dict[str, Any]:
        """Attributes of the variable in a new store of ``classes``."""
        own = dict(self.attrs)
        return {**own, **class_attrs(classes)} if self.classes else own

    def check(self, array: np.ndarray, shape: tuple[int, int], n_classes: int) -> np.ndarray:
        """The tile array to store, after checking dtype, shape and values.

        Raises:
            InputError: Wrong type, dtype, shape or value; nothing is written then.
        """
        name = self.label or self.name
        if self.encode is not None:
            return self.encode(name, array, self.tile_shape(shape, n_classes))
        check_tile_dtype(name, array, self.tile_shape(shape, n_classes), self.dtype)
        count = n_classes if self.classes else self.values
        fill = self.fill_value
        bad = np.unique(array[(array >= count) & ((array != fill) | (not self.nodata_ok))])
        if not bad.size:
            return array
        if self.classes:
            raise InputError(
                f"{name} holds value(s) {bad[:10].tolist()!r} but the cube has {count} classes "
                f"(0..{count - 1}) and no-data {fill}; map them to class ids or {fill}"
            )
        allowed = f"0..{count - 1}" + (f" and {fill} (no data)" if self.nodata_ok else "")
        raise InputError(f"{name} holds value(s) {bad[:10].tolist()!r}; allowed are {allowed}")


@dataclass(frozen=True, eq=False)
class TimeCoord:
    """A coordinate on ``time``: its value for a step and its attributes."""

    name: str
    """Coordinate name; the first of a kind is ``time``."""
    value: Callable[[TimeStep], np.datetime64]
    """Its value for a step, e.g. ``operator.attrgetter("before.time64")``."""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    """Attributes (``long_name``)."""


def _as_given(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return arrays


@dataclass(frozen=True, eq=False)
class CubeKind:
    """A product's cube: variable schema, time coordinates, and its names and messages."""

    name: str
    """Product in messages: ``<store> is not a terrawatch <name>``, e.g. ``"change cube"``."""
    title: str
    """Group attribute ``title`` of a new store."""
    variables: tuple[CubeVariable, ...]
    """The ``(time, y, x)`` data variables, in store order."""
    times: tuple[TimeCoord, ...]
    """Coordinates on ``time``, ``time`` first."""
    data_var: str
    """A variable whose shape and chunks stand for the grid's."""
    done_comment: str
    """``comment`` attribute of ``tile_done`` (which chunks it records)."""
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
    finish: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] = _as_given
    """Rules across variables, on checked tile arrays: masks, and the derived variables."""

    @property
    def required(self) -> tuple[str, ...]:
        """Variables and coordinates every store of the kind has."""
        later = tuple(t.name for t in self.times[1:])
        return (*(v.name for v in self.variables), "tile_done", *later)

    @property
    def inputs(self) -> tuple[CubeVariable, ...]:
        """The variables a tile writer gives (all but the derived ones)."""
        return tuple(v for v in self.variables if not v.derived)

    @property
    def per_class(self) -> bool:
        """Whether a variable has one layer per class (then the store has a ``class`` coord)."""
        return any(v.per_class for v in self.variables)

    def nodata_tile(self, shape: tuple[int, int], n_classes: int = 0) -> dict[str, np.ndarray]:
        """The input arrays of a tile without any valid input pixel (``n_classes`` layers for a
        per-class variable)."""
        return {
            v.name: np.full(v.tile_shape(shape, n_classes), v.nodata, v.dtype) for v in self.inputs
        }


def class_attrs(classes: ClassNames) -> dict[str, Any]:
    """CF flag and STAC ``classification:classes`` attributes of a class-index variable."""
    colors = class_colors(classes)
    words = flag_words(classes)
    stac = [
        {"value": i, "name": w, "title": n, "description": n, "color_hint": c.lstrip("#").upper()}
        for i, (w, n, c) in enumerate(zip(words, classes.names, colors, strict=True))
    ]
    return {
        "flag_values": np.arange(len(classes), dtype=np.uint8),
        "flag_meanings": " ".join(words),
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


def check_tile_dtype(name: str, array: np.ndarray, shape: tuple[int, int], dtype: str) -> None:
    """``array`` must be a numpy array of ``dtype`` and of the tile's shape."""
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != shape:
        raise InputError(
            f"{name} must be a {dtype} numpy array of this tile's shape {shape!r}, got "
            f"{type(array).__name__} {getattr(array, 'dtype', None)} "
            f"{getattr(array, 'shape', None)!r}; crop to the tile and cast with .astype(np.{dtype})"
        )


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


def parse_time(value: str, name: str) -> np.datetime64:
    """ISO date or datetime (a time zone is converted to UTC) as naive ``datetime64[ns]``."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be an ISO date like '2024-06-01', got {value!r}") from err
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(when, "ns")
