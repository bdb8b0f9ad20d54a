"""Mask proposals for change detection: the MaskSet container, superpixels, bi-temporal merge.

DynamicEarth (``shared/reference/algorithms.md`` §3.1) proposes class-agnostic masks on each
date, drops masks covering >= 80 % of the image, and merges both dates with a box NMS scored by
the proposer's confidence. :class:`SuperpixelProposer` is the weights-free proposer (skimage);
:class:`models.sam.SamProposer` is the published one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms


@dataclass(frozen=True, eq=False)
class MaskSet:
    """Binary masks of one or two dates with their scores and date of origin (equal by identity)."""

    masks: Tensor
    """bool ``[N, H, W]``."""
    scores: Tensor
    """float32 ``[N]``: SAM's predicted IoU; 1.0 for superpixels."""
    origin: Tensor
    """int64 ``[N]``: 0 = proposed on t1, 1 = proposed on t2."""
    _cache: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.masks.ndim != 3 or self.masks.dtype != torch.bool:
            raise ValueError(
                f"masks must be bool [N, H, W], got dtype {self.masks.dtype} and shape "
                f"{tuple(self.masks.shape)}"
            )
        count = self.masks.shape[0]
        if tuple(self.scores.shape) != (count,) or tuple(self.origin.shape) != (count,):
            raise ValueError(
                f"scores and origin must have shape [{count}] like masks, got "
                f"{tuple(self.scores.shape)} and {tuple(self.origin.shape)}"
            )

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Image size ``(H, W)``."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    def boxes(self) -> Tensor:
        """float32 ``[N, 4]`` boxes ``x0, y0, x1, y1`` (x1, y1 exclusive); zeros for empty masks.

        Computed once per MaskSet (two ``any`` passes over the masks) and cached.
        """
        if "boxes" not in self._cache:
            self._cache["boxes"] = masks_to_boxes(self.masks)
        return self._cache["boxes"]

    def areas(self) -> Tensor:
        """int64 ``[N]`` pixel count of each mask, counted within its box (cached)."""
        if "areas" not in self._cache:
            areas = torch.zeros(len(self), dtype=torch.int64, device=self.masks.device)
            for index, (x0, y0, x1, y1) in enumerate(self.boxes().long().tolist()):
                areas[index] = self.masks[index, y0:y1, x0:x1].sum()
            self._cache["areas"] = areas
        return self._cache["areas"]

    def select(self, index: Tensor) -> MaskSet:
        """The subset at ``index`` (bool mask or int indices), in that order."""
        subset = MaskSet(self.masks[index], self.scores[index], self.origin[index])
        subset._cache.update({key: value[index] for key, value in self._cache.items()})
        return subset

    def with_origin(self, origin: int) -> MaskSet:
        """The same masks, all marked as proposed on date ``origin`` (0 or 1)."""
        return replace(self, origin=torch.full_like(self.origin, origin), _cache=self._cache)

    def clipped(self, valid: Tensor) -> MaskSet:
        """Masks intersected with ``valid`` (bool ``[H, W]``); masks left empty are dropped."""
        valid = valid.to(self.masks.device)
        if bool(valid.all()):
            return self
        masks = self.masks & valid
        keep = masks.flatten(1).any(dim=1)
        return MaskSet(masks[keep], self.scores[keep], self.origin[keep])

    @classmethod
    def empty(cls, height: int, width: int, device: torch.device | str = "cpu") -> MaskSet:
        """No masks on a ``height`` x ``width`` image."""
        return cls(
            torch.zeros(0, height, width, dtype=torch.bool, device=device),
            torch.zeros(0, dtype=torch.float32, device=device),
            torch.zeros(0, dtype=torch.int64, device=device),
        )

    @classmethod
    def concat(cls, sets: list[MaskSet], height: int, width: int) -> MaskSet:
        """The masks of ``sets`` one after the other (cached boxes/areas carried over)."""
        if not sets:
            return cls.empty(height, width)
        merged = cls(
            torch.cat([part.masks for part in sets]),
            torch.cat([part.scores for part in sets]),
            torch.cat([part.origin for part in sets]),
        )
        for key in ("boxes", "areas"):
            if all(key in part._cache for part in sets):
                merged._cache[key] = torch.cat([part._cache[key] for part in sets])
        return merged

    @classmethod
    def from_labels(cls, labels: Tensor, origin: int = 0) -> MaskSet:
        """One mask per label ``0..L-1`` of an int label image ``[H, W]`` (negatives ignored).

        Masks, boxes and areas are written in O(H * W) from the labels (no pass per mask).
        """
        height, width = labels.shape
        device = labels.device
        flat = labels.flatten().long()
        count = int(flat.max()) + 1 if flat.numel() and int(flat.max()) >= 0 else 0
        inside = torch.nonzero(flat >= 0).flatten()
        ids = flat[inside]
        masks = torch.zeros(count, height * width, dtype=torch.bool, device=device)
        masks[ids, inside] = True
        rows, cols = inside // width, inside % width
        boxes = torch.stack(
            [
                _reduce(cols, ids, count, "amin", width),
                _reduce(rows, ids, count, "amin", height),
                _reduce(cols, ids, count, "amax", -1) + 1,
                _reduce(rows, ids, count, "amax", -1) + 1,
            ],
            dim=1,
        )
        areas = torch.bincount(ids, minlength=count)
        boxes[areas == 0] = 0
        result = cls(
            masks.view(count, height, width),
            torch.ones(count, dtype=torch.float32, device=device),
            torch.full((count,), origin, dtype=torch.int64, device=device),
        )
        result._cache.update(boxes=boxes.float(), areas=areas)
        return result


def _reduce(values: Tensor, ids: Tensor, count: int, how: str, initial: int) -> Tensor:
    """Per-label min or max of ``values`` (``initial`` for labels without pixels)."""
    out = torch.full((count,), initial, dtype=values.dtype, device=values.device)
    return out.scatter_reduce(0, ids, values, how, include_self=True)


def mask_pixel_chunks(
    masks: Tensor, boxes: Tensor | None = None, max_elements: int = 1 << 22
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """The set pixels of bool ``masks [N, H, W]``, a few nearby masks at a time.

    Yields ``(indices, mask, pixel)`` per chunk: the chunk's mask indices ``[n]``, and for every
    set pixel its position in ``indices`` and its flat index ``y * W + x``. Masks are grouped in
    raster order of their boxes (``boxes``: exclusive ``x0, y0, x1, y1``; computed when omitted)
    and only the union box of a chunk is scanned, at most ``max_elements`` mask elements per
    chunk (one mask at least): the work follows the masks' extent, not ``N * H * W``. Empty
    masks are skipped.
    """
    _, _, width = masks.shape
    boxes = (masks_to_boxes(masks) if boxes is None else boxes).long().cpu()
    order = torch.argsort(boxes[:, 1] * width + boxes[:, 0], stable=True).tolist()
    chunk: list[int] = []
    union = [0, 0, 0, 0]
    for index in order:
        x0, y0, x1, y1 = boxes[index].tolist()
        if x1 <= x0 or y1 <= y0:
            continue
        grown = [x0, y0, x1, y1]
        if chunk:
            grown = [min(union[0], x0), min(union[1], y0), max(union[2], x1), max(union[3], y1)]
        area = (grown[2] - grown[0]) * (grown[3] - grown[1])
        if chunk and (len(chunk) + 1) * area > max_elements:
            yield _chunk_pixels(masks, chunk, union)
            chunk, grown = [], [x0, y0, x1, y1]
        chunk.append(index)
        union = grown
    if chunk:
        yield _chunk_pixels(masks, chunk, union)


def _chunk_pixels(masks: Tensor, chunk: list[int], union: list[int]) -> tuple[Tensor, ...]:
    x0, y0, x1, y1 = union
    indices = torch.tensor(chunk, dtype=torch.int64, device=masks.device)
    crop = masks[indices, y0:y1, x0:x1].reshape(len(chunk), -1)
    mask, local = torch.nonzero(crop).unbind(dim=1)
    pixel = (local // (x1 - x0) + y0) * masks.shape[2] + local % (x1 - x0) + x0
    return indices, mask, pixel


def masks_to_boxes(masks: Tensor) -> Tensor:
    """float32 ``[N, 4]`` exclusive boxes ``x0, y0, x1, y1`` of bool masks ``[N, H, W]``."""
    count, height, width = masks.shape
    if count == 0:
        return torch.zeros(0, 4, dtype=torch.float32, device=masks.device)
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    boxes = torch.stack(
        [_first(cols), _first(rows), width - _first(cols.flip(1)), height - _first(rows.flip(1))],
        dim=1,
    ).float()
    empty = ~rows.any(dim=1)
    boxes[empty] = 0.0
    return boxes


def _first(flags: Tensor) -> Tensor:
    """Index of the first True per row (0 for rows without one)."""
    return flags.to(torch.uint8).argmax(dim=1)


@runtime_checkable
class MaskProposer(Protocol):
    """Proposes class-agnostic masks on one image."""

    name: str

    def propose(self, image: Tensor) -> MaskSet:
        """Masks of an RGB image ``[3, H, W]`` in 0..1; origin all 0 (the caller sets it)."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Name, settings, weight file and its sha256."""
        ...


class SuperpixelProposer:
    """Weights-free proposer: SLIC (default) or Felzenszwalb superpixels from scikit-image.

    Args:
        method: ``slic`` or ``felzenszwalb``.
        region_px: target superpixel size in pixels; SLIC asks for ``H * W // region_px``
            segments, Felzenszwalb uses ``region_px // 4`` as its minimum segment size.
        compactness: SLIC colour/space trade-off (higher = more square regions).
        sigma: Gaussian pre-smoothing of both methods.
        scale: Felzenszwalb's scale (higher = larger segments).

    Superpixels tile both dates alike, so the cross-date NMS keeps one date's copy of most cells
    at random; use them with the land-cover rule (the class is judged on both dates). The
    instance rule judges a mask by its own date's class only, which suits object masks (SAM).
    Memory: masks are dense, ``H * W / region_px`` of ``H * W`` bytes each (1 GB per date for
    a 1024² tile at the default 1024 px regions); use smaller tiles or larger regions.
    """

    name = "superpixel"

    def __init__(
        self,
        method: Literal["slic", "felzenszwalb"] = "slic",
        region_px: int = 1024,
        compactness: float = 10.0,
        sigma: float = 1.0,
        scale: float = 100.0,
    ):
        if method not in ("slic", "felzenszwalb"):
            raise ValueError(f"method must be 'slic' or 'felzenszwalb', got {method!r}")
        if region_px < 4:
            raise ValueError(f"region_px must be >= 4 pixels, got {region_px!r}")
        if compactness <= 0 or sigma < 0 or scale <= 0:
            raise ValueError(
                f"need compactness > 0, sigma >= 0 and scale > 0, got compactness="
                f"{compactness!r}, sigma={sigma!r}, scale={scale!r}"
            )
        self.method = method
        self.region_px = int(region_px)
        self.compactness = float(compactness)
        self.sigma = float(sigma)
        self.scale = float(scale)

    def labels(self, image: Tensor) -> np.ndarray:
        """int label image ``[H, W]`` with labels ``0..L-1``."""
        check_image(image, "image")
        rgb = image.detach().permute(1, 2, 0).cpu().double().numpy()
        height, width = rgb.shape[:2]
        if self.method == "slic":
            from skimage.segmentation import slic

            segments = max(1, height * width // self.region_px)
            labels = slic(
                rgb,
                n_segments=segments,
                compactness=self.compactness,
                sigma=self.sigma,
                start_label=0,
                channel_axis=-1,
            )
        else:
            from skimage.segmentation import felzenszwalb

            labels = felzenszwalb(
                rgb, scale=self.scale, sigma=self.sigma, min_size=max(1, self.region_px // 4)
            )
        _, dense = np.unique(labels, return_inverse=True)  # labels 0..L-1 without gaps
        return dense.reshape(height, width)

    def propose(self, image: Tensor) -> MaskSet:
        """One mask per superpixel, score 1.0, origin 0, on the image's device."""
        labels = torch.from_numpy(self.labels(image)).to(image.device)
        return MaskSet.from_labels(labels, origin=0)

    def provenance(self) -> dict[str, Any]:
        """Name and settings (no weights)."""
        return {
            "name": self.name,
            "method": self.method,
            "region_px": self.region_px,
            "compactness": self.compactness,
            "sigma": self.sigma,
            "scale": self.scale,
            "weights": None,
        }


def merge_bitemporal(
    first: MaskSet, second: MaskSet, iou_threshold: float = 0.7, area_thresh: float = 0.8
) -> MaskSet:
    """Masks of both dates without near-duplicates, as DynamicEarth's ``MaskProposal.forward``.

    Drops masks with ``area / (H * W) >= area_thresh`` on each date, concatenates (first then
    second; origins are set to 0 and 1), runs one box NMS over both dates scored by ``scores``
    (``batched_nms`` with a single category, as the reference; ties broken by index, see
    :func:`stable_nms`) and sorts the survivors by index, so the first date's survivors come
    first.

    The NMS runs on SAM-style inclusive boxes (``x1 - 1, y1 - 1``), which is what the reference
    feeds it (``batched_mask_to_box``); :meth:`MaskSet.boxes` is exclusive.
    """
    if first.shape != second.shape:
        raise ValueError(
            f"both dates must have the same image size, got {first.shape} and {second.shape}"
        )
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be within 0..1, got {iou_threshold!r}")
    if not 0.0 < area_thresh <= 1.0:
        raise ValueError(f"area_thresh must be within (0, 1], got {area_thresh!r}")
    height, width = first.shape
    candidates = [  # per date, indices of the masks below the area limit
        torch.nonzero(masks.areas().double() / (height * width) < area_thresh).flatten()
        for masks in (first, second)
    ]
    scores = torch.cat([first.scores[candidates[0]], second.scores[candidates[1]]]).float()
    boxes = torch.cat([first.boxes()[candidates[0]], second.boxes()[candidates[1]]])
    inclusive = boxes - boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
    keep = stable_nms(inclusive, scores, iou_threshold).sort().values
    split = len(candidates[0])
    picked = (candidates[0][keep[keep < split]], candidates[1][keep[keep >= split] - split])
    merged = MaskSet(
        torch.cat([first.masks[picked[0]], second.masks[picked[1]]]),
        scores[keep],
        torch.cat([torch.zeros_like(picked[0]), torch.ones_like(picked[1])]),
    )
    areas = torch.cat([first.areas()[picked[0]], second.areas()[picked[1]]])
    merged._cache.update(boxes=boxes[keep], areas=areas)
    return merged


def stable_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Box NMS (one category) that breaks score ties by index, lower index first.

    Same survivors as ``batched_nms(boxes, scores, zeros, iou_threshold)`` when scores are
    distinct; with ties (every superpixel scores 1.0) torchvision's order is unspecified, which
    would make the merge differ between runs and machines.
    """
    if len(scores) == 0:
        return torch.zeros(0, dtype=torch.int64, device=scores.device)
    order = torch.argsort(scores, descending=True, stable=True)
    ranks = torch.arange(len(order), 0, -1, dtype=torch.float32, device=scores.device)
    categories = torch.zeros(len(order), dtype=torch.int64, device=scores.device)
    return order[batched_nms(boxes[order].float(), ranks, categories, iou_threshold)]


def check_image(image: Tensor, name: str) -> None:
    """Raise a clear error unless ``image`` is a float RGB tensor ``[3, H, W]`` in 0..1."""
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [3, H, W], got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(
            f"{name} must be RGB with shape [3, H, W], got {tuple(image.shape)}; select three "
            f"bands (R, G, B) and drop the batch dimension"
        )
    if not image.is_floating_point():
        raise ValueError(f"{name} must be float in 0..1, got dtype {image.dtype}; divide by 255")
    if image.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(image.shape)}")
    low, high = float(image.min()), float(image.max())
    if not (math.isfinite(low) and math.isfinite(high)) or low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"{name} must hold values in 0..1 (no NaN), got range [{low:.4g}, {high:.4g}]; "
            f"scale to 0..1 and fill no-data first"
        )
