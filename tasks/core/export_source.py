"""The one 2-D categorical layer an export reads: a cube variable at one time step, lazily.

Every export (COG, polygons, building outlines, road centerlines) starts from an
:class:`ExportLayer`: the variable's class table (values, names and colours, from its CF flag
attributes and ``flag_colors``, the same table as the cube's quicklooks), its grid (CRS and
affine transform of the cube's ``spatial_ref``) and a dask array chunked as the store, so
exports read a chunk at a time and never the whole step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from terrawatch.errors import InputError, InputNotFoundError
from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core.cube_store import open_cube
from terrawatch.tasks.core.cube_types import NODATA, class_colors

LATEST = "latest"
"""The ``--time`` word for the cube's last time step."""
TRANSITIONS = "transitions"
"""The ``--var`` of a change cube's changed regions by (from, to) class pair (vectors only)."""
_CHANGE_VARS = ("changed", "class_from", "class_to")
_TRANSITION_NODATA = 65535


@dataclass(frozen=True, eq=False)
class ExportLayer:
    """One categorical variable of a cube at one time step, with its class table and grid."""

    store: str
    """The cube's store path or URL."""
    var: str
    """Variable name in the store."""
    time: str
    """The step's ``time`` coordinate as an ISO date."""
    data: xr.DataArray
    """``(y, x)`` uint8 values, lazy, chunked as the store."""
    values: tuple[int, ...]
    """Class values (CF ``flag_values``)."""
    names: tuple[str, ...]
    """Class names in the order of ``values``."""
    colors: tuple[str, ...]
    """Hex colour per class (the cube's ``flag_colors`` or the shared palette)."""
    crs: CRS
    """The cube's CRS."""
    transform: Affine
    """Pixel (col, row) to CRS (x, y) of the full grid."""
    confidence: xr.DataArray | None = None
    """``(y, x)`` uint8 percent 0..100 (255 = none) when the cube has ``confidence``."""
    nodata: int = NODATA
    """The no-data value of ``data``."""
    synonyms: tuple[frozenset[str], ...] = ()
    """Lower-case words naming each class (name, CF flag word, the class table's synonyms)."""
    value_attrs: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    """Extra attributes of each value's polygons (``from_class``/``to_class`` of transitions)."""

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def chunk_shape(self) -> tuple[int, int]:
        """(rows, cols) of one store chunk (the unit exports read)."""
        chunks = self.data.chunks
        return (chunks[0][0], chunks[1][0]) if chunks else self.shape

    @property
    def pixel_size_m(self) -> float:
        """Side of one pixel in metres (cube grids are square-pixel and projected)."""
        return abs(self.transform.a) * metres_per_unit(self.crs)

    def name_of(self, value: int) -> str:
        """The class name of a value."""
        return self.names[self.values.index(value)]

    def value_of(self, name: str, option: str) -> int:
        """The value of a class name or synonym (as the cube's class table lists them)."""
        wanted = name.strip().lower()
        for value, words in zip(self.values, self.synonyms, strict=True):
            if wanted in words:
                return value
        raise InputError(
            f"{option}: {self.var!r} of {self.store!r} has no class {name!r}; its classes are "
            f"{list(self.names)!r}"
        )

    def windows(self) -> Iterator[tuple[int, int, int, int]]:
        """``(row0, row1, col0, col1)`` of every store chunk, row-major."""
        (height, width), (ch, cw) = self.shape, self.chunk_shape
        for row0 in range(0, height, ch):
            for col0 in range(0, width, cw):
                yield row0, min(row0 + ch, height), col0, min(col0 + cw, width)

    def read(self, window: tuple[int, int, int, int]) -> np.ndarray:
        """The values of one window (uint8; uint16 for transitions)."""
        row0, row1, col0, col1 = window
        return np.asarray(self.data[row0:row1, col0:col1].values)

    def read_confidence(self, window: tuple[int, int, int, int]) -> np.ndarray | None:
        """The confidence of one window, or None when the cube has none."""
        if self.confidence is None:
            return None
        row0, row1, col0, col1 = window
        return np.asarray(self.confidence[row0:row1, col0:col1].values, dtype=np.uint8)


def metres_per_unit(crs: CRS) -> float:
    """Metres per CRS unit of a projected CRS (1 for metres, 0.3048 for feet)."""
    if crs.is_geographic:
        raise InputError(f"exports need a projected cube CRS, got geographic {crs.to_string()}")
    return float(crs.linear_units_factor[1])


def categorical_vars(ds: xr.Dataset) -> list[str]:
    """Data variables on ``(time, y, x)`` with CF flags: the ones an export can write."""
    return [
        name
        for name, var in ds.data_vars.items()
        if var.dims == ("time", "y", "x") and "flag_values" in var.attrs and name != "tile_done"
    ]


def open_layer(
    store: str, var: str | None = None, time: str = LATEST, *, vectors: bool = False
) -> ExportLayer:
    """The export layer of ``store`` (``--var``, default the first class variable; ``--time``).

    For vectors (``vectors=True``) a change cube's default is :data:`TRANSITIONS`: its changed
    regions, one polygon per region of one (from, to) class pair.

    Raises:
        InputNotFoundError: No store at ``store``.
        InputError: ``var`` is not a categorical variable of the cube, or ``time`` is not one
            of its steps; the message names the flag and lists the choices.
    """
    ds = _open(store)
    is_change = all(v in ds.data_vars for v in _CHANGE_VARS)
    if is_change and (var == TRANSITIONS or (var is None and vectors)):
        if not vectors:
            raise InputError(
                f"--var {TRANSITIONS} is a vector layer; give --to a .parquet, .gpkg or .geojson"
            )
        return transitions_layer(ds, store, time)
    return layer_of(ds, store, var, time)


def layer_of(ds: xr.Dataset, store: str, var: str | None = None, time: str = LATEST) -> ExportLayer:
    """The export layer of an opened cube (``ds`` from :func:`open_cube`, CF-decoded or not)."""
    import rioxarray  # noqa: F401  (the .rio accessor: the cube's CRS and transform)

    choices = categorical_vars(ds)
    if not choices:
        raise InputError(f"{store!r} has no categorical (time, y, x) variable to export")
    var = var or _default_var(ds, choices)
    if var not in choices:
        raise InputError(
            f"--var {var!r} is not a categorical variable of {store!r}; use one of {choices!r}"
        )
    index = time_index(ds, time, store)
    data = _stored(ds[var].isel(time=index))
    confidence = None
    if "confidence" in ds.data_vars and ds["confidence"].dims == ("time", "y", "x"):
        confidence = _stored(ds["confidence"].isel(time=index))
    values = tuple(int(v) for v in np.atleast_1d(data.attrs["flag_values"]))
    names = _flag_names(data.attrs, len(values))
    colors = _colors(data.attrs, names)
    return ExportLayer(
        store=store,
        var=var,
        time=str(np.datetime_as_string(ds["time"].values[index], unit="D")),
        data=data,
        values=values,
        names=names,
        colors=colors,
        crs=CRS.from_wkt(ds.rio.crs.to_wkt()),
        transform=ds.rio.transform(),
        confidence=confidence,
        nodata=int(ds[var].encoding.get("_FillValue", NODATA)),
        synonyms=_synonyms(data.attrs, names, ds.attrs.get("classes")),
    )


def transitions_layer(ds: xr.Dataset, store: str, time: str = LATEST) -> ExportLayer:
    """A change cube's changed pixels coded ``from * n + to`` (uint16), named ``from → to``."""
    source = layer_of(ds, store, "class_from", time)
    index = time_index(ds, time, store)
    step = ds[list(_CHANGE_VARS)].isel(time=index)
    n = len(source.values)
    changed = (step["changed"] == 1) & (step["class_from"] < n) & (step["class_to"] < n)
    code = step["class_from"].astype(np.uint16) * n + step["class_to"].astype(np.uint16)
    data = code.where(changed, _TRANSITION_NODATA).astype(np.uint16)
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    names = tuple(f"{source.names[a]} → {source.names[b]}" for a, b in pairs)
    return ExportLayer(
        store=store,
        var=TRANSITIONS,
        time=source.time,
        data=data,
        values=tuple(a * n + b for a, b in pairs),
        names=names,
        colors=tuple(source.colors[b] for _, b in pairs),
        crs=source.crs,
        transform=source.transform,
        nodata=_TRANSITION_NODATA,
        synonyms=tuple(frozenset({name.lower()}) for name in names),
        value_attrs={
            a * n + b: {"from_class": source.names[a], "to_class": source.names[b]}
            for a, b in pairs
        },
    )


def _stored(var: xr.DataArray) -> xr.DataArray:
    """The stored uint8 values of a variable a CF-decoding open turned into float with NaN."""
    if var.dtype == np.uint8:
        return var
    fill = var.encoding.get("_FillValue", NODATA)
    return var.fillna(fill).astype(np.uint8).assign_attrs(var.attrs)


def time_index(ds: xr.Dataset, time: str, store: str) -> int:
    """Index of ``--time DATE`` (a step's ISO date) or ``latest`` on the cube's ``time`` axis."""
    times = ds["time"].values
    if not times.size:
        raise InputError(f"{store!r} has no time step yet; run a flow into it first")
    if time == LATEST:
        return int(times.size - 1)
    dates = [str(d) for d in np.datetime_as_string(times, unit="D")]
    try:
        wanted = str(np.datetime64(time, "D"))
    except ValueError:
        wanted = None
    if wanted not in dates:
        raise InputError(
            f"--time {time!r} is not a time step of {store!r}; use 'latest' or one of {dates!r}"
        )
    return dates.index(wanted)


def _open(store: str) -> xr.Dataset:
    if "://" not in store and not Path(store).expanduser().exists():
        raise InputNotFoundError(f"cube store {store!r} does not exist; give a cube's Zarr path")
    try:
        return open_cube(store, mask_and_scale=False)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise InputError(f"{store!r} is not a terrawatch cube ({err})") from err


def _default_var(ds: xr.Dataset, choices: list[str]) -> str:
    """The first variable that holds the cube's classes, else the first categorical one."""
    for name in choices:
        if "classification:classes" in ds[name].attrs:
            return name
    return choices[0]


def _flag_names(attrs: dict[str, Any], count: int) -> tuple[str, ...]:
    stac = attrs.get("classification:classes")
    if stac:
        return tuple(str(c.get("description") or c["name"]) for c in stac)
    words = str(attrs.get("flag_meanings", "")).split()
    if len(words) != count:
        words = [f"class_{i}" for i in range(count)]
    return tuple(words)


def _colors(attrs: dict[str, Any], names: tuple[str, ...]) -> tuple[str, ...]:
    stored = str(attrs.get("flag_colors", "")).split()
    if len(stored) == len(names):
        return tuple(stored)
    return class_colors(parse_class_names(list(names)))


def _synonyms(
    attrs: dict[str, Any], names: tuple[str, ...], table: list[dict] | None
) -> tuple[frozenset[str], ...]:
    """Lower-case words that name each class: its name, its flag word and its synonyms."""
    words = [{n.lower(), n.lower().replace(" ", "_")} for n in names]
    for i, word in enumerate(str(attrs.get("flag_meanings", "")).split()[: len(names)]):
        words[i].add(word.lower())
    if "classification:classes" in attrs and table and len(table) == len(names):
        for i, entry in enumerate(table):
            words[i].update(str(s).strip().lower() for s in entry.get("synonyms", ()))
    return tuple(frozenset(w) for w in words)
