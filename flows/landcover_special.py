"""The two passes of ``terrawatch landcover --refine special`` (see :mod:`tasks.landcover.special`).

Zero-shot pass over every tile of the step (the training set must see the whole scene), one
training on the flow's machine, then the prediction pass over the tiles still to write; the
refinement's record goes into the cube once every tile is written.
"""

from __future__ import annotations

from typing import Any

from terrawatch.flows.runner import gpu_workers_expected, run_tile_task
from terrawatch.models.special.training import SpecialSettings
from terrawatch.tasks.core.cube_store import all_tiles
from terrawatch.tasks.core.worker_model import ModelSpec
from terrawatch.tasks.landcover.plan import RunPlan
from terrawatch.tasks.landcover.special import (
    create_scratch,
    record_refinement,
    refine_tiles_task,
    remove_scratch,
    special_jobs,
    train_scene_task,
    zero_shot_tiles_task,
)

WORKER_MODEL = "terrawatch.tasks.core.worker_model:worker_model"


def run_special(
    plan: RunPlan,
    spec: ModelSpec,
    store: str,
    *,
    halo: int,
    loader: str,
    lease: str | None,
    log: Any,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Both passes and the training of one time step; returns the tile task's summary.

    ``epochs`` (default SPECIAL's) shortens the training; the first half stays warm-up, as in
    the reference (5 of 10).
    """
    settings = SpecialSettings(epochs=epochs, warmup_epochs=epochs // 2) if epochs else None
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
    trained, provenance = train_scene_task(everywhere, list(plan.classes.names),
                                           settings or SpecialSettings())  # fmt: skip
    log.info("SPECIAL: trained on %d tiles, final loss %.4f", provenance["training_tiles"],
             provenance["history"][-1]["loss"])  # fmt: skip
    todo = [job for job in everywhere if job.tile in set(cube.todo)]
    tiles = refine_tiles_task.submit(todo, trained, gpu=gpu_workers_expected()).result()
    record_refinement(store, cube.time_index, provenance)
    remove_scratch(scratch)
    return tiles
