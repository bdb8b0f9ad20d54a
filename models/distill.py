"""AlignEarth distillation: a SAR student image encoder learns the frozen optical CLIP encoder.

Li et al., arXiv 2508.18067 §4, as specified in ``shared/reference/algorithms.md`` §2.2–2.3:
the student starts as a copy of the optical CLIP image tower; on paired chips the teacher
encodes the optical chip and the student the SAR chip; the loss is a weighted sum of symmetric
InfoNCE on [CLS] (learnable τ, init 0.07), ``1 − cos`` on [CLS] and ``1 − cos`` on 7 x 7 region
means of the patch tokens; AdamW, lr 1e-4. The paper publishes no training code, so these
choices are ours and documented where made:

* Loss weights: the paper says the loss "consists of" the three terms and gives no weights;
  default 1/1/1 (a plain sum), configurable.
* Both encoders run the standard CLIP forward (:func:`models.clip_backbone.encode_tokens`);
  the SCLIP modification is an inference-time change only.
* Chips are float RGB ``[B, 3, H, W]`` in 0..1, as :class:`~models.segearth.SegEarthOV` takes
  them; the distiller applies CLIP mean/std itself, so inference sees the same normalisation.
  SAR chips are 3-channel composites made by the caller (the paper does not say how SAR was
  fed; the reference inference repeats a grey image over 3 channels).
* AdamW with torch's defaults (betas 0.9/0.999, eps 1e-8) and weight decay 0.01 on matrices
  only (biases, norms, embeddings vectors and τ are not decayed, as open_clip trains CLIP).
* On CUDA the forward passes run under bfloat16 autocast; on CPU in float32.

Checkpoints (:mod:`models.distill_checkpoint`) are full CLIP models in the open_clip training
format that :func:`models.clip_backbone.load_clip` reads, so a student loads with
``SegEarthOV.from_pretrained(sensor="sar", weights=<checkpoint>)``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIP
from torch import Tensor, nn

from terrawatch.errors import InputError, UnknownSettingError
from terrawatch.models import distill_checkpoint as ckpt
from terrawatch.models.clip_backbone import Activation, clip_activation, encode_tokens, load_clip
from terrawatch.models.distill_losses import (
    MAX_LOGIT_SCALE,
    cls_distill,
    infonce_cls,
    log_inverse_temperature,
    region_distill,
    region_means,
)
from terrawatch.models.weights import file_sha256, resolve_weights

logger = logging.getLogger(__name__)

TEACHER = "ViT-B-16"
"""Weights name of the teacher: OpenAI CLIP ViT-B/16, the backbone AlignEarth was published for."""


@dataclass(frozen=True)
class DistillSettings:
    """Optimisation settings; defaults follow the paper where it gives a value."""

    lr: float = 1e-4
    """AdamW learning rate (paper: 1e-4)."""
    weight_decay: float = 0.01
    """AdamW weight decay on weight matrices (paper: not given; torch's default)."""
    temperature: float = 0.07
    """Initial InfoNCE temperature τ (paper: 0.07, learnable)."""
    weight_infonce: float = 1.0
    """Weight of the symmetric InfoNCE on [CLS] (paper: none given)."""
    weight_cls: float = 1.0
    """Weight of ``1 − cos`` on [CLS] (paper: none given)."""
    weight_region: float = 1.0
    """Weight of ``1 − cos`` on region means (paper: none given)."""
    regions: int = 7
    """Regions per side K of the local loss (paper: 7)."""
    log_every: int = 10
    """Log progress every this many steps."""

    def __post_init__(self) -> None:
        log_inverse_temperature(self.temperature)  # validates 0 < τ < 1
        for name in ("lr", "weight_decay", "weight_infonce", "weight_cls", "weight_region"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr == 0:
            raise InputError("lr must be > 0, got 0")
        if self.regions < 1 or self.log_every < 1:
            raise InputError(
                f"regions and log_every must be >= 1, got {self.regions!r}, {self.log_every!r}"
            )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> DistillSettings:
        """Build from keyword arguments, rejecting unknown names with the valid ones listed."""
        valid = {field.name for field in fields(cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise UnknownSettingError(
                f"unknown distillation settings {unknown}; valid: {sorted(valid)}"
            )
        return cls(**kwargs)


class Distiller:
    """Teacher (frozen optical CLIP image tower) and student (trainable copy) with AdamW.

    Args:
        clip: the optical CLIP model; its image tower is the teacher and the student's start,
            its text tower goes unchanged into every saved checkpoint.
        settings: optimisation settings.
        data: description of the training data (source, pairs, chip size...) for the manifest.
        teacher_weights: name and SHA-256 of the teacher's file, when it came from one.
        device: torch device; default CUDA when available, else CPU.
    """

    def __init__(
        self,
        clip: CLIP,
        settings: DistillSettings | None = None,
        data: Mapping[str, Any] | None = None,
        teacher_weights: Mapping[str, str] | None = None,
        device: str | torch.device | None = None,
    ):
        self.settings = settings or DistillSettings()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.clip = clip.float().eval().requires_grad_(False)
        self.teacher = clip.visual.to(self.device)
        self.student = copy.deepcopy(clip.visual).train().requires_grad_(True).to(self.device)
        init = log_inverse_temperature(self.settings.temperature)
        self.log_scale = nn.Parameter(torch.tensor(init, device=self.device))
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=self.settings.lr)
        self.mean = torch.tensor(OPENAI_DATASET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(OPENAI_DATASET_STD, device=self.device).view(1, 3, 1, 1)
        self.step = 0
        self.chips_seen = 0
        self.history: list[dict[str, float]] = []
        self.data = dict(data or {})
        self.teacher_info = {
            **dict(teacher_weights or {}),
            "visual_sha256": ckpt.state_sha256(self.teacher.state_dict()),
            "activation": clip_activation(clip),
        }
        self._last_log = (0, 0, time.perf_counter())

    @classmethod
    def from_pretrained(
        cls,
        weights: str | Path | None = None,
        settings: DistillSettings | None = None,
        data: Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
        activation: Activation | None = None,
    ) -> Distiller:
        """A distiller whose teacher is OpenAI CLIP ViT-B/16 (explicit path, weights dir, download).

        Raises:
            WeightsNotFoundError: the CLIP checkpoint is missing and cannot be downloaded.
        """
        path = resolve_weights(TEACHER, weights)
        clip = load_clip(path, activation)
        info = {"weights": path.name, "sha256": file_sha256(path)}
        return cls(clip, settings, data, teacher_weights=info, device=device)

    @property
    def temperature(self) -> float:
        """Current InfoNCE temperature τ = 1 / min(exp(s), 100)."""
        return 1.0 / min(math.exp(self.log_scale.item()), MAX_LOGIT_SCALE)

    def train_step(self, opt_chips: Tensor, sar_chips: Tensor) -> dict[str, float]:
        """One AdamW step on a batch of paired chips; returns the losses of this step."""
        opt = self._prepare(opt_chips, "opt_chips")
        sar = self._prepare(sar_chips, "sar_chips")
        if opt.shape != sar.shape or len(opt) < 2:
            raise ValueError(
                f"opt_chips and sar_chips must be paired batches of the same shape with at least "
                f"2 pairs (InfoNCE contrasts within the batch), got {tuple(opt_chips.shape)} and "
                f"{tuple(sar_chips.shape)}"
            )
        self.student.train()
        with torch.no_grad(), self._autocast():
            teacher_patches, teacher_cls = encode_tokens(self.teacher, opt)
        with self._autocast():
            student_patches, student_cls = encode_tokens(self.student, sar)
        teacher_patches, teacher_cls = teacher_patches.float(), teacher_cls.float()
        student_patches, student_cls = student_patches.float(), student_cls.float()
        terms = {
            "infonce": infonce_cls(teacher_cls, student_cls, self.log_scale),
            "cls": cls_distill(teacher_cls, student_cls),
            "region": region_distill(teacher_patches, student_patches, self.settings.regions),
        }
        s = self.settings
        total = s.weight_infonce * terms["infonce"] + s.weight_cls * terms["cls"]
        total = total + s.weight_region * terms["region"]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.step += 1
        self.chips_seen += len(opt)
        record = {"step": self.step, "loss": float(total.detach())}
        record.update({name: float(value.detach()) for name, value in terms.items()})
        record["temperature"] = self.temperature
        self.history.append(record)
        self._log_progress(record)
        return record

    @torch.no_grad()
    def cosine(
        self, opt_chips: Tensor, sar_chips: Tensor, batch_size: int = 32
    ) -> dict[str, float]:
        """Mean teacher–student cosine on held-out pairs: ``cls`` and ``region`` (K x K means)."""
        opt = self._prepare(opt_chips, "opt_chips")
        sar = self._prepare(sar_chips, "sar_chips")
        if opt.shape != sar.shape:
            raise ValueError(
                f"opt_chips and sar_chips must have the same shape, got {tuple(opt.shape)} and "
                f"{tuple(sar.shape)}"
            )
        self.student.eval()
        cls_sum = region_sum = 0.0
        for start in range(0, len(opt), batch_size):
            with self._autocast():
                t_patches, t_cls = encode_tokens(self.teacher, opt[start : start + batch_size])
                s_patches, s_cls = encode_tokens(self.student, sar[start : start + batch_size])
            cls_sum += float(torch.cosine_similarity(t_cls.float(), s_cls.float(), -1).sum())
            t_reg = region_means(t_patches.float(), self.settings.regions)
            s_reg = region_means(s_patches.float(), self.settings.regions)
            region_sum += float(torch.cosine_similarity(t_reg, s_reg, 1).mean(dim=(1, 2)).sum())
        return {"cls": cls_sum / len(opt), "region": region_sum / len(opt)}

    def student_state_dict(self) -> dict[str, Tensor]:
        """The full CLIP state dict: the student image tower with the original text tower."""
        state = {k: v for k, v in self.clip.state_dict().items() if not k.startswith("visual.")}
        state.update({f"visual.{k}": v for k, v in self.student.state_dict().items()})
        return {k: v.detach().float().cpu().clone() for k, v in state.items()}

    def save(self, directory: str | Path) -> Path:
        """Write checkpoint, training state and manifest for this step; returns the checkpoint."""
        return ckpt.save(self, Path(directory))

    def resume(self, directory: str | Path) -> int:
        """Continue from the newest checkpoint in ``directory``; returns its step (0: none).

        Raises:
            ValueError: the checkpoint's student does not have this teacher's architecture, or
                it was distilled from another teacher.
        """
        return ckpt.resume(self, Path(directory))

    def _param_groups(self) -> list[dict[str, Any]]:
        decay = [p for p in self.student.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.student.parameters() if p.ndim < 2] + [self.log_scale]
        return [
            {"params": decay, "weight_decay": self.settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def _prepare(self, chips: Tensor, name: str) -> Tensor:
        """Validate float RGB chips in 0..1 and apply CLIP normalisation."""
        if not isinstance(chips, Tensor) or chips.ndim != 4 or chips.shape[1] != 3:
            shape = tuple(chips.shape) if isinstance(chips, Tensor) else type(chips).__name__
            raise ValueError(f"{name} must be a float tensor [B, 3, H, W], got {shape}")
        if not chips.is_floating_point() or len(chips) == 0:
            raise ValueError(f"{name} must be a non-empty float tensor in 0..1, got {chips.dtype}")
        low, high = float(chips.min()), float(chips.max())
        if not (math.isfinite(low) and math.isfinite(high)) or low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"{name} must hold values in 0..1 (no NaN), got range [{low:.4g}, {high:.4g}]; "
                f"scale the chips to 0..1 (the distiller applies CLIP normalisation itself)"
            )
        patch = int(self.teacher.conv1.kernel_size[0])
        if chips.shape[-2] % patch or chips.shape[-1] % patch:
            raise ValueError(
                f"{name} sides must be multiples of the patch size {patch}, got "
                f"{tuple(chips.shape[-2:])}; crop or resize the chips (224 in the paper)"
            )
        return (chips.to(self.device, torch.float32) - self.mean) / self.std

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16)

    def _log_progress(self, record: dict[str, float]) -> None:
        if self.step % self.settings.log_every:
            return
        step0, chips0, t0 = self._last_log
        now = time.perf_counter()
        rate = (self.chips_seen - chips0) / max(now - t0, 1e-9)
        self._last_log = (self.step, self.chips_seen, now)
        logger.info(
            "distill step %d: loss %.4f (infonce %.4f, cls %.4f, region %.4f), tau %.4f, "
            "%.1f chips/s over %d steps",
            self.step,
            record["loss"],
            record["infonce"],
            record["cls"],
            record["region"],
            record["temperature"],
            rate,
            self.step - step0,
        )
