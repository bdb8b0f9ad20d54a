"""The AlignEarth distillation flow: optical/SAR scene pairs -> aligned chips -> a SAR student."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

import dask
from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from terrawatch.flows.runner import dask_task_runner, gpu_workers_expected
from terrawatch.tasks.alignearth.chips import ChipRequest, cut_all_chips_task, plan_chips_task
from terrawatch.tasks.alignearth.dataset import find_chip_dataset_task, write_chip_dataset_task
from terrawatch.tasks.alignearth.train import PROGRESS_FILE, TrainJob, train_alignearth_task
from terrawatch.tasks.core.catalog import search_items_task
from terrawatch.tasks.core.sar_composite import SarOptions


class ChipOptions(BaseModel):
    """How the training chips are cut (the chip dataset is reused while these stay equal)."""

    dataset: str | None = Field(None, description="chip dataset path (default OUT/chips.zarr)")
    stride: int | None = Field(None, ge=1, description="pixels between chips (default: chip)")
    min_valid: float = Field(0.9, gt=0, le=1, description="least valid fraction per sensor")
    holdout: float = Field(0.1, ge=0, lt=1, description="fraction of locations held out")
    resolution: float | None = Field(None, gt=0, description="pixel size, CRS units (10 m)")
    crs: str | None = Field(None, description="grid CRS (default: UTM zone of the AOI)")
    max_cloud: float | None = Field(20.0, ge=0, le=100, description="max optical cloud, %")
    max_items: int = Field(50, ge=1, description="most scenes per sensor")
    orbit: Literal["ascending", "descending"] | None = Field(None, description="one SAR orbit")
    polarizations: list[str] | None = Field(None, description="SAR polarisations to load")
    speckle: Literal["lee", "refined_lee"] | None = Field("lee", description="speckle filter")
    speckle_window: int = Field(7, ge=3, description="speckle window, pixels")
    composite: Literal["grey", "dual"] = Field("grey", description="SAR model input")
    loader: Literal["odc", "stackstac"] = "odc"

    def request(self, **where: Any) -> ChipRequest:
        """The chip request for an AOI, period, catalog, collections, ``max_days`` and ``chip``."""
        pols = tuple(self.polarizations) if self.polarizations else None
        sar = SarOptions(pols, self.speckle, self.speckle_window, self.composite)
        fields = self.model_dump(exclude={"dataset", "polarizations", "speckle", "speckle_window",
                                          "composite"})  # fmt: skip
        fields["stride"] = self.stride or where["chip"]
        return ChipRequest.build(**where, **fields, sar=sar)


@flow(name="align-sar", task_runner=dask_task_runner())
def align_sar(
    aoi: str | list[float] | dict[str, Any],
    start: str,
    end: str,
    catalog: str = "planetary-computer",
    optical_collections: list[str] | None = None,
    sar_collections: list[str] | None = None,
    max_days: float = 3.0,
    chip: int = 224,
    out: str = "alignearth-sar",
    steps: int = 1000,
    batch_size: int = 64,
    weights: str | None = None,
    settings: dict[str, float | int] | None = None,
    resume: bool = True,
    eval_every: int = 100,
    save_every: int = 500,
    seed: int = 0,
    device: str | None = None,
    threads: int | None = None,
    chips: ChipOptions | None = None,
) -> dict[str, Any]:
    """Distil a SAR image encoder (AlignEarth) from the optical CLIP on the AOI's own scenes.

    Args:
        aoi: ``"W,S,E,N"`` in degrees, 4 numbers, or a GeoJSON geometry/feature.
        start: Optical period start (ISO date).
        end: Optical period end (ISO date, inclusive).
        catalog: ``planetary-computer`` (S2 L2A + S1 RTC), ``earth-search``, a STAC API URL or
            a local folder.
        optical_collections: Optical collections (default ``sentinel-2-l2a``).
        sar_collections: SAR collections (default ``sentinel-1-rtc`` on Planetary Computer,
            else ``sentinel-1-grd``); searched ``max_days`` beyond the period on both sides.
        max_days: Largest time between the optical and the SAR acquisition of a pair, days.
        chip: Chip side in pixels (a multiple of the patch size 16; 224 as CLIP was trained).
        out: Checkpoint directory (student checkpoints, manifests, held-out record).
        steps: Train until this step; a resumed run counts from its checkpoint.
        batch_size: Chip pairs per step.
        weights: Teacher CLIP checkpoint (default: OpenAI ViT-B/16 from the weights dir).
        settings: :class:`~models.distill.DistillSettings` overrides (``lr``,
            ``weight_infonce``, ``weight_cls``, ``weight_region``, ``temperature``...).
        resume: Continue from the newest checkpoint in ``out``.
        eval_every: Held-out teacher-student cosine every this many steps.
        save_every: Checkpoint every this many steps (and at the end).
        seed: Seed of the batch order.
        device: Torch device for training (default CUDA when available).
        threads: Torch CPU threads for training (default all cores).
        chips: Chip cutting options (stride, validity, held-out fraction, grid, SAR options).

    Returns:
        Checkpoint and manifest paths, steps, final losses, held-out cosine at the start and
        the end, throughput, and the chip dataset (path, counts, whether it was reused).
    """
    logger = get_run_logger()
    options = chips or ChipOptions()
    request = options.request(aoi=aoi, start=start, end=end, catalog=catalog, max_days=max_days,
                              optical_collections=optical_collections,
                              sar_collections=sar_collections, chip=chip)  # fmt: skip
    dataset = options.dataset or str(Path(out) / "chips.zarr")
    job = TrainJob(chips=dataset, out=out, steps=steps, batch_size=batch_size, weights=weights,
                   settings=tuple(sorted((settings or {}).items())), resume=resume,
                   eval_every=eval_every, save_every=save_every, seed=seed, device=device,
                   threads=threads)  # fmt: skip
    job.check_chip(chip)
    manifest = find_chip_dataset_task(dataset, request)
    reused = manifest is not None
    if manifest is None:
        optical = search_items_task(request.catalog, aoi, request.start, request.end,
                                    request.optical_collections, options.max_cloud,
                                    options.max_items)  # fmt: skip
        sar = search_items_task(request.catalog, aoi, *request.sar_window(),
                                request.sar_collections, None, options.max_items)  # fmt: skip
        plan = plan_chips_task(optical, sar, request, dataset)
        parts = cut_all_chips_task.submit(plan, str(Path(out) / PROGRESS_FILE)).result()
        manifest = write_chip_dataset_task(plan, parts)
    logger.info("chip dataset %s (%s): %s", dataset, "reused" if reused else "new",
                manifest["counts"])  # fmt: skip
    gpu = (
        dask.annotate(resources={"GPU": 1}) if gpu_workers_expected() else contextlib.nullcontext()
    )
    with gpu:
        trained = train_alignearth_task.submit(job).result()
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
                steps=200,
                batch_size=32,
            )
        )
