"""AlignEarth training chips: pair optical and SAR scenes by date, cut aligned chips into Zarr.

Both sensors are read through the pipeline's own loaders onto one grid, the output grid of the
AOI (:func:`tasks.core.output_grid.grid_for_aoi`): optical as the model's RGB composite
(:func:`tasks.core.load.read_composite`), SAR as the composite the SAR segmenter reads
(:func:`tasks.core.sar_composite.read_sar_composite`: dB scaled to 0..1, speckle-filtered, ``grey``
by default). So the student learns on exactly what it sees at inference. A chip is kept only where
both sensors are valid on at least ``min_valid`` of its pixels; invalid pixels of kept chips are
0. The dataset (``<path>``, Zarr v3) holds ``optical`` and ``sar`` uint8 ``[N, 3, H, W]``
(value x 255), per-chip ``pair``, ``row``/``col`` (pixel offsets in the grid), ``bbox`` (grid
CRS), valid fractions and ``heldout``; the root attrs are the manifest (request, grid, pairs
with item ids and dates, counts). It is written beside as ``<path>.partial`` and renamed when
complete, so an existing dataset is always a whole one. :class:`ChipDataset` reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.errors import InputError, NoScenesError
from terrawatch.tasks.core.catalog import (
    OPTICAL_COLLECTIONS,
    SearchResult,
    default_sar_collections,
    parse_aoi,
)
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.item_groups import best_first, group_key, item_datetime
from terrawatch.tasks.core.load import RGB_BANDS, check_readable
from terrawatch.tasks.core.load import read_composite as _read_optical
from terrawatch.tasks.core.output_grid import default_resolution, grid_for_aoi
from terrawatch.tasks.core.sar import check_sar_items, check_sar_readable, select_orbit
from terrawatch.tasks.core.sar_composite import SarOptions
from terrawatch.tasks.core.sar_composite import read_sar_composite as _read_sar

logger = logging.getLogger(__name__)

FORMAT = "terrawatch-alignearth-chips/1"
BLOCK_PIXELS = 2048
"""Largest window side one chip job reads (whole chips only): bounds a worker's memory."""
SHARD_CHIPS = 64
"""Chips per Zarr shard file; each chip is its own inner chunk (random access)."""


@dataclass(frozen=True)
class ChipRequest:
    """What a chip dataset is made of: equal requests give the same dataset (the reuse key)."""

    aoi: dict
    """AOI geometry, GeoJSON in lon/lat."""
    start: str
    """Optical period start (ISO date)."""
    end: str
    """Optical period end (ISO date, inclusive)."""
    catalog: str
    """Named catalog, STAC API URL or local folder (absolute)."""
    optical_collections: tuple[str, ...]
    """Optical collections searched."""
    sar_collections: tuple[str, ...]
    """SAR collections searched (``start - max_days`` .. ``end + max_days``)."""
    max_days: float = 3.0
    """Largest time between an optical and a SAR acquisition of one pair, days."""
    chip: int = 224
    """Chip side in pixels."""
    stride: int = 224
    """Pixels between chip origins (``chip``: no overlap)."""
    min_valid: float = 0.9
    """Least fraction of valid pixels of a kept chip, in each sensor."""
    holdout: float = 0.1
    """Fraction of chip locations held out for evaluation."""
    resolution: float | None = None
    """Grid pixel size in CRS units (default per optical sensor: 10 m for Sentinel-2)."""
    crs: str | None = None
    """Grid CRS (default: UTM zone of the AOI centre)."""
    max_cloud: float | None = 20.0
    """Largest ``eo:cloud_cover`` of optical scenes, percent."""
    max_items: int = 50
    """Most scenes per sensor."""
    orbit: str | None = None
    """Keep only ``ascending`` or ``descending`` SAR passes."""
    sar: SarOptions = field(default_factory=SarOptions)
    """SAR composite options (polarisations, speckle filter, composite)."""
    loader: str = "odc"
    """``odc`` or ``stackstac``."""

    def __post_init__(self) -> None:
        checks = [
            ("chip", self.chip, _int(self.chip) and self.chip >= 32, "an int >= 32 (pixels)"),
            ("stride", self.stride, _int(self.stride) and self.stride >= 1, "an int >= 1"),
            ("min_valid", self.min_valid, _finite(self.min_valid) and 0 < self.min_valid <= 1,
             "in (0, 1]"),
            ("holdout", self.holdout, _finite(self.holdout) and 0 <= self.holdout < 1,
             "in [0, 1)"),
            ("max_items", self.max_items, _int(self.max_items) and self.max_items >= 1, ">= 1"),
        ]  # fmt: skip
        check_max_days(self.max_days)
        for name, value, ok, allowed in checks:
            if not ok:
                raise InputError(f"{name} must be {allowed}, got {value!r}")
        if self.orbit not in (None, "ascending", "descending"):
            raise InputError(f"orbit must be None, 'ascending' or 'descending', got {self.orbit!r}")
        if self.loader not in ("odc", "stackstac"):
            raise InputError(f"loader must be 'odc' or 'stackstac', got {self.loader!r}")

    @classmethod
    def build(
        cls,
        aoi: str | Sequence[float] | dict,
        start: str | date,
        end: str | date,
        catalog: str,
        optical_collections: Sequence[str] | None = None,
        sar_collections: Sequence[str] | None = None,
        **options: Any,
    ) -> ChipRequest:
        """Normalise the AOI, dates, catalog and collections (defaults per catalog).

        Raises:
            InputError: a bad AOI, date, collection list or option.
        """
        geometry, _ = parse_aoi(aoi)
        first, last = _iso_date(start, "start"), _iso_date(end, "end")
        if first > last:
            raise InputError(f"start={start!r} is after end={end!r}; swap them")
        local = Path(str(catalog)).expanduser()
        catalog = str(local.resolve()) if local.exists() else str(catalog)
        optical = _collections("optical_collections", optical_collections, OPTICAL_COLLECTIONS)
        sar = _collections("sar_collections", sar_collections, default_sar_collections(catalog))
        return cls(geometry, first, last, catalog, optical, sar, **options)

    @property
    def bbox(self) -> tuple[float, ...]:
        """AOI bounds (west, south, east, north), degrees."""
        return parse_aoi(self.aoi)[1]

    def sar_window(self) -> tuple[str, str]:
        """The SAR search period: the optical period widened by ``max_days`` on both sides."""
        pad = timedelta(days=math.ceil(self.max_days))
        first, last = date.fromisoformat(self.start), date.fromisoformat(self.end)
        return (first - pad).isoformat(), (last + pad).isoformat()

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what the dataset manifest records and reuse compares)."""
        return json.loads(json.dumps(asdict(self)))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _iso_date(value: str | date, name: str) -> str:
    try:
        return date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError as err:
        raise InputError(f"{name} must be an ISO date like '2024-06-01', got {value!r}") from err


def _collections(name: str, given: Sequence[str] | None, default: Sequence[str]) -> tuple:
    values = tuple([given] if isinstance(given, str) else given or default)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise InputError(f"{name} must be None or non-empty collection ids, got {given!r}")
    return values


# --- pairing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenePair:
    """One optical acquisition day and the SAR pass nearest in time within the tolerance."""

    optical: tuple[dict, ...]
    """Optical items of one solar day, least cloudy first."""
    sar: tuple[dict, ...]
    """SAR items of one solar day and orbit direction."""
    optical_time: str
    """Earliest optical acquisition, ISO UTC."""
    sar_time: str
    """Earliest SAR acquisition, ISO UTC."""
    gap_days: float
    """``|optical_time - sar_time|`` in days."""

    @property
    def key(self) -> str:
        """Short stable id of the pair (hash of its item ids)."""
        ids = ",".join(sorted(i["id"] for i in self.optical)) + "|"
        ids += ",".join(sorted(i["id"] for i in self.sar))
        return hashlib.sha256(ids.encode()).hexdigest()[:12]

    def describe(self) -> dict[str, Any]:
        """JSON record for manifests: item ids, times, gap, orbit."""
        return {
            "optical_items": [i["id"] for i in self.optical],
            "sar_items": [i["id"] for i in self.sar],
            "optical_time": self.optical_time,
            "sar_time": self.sar_time,
            "gap_days": self.gap_days,
            "orbit_state": self.sar[0].get("properties", {}).get("sat:orbit_state"),
        }


def _groups(items: Sequence[dict], key: Any) -> list[tuple[datetime, list[dict]]]:
    found: dict[Any, list[dict]] = {}
    for item in items:
        found.setdefault(key(item), []).append(item)
    groups = [(min(item_datetime(i) for i in members), members) for members in found.values()]
    return sorted(groups, key=lambda g: (g[0], g[1][0]["id"]))


def _sar_key(item: dict) -> tuple[str, str]:
    orbit = str(item.get("properties", {}).get("sat:orbit_state"))
    return group_key(item, "solar_day"), orbit


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def check_max_days(max_days: float) -> None:
    """The pairing limit must be a finite number of days, at least 0.

    Raises:
        InputError: it is not.
    """
    if not (_finite(max_days) and max_days >= 0):
        raise InputError(f"max_days must be a number >= 0 (days), got {max_days!r}")


def pair_scenes(
    optical: Sequence[dict], sar: Sequence[dict], max_days: float, orbit: str | None = None
) -> list[ScenePair]:
    """Pair each optical day with the nearest SAR pass (same solar day and orbit) in time.

    A pass pairs when it is at most ``max_days`` (fractional days) away; ties go to the earlier
    pass. One pass may pair with several optical days.

    Raises:
        InputError: ``max_days`` < 0 or a bad ``orbit``.
        NoScenesError: no optical day has a pass within ``max_days``; names the closest.
    """
    check_max_days(max_days)
    sar = select_orbit(list(sar), orbit) if orbit is not None else list(sar)
    optical_groups = _groups(optical, lambda it: group_key(it, "solar_day"))
    sar_groups = _groups(sar, _sar_key)
    if not optical_groups or not sar_groups:
        raise NoScenesError(
            f"pairing needs optical and SAR scenes, got {len(optical)} optical and {len(sar)} "
            f"SAR item(s){f' of orbit {orbit!r}' if orbit else ''}; widen the period or the AOI"
        )
    pairs, closest = [], None
    for when, members in optical_groups:
        sar_when, sar_members = min(sar_groups, key=lambda g: (abs(g[0] - when), g[0]))
        gap = abs(sar_when - when).total_seconds() / 86400.0
        if closest is None or gap < closest[0]:
            closest = (gap, when, sar_when)
        if gap <= max_days:
            pair = ScenePair(best_first(tuple(members)), tuple(sar_members), _iso(when),
                             _iso(sar_when), round(gap, 4))  # fmt: skip
            pairs.append(pair)
    if not pairs:
        gap, when, sar_when = closest
        raise NoScenesError(
            f"no optical/SAR pair within max_days={max_days!r}: the closest are optical "
            f"{_iso(when)} and SAR {_iso(sar_when)}, {gap:.2f} days apart (optical days "
            f"{[_iso(t)[:10] for t, _ in optical_groups]}, SAR passes "
            f"{[_iso(t)[:10] for t, _ in sar_groups]}); raise max_days or widen the period"
        )
    logger.info("paired %d of %d optical days with SAR", len(pairs), len(optical_groups))
    return pairs


# --- plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChipJob:
    """One block of chip positions of one pair: references only."""

    pair_index: int
    """Index of the pair in the plan."""
    pair: ScenePair
    """The scenes."""
    grid: GridSpec
    """The AOI grid."""
    rows: tuple[int, ...]
    """Top pixel rows of the chips (grid pixels)."""
    cols: tuple[int, ...]
    """Left pixel columns of the chips."""
    chip: int
    """Chip side, pixels."""
    min_valid: float
    """Least valid fraction of a kept chip, per sensor."""
    sar: SarOptions
    """SAR composite options, polarisations resolved for this pair."""
    loader: str
    """``odc`` or ``stackstac``."""
    part: str
    """Where the job writes its chips (``.npz``); present means done."""


@dataclass(frozen=True)
class ChipPlan:
    """Everything the chip jobs and the dataset writer need."""

    dataset: str
    """Chip dataset path."""
    request: ChipRequest
    """What was asked for."""
    grid: GridSpec
    """The AOI grid."""
    pairs: tuple[ScenePair, ...]
    """Scene pairs, in optical time order."""
    jobs: tuple[ChipJob, ...]
    """Chip jobs, by pair then block."""
    candidates: int
    """Chip positions over all pairs."""


def chip_positions(shape: tuple[int, int], chip: int, stride: int) -> tuple[list, list]:
    """Top rows and left columns of the whole chips that fit in a grid of ``shape`` pixels.

    Raises:
        InputError: the grid is smaller than one chip.
    """
    if shape[0] < chip or shape[1] < chip:
        raise InputError(
            f"the AOI grid is {shape[0]}x{shape[1]} pixels, smaller than chip={chip!r}; "
            "enlarge the AOI, lower the resolution (smaller pixels) or the chip size"
        )
    return list(range(0, shape[0] - chip + 1, stride)), list(range(0, shape[1] - chip + 1, stride))


def plan_chips(
    optical: SearchResult, sar: SearchResult, request: ChipRequest, dataset: str
) -> ChipPlan:
    """Pair the scenes, derive the grid, open every asset, list the chip jobs.

    Raises:
        NoScenesError: no pair within ``max_days``.
        InputError: a grid smaller than a chip, SAR items that cannot share a composite.
        FileNotFoundError, ValueError: an asset cannot be read.
    """
    pairs = pair_scenes(optical.items, sar.items, request.max_days, request.orbit)
    first = pairs[0].optical[0]
    resolution = request.resolution or default_resolution(first.get("collection", ""), first)
    grid = grid_for_aoi(request.bbox, resolution, request.crs)
    rows, cols = chip_positions(grid.shape, request.chip, request.stride)
    check_readable([i for p in pairs for i in p.optical], RGB_BANDS)
    parts = _parts_dir(dataset, request)
    per_block = max(1, (BLOCK_PIXELS - request.chip) // request.stride + 1)
    jobs = []
    for index, pair in enumerate(pairs):
        options = request.sar.resolved(check_sar_items(list(pair.sar), request.sar.polarizations))
        check_sar_readable(list(pair.sar), options.polarizations)
        for r0 in range(0, len(rows), per_block):
            for c0 in range(0, len(cols), per_block):
                part = parts / f"{pair.key}-{rows[r0]}-{cols[c0]}.npz"
                block = (tuple(rows[r0 : r0 + per_block]), tuple(cols[c0 : c0 + per_block]))
                jobs.append(ChipJob(index, pair, grid, *block, request.chip, request.min_valid,
                                    options, request.loader, str(part)))  # fmt: skip
    logger.info(
        "chip grid %s %dx%d px at %g: %d pairs x %d positions, %d jobs",
        grid.crs, *grid.shape, grid.resolution, len(pairs), len(rows) * len(cols), len(jobs),
    )  # fmt: skip
    return ChipPlan(dataset, request, grid, tuple(pairs), tuple(jobs),
                    len(pairs) * len(rows) * len(cols))  # fmt: skip


def _parts_dir(dataset: str, request: ChipRequest) -> Path:
    """``<dataset>.parts``: chip jobs' outputs, kept across reruns of the same request."""
    parts = Path(f"{dataset}.parts")
    marker = parts / "request.json"
    wanted = json.dumps(request.to_dict(), sort_keys=True)
    if parts.exists() and not (marker.is_file() and marker.read_text() == wanted):
        if not marker.is_file():
            raise InputError(
                f"{str(parts)!r} exists but was not written by the chip cutter; move it away"
            )
        logger.info("chip parts in %s are of another request; starting over", parts)
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    marker.write_text(wanted)
    return parts


plan_chips_task = task(plan_chips, name="plan-chips", cache_policy=NO_CACHE)


# --- cut --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChipPart:
    """What one chip job wrote."""

    part: str
    """The ``.npz`` file."""
    pair_index: int
    """Pair of the chips."""
    kept: int
    """Chips kept (valid enough in both sensors)."""
    candidates: int
    """Chip positions of the job."""
    seconds: float
    """Wall time (0 when the part existed)."""


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Float 0..1 (NaN: invalid) -> uint8 ``round(255 x)``; NaN becomes 0."""
    return np.round(np.clip(np.nan_to_num(values, nan=0.0), 0, 1) * 255).astype(np.uint8)


def cut_chips(job: ChipJob) -> ChipPart:
    """Read both sensors over the job's window, keep chips valid enough in both, write them."""
    started = time.perf_counter()
    candidates = len(job.rows) * len(job.cols)
    if Path(job.part).is_file():
        with np.load(job.part) as done:
            return ChipPart(job.part, job.pair_index, len(done["rows"]), candidates, 0.0)
    window = (
        slice(job.rows[0], job.rows[-1] + job.chip),
        slice(job.cols[0], job.cols[-1] + job.chip),
    )
    optical, valid_optical = _read_optical(job.pair.optical, job.grid, window, job.loader)
    sar, valid_sar = _read_sar(job.pair.sar, job.grid, window, job.sar, job.loader)
    kept: dict[str, list] = {k: [] for k in ("optical", "sar", "rows", "cols", "vo", "vs")}
    for row in job.rows:
        for col in job.cols:
            y, x = row - job.rows[0], col - job.cols[0]
            cut = (slice(y, y + job.chip), slice(x, x + job.chip))
            fractions = float(valid_optical[cut].mean()), float(valid_sar[cut].mean())
            if min(fractions) < job.min_valid:
                continue
            both = valid_optical[cut] & valid_sar[cut]
            kept["optical"].append(to_uint8(np.where(both, optical[(slice(None), *cut)], 0)))
            kept["sar"].append(to_uint8(np.where(both, sar[(slice(None), *cut)], 0)))
            kept["rows"].append(row), kept["cols"].append(col)
            kept["vo"].append(fractions[0]), kept["vs"].append(fractions[1])
    _save_part(job, kept)
    return ChipPart(job.part, job.pair_index, len(kept["rows"]), candidates,
                    time.perf_counter() - started)  # fmt: skip


def _save_part(job: ChipJob, kept: dict[str, list]) -> None:
    empty = np.zeros((0, 3, job.chip, job.chip), np.uint8)
    arrays = {
        "optical": np.stack(kept["optical"]) if kept["optical"] else empty,
        "sar": np.stack(kept["sar"]) if kept["sar"] else empty,
        "rows": np.asarray(kept["rows"], np.int32),
        "cols": np.asarray(kept["cols"], np.int32),
        "valid_optical": np.asarray(kept["vo"], np.float32),
        "valid_sar": np.asarray(kept["vs"], np.float32),
    }
    partial = f"{job.part}.partial.npz"
    np.savez(partial, **arrays)
    os.replace(partial, job.part)


def cut_all_chips(plan: ChipPlan, progress: str | None = None) -> list[ChipPart]:
    """Run every chip job as a plain Dask task on the flow's cluster; log progress.

    Must run on a Dask worker (submit it through the flow's DaskTaskRunner); one Prefect task
    for all jobs, as :func:`tasks.landcover.tile.segment_tiles`. Jobs whose part file exists are not
    redone, so an interrupted run resumes here.
    """
    from distributed import as_completed, worker_client
    from prefect import get_run_logger

    run_logger = get_run_logger()
    parts, kept, started = [], 0, time.perf_counter()
    with worker_client() as client:  # secedes: this worker's thread cuts chips too
        futures = client.map(cut_chips, plan.jobs, pure=False)
        for done, future in enumerate(as_completed(futures), start=1):
            part = future.result()
            parts.append(part)
            kept += part.kept
            elapsed = max(time.perf_counter() - started, 1e-9)
            run_logger.info(
                "chip job %d/%d (pair %d): %d of %d chips kept; %d chips so far, %.2f jobs/s",
                done, len(plan.jobs), part.pair_index, part.kept, part.candidates, kept,
                done / elapsed,
            )  # fmt: skip
            write_progress(progress, phase="chips", done=done, total=len(plan.jobs), chips=kept)
    order = {job.part: index for index, job in enumerate(plan.jobs)}
    return sorted(parts, key=lambda p: order[p.part])


cut_all_chips_task = task(cut_all_chips, name="cut-chips", cache_policy=NO_CACHE)


def write_progress(path: str | None, **record: Any) -> None:
    """Replace the JSON progress record at ``path`` (read by the CLI's progress bar)."""
    if path is None:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps({**record, "time": time.time()}))
    os.replace(partial, target)
