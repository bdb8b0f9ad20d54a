"""Plan a change run: check that both dates share a native grid, derive the grid, prepare the cube.

The planning half of :mod:`tasks.change.tile` (the detector and the tile tasks live there).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from odc.geo import CRS
from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.errors import InputError
from terrawatch.models.change import ChangeDetector
from terrawatch.models.classes import ClassNames
from terrawatch.tasks.change.cube import ChangeStep, prepare_change_cube
from terrawatch.tasks.change.tile import ChangeSpec, worker_detector
from terrawatch.tasks.core.bands import item_label, resolve_band
from terrawatch.tasks.core.catalog import SearchResult, parse_aoi
from terrawatch.tasks.core.cube_types import CubePlan, TimeStep
from terrawatch.tasks.core.defaults import check_chunk
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.item_groups import best_first
from terrawatch.tasks.core.load import RGB_BANDS, check_readable
from terrawatch.tasks.core.output_grid import default_resolution, grid_for_aoi

logger = logging.getLogger(__name__)


# --- native grids of the two dates ----------------------------------------------------------


def native_grid(item: dict) -> tuple[str, float, float, float] | None:
    """(CRS, pixel size, x and y origin phase in pixels) of an item's red band, if recorded."""
    asset = item.get("assets", {}).get(resolve_band(item, "red").asset, {})
    props = item.get("properties", {})

    def get(key: str) -> Any:
        return asset.get(key, props.get(key))

    code = get("proj:code") or (f"EPSG:{get('proj:epsg')}" if get("proj:epsg") else None)
    code = code or get("proj:wkt2")
    transform = get("proj:transform")
    if not code or not transform:
        return None
    crs = CRS(code)
    res = abs(float(transform[0]))
    phase = [round((float(transform[i]) / res) % 1.0, 3) % 1.0 for i in (2, 5)]
    return (f"EPSG:{crs.epsg}" if crs.epsg else crs.to_wkt(), round(res, 9), *phase)


def check_same_grid(items_t1: tuple[dict, ...], items_t2: tuple[dict, ...]) -> None:
    """Both dates must come on one native pixel grid (CRS, pixel size and pixel alignment).

    Change is a per-pixel comparison: dates resampled from different grids shift by up to a
    pixel against each other, and every edge then reads as change.

    Raises:
        InputError: The dates share no native grid; the message names both.
    """
    grids1 = {g for g in map(native_grid, items_t1) if g is not None}
    grids2 = {g for g in map(native_grid, items_t2) if g is not None}
    if grids1 and grids2 and not grids1 & grids2:
        raise InputError(
            f"the two dates are on different grids: before {_describe(grids1, items_t1)}, after "
            f"{_describe(grids2, items_t2)}; change needs both dates on one grid (same CRS, "
            "pixel size and pixel alignment). Reproject one date onto the other's grid, or "
            "choose periods from the same sensor and tile"
        )


def _describe(grids: set[tuple], items: tuple[dict, ...]) -> str:
    first = item_label(items[0])
    return " / ".join(
        f"{crs if len(crs) < 40 else crs[:40] + '...'}, {res:g} units/px, origin phase "
        f"({px:g}, {py:g}) px"
        for crs, res, px, py in sorted(grids, key=str)
    ) + (f" ({len(items)} item(s), e.g. {first})")


# --- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangePlan:
    """What the tile tasks need: references only."""

    cube: CubePlan
    """Store, pair index and tiles still to write."""
    grid: GridSpec
    """Grid of both dates."""
    items_t1: tuple[dict, ...]
    """Items of the earlier period, best first."""
    items_t2: tuple[dict, ...]
    """Items of the later period, best first."""
    classes: ClassNames
    """Class table of the cube."""


def plan_change(
    before: SearchResult,
    after: SearchResult,
    periods: tuple[tuple[str, str], tuple[str, str]],
    spec: ChangeSpec,
    store: str,
    aoi: str | list[float] | dict | None = None,
    grid: GridSpec | None = None,
    resolution: float | None = None,
    crs: str | None = None,
    *,
    chunk: int,
    run_id: str | None = None,
    replace: bool = False,
) -> ChangePlan:
    """Check both dates, derive (or take) the grid, warm the detector and prepare the cube.

    Args:
        before: Search result of the earlier period.
        after: Search result of the later period.
        periods: ``((start, end), (start, end))`` of the earlier and later period.
        spec: The detector.
        store: Change cube path or URL.
        aoi: Area (for the grid) when ``grid`` is not given.
        grid: An explicit grid (e.g. a land-cover cube's); else derived from ``aoi``.
        resolution: Pixel size (default per sensor) when the grid is derived.
        crs: Output CRS (default UTM of the AOI centre) when the grid is derived.
        chunk: Tile size in pixels.
        run_id: Flow run id for the provenance.
    """
    check_chunk(chunk)
    items1, items2 = best_first(before.items), best_first(after.items)
    check_same_grid(items1, items2)
    if grid is None:
        if aoi is None:
            raise InputError("give an aoi (W,S,E,N or GeoJSON) or a grid")
        _, bbox = parse_aoi(aoi)
        collection = items2[0].get("collection", "*")
        grid = grid_for_aoi(bbox, resolution or default_resolution(collection, items2[0]), crs)
    check_readable([*items1, *items2], RGB_BANDS)
    detector = worker_detector(spec)
    classes = spec.segmenter.classes
    provenance = _provenance(spec, detector, before, after, run_id)
    (start1, end1), (start2, end2) = periods
    step = ChangeStep.of(
        TimeStep(str(start1)[:10], str(end1)[:10], tuple(i["id"] for i in items1)),
        TimeStep(str(start2)[:10], str(end2)[:10], tuple(i["id"] for i in items2)),
    )
    cube = prepare_change_cube(store, grid, classes, step, provenance, chunk, replace=replace)
    logger.info(
        "change grid %s %dx%d px at %g; %d of %d tiles to do",
        grid.crs,
        *grid.shape,
        grid.resolution,
        len(cube.todo),
        cube.n_tiles[0] * cube.n_tiles[1],
    )
    return ChangePlan(cube, grid, items1, items2, classes)


def _provenance(
    spec: ChangeSpec,
    detector: ChangeDetector,
    before: SearchResult,
    after: SearchResult,
    run_id: str | None,
) -> dict[str, Any]:
    """Change query, steps with weights and hashes, items per date, run id (JSON-safe)."""
    steps = json.loads(json.dumps(detector.provenance(), default=str))
    return {
        "change_query": spec.query(),
        "change_steps": steps,
        "run_id": run_id or uuid.uuid4().hex,
        "catalog": after.catalog,
        "items_before": list(before.ids),
        "items_after": list(after.ids),
        "dropped_items": [list(d) for d in (*before.dropped, *after.dropped)],
    }


plan_change_task = task(plan_change, name="plan-change", cache_policy=NO_CACHE)
