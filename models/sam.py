"""SAM automatic mask proposals on the transformers ``SamModel`` with DynamicEarth's settings.

Re-implements ``SamAutomaticMaskGenerator`` as DynamicEarth's ``SimpleMaskGenerator`` uses it
(``shared/reference/algorithms.md`` §3.1): a 32 x 32 point grid, 64 points per batch, three
masks per point, keep ``predicted IoU > 0.5`` and ``stability >= 0.95`` (offset 0.9), box NMS
at 0.7 within the image, no crops, no small-region clean-up. The ``area >= 0.8`` filter of the
reference's ``MaskProposal`` lives in :func:`models.proposals.merge_bitemporal`.

Weights: Hugging Face ``facebook/sam-vit-huge``, the transformers port of the reference's
``sam_vit_h_4b8939.pth`` (same network, converted state dict).

Deviation: the reference resizes the uint8 image with PIL (bilinear, antialiased) before
normalising; we resize the float image with ``F.interpolate(..., antialias=True)``, which
differs by rounding only.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from terrawatch.errors import InputError, UnknownSettingError
from terrawatch.models.hf_weights import model_sha256, resolve_hf_model
from terrawatch.models.proposals import MaskSet, check_image, stable_nms

if TYPE_CHECKING:
    from transformers import SamModel

logger = logging.getLogger(__name__)

SAM_WEIGHTS = "sam-vit-huge"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SamSettings:
    """Automatic mask generation settings; defaults are DynamicEarth's SAM ViT-H ones."""

    points_per_side: int = 32
    """Prompt grid is points_per_side x points_per_side, cell centres."""
    points_per_batch: int = 64
    """Prompts per decoder call (memory: 3 x this many full-size float masks)."""
    pred_iou_thresh: float = 0.5
    """Keep masks whose predicted IoU is above this; 0 disables the filter."""
    stability_score_thresh: float = 0.95
    """Keep masks whose stability score is at least this; 0 disables the filter."""
    stability_score_offset: float = 0.9
    """Logit offset of the stability score."""
    box_nms_thresh: float = 0.7
    """Box IoU above which the lower-scored of two masks is dropped."""
    mask_threshold: float = 0.0
    """Logit threshold that binarises a mask."""

    def __post_init__(self) -> None:
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise InputError(
                f"points_per_side and points_per_batch must be >= 1, got "
                f"{self.points_per_side!r} and {self.points_per_batch!r}"
            )
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be within 0..1, got {value!r}")
        if self.stability_score_offset < 0:
            raise InputError(
                f"stability_score_offset must be >= 0, got {self.stability_score_offset!r}"
            )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> SamSettings:
        """Build from keyword arguments, rejecting unknown names with the valid ones listed."""
        valid = {item.name for item in fields(cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise UnknownSettingError(
                f"unknown SAM settings {unknown}; valid settings: {sorted(valid)}"
            )
        return cls(**kwargs)


class SamProposer:
    """Class-agnostic masks from SAM's automatic mask generation (see the module docstring)."""

    name = "sam"

    def __init__(
        self,
        model: SamModel,
        settings: SamSettings | None = None,
        provenance: dict[str, Any] | None = None,
    ):
        self.model = model.eval()
        self.settings = settings or SamSettings()
        self._provenance = dict(provenance or {})
        self.image_size = int(model.config.vision_config.image_size)

    @classmethod
    def from_pretrained(
        cls,
        weights: str | Path | None = None,
        device: str | torch.device | None = None,
        **settings: Any,
    ) -> SamProposer:
        """Load a transformers SAM directory (default ``sam-vit-huge``) and build the proposer.

        Args:
            weights: a directory written by ``save_pretrained``; else the weights directory,
                else a pinned download (see :func:`models.hf_weights.resolve_hf_model`).
            device: torch device; default CUDA when available, else CPU.
            **settings: fields of :class:`SamSettings`.

        Raises:
            WeightsNotFoundError: the model is missing and cannot be downloaded.
        """
        from transformers import SamModel

        parsed = SamSettings.from_kwargs(**settings)
        directory = resolve_hf_model(SAM_WEIGHTS, weights)
        model = SamModel.from_pretrained(str(directory)).to(_device(device))
        provenance = {"weights": directory.name, "weights_sha256": model_sha256(directory)}
        return cls(model, parsed, provenance)

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return next(self.model.parameters()).device

    def provenance(self) -> dict[str, Any]:
        """Name, settings, weights directory and the sha256 of its safetensors file."""
        return {"name": self.name, "settings": asdict(self.settings), **self._provenance}

    @torch.inference_mode()
    def propose(self, image: Tensor) -> MaskSet:
        """Masks of an RGB image ``[3, H, W]`` in 0..1, best predicted IoU first; origin 0."""
        check_image(image, "image")
        height, width = image.shape[-2:]
        pixels, resized = self._preprocess(image.to(self.device, torch.float32))
        embeddings = self.model.get_image_embeddings(pixels)
        points = _point_grid(self.settings.points_per_side, height, width, resized)
        masks, scores, boxes = [], [], []
        for start in range(0, len(points), self.settings.points_per_batch):
            batch = points[start : start + self.settings.points_per_batch].to(self.device)
            kept = self._process_batch(embeddings, batch, resized, (height, width))
            for store, value in zip((masks, scores, boxes), kept, strict=True):
                store.append(value)
        if not masks:
            return MaskSet.empty(height, width, self.device)
        masks_t, scores_t, boxes_t = torch.cat(masks), torch.cat(scores), torch.cat(boxes)
        # indices by decreasing score, as the reference's MaskData.filter leaves them
        keep = stable_nms(boxes_t, scores_t, self.settings.box_nms_thresh)
        origin = torch.zeros(len(keep), dtype=torch.int64, device=self.device)
        proposals = MaskSet(masks_t[keep], scores_t[keep], origin)
        proposals._cache["boxes"] = boxes_t[keep] + boxes_t.new_tensor([0.0, 0.0, 1.0, 1.0])
        return proposals

    def _preprocess(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Resize the long side to the model size, ImageNet-normalise, zero-pad bottom/right."""
        height, width = image.shape[-2:]
        scale = self.image_size / max(height, width)
        resized = (int(height * scale + 0.5), int(width * scale + 0.5))
        x = image.unsqueeze(0)
        if resized != (height, width):
            x = F.interpolate(x, size=resized, mode="bilinear", align_corners=False, antialias=True)
        mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = (x - mean) / std
        x = F.pad(x, (0, self.image_size - resized[1], 0, self.image_size - resized[0]))
        return x, resized

    def _process_batch(
        self, embeddings: Tensor, points: Tensor, resized: tuple[int, int], size: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Masks of one batch of prompts filtered by IoU and stability (``_process_batch``)."""
        settings = self.settings
        count = len(points)
        output = self.model(
            image_embeddings=embeddings,
            input_points=points.view(1, count, 1, 2),
            input_labels=torch.ones(1, count, 1, dtype=torch.long, device=self.device),
            multimask_output=True,
        )
        low_res = output.pred_masks[0].flatten(0, 1).unsqueeze(0)  # [1, 3 * count, h, w]
        iou = output.iou_scores[0].flatten().float()
        keep = iou > settings.pred_iou_thresh if settings.pred_iou_thresh > 0 else iou.isfinite()
        logits = _upscale(low_res[:, keep], self.image_size, resized, size)[0]
        iou = iou[keep]
        if settings.stability_score_thresh > 0:
            stable = _stability(logits, settings.mask_threshold, settings.stability_score_offset)
            stable = stable >= settings.stability_score_thresh
            logits, iou = logits[stable], iou[stable]
        masks = logits > settings.mask_threshold
        # an empty mask proposes nothing (it only gets here with the stability filter off)
        filled = masks.flatten(1).any(dim=1)
        masks, iou = masks[filled], iou[filled]
        # SAM's batched_mask_to_box: inclusive x1, y1, which is what its NMS compares
        boxes = MaskSet(masks, iou, torch.zeros_like(iou, dtype=torch.int64)).boxes()
        boxes[:, 2:] -= 1.0
        return masks, iou, boxes


def _upscale(
    low_res: Tensor, image_size: int, resized: tuple[int, int], size: tuple[int, int]
) -> Tensor:
    """Low-resolution mask logits to the input image size (SAM's ``postprocess_masks``)."""
    if low_res.shape[1] == 0:
        return low_res.new_zeros(1, 0, *size)
    x = F.interpolate(
        low_res.float(), (image_size, image_size), mode="bilinear", align_corners=False
    )
    x = x[..., : resized[0], : resized[1]]
    return F.interpolate(x, size, mode="bilinear", align_corners=False)


def _stability(logits: Tensor, threshold: float, offset: float) -> Tensor:
    """IoU between the masks binarised at ``threshold + offset`` and ``threshold - offset``."""
    inner = (logits > threshold + offset).sum(dim=(-1, -2), dtype=torch.int64)
    outer = (logits > threshold - offset).sum(dim=(-1, -2), dtype=torch.int64)
    return inner.float() / outer.float()  # 0/0 = NaN fails every threshold, as in the reference


def _point_grid(per_side: int, height: int, width: int, resized: tuple[int, int]) -> Tensor:
    """Cell-centre grid (x fastest) in the resized image's pixel coordinates, ``[P, 2]`` (x, y)."""
    offset = 1.0 / (2 * per_side)
    side = torch.linspace(offset, 1 - offset, per_side, dtype=torch.float64)
    ys, xs = torch.meshgrid(side, side, indexing="ij")
    points = torch.stack([xs.flatten() * width, ys.flatten() * height], dim=1)
    scale = torch.tensor([resized[1] / width, resized[0] / height], dtype=torch.float64)
    return (points * scale).float()


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
