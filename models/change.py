"""Open-vocabulary change detection (DynamicEarth): M-C-I and I-M-C on one pair of images.

Li et al., "DynamicEarth" (AAAI 2026), as specified in ``shared/reference/algorithms.md`` §3:

* **M-C-I** (Mask -> Compare -> Identify), the SAM-DINOv2-SegEarth-OV pipeline: propose masks on
  t1 and t2, merge both dates (drop >= 80 % of the image, box NMS 0.7), keep masks whose mean
  features moved by more than the θ rule allows, classify the survivors on both dates with the
  identifier (mean class probability over the mask, argmax) and apply the instance or land-cover
  rule; the change map is the union of the kept masks.
* **I-M-C** (Identify -> Mask -> Compare): classify each pixel on both dates, take the connected
  components of target-class pixels per date as masks, and report a mask when it has no
  counterpart on the other date (``instance_ceg``) and the θ rule says its features changed.
  The reference identifies with detectors (APE, Grounding DINO); we use the same per-pixel
  identifier as M-C-I (SegEarth-OV).

Usage::

    detector = ChangeDetector(SuperpixelProposer(), ClipFeatures(seg), seg.predict_logits)
    result = detector.detect(t1, t2)      # float [3, H, W] in 0..1, same grid
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from terrawatch.models.comparator import bitemporal_match, instance_ceg
from terrawatch.models.features import FeatureExtractor
from terrawatch.models.identifier import Identifier, instance_rule, landcover_rule, mask_class_probs
from terrawatch.models.proposals import MaskProposer, MaskSet, check_image, merge_bitemporal
from terrawatch.models.settings import MAX_CLASS, ChangeSettings

NO_CHANGE = 255
"""class_from / class_to value where nothing changed."""


@dataclass(frozen=True, eq=False)
class ChangeResult:
    """Change map of one pair, on the CPU."""

    changed: Tensor
    """bool ``[H, W]``."""
    class_from: Tensor
    """uint8 ``[H, W]``: class at t1 of the changed mask; 255 where not changed."""
    class_to: Tensor
    """uint8 ``[H, W]``: class at t2; 255 where not changed."""
    masks: MaskSet
    """The compared masks (merged proposals for M-C-I, components for I-M-C)."""
    kept: Tensor
    """bool ``[N]``: masks reported as change."""
    cosine: Tensor
    """float ``[N]``: cosine of each mask's mean features between the dates."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step: propose, compare, identify, paint, total."""


class ChangeDetector:
    """Runs M-C-I or I-M-C (see the module docstring) with the given components.

    Args:
        proposer: class-agnostic mask proposer (M-C-I only), e.g. SAM or superpixels.
        features: dense feature extractor of the θ rule, e.g. DINOv2 or SegEarth-OV's CLIP.
        identifier: images ``[B, 3, H, W]`` -> class probabilities ``[B, K, H, W]``.
        settings: :class:`ChangeSettings`; default the published SAM-DINOv2-SegEarth-OV ones.

    Raises:
        ValueError: target classes outside the identifier's classes (when it exposes them).
    """

    def __init__(
        self,
        proposer: MaskProposer,
        features: FeatureExtractor,
        identifier: Identifier,
        settings: ChangeSettings | None = None,
    ):
        if not callable(identifier):
            raise TypeError(f"identifier must be callable, got {type(identifier).__name__}")
        self.proposer = proposer
        self.features = features
        self.identifier = identifier
        self.settings = settings or ChangeSettings()
        classes = _class_count(identifier)
        if classes is not None:
            self._targets(classes)  # fail early on bad targets

    def provenance(self) -> dict[str, Any]:
        """Steps, their settings and weight hashes, θ and the rule, for cube attributes."""
        settings = self.settings
        identifier = getattr(getattr(self.identifier, "__self__", None), "provenance", None)
        return {
            "method": "DynamicEarth " + ("M-C-I" if settings.mode == "mci" else "I-M-C"),
            "settings": asdict(settings),
            "theta_deg": settings.theta_deg,
            "rule": settings.rule,
            "proposer": self.proposer.provenance() if settings.mode == "mci" else None,
            "features": self.features.provenance(),
            "identifier": identifier() if callable(identifier) else repr(self.identifier),
        }

    def detect(self, t1: Tensor, t2: Tensor, valid: Tensor | None = None) -> ChangeResult:
        """Change map of RGB images ``t1``, ``t2`` (float ``[3, H, W]`` in 0..1, same grid).

        Args:
            valid: optional bool ``[H, W]``, pixels valid at both dates; masks are clipped to
                it and nothing outside it is reported.

        Raises:
            ValueError: images of different shapes or not RGB in 0..1, a bad ``valid``, or
                target classes the identifier does not have.
        """
        check_image(t1, "t1")
        check_image(t2, "t2")
        if t1.shape != t2.shape:
            raise ValueError(
                f"t1 and t2 must have the same shape (same grid), got {tuple(t1.shape)} and "
                f"{tuple(t2.shape)}; reproject both dates onto one grid first"
            )
        if valid is not None:
            if valid.dtype != torch.bool or tuple(valid.shape) != tuple(t1.shape[1:]):
                raise ValueError(
                    f"valid must be bool [H, W] = {tuple(t1.shape[1:])}, got dtype "
                    f"{valid.dtype} and shape {tuple(valid.shape)}"
                )
        clock = _Clock()
        if self.settings.mode == "mci":
            masks, changed, cosine, class1, class2 = self._mask_compare_identify(
                t1, t2, valid, clock
            )
        else:
            masks, changed, cosine, class1, class2 = self._identify_mask_compare(
                t1, t2, valid, clock
            )
        kept = changed & self._class_filters(class1, class2)
        return self._paint(masks, kept, cosine, class1, class2, valid, clock)

    def _mask_compare_identify(
        self, t1: Tensor, t2: Tensor, valid: Tensor | None, clock: _Clock
    ) -> tuple[MaskSet, Tensor, Tensor, Tensor, Tensor]:
        settings = self.settings
        first = self.proposer.propose(t1).with_origin(0)
        second = self.proposer.propose(t2).with_origin(1)
        if valid is not None:
            first, second = first.clipped(valid), second.clipped(valid)
        masks = merge_bitemporal(first, second, settings.nms_iou, settings.area_thresh)
        del first, second  # dense masks of both dates: free them before the next steps
        clock.lap("propose")
        features1, features2 = self.features.features(t1), self.features.features(t2)
        changed, cosine = bitemporal_match(masks, features1, features2, settings.theta_deg)
        clock.lap("compare")
        probs1, probs2 = self._probabilities(t1, t2)
        targets = self._targets(probs1.shape[0]).to(changed.device)
        # every mask is classified (one pass over the masks); only the θ-changed ones can be kept
        class1, class2 = _mask_classes(probs1, probs2, masks)
        class1, class2 = class1.to(changed.device), class2.to(changed.device)
        if settings.rule == "instance":
            keep = instance_rule(class1, class2, masks.origin.to(class1.device), targets)
        else:  # land cover: any class change that involves a target class
            involved = torch.isin(class1, targets) | torch.isin(class2, targets)
            keep = landcover_rule(class1, class2) & involved
        clock.lap("identify")
        return masks, changed & keep, cosine, class1, class2

    def _identify_mask_compare(
        self, t1: Tensor, t2: Tensor, valid: Tensor | None, clock: _Clock
    ) -> tuple[MaskSet, Tensor, Tensor, Tensor, Tensor]:
        settings = self.settings
        probs1, probs2 = self._probabilities(t1, t2)
        targets = self._targets(probs1.shape[0])
        clock.lap("identify")
        parts = [
            _components(probs.argmax(dim=0), targets, valid, date)
            for date, probs in enumerate((probs1, probs2))
        ]
        masks = MaskSet.concat(parts, *t1.shape[1:])
        clock.lap("propose")
        no_counterpart = instance_ceg(masks, settings.ceg_iou)
        features1, features2 = self.features.features(t1), self.features.features(t2)
        moved, cosine = bitemporal_match(masks, features1, features2, settings.theta_deg)
        # The reference filters instance_ceg's survivors with bitemporal_match: both must hold.
        changed = no_counterpart.to(moved.device) & moved
        clock.lap("compare")
        class1, class2 = _mask_classes(probs1, probs2, masks)
        clock.lap("identify")
        return masks, changed, cosine, class1.to(changed.device), class2.to(changed.device)

    def _probabilities(self, t1: Tensor, t2: Tensor) -> tuple[Tensor, Tensor]:
        """Class probabilities ``[K, H, W]`` of both dates, checked."""
        out = []
        for name, image in (("t1", t1), ("t2", t2)):
            probs = self.identifier(image.unsqueeze(0))
            if probs.ndim != 4 or probs.shape[0] != 1 or probs.shape[2:] != image.shape[1:]:
                raise ValueError(
                    f"identifier must return class probabilities [1, K, H, W] = [1, K, "
                    f"{image.shape[1]}, {image.shape[2]}] for {name}, got {tuple(probs.shape)}"
                )
            out.append(probs[0])
        if out[0].shape[0] > MAX_CLASS + 1:
            raise ValueError(
                f"at most {MAX_CLASS + 1} classes are supported, got {out[0].shape[0]}"
            )
        return out[0], out[1]

    def _targets(self, classes: int) -> Tensor:
        """Target class indices as a tensor, checked against the identifier's class count."""
        settings = self.settings
        targets = settings.targets if settings.targets is not None else tuple(range(1, classes))
        if not targets:
            raise ValueError(
                f"the identifier has {classes} class(es) and no target class: with targets=None "
                f"every class but 0 (background) is a target, so give at least two classes "
                f"(e.g. ['background', 'building']) or set targets explicitly"
            )
        for name in ("targets", "from_classes", "to_classes"):
            value = getattr(settings, name)
            if value is not None and max(value) >= classes:
                raise ValueError(
                    f"{name}={list(value)!r} names a class the identifier does not have: it "
                    f"has {classes} classes (indices 0..{classes - 1})"
                )
        return torch.tensor(sorted(set(targets)), dtype=torch.int64)

    def _class_filters(self, class1: Tensor, class2: Tensor) -> Tensor:
        keep = torch.ones_like(class1, dtype=torch.bool)
        for classes, values in (
            (self.settings.from_classes, class1),
            (self.settings.to_classes, class2),
        ):
            if classes is not None:
                keep &= torch.isin(values, torch.tensor(classes, device=values.device))
        return keep

    def _paint(
        self,
        masks: MaskSet,
        kept: Tensor,
        cosine: Tensor,
        class1: Tensor,
        class2: Tensor,
        valid: Tensor | None,
        clock: _Clock,
    ) -> ChangeResult:
        """Union of the kept masks; where they overlap, the most changed one (lowest cosine)."""
        if masks.masks.device.type != "cpu":
            masks = MaskSet(masks.masks.cpu(), masks.scores.cpu(), masks.origin.cpu())
        kept, cosine = kept.cpu(), cosine.cpu().float()
        height, width = masks.shape
        changed = torch.zeros(height, width, dtype=torch.bool)
        class_from = torch.full((height, width), NO_CHANGE, dtype=torch.uint8)
        class_to = class_from.clone()
        order = torch.nonzero(kept).flatten()
        order = order[torch.argsort(cosine[order], descending=True, stable=True)]
        boxes = masks.boxes().long()
        for index in order.tolist():
            x0, y0, x1, y1 = boxes[index].tolist()
            mask = masks.masks[index, y0:y1, x0:x1]
            changed[y0:y1, x0:x1] |= mask
            class_from[y0:y1, x0:x1][mask] = int(class1[index])
            class_to[y0:y1, x0:x1][mask] = int(class2[index])
        if valid is not None:  # masks are clipped already; this guards custom proposers
            outside = ~valid.cpu()
            changed[outside] = False
            class_from[outside] = NO_CHANGE
            class_to[outside] = NO_CHANGE
        clock.lap("paint")
        return ChangeResult(changed, class_from, class_to, masks, kept, cosine, clock.timings())


def _mask_classes(probs1: Tensor, probs2: Tensor, masks: MaskSet) -> tuple[Tensor, Tensor]:
    """Argmax of each mask's mean class probability at t1 and at t2 (one pass over the masks)."""
    classes = probs1.shape[0]
    both = torch.cat([probs1, probs2.to(probs1.device)])
    means = mask_class_probs(both, masks.masks, masks.boxes())
    return means[:, :classes].argmax(dim=1), means[:, classes:].argmax(dim=1)


def _components(labels: Tensor, targets: Tensor, valid: Tensor | None, date: int) -> MaskSet:
    """Connected components (8-connected) of each target class's pixels, as masks of ``date``."""
    from skimage.measure import label

    height, width = labels.shape
    plane = labels.cpu().numpy()
    inside = np.ones_like(plane, dtype=bool) if valid is None else valid.cpu().numpy()
    sets = []
    for target in targets.tolist():
        components = label((plane == target) & inside, connectivity=2, background=0)
        if components.max() > 0:
            ids = torch.from_numpy(components.astype(np.int64) - 1)  # background -> -1
            sets.append(MaskSet.from_labels(ids, origin=date))
    return MaskSet.concat(sets, height, width)


def _class_count(identifier: Identifier) -> int | None:
    """Number of classes of an identifier that exposes them (a SegEarthOV method), else None."""
    owner = getattr(identifier, "__self__", identifier)
    try:
        classes = getattr(owner, "classes", None)
    except RuntimeError:  # SegEarthOV without classes set yet
        return None
    inner = getattr(classes, "synonyms", None)
    return len(inner) if isinstance(inner, tuple) else None


class _Clock:
    """Wall-clock seconds per step (CUDA-synchronised so GPU work lands in its own step)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.last
        self.last = now

    def timings(self) -> dict[str, float]:
        return {**self.laps, "total": self.last - self.start}
