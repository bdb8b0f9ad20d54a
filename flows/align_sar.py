"""The AlignEarth distillation flow: optical/SAR scene pairs -> aligned chips -> a SAR student."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from prefect import flow, get_run_logger

from terrawatch.flows.options import (
    ChipOptions,
    GridOptions,
    PairSearchOptions,
    SarInputOptions,
    TrainingOptions,
)
from terrawatch.flows.runner import dask_task_runner, gpu_workers_expected
from terrawatch.tasks.alignearth.chips import (
    ChipRequest,
    cut_all_chips_task,
    pair_scenes,
    plan_chips_task,
)
from terrawatch.tasks.alignearth.dataset import (
    find_chip_dataset,
    find_chip_dataset_task,
    write_chip_dataset_task,
)
from terrawatch.tasks.alignearth.train import PROGRESS_FILE, TrainJob, train_alignearth_task
from terrawatch.tasks.core.catalog import SearchResult, search_items, search_items_task

__all__ = ["AlignInputs", "ChipOptions", "align_sar", "align_sar_inputs"]


@dataclass(frozen=True)
class AlignInputs:
    """A distillation run's checked inputs: chip request, training job, data found."""

    request: ChipRequest
    """What the chip dataset is made of (its reuse key)."""
    dataset: str
    """Chip dataset path."""
    job: TrainJob
    """The training job."""
    manifest: dict[str, Any] | None
    """The manifest of a finished chip dataset of ``request`` at ``dataset``, else None."""
    optical: SearchResult | None = None
    """Optical scenes of the period (None when the dataset is reused)."""
    sar: SearchResult | None = None
    """SAR scenes around the period (None when the dataset is reused)."""


def align_sar_inputs(
    aoi: str | list[float] | dict[str, Any],
    start: str,
    end: str,
    out: str = "alignearth-sar",
    search: PairSearchOptions = PairSearchOptions(),
    grid: GridOptions = GridOptions(),
    sar: SarInputOptions = SarInputOptions(),
    chips: ChipOptions = ChipOptions(),
    training: TrainingOptions = TrainingOptions(),
    *,
    tasks: bool = False,
) -> AlignInputs:
    """The flow's first step, and the command line's preflight: refuse bad input in seconds.

    Checks the chip request, the training job (settings, chip size) and the teacher weights
    (downloaded once). Unless a finished chip dataset of the same request exists (then nothing
    is searched), searches both sensors and pairs the scenes, so "no pair within max_days"
    shows up here. Takes the flow's parameters.

    Args:
        tasks: Search with the Prefect tasks (which retry), as the flow does.

    Raises:
        InputError: a bad value; NoScenesError: no scenes or pairs; WeightsNotFoundError.
    """
    from terrawatch.models.distill import TEACHER
    from terrawatch.models.weights import resolve_weights

    request = chips.request(search, grid, sar, aoi=aoi, start=start, end=end)
    dataset = chips.dataset or str(Path(out) / "chips.zarr")
    settings = tuple(sorted((training.settings or {}).items()))
    job = TrainJob(chips=dataset, out=out, **training.model_dump(exclude={"settings"}),
                   settings=settings)  # fmt: skip
    job.check_chip(chips.chip)
    resolve_weights(TEACHER, training.weights)
    manifest = (find_chip_dataset_task if tasks else find_chip_dataset)(dataset, request)
    if manifest is not None:
        return AlignInputs(request, dataset, job, manifest)
    find = search_items_task if tasks else search_items
    optical = find(request.catalog, aoi, request.start, request.end,
                   request.optical_collections, request.max_cloud, request.max_items)  # fmt: skip
    found_sar = find(request.catalog, aoi, *request.sar_window(), request.sar_collections, None,
                     request.max_items)  # fmt: skip
    pair_scenes(optical.items, found_sar.items, request.max_days, request.orbit)
    return AlignInputs(request, dataset, job, None, optical, found_sar)


@flow(name="align-sar", task_runner=dask_task_runner())
def align_sar(
    aoi: str | list[float] | dict[str, Any],
    start: str,
    end: str,
    out: str = "alignearth-sar",
    search: PairSearchOptions = PairSearchOptions(),
    grid: GridOptions = GridOptions(),
    sar: SarInputOptions = SarInputOptions(),
    chips: ChipOptions = ChipOptions(),
    training: TrainingOptions = TrainingOptions(),
) -> dict[str, Any]:
    """Distil a SAR image encoder (AlignEarth) from the optical CLIP on the AOI's own scenes.

    Args:
        aoi: ``"W,S,E,N"`` in degrees, 4 numbers, or a GeoJSON geometry/feature.
        start: Optical period start (ISO date).
        end: Optical period end (ISO date, inclusive).
        out: Checkpoint directory (student checkpoints, manifests, held-out record).
        search: Catalog, optical and SAR collections, the largest optical-SAR gap of a pair
            (``max_days``) and scene filters.
        grid: Chip grid resolution and CRS (default: 10 m, the AOI's UTM zone).
        sar: Orbit direction, polarisations, speckle filter and composite of the SAR scenes.
        chips: Chip dataset path, chip size, stride, validity, held-out fraction, loader.
        training: Steps, batch, teacher weights, distillation settings, resume, evaluation and
            checkpoint intervals, seed, device and threads.

    Returns:
        Checkpoint and manifest paths, steps, final losses, held-out cosine at the start and
        the end, throughput, and the chip dataset (path, counts, whether it was reused).
    """
    logger = get_run_logger()
    inputs = align_sar_inputs(aoi, start, end, out, search, grid, sar, chips, training,
                              tasks=True)  # fmt: skip
    manifest, dataset = inputs.manifest, inputs.dataset
    reused = manifest is not None
    if manifest is None:
        plan = plan_chips_task(inputs.optical, inputs.sar, inputs.request, dataset)
        parts = cut_all_chips_task.submit(plan, str(Path(out) / PROGRESS_FILE)).result()
        manifest = write_chip_dataset_task(plan, parts)
    logger.info("chip dataset %s (%s): %s", dataset, "reused" if reused else "new",
                manifest["counts"])  # fmt: skip
    gpu = (
        dask.annotate(resources={"GPU": 1}) if gpu_workers_expected() else contextlib.nullcontext()
    )
    with gpu:
        trained = train_alignearth_task.submit(inputs.job).result()
    return {
        "out": out,
        "checkpoint": trained.checkpoint,
        "manifest": trained.manifest,
        "steps": trained.step,
        "resumed_from": trained.resumed_from,
        "losses": trained.losses,
        "heldout_cosine": {"start": trained.heldout_start, "end": trained.heldout_end},
        "chips_per_second": trained.chips_per_second,
        "chips": {"dataset": dataset, "reused": reused, **manifest["counts"]},
    }


if __name__ == "__main__":
    from terrawatch.flows.local_api import shared_local_api

    # Farmland and the Rhine near Cologne, June 2024: Sentinel-2 L2A and Sentinel-1 RTC.
    with shared_local_api():
        print(
            align_sar(
                aoi="6.85,50.85,7.05,50.98",
                start="2024-06-01",
                end="2024-06-30",
                out="alignearth-cologne",
                training={"steps": 200, "batch_size": 32},
            )
        )
