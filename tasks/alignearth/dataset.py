"""The AlignEarth chip dataset in Zarr: assemble it from the chip jobs, read seeded batches.

Layout (Zarr v3 group; each chip is one inner chunk, :data:`~tasks.alignearth.chips.SHARD_CHIPS`
chips a shard file): ``optical`` and ``sar`` uint8 ``[chip, band=3, y, x]`` (0..1 x 255, 0 where
invalid), ``pair`` int32 (index into the manifest's ``pairs``), ``row``/``col`` int32 (top-left
pixel in the grid), ``bbox`` float64 ``[chip, 4]`` (left, bottom, right, top in the grid CRS),
``valid_optical``/``valid_sar`` float32 (valid fractions) and ``heldout`` bool. The root attrs
are the manifest: format, request (AOI, periods, tolerance, chip options), grid, pairs (item
ids, times, gap), counts and a fingerprint.

The held-out split is by location: the chip locations (grid CRS, top-left corner) are ranked by
a SHA-256 of their coordinates and the first ``holdout`` fraction (at least one when ``holdout``
> 0 and there are two locations) is held out with every date at them, so evaluation measures
locations the student never saw; it depends only on the set of locations, not on run order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.errors import InputError, NoScenesError, OutputExistsError, StoreMismatchError
from terrawatch.tasks.alignearth.chips import FORMAT, SHARD_CHIPS, ChipPart, ChipPlan, ChipRequest

logger = logging.getLogger(__name__)

IN_MEMORY_BYTES = 2 * 1024**3
"""Datasets up to this size (both sensors) are read into memory once; larger ones per batch."""


def find_chip_dataset(path: str, request: ChipRequest) -> dict[str, Any] | None:
    """The manifest of the complete dataset at ``path`` made for ``request``, else None.

    Raises:
        StoreMismatchError: ``path`` holds something else, or a dataset of another request
            (the message names the differing fields).
    """
    if not Path(path).exists():
        return None
    manifest = read_manifest(path)
    theirs, ours = manifest["request"], request.to_dict()
    differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    if differ:
        shown = "; ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} now" for k in differ)
        raise StoreMismatchError(
            f"chip dataset {path!r} was made for another request ({shown}); give another "
            "dataset path, or delete it to rebuild"
        )
    return manifest


find_chip_dataset_task = task(find_chip_dataset, name="find-chips", cache_policy=NO_CACHE)


def read_manifest(path: str) -> dict[str, Any]:
    """The manifest (root attrs) of a chip dataset.

    Raises:
        StoreMismatchError: ``path`` is not a chip dataset.
    """
    try:
        attrs = dict(zarr.open_group(path, mode="r").attrs)
    except (FileNotFoundError, ValueError, KeyError, zarr.errors.BaseZarrError) as err:
        raise StoreMismatchError(
            f"{path!r} is not a chip dataset ({err}); give another path or move it away"
        ) from err
    if attrs.get("format") != FORMAT:
        raise StoreMismatchError(
            f"{path!r} is not a chip dataset (format {attrs.get('format')!r}, expected "
            f"{FORMAT!r}); give another path or move it away"
        )
    return attrs


# --- write ------------------------------------------------------------------------------------


def heldout_mask(bbox: np.ndarray, crs: str, fraction: float) -> np.ndarray:
    """Held-out flag per chip: every chip at the first ``fraction`` of locations by hash."""
    keys = [f"{crs}:{left:.3f}:{top:.3f}" for left, _, _, top in np.asarray(bbox)]
    locations = sorted(set(keys), key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    count = round(fraction * len(locations))
    if fraction > 0 and len(locations) >= 2:
        count = min(max(count, 1), len(locations) - 1)
    held = set(locations[:count])
    return np.array([k in held for k in keys], dtype=bool)


def _chip_bbox(plan: ChipPlan, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    grid, size = plan.grid, plan.request.chip * plan.grid.resolution
    left = grid.left + cols * grid.resolution
    top = grid.top - rows * grid.resolution
    return np.stack([left, top - size, left + size, top], axis=1).astype(np.float64)


def _create_arrays(group: zarr.Group, n: int, chip: int) -> dict[str, zarr.Array]:
    image = {"shape": (n, 3, chip, chip), "chunks": (1, 3, chip, chip), "dtype": "uint8",
             "shards": (min(SHARD_CHIPS, n), 3, chip, chip),
             "dimension_names": ("chip", "band", "y", "x")}  # fmt: skip
    arrays = {name: group.create_array(name, **image) for name in ("optical", "sar")}
    for name, dtype, extra in (("pair", "int32", ()), ("row", "int32", ()), ("col", "int32", ()),
                               ("bbox", "float64", (4,)), ("valid_optical", "float32", ()),
                               ("valid_sar", "float32", ()), ("heldout", "bool", ())):  # fmt: skip
        arrays[name] = group.create_array(name, shape=(n, *extra), chunks=(n, *extra),
                                          dtype=dtype)  # fmt: skip
    return arrays


def write_chip_dataset(plan: ChipPlan, parts: list[ChipPart]) -> dict[str, Any]:
    """Assemble the parts (in job order) into the dataset, write its manifest, drop the parts.

    Returns:
        The manifest.

    Raises:
        NoScenesError: no chip was valid enough in both sensors.
        FileExistsError: a dataset appeared at the path meanwhile.
    """
    total = sum(p.kept for p in parts)
    if total == 0:
        raise NoScenesError(
            f"none of the {plan.candidates} chip positions is valid on at least "
            f"min_valid={plan.request.min_valid!r} of its pixels in both sensors; lower "
            "min_valid, raise max_cloud or pick another period"
        )
    partial = Path(f"{plan.dataset}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    arrays = _create_arrays(zarr.open_group(partial, mode="w"), total, plan.request.chip)
    meta: dict[str, list] = {k: [] for k in ("pair", "row", "col", "valid_optical", "valid_sar")}
    offset = 0
    for part in parts:
        with np.load(part.part) as data:
            n = len(data["rows"])
            arrays["optical"][offset : offset + n] = data["optical"]
            arrays["sar"][offset : offset + n] = data["sar"]
            meta["pair"] += [part.pair_index] * n
            meta["row"] += data["rows"].tolist()
            meta["col"] += data["cols"].tolist()
            meta["valid_optical"] += data["valid_optical"].tolist()
            meta["valid_sar"] += data["valid_sar"].tolist()
        offset += n
    for name, values in meta.items():
        arrays[name][:] = np.asarray(values)
    bbox = _chip_bbox(plan, np.asarray(meta["row"]), np.asarray(meta["col"]))
    held = heldout_mask(bbox, plan.grid.crs, plan.request.holdout)
    arrays["bbox"][:], arrays["heldout"][:] = bbox, held
    manifest = _manifest(plan, meta["pair"], held)
    zarr.open_group(partial, mode="r+").attrs.update(manifest)
    if Path(plan.dataset).exists():
        raise OutputExistsError(f"{plan.dataset!r} appeared while chips were cut; rerun")
    os.replace(partial, plan.dataset)
    shutil.rmtree(f"{plan.dataset}.parts", ignore_errors=True)
    logger.info("chip dataset %s: %d chips (%d held out)", plan.dataset, total, int(held.sum()))
    return manifest


def _manifest(plan: ChipPlan, pair_of_chip: list[int], held: np.ndarray) -> dict[str, Any]:
    per_pair = np.bincount(np.asarray(pair_of_chip), minlength=len(plan.pairs))
    pairs = [dict(p.describe(), chips=int(n)) for p, n in zip(plan.pairs, per_pair, strict=True)]
    counts = {
        "chips": len(held),
        "train": int((~held).sum()),
        "heldout": int(held.sum()),
        "pairs": len(plan.pairs),
        "candidates": plan.candidates,
        "skipped_invalid": plan.candidates - len(held),
    }
    request = plan.request.to_dict()
    digest = json.dumps({"request": request, "pairs": pairs, "counts": counts}, sort_keys=True)
    return {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": hashlib.sha256(digest.encode()).hexdigest(),
        "request": request,
        "grid": plan.grid.to_dict(),
        "crs": plan.grid.crs,
        "chip": plan.request.chip,
        "pairs": pairs,
        "counts": counts,
    }


write_chip_dataset_task = task(write_chip_dataset, name="write-chips", cache_policy=NO_CACHE)


# --- read -------------------------------------------------------------------------------------


class ChipDataset:
    """A chip dataset opened for training: seeded shuffled batches and the held-out chips.

    Args:
        path: The dataset.
        in_memory_bytes: Read both image arrays into memory when they are at most this big.

    Raises:
        StoreMismatchError: ``path`` is not a chip dataset.
    """

    def __init__(self, path: str | Path, in_memory_bytes: int = IN_MEMORY_BYTES):
        self.path = str(path)
        self.manifest = read_manifest(self.path)
        group = zarr.open_group(self.path, mode="r")
        self._optical, self._sar = group["optical"], group["sar"]
        self._meta = {k: group[k][:] for k in ("pair", "row", "col", "bbox", "heldout")}
        self.train = np.flatnonzero(~self._meta["heldout"])
        self.heldout = np.flatnonzero(self._meta["heldout"])
        self._memory: tuple[np.ndarray, np.ndarray] | None = None
        if 2 * self._optical.nbytes <= in_memory_bytes:
            self._memory = (self._optical[:], self._sar[:])

    def __len__(self) -> int:
        return int(self._optical.shape[0])

    def steps_per_epoch(self, batch_size: int) -> int:
        """Whole batches per pass over the training chips (the last partial one is dropped).

        Raises:
            InputError: fewer training chips than ``batch_size``.
        """
        if batch_size < 2 or len(self.train) < batch_size:
            raise InputError(
                f"batch_size must be >= 2 and at most the {len(self.train)} training chips of "
                f"{self.path!r}, got {batch_size!r}; lower it, or enlarge the AOI or period"
            )
        return len(self.train) // batch_size

    def batch_indices(self, step: int, batch_size: int, seed: int = 0) -> np.ndarray:
        """Chip indices of training step ``step``: a seeded permutation per epoch, no repeats."""
        epoch, k = divmod(step, self.steps_per_epoch(batch_size))
        order = np.random.default_rng([seed, epoch]).permutation(self.train)
        return order[k * batch_size : (k + 1) * batch_size]

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Optical and SAR chips (uint8 ``[B, 3, H, W]``) at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        if self._memory is not None:
            return self._memory[0][indices], self._memory[1][indices]
        order = np.argsort(indices, kind="stable")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        ascending = indices[order]
        return self._optical.oindex[ascending][inverse], self._sar.oindex[ascending][inverse]

    def batches(
        self, batch_size: int, seed: int = 0, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(step, optical, sar)`` for steps ``start`` .. ``stop - 1``; the next batch is read
        in a background thread while the caller trains on this one."""
        stop = start + self.steps_per_epoch(batch_size) if stop is None else stop
        if start >= stop:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="chips") as pool:
            pending = pool.submit(self.read, self.batch_indices(start, batch_size, seed))
            for step in range(start, stop):
                upcoming = None
                if step + 1 < stop:
                    upcoming = pool.submit(
                        self.read, self.batch_indices(step + 1, batch_size, seed)
                    )
                optical, sar = pending.result()
                yield step, optical, sar
                pending = upcoming

    def heldout_chips(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The held-out chips (the first ``limit`` in dataset order)."""
        return self.read(self.heldout[:limit])

    def chip_info(self, index: int) -> dict[str, Any]:
        """Per-chip metadata: item ids and times of its pair, bbox and CRS, grid offsets."""
        pair = self.manifest["pairs"][int(self._meta["pair"][index])]
        return {
            **{k: v for k, v in pair.items() if k != "chips"},
            "bbox": [float(v) for v in self._meta["bbox"][index]],
            "crs": self.manifest["crs"],
            "row": int(self._meta["row"][index]),
            "col": int(self._meta["col"][index]),
            "heldout": bool(self._meta["heldout"][index]),
        }

    def description(self) -> dict[str, Any]:
        """What the distiller's manifest records about its training data."""
        m = self.manifest
        return {
            "chips": str(Path(self.path).resolve()),
            "format": m["format"],
            "fingerprint": m["fingerprint"],
            "counts": m["counts"],
            "chip": m["chip"],
            "crs": m["crs"],
            "grid": m["grid"],
            "request": m["request"],
            "pairs": [
                {k: p[k] for k in ("optical_items", "sar_items", "gap_days", "chips")}
                for p in m["pairs"]
            ],
        }
