"""Distil the AlignEarth SAR student on a chip dataset: resumable, logged, checkpointed.

One task, one process (the GPU when there is one). Checkpoints are
:meth:`models.distill.Distiller.save`'s (inference-loadable student, training state, manifest
whose ``data`` names the chip dataset); the run resumes from the newest one in ``out``, with
the same batch order (the batches of step ``n`` depend only on the dataset, ``batch_size``,
``seed`` and ``n``). Beside them: ``heldout.json`` (teacher-student cosine on the held-out
chips per evaluation) and ``progress.json`` (the latest step, read by the CLI's progress bar).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.models.distill import Distiller, DistillSettings
from terrawatch.models.distill_checkpoint import latest_manifest
from terrawatch.tasks.alignearth.chips import write_progress
from terrawatch.tasks.alignearth.dataset import ChipDataset

logger = logging.getLogger(__name__)

HELDOUT_FILE = "heldout.json"
PROGRESS_FILE = "progress.json"
PATCH = 16
"""Patch size of the ViT-B/16 student, in pixels."""


@dataclass(frozen=True)
class TrainJob:
    """One distillation run: references and numbers only."""

    chips: str
    """Chip dataset path."""
    out: str
    """Checkpoint directory."""
    steps: int
    """Train until this step (a resumed run counts from its checkpoint)."""
    batch_size: int = 64
    """Chip pairs per step (InfoNCE contrasts within the batch)."""
    weights: str | None = None
    """Teacher CLIP checkpoint (default: OpenAI ViT-B/16 from the weights dir)."""
    settings: tuple[tuple[str, float], ...] = ()
    """:class:`~models.distill.DistillSettings` overrides as (name, value) pairs."""
    resume: bool = True
    """Continue from the newest checkpoint in ``out``; False refuses a directory that has one."""
    eval_every: int = 100
    """Held-out cosine every this many steps (and at the start and the end)."""
    save_every: int = 500
    """Checkpoint every this many steps (and at the end)."""
    eval_chips: int = 256
    """Most held-out chips evaluated."""
    seed: int = 0
    """Seed of the batch order."""
    device: str | None = None
    """Torch device (default CUDA when available)."""
    threads: int | None = None
    """Torch CPU threads (default: all cores)."""

    def __post_init__(self) -> None:
        for name, least in (("steps", 1), ("batch_size", 2), ("eval_every", 1),
                            ("save_every", 1), ("eval_chips", 1)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(f"{name} must be an integer >= {least}, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InputError(f"threads must be None or an integer >= 1, got {self.threads!r}")
        self.distill_settings()

    def check_chip(self, chip: int, patch: int = PATCH) -> None:
        """Refuse a chip size the student cannot take, before any chip is cut.

        Raises:
            InputError: ``chip`` is not a multiple of the patch size, or gives fewer tokens a
                side than the region loss has regions.
        """
        regions = self.distill_settings().regions
        if chip % patch or chip // patch < regions:
            raise InputError(
                f"chip must be a multiple of the patch size {patch} with at least regions="
                f"{regions} tokens a side (>= {patch * regions} pixels), got {chip!r}; 224 is "
                "CLIP's training size"
            )

    def distill_settings(self) -> DistillSettings:
        """The settings (raises TypeError naming unknown ones, ValueError for bad values).

        Integer settings (``regions``, ``log_every``) given as integral floats, as JSON and
        Prefect's parameter forms deliver them, become ints.
        """
        kinds = {f.name: f.type for f in fields(DistillSettings)}
        values = dict(self.settings)
        for name, value in values.items():
            if kinds.get(name) in ("int", int) and isinstance(value, float):
                if not value.is_integer():
                    raise InputError(f"setting {name} must be an integer, got {value!r}")
                values[name] = int(value)
        return DistillSettings.from_kwargs(**values)


@dataclass(frozen=True)
class TrainResult:
    """What a distillation run left behind."""

    checkpoint: str
    """Newest student checkpoint (``step-N.pt``)."""
    manifest: str
    """Its manifest (``step-N.json``)."""
    step: int
    """Step of that checkpoint."""
    resumed_from: int
    """Step the run started at (0: fresh)."""
    losses: dict[str, float]
    """Losses of the last step."""
    heldout_start: dict[str, float] | None
    """Held-out cosine (``cls``, ``region``) before training (None: no held-out chips)."""
    heldout_end: dict[str, float] | None
    """Held-out cosine at the last step."""
    chips_per_second: float
    """Training throughput of this run (0 when no step ran)."""


def as_chips(values: np.ndarray) -> torch.Tensor:
    """uint8 chips -> float ``[B, 3, H, W]`` in 0..1, as the distiller takes them."""
    return torch.from_numpy(np.ascontiguousarray(values)).float().div_(255.0)


def _run_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError

        try:
            return get_run_logger()
        except MissingContextError:
            return logger
    except ImportError:
        return logger


def _check_out(out: Path, job: TrainJob, fingerprint: str) -> None:
    """Refuse a checkpoint directory of another chip dataset, or one to restart over."""
    if out.exists() and not out.is_dir():
        raise InputError(f"out={str(out)!r} is a file; give a directory for the checkpoints")
    previous = latest_manifest(out) if out.is_dir() else None
    if previous is None:
        return
    if not job.resume:
        raise InputError(
            f"out={str(out)!r} already holds checkpoints ({previous.name}) and resume is off; "
            "resume, or give an empty directory"
        )
    data = json.loads(previous.read_text()).get("data", {})
    theirs = data.get("dataset", {})
    if theirs.get("fingerprint") != fingerprint:
        raise StoreMismatchError(
            f"the checkpoints in {str(out)!r} were distilled on chip dataset "
            f"{theirs.get('chips')!r} (fingerprint {theirs.get('fingerprint')!r}), this run's "
            f"is {job.chips!r} ({fingerprint!r}); use the same chips or another out directory"
        )
    if (data.get("batch_size"), data.get("seed")) != (job.batch_size, job.seed):
        logger.warning(
            "resuming %s with batch_size %d and seed %d (was %s and %s): the batch order changes",
            out, job.batch_size, job.seed, data.get("batch_size"), data.get("seed"),
        )  # fmt: skip


def _heldout(distiller: Distiller, chips: tuple[torch.Tensor, torch.Tensor] | None) -> Any:
    if chips is None:
        return None
    return {"step": distiller.step, **distiller.cosine(*chips)}


def _load_evals(out: Path, step: int) -> list[dict[str, float]]:
    path = out / HELDOUT_FILE
    records = json.loads(path.read_text())["records"] if path.is_file() else []
    return [r for r in records if r["step"] <= step]


def _save_evals(out: Path, records: list[dict[str, float]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f"{HELDOUT_FILE}.partial"
    partial.write_text(json.dumps({"records": records}, indent=1))
    os.replace(partial, out / HELDOUT_FILE)


def _prepare(job: TrainJob) -> tuple[ChipDataset, Distiller, int]:
    """Open the chips, build the distiller, resume it; returns (data, distiller, start step)."""
    data = ChipDataset(job.chips)
    data.steps_per_epoch(job.batch_size)
    description = data.description()
    out = Path(job.out)
    _check_out(out, job, description["fingerprint"])
    info = {"dataset": description, "batch_size": job.batch_size, "seed": job.seed}
    distiller = Distiller.from_pretrained(
        job.weights, job.distill_settings(), data=info, device=job.device
    )
    start = distiller.resume(out) if job.resume else 0
    return data, distiller, start


def train_alignearth(job: TrainJob) -> TrainResult:
    """Train the student from the newest checkpoint (or the teacher) up to ``job.steps``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads or os.cpu_count() or 1)
    try:
        return _train(job)
    finally:
        torch.set_num_threads(threads)


def _train(job: TrainJob) -> TrainResult:
    log, out = _run_logger(), Path(job.out)
    data, distiller, start = _prepare(job)
    held = None
    if len(data.heldout):
        held = tuple(as_chips(a) for a in data.heldout_chips(job.eval_chips))
    evals = _load_evals(out, start)
    if not evals and held is not None:
        evals.append(_heldout(distiller, held))
        _save_evals(out, evals)
        log.info("align-sar held-out cosine before training: cls %.4f, region %.4f",
                 evals[0]["cls"], evals[0]["region"])  # fmt: skip
    log.info(
        "align-sar: %d training and %d held-out chips, steps %d -> %d, batch %d on %s",
        len(data.train), len(data.heldout), start, job.steps, job.batch_size, distiller.device,
    )  # fmt: skip
    tick, chips, saved = time.perf_counter(), 0, None
    for step, optical, sar in data.batches(job.batch_size, job.seed, start, job.steps):
        record = distiller.train_step(as_chips(optical), as_chips(sar))
        chips += len(optical)
        rate = chips / max(time.perf_counter() - tick, 1e-9)
        last = step + 1 == job.steps
        if held is not None and (distiller.step % job.eval_every == 0 or last):
            evals.append(_heldout(distiller, held))
        if distiller.step % job.save_every == 0 or last:
            saved = distiller.save(out)
            _save_evals(out, evals)
        if distiller.step % distiller.settings.log_every == 0 or last:
            _log_step(log, record, job.steps, rate, evals[-1] if evals else None)
        write_progress(str(out / PROGRESS_FILE), phase="train", done=distiller.step,
                       total=job.steps, loss=record["loss"], chips_per_s=rate)  # fmt: skip
    rate = chips / max(time.perf_counter() - tick, 1e-9) if chips else 0.0
    return _result(out, distiller, start, saved, evals, rate)


def _log_step(log: Any, record: dict, steps: int, rate: float, held: dict | None) -> None:
    log.info(
        "align-sar step %d/%d: loss %.4f (infonce %.4f, cls %.4f, region %.4f), tau %.4f, "
        "%.1f chips/s; held-out cosine cls %s region %s (step %s)",
        record["step"], steps, record["loss"], record["infonce"], record["cls"],
        record["region"], record["temperature"], rate,
        f"{held['cls']:.4f}" if held else "-", f"{held['region']:.4f}" if held else "-",
        held["step"] if held else "-",
    )  # fmt: skip


def _result(
    out: Path,
    distiller: Distiller,
    start: int,
    saved: Path | None,
    evals: list[dict[str, float]],
    rate: float,
) -> TrainResult:
    manifest = latest_manifest(out)
    if saved is None and manifest is None:
        saved = distiller.save(out)
        manifest = latest_manifest(out)
    record = json.loads(manifest.read_text())
    losses = record["losses"][-1] if record["losses"] else {}
    return TrainResult(
        checkpoint=str(out / record["checkpoint"]),
        manifest=str(manifest),
        step=int(record["step"]),
        resumed_from=start,
        losses={k: float(v) for k, v in losses.items()},
        heldout_start={k: v for k, v in evals[0].items() if k != "step"} if evals else None,
        heldout_end={k: v for k, v in evals[-1].items() if k != "step"} if evals else None,
        chips_per_second=round(rate, 3),
    )


train_alignearth_task = task(train_alignearth, name="train-alignearth", cache_policy=NO_CACHE)
