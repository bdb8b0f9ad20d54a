"""Change detection on tiles: the detector spec, change per chunk (with a halo), the tile task.

The maths of one tile (both dates read over the chunk and its halo, change where both are valid)
goes to the shared tile runner (:func:`tasks.core.tile_runner.run_tile`), as
:mod:`tasks.landcover.tile` does for a pair of periods on one grid (:mod:`tasks.change.plan`
plans the pair, as :mod:`tasks.landcover.plan` for land cover). Tasks get references only (grid,
item dicts, store path, a :class:`ChangeSpec`); the detector is built once per worker process
(:func:`worker_detector`), on the SegEarth-OV segmenter that
:func:`tasks.core.worker_model.worker_model` already keeps, so the CLIP model is never loaded twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.errors import InputError
from terrawatch.models.change import ChangeDetector
from terrawatch.models.classes import parse_class_names
from terrawatch.models.segearth import SegEarthOV
from terrawatch.models.settings import ChangeSettings
from terrawatch.tasks.change import BUILT_COMPARATORS, BUILT_PROPOSERS
from terrawatch.tasks.change.cube import CHANGE_CUBE
from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.core.load import read_composite
from terrawatch.tasks.core.tile_runner import (
    TileJob,
    TileProduct,
    TileResult,
    TileWindow,
    run_tile,
    run_tiles,
)
from terrawatch.tasks.core.worker_model import ModelSpec, worker_model
from terrawatch.tasks.core.worker_process import freeze_loaded_objects

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangeSpec:
    """Which change detector a worker builds; small and hashable, so it keys the cache."""

    segmenter: ModelSpec
    """SegEarth-OV (identifier, and the CLIP features of the ``clip`` comparator)."""
    settings: ChangeSettings = field(default_factory=ChangeSettings)
    """Mode, θ, rule and the class query (indices into the segmenter's classes)."""
    proposer: str = BUILT_PROPOSERS[0]
    """``superpixel`` (weights-free SLIC) or ``sam`` (``auto`` is resolved before, see
    :func:`tasks.change.steps.choose_steps`)."""
    proposer_settings: tuple[tuple[str, Any], ...] = ()
    """Extra keyword arguments of the proposer, as (name, value) pairs."""
    proposer_weights: str | None = None
    """SAM checkpoint (default: weights dir / download)."""
    comparator: str = BUILT_COMPARATORS[0]
    """``clip`` (patch tokens of the segmenter's CLIP) or ``dinov2``."""
    comparator_weights: str | None = None
    """DINOv2 checkpoint (default: weights dir / download)."""
    step_choice: tuple[tuple[str, str], ...] = ()
    """How ``auto`` chose the proposer and comparator (requested, chosen, reason), for the
    cube's provenance; empty when the spec was built directly."""

    def __post_init__(self) -> None:
        if self.proposer not in BUILT_PROPOSERS:
            raise InputError(f"proposer must be one of {BUILT_PROPOSERS}, got {self.proposer!r}")
        if self.comparator not in BUILT_COMPARATORS:
            raise InputError(
                f"comparator must be one of {BUILT_COMPARATORS}, got {self.comparator!r}"
            )

    def load(self, segmenter: SegEarthOV) -> ChangeDetector:
        """Build the detector around an already loaded segmenter (on its device)."""
        from terrawatch.models.features import ClipFeatures, Dinov2Features
        from terrawatch.models.proposals import SuperpixelProposer
        from terrawatch.models.sam import SamProposer

        settings = dict(self.proposer_settings)
        device = segmenter.device
        if self.proposer == "sam":
            proposer = SamProposer.from_pretrained(self.proposer_weights, device=device, **settings)
        else:
            proposer = SuperpixelProposer(**settings)
        if self.comparator == "dinov2":
            features = Dinov2Features.from_pretrained(self.comparator_weights, device=device)
        else:
            features = ClipFeatures(segmenter)
        return ChangeDetector(proposer, features, segmenter.predict_logits, self.settings)

    def query(self) -> dict[str, Any]:
        """The change query by class name, for the cube's attributes."""
        names = parse_class_names(self.segmenter.classes).entries
        settings = self.settings

        def named(indices: tuple[int, ...] | None) -> list[str] | None:
            return None if indices is None else [names[i].split(",")[0] for i in indices]

        targets = settings.targets
        if targets is None:
            targets = tuple(range(1, len(names)))
        return {
            "classes": [n.split(",")[0] for n in names],
            "targets": named(targets),
            "from_classes": named(settings.from_classes),
            "to_classes": named(settings.to_classes),
            "mode": settings.mode,
            "theta_deg": settings.theta_deg,
            "rule": settings.rule,
            "proposer": self.proposer,
            "comparator": self.comparator,
            "step_choice": dict(self.step_choice) or None,
        }


_DETECTORS: dict[ChangeSpec, ChangeDetector] = {}
_DETECTORS_LOCK = threading.Lock()


def worker_detector(spec: ChangeSpec) -> ChangeDetector:
    """The detector of ``spec`` for this process, built on first use and then reused."""
    segmenter = worker_model(spec.segmenter)
    with _DETECTORS_LOCK:
        if spec not in _DETECTORS:
            started = time.perf_counter()
            _DETECTORS[spec] = spec.load(segmenter)
            logger.info(
                "built %s/%s change detector in %.1f s",
                spec.proposer,
                spec.comparator,
                time.perf_counter() - started,
            )
            freeze_loaded_objects()
        return _DETECTORS[spec]


def class_query(
    classes: list[str],
    targets: list[str] | None = None,
    from_classes: list[str] | None = None,
    to_classes: list[str] | None = None,
) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None, tuple[int, ...] | None]:
    """Class names of the change query as indices into ``classes``.

    A name matches a class by its display name or any synonym (case-insensitive).

    Raises:
        InputError: An unknown name, an empty list, or no target class at all (``targets``
            None means every class but the first, the background, so one class is not enough).
    """
    parsed = parse_class_names(classes).synonyms
    if targets is None and len(parsed) < 2:
        raise InputError(
            f"the change query has no target class: classes={classes!r} holds only the "
            "background (class 0); add the classes to watch, e.g. ['background', 'building']"
        )
    lookup = {word.strip().lower(): i for i, words in enumerate(parsed) for word in words}
    resolved = []
    for name, values in (("targets", targets), ("from_classes", from_classes),
                         ("to_classes", to_classes)):  # fmt: skip
        resolved.append(None if values is None else _indices(name, values, lookup, parsed))
    return resolved[0], resolved[1], resolved[2]


def _indices(
    name: str, values: list[str], lookup: dict[str, int], parsed: tuple[tuple[str, ...], ...]
) -> tuple[int, ...]:
    if isinstance(values, str) or not values:
        raise InputError(
            f"{name}={values!r} holds no class: the change query needs at least one; give a list "
            f"of class names from {[w[0] for w in parsed]!r}, or None for no restriction"
        )
    unknown = [v for v in values if str(v).strip().lower() not in lookup]
    if unknown:
        raise InputError(
            f"{name} has unknown class name(s) {unknown!r}; the classes are "
            f"{[w[0] for w in parsed]!r} (a synonym works too)"
        )
    return tuple(sorted({lookup[str(v).strip().lower()] for v in values}))


# --- tiles -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeTileJob(TileJob):
    """One output chunk of one pair: references only."""

    items_t1: tuple[dict, ...]
    """Items of the earlier period, best first."""
    items_t2: tuple[dict, ...]
    """Items of the later period, best first."""


Pair = tuple[np.ndarray, np.ndarray, np.ndarray]
"""RGB at t1 and t2 (``[3, h, w]`` in 0..1) and where both are valid, over the tile's window."""


def _read(job: ChangeTileJob, spec: ChangeSpec, window: TileWindow) -> tuple[Pair, np.ndarray]:
    rgb1, valid1 = read_composite(job.items_t1, job.grid, window.outer, job.loader)
    rgb2, valid2 = read_composite(job.items_t2, job.grid, window.outer, job.loader)
    valid = valid1 & valid2
    return (rgb1, rgb2, valid), valid


def _detect(spec: ChangeSpec, pair: Pair) -> dict[str, np.ndarray]:
    changed, class_from, class_to = detect_arrays(worker_detector(spec), *pair)
    return {"changed": changed, "class_from": class_from, "class_to": class_to}


CHANGE_TILE = TileProduct(CHANGE_CUBE, _read, _detect)
"""Change for the tile runner: a pair of composites in, change and from/to classes out."""


def change_tile(job: ChangeTileJob, spec: ChangeSpec) -> TileResult:
    """Read both dates with the halo, detect change where both are valid, crop and write."""
    return run_tile(CHANGE_TILE, job, spec)


def detect_arrays(
    detector: ChangeDetector, rgb1: np.ndarray, rgb2: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``changed`` (uint8 1/0, 255 outside ``valid``) and class at t1/t2 (255 if unchanged)."""

    def tensor(rgb: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.nan_to_num(rgb, nan=0.0)).clamp_(0, 1)

    result = detector.detect(tensor(rgb1), tensor(rgb2), torch.from_numpy(valid))
    changed = result.changed.cpu().numpy().astype(np.uint8)
    changed[~valid] = NODATA
    class_from = result.class_from.cpu().numpy().astype(np.uint8)
    class_to = result.class_to.cpu().numpy().astype(np.uint8)
    class_from[changed != 1] = NODATA
    class_to[changed != 1] = NODATA
    return changed, class_from, class_to


def change_tiles(
    jobs: list[ChangeTileJob], spec: ChangeSpec, gpu: bool = False
) -> dict[str, dict[str, float]]:
    """Run every tile as a plain Dask task on the flow's cluster; log progress as they finish.

    Must run on a Dask worker (submit it through the flow's DaskTaskRunner). One Prefect task
    for all tiles, as :func:`tasks.landcover.tile.segment_tiles` (see
    :mod:`tasks.core.tile_runner`).

    Args:
        jobs: One job per tile still to write.
        spec: Detector to build once per worker process.
        gpu: Ask Dask for a ``GPU`` resource per tile (workers must advertise it).

    Returns:
        ``statuses``: tile counts per status; ``stage_seconds``: wall seconds per stage
        (``read``, ``wait`` for the worker's detector, ``model``, ``write``) summed over the
        written tiles.
    """
    return run_tiles(change_tile, jobs, spec, gpu, label="change tile", description="change tiles")


change_tiles_task = task(change_tiles, name="change-tiles", cache_policy=NO_CACHE)
