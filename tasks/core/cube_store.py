"""Zarr cube store machinery shared by every product: steps, template, plan/resume, tile records.

The land-cover, change and flood cubes (:mod:`tasks.landcover.cube`, :mod:`tasks.change.cube`,
:mod:`tasks.flood.cube`) share one store layout and one life cycle; this module holds what does
not depend on the product; a :class:`~tasks.core.cube_types.CubeKind` declares what does (its
variables, time coordinates, names and messages), and everything here works from it.

- Layout: dims ``(time, y, x)``, uint8 data variables with ``_FillValue`` 255 (no data), a
  ``tile_done`` record ``(time, tile_row, tile_col)`` with one element per chunk (set to 1 only
  after the tile's data chunks are written), ``spatial_ref`` and ``x``/``y`` of the grid,
  ``time`` as int64 seconds since 1970 (:data:`TIME_ENCODING`).
- Tiles (:func:`write_cube_tile`): one chunk per variable, checked against the kind's schema
  and finished by its cross-variable rules before anything is written, then ``tile_done``.
- Group attributes (:func:`group_attrs`): class table, ``proj:*``/``spatial:*``, grid, software
  version, creation time, the latest run's provenance at top level and one ``time_steps``
  record per step.
- Zarr v2 with consolidated metadata (:data:`ZARR_FORMAT`); writers never trust the
  consolidated copy (``consolidated=False`` reads) and every metadata change re-consolidates.
- Life cycle (:func:`prepare_step`): a new store is created from a metadata-only template; a
  step already present is resumed (only unfinished tiles are listed); a newer step is
  appended; an older one, or a store of another grid, chunking or class table, is refused.
- Reruns with other scenes: a finished step is left as it is (a no-op that logs the ignored
  scene ids), an unfinished one is refused (its written tiles came from the recorded scenes).
  ``replace=True`` rewrites the step, last or not: its ``tile_done`` is reset first, then its
  record takes the new items and provenance, so an interrupted replace holds no tile marked
  done from the old scenes; rerunning (with or without ``replace``) finishes it.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import dask.array as da
import numpy as np
import odc.geo.xr
import xarray as xr
import zarr
from odc.geo import CRS

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.models.classes import ClassNames
from terrawatch.tasks.core.cube_types import (
    CLASS_DIM,
    RESERVED_ATTRS,
    CubeKind,
    CubePlan,
    TimeStep,
    check_class_flags,
    check_cube_classes,
    check_index,
    check_provenance,
    classes_attr,
    parse_time,
)
from terrawatch.tasks.core.defaults import check_chunk
from terrawatch.tasks.core.geozarr import convention_attrs
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.writer_lease import check_writer_token

logger = logging.getLogger(__name__)

ZARR_FORMAT = 2
"""Zarr format of every cube (v2 + consolidated metadata; see the module docstring)."""
TIME_ENCODING = {
    "units": "seconds since 1970-01-01",
    "calendar": "proleptic_gregorian",
    "dtype": "int64",
}
"""On-disk encoding of ``time`` and of every other datetime coordinate on ``time``."""


def prepare_step(
    store: str,
    grid: GridSpec,
    classes: ClassNames,
    step: TimeStep,
    provenance: dict,
    chunk: int,
    kind: CubeKind,
    *,
    replace: bool = False,
) -> CubePlan:
    """Create the store or add/resume a time step, and list the tiles still to write.

    Args:
        store: Local path or fsspec URL of the Zarr store.
        grid: Output grid (CRS, resolution in CRS units, bounds).
        classes: Class table of the product.
        step: The time step to write (its ``to_attrs`` is the step's record).
        provenance: JSON-serialisable run metadata, stored at top level and in the record.
        chunk: Tile and Zarr chunk size in pixels (1 x chunk x chunk per chunk).
        kind: The product's cube: schema, names and messages.
        replace: Rewrite the step if the store has it: every tile is listed again and the
            step's record takes ``step`` and ``provenance``; other steps are untouched.

    Raises:
        InputError: Bad ``chunk`` or ``provenance``.
        StoreMismatchError: The existing store is of another product, grid, chunking or class
            table, holds this step unfinished with other periods or items (without
            ``replace``), or ends after ``step.time``. Nothing is written then.
    """
    check_chunk(chunk)
    check_cube_classes(classes)
    check_provenance(provenance)
    n_tiles = tuple(grid.tiles(chunk).shape.yx)
    ds = step_template(kind, grid, classes, step, chunk, n_tiles)
    existing = read_store(store)
    if existing is None:
        ds.attrs = group_attrs(grid, classes, step, provenance, kind.title)
        ds.to_zarr(store, mode="w-", compute=False, zarr_format=ZARR_FORMAT, consolidated=True)
        logger.info(
            "created %s %s for %s (%d x %d tiles)", kind.log_name, store, step.time, *n_tiles
        )
        return _plan(store, 0, chunk, n_tiles, all_tiles(n_tiles))
    check_store_matches(store, existing, grid, classes, chunk, kind)
    times = existing["time"].values
    hits = np.flatnonzero(times == step.time64)
    if hits.size:
        index = int(hits[0])
        if replace:
            return _replace(store, existing, index, step, provenance, chunk, n_tiles, kind)
        return _resume(store, existing, index, step, chunk, n_tiles, kind)
    if times.size and step.time64 < times[-1]:
        last = np.datetime_as_string(times[-1], unit="D")
        raise StoreMismatchError(kind.out_of_order.format(time=step.time, store=store, last=last))
    check_no_foreign_variables(store, existing, kind)
    _append_step(store, existing, ds, step, provenance)
    logger.info(
        "appended %s %s to %s %s as index %d",
        kind.unit,
        step.time,
        kind.log_name,
        store,
        times.size,
    )
    return _plan(store, int(times.size), chunk, n_tiles, all_tiles(n_tiles))


def open_cube(store: str, *, mask_and_scale: bool = True) -> xr.Dataset:
    """Open a cube lazily with its CRS decoded (``.rio.crs`` works).

    Args:
        store: Store path or URL.
        mask_and_scale: CF decoding; True turns fill values into NaN (float), False keeps uint8.
    """
    # registers the .rio accessor; imported here, not by the module: tile workers never need
    # it, and it cost each fresh worker 0.28 s of its start
    import rioxarray  # noqa: F401

    ds = xr.open_zarr(store, decode_coords="all", mask_and_scale=mask_and_scale)
    check_class_flags(ds, store)
    return ds


def read_store(store: str) -> xr.Dataset | None:
    """The store's metadata (lazy, not consolidated), or None when there is no store."""
    try:
        return xr.open_zarr(store, consolidated=False, chunks=None, mask_and_scale=False)
    except FileNotFoundError:
        return None


# --- template and attributes ---------------------------------------------------------------


def step_template(
    kind: CubeKind,
    grid: GridSpec,
    classes: ClassNames,
    step: TimeStep,
    chunk: int,
    n_tiles: tuple[int, ...],
) -> xr.Dataset:
    """One time step of a store of ``kind`` as lazy fill values, with final chunks, attrs, encoding.

    Args:
        kind: The product's cube (variables and time coordinates).
        grid: Output grid (``x``/``y``/``spatial_ref`` coordinates).
        classes: Class table (the flags of class variables).
        step: The step (values of the time coordinates).
        chunk: Tile size in pixels.
        n_tiles: (rows, cols) of tiles, the shape of the step's ``tile_done`` record.
    """
    coords: dict[str, Any] = dict(odc.geo.xr.xr_coords(grid.geobox, crs_coord_name="spatial_ref"))
    for coord in kind.times:
        value = np.array([coord.value(step)], dtype="datetime64[ns]")
        attrs = dict(coord.attrs)
        coords[coord.name] = xr.Variable("time", value, attrs, encoding=dict(TIME_ENCODING))
    if kind.per_class:
        coords[CLASS_DIM] = xr.Variable(
            CLASS_DIM, np.array(classes.names, dtype=str), {"long_name": "class name"}
        )
    ds = xr.Dataset(coords=coords)
    for var in kind.variables:
        # per-class variables: one chunk per tile and class (a viewer reads one class's map)
        lead = (1, len(classes.names)) if var.per_class else (1,)
        shape, chunks = (*lead, *grid.shape), (*(1 for _ in lead), chunk, chunk)
        fill = da.full(shape, var.fill_value, dtype=var.dtype, chunks=chunks)
        attrs = {**var.template_attrs(classes), "grid_mapping": "spatial_ref"}
        ds[var.name] = (var.dims, fill, attrs)
        ds[var.name].encoding = {"chunks": chunks, "_FillValue": var.fill_value}
    done = da.zeros((1, *n_tiles), dtype=np.uint8, chunks=1)
    done_attrs = {
        "long_name": "tile completion record: 1 once the tile's chunks are written",
        "flag_values": [1],
        "flag_meanings": "done",
        "comment": kind.done_comment,
    }
    ds["tile_done"] = (("time", "tile_row", "tile_col"), done, done_attrs)
    ds["tile_done"].encoding = {"chunks": (1, 1, 1), "_FillValue": 0}
    return ds


def group_attrs(
    grid: GridSpec, classes: ClassNames, step: TimeStep, provenance: dict, title: str
) -> dict[str, Any]:
    """Group attributes of a new store."""
    geobox, crs = grid.geobox, CRS(grid.crs)
    affine = geobox.affine
    return {
        **provenance,
        "title": title,
        "Conventions": "CF-1.10",
        "classes": classes_attr(classes),
        "grid": grid.to_dict(),
        "proj:code": f"EPSG:{crs.epsg}" if crs.epsg else None,
        "proj:wkt2": crs.to_wkt(),
        "spatial:dimensions": ["y", "x"],
        "spatial:transform": [affine.a, affine.b, affine.c, affine.d, affine.e, affine.f],
        "spatial:shape": list(grid.shape),
        "spatial:bbox": list(geobox.extent.boundingbox),
        **convention_attrs(),
        "software": "terrawatch",
        "software_version": _software_version(),
        "created": _now(),
        "time_steps": [_step_record(step, provenance)],
    }


def _step_record(step: TimeStep, provenance: dict) -> dict[str, Any]:
    return {**step.to_attrs(), "created": _now(), "provenance": provenance}


def _software_version() -> str:
    try:
        return version("terrawatch")
    except PackageNotFoundError:  # running from a source checkout that is not installed
        return "unknown (not installed)"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- existing stores -------------------------------------------------------------------------


def check_store_matches(
    store: str, ds: xr.Dataset, grid: GridSpec, classes: ClassNames, chunk: int, kind: CubeKind
) -> None:
    """Raise StoreMismatchError listing every difference between the store and the request."""
    missing = set(kind.required) - set(ds.variables)
    if missing:
        raise StoreMismatchError(
            f"{store!r} is not a terrawatch {kind.name} (missing {sorted(missing)!r}); "
            "pass a new --store path"
        )
    diffs = []
    stored_crs = ds.attrs.get("proj:wkt2")
    if stored_crs is None or CRS(stored_crs) != CRS(grid.crs):
        diffs.append(f"CRS {ds.attrs.get('proj:code') or stored_crs!r} vs {grid.crs!r}")
    transform = list(grid.geobox.affine)[:6]
    stored_transform = np.asarray(ds.attrs.get("spatial:transform", []), dtype=float)
    if stored_transform.shape != (6,) or not np.allclose(stored_transform, transform, rtol=1e-12):
        diffs.append(f"transform {ds.attrs.get('spatial:transform')!r} vs {transform!r}")
    data = ds[kind.data_var]
    if tuple(data.shape[1:]) != tuple(grid.shape):
        diffs.append(f"shape (y, x) {tuple(data.shape[1:])!r} vs {tuple(grid.shape)!r}")
    stored_chunk = tuple(data.encoding.get("chunks", ()))[1:]
    if stored_chunk != (chunk, chunk):
        shown = stored_chunk[0] if len(set(stored_chunk)) == 1 else stored_chunk
        diffs.append(f"--chunk {shown} vs {chunk}")
    stored = [(c["name"], tuple(c["synonyms"])) for c in ds.attrs.get("classes", [])]
    wanted = list(zip(classes.names, classes.synonyms, strict=True))
    if stored != wanted:  # in the --classes syntax the user types
        diffs.append(f"--classes {_classes_text(stored)!r} vs {_classes_text(wanted)!r}")
    if diffs:
        raise StoreMismatchError(
            f"existing {kind.label} {store!r} does not match this run (store vs requested): "
            + "; ".join(diffs)
            + ". Write to a new store (--store), or rerun with the store's grid, chunk and classes "
            "(its 'grid' and 'classes' attributes)."
        )


def check_no_foreign_variables(store: str, ds: xr.Dataset, kind: CubeKind) -> None:
    """Refuse to append a step that would not grow every ``time`` variable of the store.

    A store made by another kind of run (``--refine special``'s zero-shot maps, ``--probabilities``)
    has variables this kind does not write; appending would leave them one step short and the
    store unreadable (xarray: conflicting sizes for dimension 'time').
    """
    known = set(kind.required) | {t.name for t in kind.times}
    foreign = sorted(
        str(name) for name, var in ds.data_vars.items() if "time" in var.dims and name not in known
    )
    if foreign:
        raise StoreMismatchError(
            f"{store!r} holds {foreign!r}, which this run does not write (the store was made by "
            "another kind of run, e.g. --refine special or --probabilities); rerun it the way it "
            "was made, or write to a new store (--store)"
        )


def _classes_text(classes: list[tuple[str, tuple[str, ...]]]) -> str:
    """``water|river,building``: names with their synonyms, as ``--classes`` takes them."""
    return ",".join("|".join(dict.fromkeys((name, *synonyms))) for name, synonyms in classes)


def _resume(
    store: str,
    ds: xr.Dataset,
    index: int,
    step: TimeStep,
    chunk: int,
    n_tiles: tuple[int, ...],
    kind: CubeKind,
) -> CubePlan:
    """Plan for a step already in the store: only the tiles whose record is not set.

    A finished step recorded with other periods or items is kept (nothing to do): scheduled
    retries and repeated commands must not fail because the catalog changed since.
    """
    records = ds.attrs.get("time_steps", [])
    found = record_index(records, step.time64)
    record = records[found] if found is not None else {}
    wanted = step.to_attrs()
    stored = {k: record.get(k, wanted[k]) for k in wanted}
    done = np.asarray(ds["tile_done"][index].values) == 1
    if _comparable(stored) != _comparable(wanted):
        if done.all():
            new = sorted(set(_item_ids(wanted)) - set(_item_ids(stored)))
            missing = sorted(set(_item_ids(stored)) - set(_item_ids(wanted)))
            logger.warning(
                "%s %s %s %s is complete with its recorded scenes; ignored new %s and missing %s "
                "(or other dates); rerun with --replace to recompute it",
                kind.log_name,
                store,
                kind.unit,
                step.time,
                new,
                missing,
            )
            return _plan(store, index, chunk, n_tiles, ())
        message = kind.already_in.format(
            time=step.time,
            store=store,
            stored=stored,
            wanted=wanted,
            found={k: record.get(k) for k in wanted},
        )
        raise StoreMismatchError(
            f"{message}. Its {int(done.sum())} written tile(s) came from the recorded scenes; "
            "rerun with --replace to rewrite the whole step from this run's scenes."
        )
    todo = tuple((int(r), int(c)) for r, c in np.argwhere(~done))
    logger.info(
        "%s %s %s %s: %d of %d tiles to do",
        kind.log_name,
        store,
        kind.unit,
        step.time,
        len(todo),
        done.size,
    )
    return _plan(store, index, chunk, n_tiles, todo)


def _replace(
    store: str,
    ds: xr.Dataset,
    index: int,
    step: TimeStep,
    provenance: dict,
    chunk: int,
    n_tiles: tuple[int, ...],
    kind: CubeKind,
) -> CubePlan:
    """Plan to rewrite a stored step: reset its tile records, then record the new step.

    The order matters: once the record names the new scenes, no tile of the step is marked
    done, so a resumed run (plain or ``replace``) never keeps a tile of the old scenes. The
    data chunks are left until their tile is written again; only ``tile_done`` says done.
    """
    done = zarr.open_array(store, path="tile_done", mode="r+")
    done[index] = 0
    times = ds["time"].values
    records = [
        dict(r)
        for r in ds.attrs.get("time_steps", [])
        if (times == parse_time(r["time"], "time")).any()
    ]
    found = record_index(records, step.time64)
    record = _step_record(step, provenance)
    if found is None:
        records.append(record)
    else:
        records[found] = record
    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    group.attrs.update({**provenance, "time_steps": records})
    zarr.consolidate_metadata(store, zarr_format=ZARR_FORMAT)
    todo = all_tiles(n_tiles)
    logger.info(
        "replacing %s %s of %s %s (index %d): all %d tiles to do",
        kind.unit,
        step.time,
        kind.log_name,
        store,
        index,
        len(todo),
    )
    return _plan(store, index, chunk, n_tiles, todo)


def _item_ids(record: dict[str, Any]) -> list[str]:
    """Every scene id of a step record, nested periods (a change pair's) included."""
    ids = list(record.get("items") or [])
    for value in record.values():
        if isinstance(value, dict):
            ids += _item_ids(value)
    return ids


def _comparable(record: dict[str, Any], prefix: str = "") -> tuple:
    """Comparable form of a step record: dates parsed, item lists as tuples, nested steps too."""
    out: list[Any] = []
    for key, value in record.items():
        if key in ("time", "end"):
            out.append(parse_time(value, prefix + key))
        elif key == "items":
            out.append(tuple(value))
        elif isinstance(value, dict):
            out.append(_comparable(value, f"{prefix}{key}."))
        else:
            out.append(value)
    return tuple(out)


def _append_step(
    store: str, ds: xr.Dataset, template: xr.Dataset, step: TimeStep, provenance: dict
) -> None:
    """Append one lazy time step (metadata only) and its record, re-consolidating."""
    template = template.drop_vars(["x", "y"])
    times = ds["time"].values
    records = [  # drop a record left by an append that failed before the resize
        r for r in ds.attrs.get("time_steps", []) if (times == parse_time(r["time"], "time")).any()
    ]
    kept = {k: v for k, v in ds.attrs.items() if k in RESERVED_ATTRS}
    kept["time_steps"] = [*records, _step_record(step, provenance)]
    template.attrs = {**provenance, **kept}
    # "a-": resize the time axis only; variables without a time dim are left untouched
    template.to_zarr(store, mode="a-", append_dim="time", compute=False, consolidated=True)
    if _extend_flag_descriptions(store, ds, template):
        zarr.consolidate_metadata(store, zarr_format=ZARR_FORMAT)


def _extend_flag_descriptions(store: str, ds: xr.Dataset, template: xr.Dataset) -> bool:
    """Give a stored bit-flag variable the flags a newer release added; True if any changed.

    ``mode="a-"`` keeps the variables' attributes as the store's first run wrote them, so a
    store made before a flag bit existed (e.g. the flood ``exclusion`` layover and shadow bits)
    would get pixels with bits its attributes do not describe. Only extensions are written
    (the stored masks a prefix of the new ones, same meanings for them): a stored bit never
    changes meaning, and anything else is left as stored.
    """
    changed = False
    for name, var in template.data_vars.items():
        new = var.attrs
        old = ds[name].attrs if name in ds else {}
        if "flag_masks" not in new or "flag_masks" not in old:
            continue
        new_masks = [int(m) for m in np.asarray(new["flag_masks"]).ravel()]
        old_masks = [int(m) for m in np.asarray(old["flag_masks"]).ravel()]
        new_words = str(new.get("flag_meanings", "")).split()
        old_words = str(old.get("flag_meanings", "")).split()
        extends = (
            len(new_masks) > len(old_masks)
            and new_masks[: len(old_masks)] == old_masks
            and new_words[: len(old_words)] == old_words
        )
        if not extends:
            continue
        array = zarr.open_array(store, path=name, mode="r+")
        array.attrs.update(
            {"flag_masks": new_masks, "flag_meanings": " ".join(new_words)}
            | ({"comment": new["comment"]} if "comment" in new else {})
        )
        logger.info("%s: flag bits %s added to its description", name, new_masks[len(old_masks) :])
        changed = True
    return changed


def record_index(records: list[dict], when: np.datetime64) -> int | None:
    """Position of the ``time_steps`` record of time ``when``, or None."""
    for i, record in enumerate(records):
        if parse_time(record["time"], "time_steps[].time") == when:
            return i
    return None


# --- tiles -----------------------------------------------------------------------------------


def tile_region(
    store: str, meta: zarr.Array, time_index: int, tile: tuple[int, int], chunk: int
) -> dict[str, slice]:
    """The region of one tile, after checking chunk, time index and tile against the store.

    Args:
        store: Store path or URL (for messages).
        meta: A ``(time, y, x)`` data variable of the store, opened read-only.
        time_index: Index on the ``time`` axis (``CubePlan.time_index``).
        tile: ``(tile_row, tile_col)``.
        chunk: Tile size in pixels; must equal the store's chunking.
    """
    if tuple(meta.chunks[1:]) != (chunk, chunk):
        raise InputError(
            f"chunk={chunk!r} but {store!r} is chunked {tuple(meta.chunks[1:])!r}; pass the "
            "plan's chunk (CubePlan.chunk)"
        )
    n_tiles = tuple(math.ceil(n / chunk) for n in meta.shape[1:])
    check_index(store, (meta.shape[0], *n_tiles), time_index, tile)
    (row, col), (height, width) = tile, meta.shape[1:]
    return {
        "time": slice(time_index, time_index + 1),
        "y": slice(row * chunk, min((row + 1) * chunk, height)),
        "x": slice(col * chunk, min((col + 1) * chunk, width)),
    }


def region_shape(region: dict[str, slice]) -> tuple[int, int]:
    """``(height, width)`` of a :func:`tile_region`."""
    return (region["y"].stop - region["y"].start, region["x"].stop - region["x"].start)


def write_cube_tile(
    store: str,
    kind: CubeKind,
    time_index: int,
    tile: tuple[int, int],
    arrays: dict[str, np.ndarray],
    chunk: int,
    *,
    lease: str | None = None,
) -> None:
    """Write one tile (exactly one Zarr chunk per variable), then set its ``tile_done``.

    Every given array is checked against its :class:`~tasks.core.cube_types.CubeVariable`, the
    kind's :attr:`~tasks.core.cube_types.CubeKind.finish` applies the rules across variables and
    adds the derived ones, and only then is anything written. Straight into the Zarr arrays, not
    through ``xarray.Dataset.to_zarr``: every variable is stored as is (``_FillValue`` is Zarr's
    fill value; no scale or offset), so xarray's CF encoding had nothing to do, and its opening
    of the store (listing every member) made a 1024² land-cover tile's write 0.029 s, not 0.012.

    Args:
        store: Store path or URL prepared for ``kind``.
        kind: The product's cube.
        time_index: Index on the ``time`` axis (``CubePlan.time_index``).
        tile: ``(tile_row, tile_col)``.
        arrays: ``[h, w]`` array per input variable of the kind (:attr:`CubeKind.inputs`);
            ``(h, w)`` is the tile's shape in the grid (smaller than ``chunk`` at the edges).
        chunk: Tile size in pixels; must equal the store's chunking.
        lease: The writing run's writer lease token (:mod:`tasks.core.writer_lease`), checked
            before the data and again before ``tile_done``: a run whose lease was taken over,
            released or expired writes nothing more. None (direct API use) checks nothing.

    Raises:
        InputError: Tile or time index out of range, wrong chunk, variables, shape, dtype or
            values. Checked before anything is written.
        WriterLeaseError: ``lease`` is no longer the store's live lease.
    """
    wanted = [v.name for v in kind.inputs]
    if sorted(arrays) != sorted(wanted):
        raise InputError(f"a {kind.name} tile takes arrays {wanted!r}, got {sorted(arrays)!r}")
    data = {v.name: zarr.open_array(store, path=v.name, mode="r+") for v in kind.variables}
    region = tile_region(store, data[kind.data_var], time_index, tile, chunk)
    shape = region_shape(region)
    class_vars = [v.name for v in kind.inputs if v.classes]
    n_classes = len(data[class_vars[0]].attrs.get("flag_values", [])) if class_vars else 0
    checked = {v.name: v.check(arrays[v.name], shape, n_classes) for v in kind.inputs}
    final = kind.finish(checked)
    index = (region["time"], region["y"], region["x"])
    per_class = (region["time"], slice(None), region["y"], region["x"])
    if lease is not None:
        check_writer_token(store, lease)
    for var in kind.variables:
        data[var.name][per_class if var.per_class else index] = final[var.name][None]
    if lease is not None:
        check_writer_token(store, lease)
    zarr.open_array(store, path="tile_done", mode="r+")[(time_index, *tile)] = 1


def nodata_tile(store: str, kind: CubeKind, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """The input arrays of a tile of ``store`` without any valid input pixel (per-class
    variables get one layer per class of the store's class table)."""
    group = zarr.open_group(store, mode="r", use_consolidated=False) if kind.per_class else None
    n_classes = len(group.attrs.get("classes", [])) if group is not None else 0
    return kind.nodata_tile(shape, n_classes)


def is_tile_done(store: str, time_index: int, tile: tuple[int, int]) -> bool:
    """Whether the tile's data is completely written (its completion record is set).

    Raises:
        InputError: ``time_index`` or ``tile`` out of range.
    """
    done = zarr.open_array(store, path="tile_done", mode="r")
    check_index(store, done.shape, time_index, tile)
    return bool(done[(time_index, *tile)] == 1)


# --- finished steps --------------------------------------------------------------------------


def open_finished_step(store: str, time_index: int, unit: str) -> zarr.Group:
    """The store's group, writable, after checking that every tile of the step is written.

    Args:
        store: Store path or URL.
        time_index: Index of the step.
        unit: The step in the message, e.g. ``"time index"``, ``"pair"``.

    Raises:
        InputError: ``time_index`` out of range.
        RuntimeError: Some tiles are not written yet (listed); rerun the flow to write them.
    """
    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    done = group["tile_done"]
    check_index(store, done.shape, time_index, (0, 0))
    missing = np.argwhere(done[time_index] != 1)
    if missing.size:
        raise RuntimeError(
            f"{unit} {time_index} of {store!r} has {len(missing)} tile(s) not written yet, "
            f"e.g. {[tuple(map(int, t)) for t in missing[:5]]}; rerun the flow to write them"
        )
    return group


def record_step(store: str, group: zarr.Group, time_index: int, values: dict[str, Any]) -> None:
    """Merge ``values`` (pixel counts) into the step's ``time_steps`` record; re-consolidate.

    The attribute is rewritten only when a value changed; the metadata is always
    re-consolidated, which heals a stale consolidated copy left by an interrupted append.
    """
    when = read_store(store)["time"].values[time_index]
    records = [dict(r) for r in group.attrs.get("time_steps", [])]
    found = record_index(records, when)
    if found is None:  # only after an interrupted append; keep the counts anyway
        records.append({"time": np.datetime_as_string(when, unit="s")})
        found = len(records) - 1
    if any(records[found].get(k) != v for k, v in values.items()):
        records[found].update(values)
        group.attrs["time_steps"] = records
    zarr.consolidate_metadata(store, zarr_format=ZARR_FORMAT)


# --- plans -----------------------------------------------------------------------------------


def _plan(store: str, index: int, chunk: int, n_tiles: tuple[int, ...], todo: tuple) -> CubePlan:
    rows, cols = n_tiles
    return CubePlan(store, index, chunk, (rows, cols), tuple(todo), already_complete=not todo)


def all_tiles(n_tiles: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Every ``(tile_row, tile_col)`` of a ``(rows, cols)`` tile grid, row-major."""
    return tuple((r, c) for r in range(n_tiles[0]) for c in range(n_tiles[1]))
