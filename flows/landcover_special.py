"""The two passes of ``terrawatch landcover --refine special`` (see :mod:`tasks.landcover.special`).

Zero-shot pass over every tile of the step (the training set must see the whole scene), one
training on the flow's machine, then the prediction pass over the tiles still to write; the
refinement's record goes into the cube once every tile is written.
"""

from __future__ import annotations

from typing import Any

from terrawatch.flows.runner import gpu_workers_expected, run_tile_task
from terrawatch.models.classes import ClassNames
from terrawatch.models.special.training import SpecialSettings
from terrawatch.tasks.core.cube_store import all_tiles
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.worker_model import ModelSpec
from terrawatch.tasks.landcover.plan import RunPlan
from terrawatch.tasks.landcover.special import (
    UserLabels,
    create_scratch,
    record_refinement,
    refine_tiles_task,
    remove_scratch,
    special_jobs,
    special_labels,
    train_scene_task,
    zero_shot_tiles_task,
)

WORKER_MODEL = "terrawatch.tasks.core.worker_model:worker_model"


def special_settings(options: Any) -> SpecialSettings:
    """SPECIAL's settings from the model options (``refine_epochs``, ``refine_classifier``).

    ``refine_epochs`` (default SPECIAL's) shortens the training; the first half stays warm-up,
    as in the reference (5 of 10).
    """
    epochs = getattr(options, "refine_epochs", None)
    schedule = dict(epochs=epochs, warmup_epochs=epochs // 2) if epochs else {}
    return SpecialSettings(classifier=getattr(options, "refine_classifier", "fcn"), **schedule)


def options_labels(options: Any, class_names: list[str], grid: GridSpec) -> UserLabels | None:
    """``--labels`` read and checked against the classes and the grid (None without it)."""
    path = getattr(options, "labels", None)
    if not path:
        return None
    return special_labels(path, class_names, grid, getattr(options, "labels_column", None))


def check_special(
    options: Any, classes: ClassNames, items: list[dict], aoi: Any, grid: Any
) -> None:
    """The preflight of ``--refine special``: bands with wavelengths, the classifier, and
    ``--labels`` (class names, inside the grid); one line each, before any read or model.
    """
    from terrawatch.models.special.classifier import build_classifier
    from terrawatch.tasks.core.item_groups import best_first
    from terrawatch.tasks.landcover.plan import landcover_grid
    from terrawatch.tasks.landcover.special import check_band_scaling, scene_bands

    best = best_first(items)
    check_band_scaling(best, scene_bands(best))
    settings = special_settings(options)
    build_classifier(settings.classifier, 4, len(classes.names), settings.hidden)
    output_grid = landcover_grid(best, aoi, grid.resolution, grid.crs)
    options_labels(options, list(classes.names), output_grid)


def run_special(
    plan: RunPlan,
    spec: ModelSpec,
    store: str,
    *,
    halo: int,
    loader: str,
    lease: str | None,
    log: Any,
    options: Any = None,
) -> dict[str, Any]:
    """Both passes and the training of one time step; returns the tile task's summary.

    ``options``: the land-cover model options (:func:`special_settings`, ``labels``).
    """
    settings = special_settings(options)
    labels = options_labels(options, list(plan.classes.names), plan.grid)
    cube = plan.cube
    if not cube.todo:
        return {"statuses": {}, "stage_seconds": {}}
    scratch = create_scratch(store, cube.time_index, plan.grid, cube.chunk)
    every = all_tiles(cube.n_tiles)
    common = dict(halo=halo, loader=loader, lease=lease, scratch=scratch)
    everywhere = special_jobs(store, cube.time_index, every, cube.chunk, plan.grid, plan.items,
                              **common)  # fmt: skip
    log.info("SPECIAL pass 1: zero-shot map of all %d tiles (bands %s)", len(every),
             ", ".join(everywhere[0].bands.names))  # fmt: skip
    run_tile_task(zero_shot_tiles_task, everywhere, spec, WORKER_MODEL)
    trained, provenance = train_scene_task(everywhere, list(plan.classes.names), settings,
                                           labels)  # fmt: skip
    log.info("SPECIAL: trained on %d tiles, final loss %.4f", provenance["training_tiles"],
             provenance["history"][-1]["loss"])  # fmt: skip
    todo = [job for job in everywhere if job.tile in set(cube.todo)]
    tiles = refine_tiles_task.submit(todo, trained, gpu=gpu_workers_expected()).result()
    record_refinement(store, cube.time_index, provenance)
    remove_scratch(scratch)
    return tiles
