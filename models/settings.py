"""SegEarth-OV's and DynamicEarth's settings and their published defaults, in one light module.

Plain Python (no torch), so the flows' option groups take their defaults from here and the
command line's ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from numbers import Integral
from typing import Any, Literal

from terrawatch.errors import InputError, UnknownSettingError

BACKBONES: dict[str, int] = {"ViT-B-16": 16, "ViT-B-32": 32, "ViT-L-14": 14}
"""Supported CLIP backbones and their patch sizes."""

DEFAULT_BACKBONE = "ViT-B-16"
"""The published SegEarth-OV backbone (SimFeatUp and AlignEarth weights exist for it only)."""

Attention = Literal["segearth", "sclip", "clearclip", "maskclip", "vanilla"]
"""Attention of the modified last block(s) of the CLIP image encoder."""


@dataclass(frozen=True)
class SegEarthSettings:
    """Inference settings; defaults are the published SegEarth-OV ones."""

    attention: Attention = "segearth"
    """Attention of the modified block(s): segearth, sclip, clearclip, maskclip, vanilla."""
    last_n_layers: int = 1
    """Number of modified last blocks, outputs summed (2 for AlignEarth)."""
    gba_lambda: float = 0.3
    """Global Bias Alleviation strength λ; 0 disables it."""
    logit_scale: float = 50.0
    """Softmax temperature inverse over the text queries."""
    prob_thd: float = 0.0
    """Pixels whose best class probability is below this get ``bg_idx``."""
    bg_idx: int = 0
    """Class index used for low-confidence pixels."""
    resize_long_side: int | None = 448
    """Resize the long side to this before windowing; None keeps the input resolution."""
    window: int = 224
    """Sliding-window size in pixels (at the resized resolution)."""
    stride: int = 112
    """Sliding-window stride in pixels."""
    batch_size: int = 8
    """Windows per forward pass."""

    def __post_init__(self) -> None:
        if self.window <= 0 or self.stride <= 0 or self.stride > self.window:
            raise InputError(
                f"need 0 < stride <= window, got window={self.window}, stride={self.stride}"
            )
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if not 0.0 <= self.prob_thd <= 1.0:
            raise InputError(f"prob_thd must be within 0..1, got {self.prob_thd!r}")
        if self.resize_long_side is not None and self.resize_long_side < 1:
            raise InputError(
                f"resize_long_side must be >= 1 or None, got {self.resize_long_side!r}"
            )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> SegEarthSettings:
        """Build from keyword arguments, rejecting unknown names with the valid ones listed."""
        valid = {field.name for field in fields(cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise UnknownSettingError(
                f"unknown SegEarth-OV settings {unknown}; valid settings: {sorted(valid)}"
            )
        return cls(**kwargs)


MAX_CLASS = 254
"""Largest class index of a change query (255 is no change / no data)."""


@dataclass(frozen=True)
class ChangeSettings:
    """DynamicEarth change-detection settings; defaults are the SAM-DINOv2-SegEarth-OV ones."""

    mode: Literal["mci", "imc"] = "mci"
    """``mci`` (Mask-Compare-Identify) or ``imc`` (Identify-Mask-Compare)."""
    theta_deg: float = 145.0
    """θ in degrees: changed ⇔ -cos(z1, z2) > cos(θ); 145 -> cos < 0.819."""
    nms_iou: float = 0.7
    """Box IoU of the cross-date NMS (M-C-I)."""
    area_thresh: float = 0.8
    """Masks covering at least this share of the image are dropped (M-C-I)."""
    ceg_iou: float = 0.01
    """A mask whose IoUs with the other date sum to at most this has no counterpart (I-M-C)."""
    rule: Literal["instance", "landcover"] = "instance"
    """M-C-I rule: ``instance`` (classes differ and own-date class is a target) or
    ``landcover`` (classes differ and either is a target)."""
    targets: tuple[int, ...] | None = None
    """Target class indices; None = every class but 0 (background)."""
    from_classes: tuple[int, ...] | None = None
    """Optional filter: report only changes whose t1 class is one of these."""
    to_classes: tuple[int, ...] | None = None
    """Optional filter: report only changes whose t2 class is one of these."""

    def __post_init__(self) -> None:
        if self.mode not in ("mci", "imc"):
            raise InputError(f"mode must be 'mci' or 'imc', got {self.mode!r}")
        if self.rule not in ("instance", "landcover"):
            raise InputError(f"rule must be 'instance' or 'landcover', got {self.rule!r}")
        if not 90.0 < self.theta_deg <= 180.0:
            raise InputError(
                f"theta_deg must be in (90, 180] degrees, got {self.theta_deg!r}; the "
                f"published values are 110-155 (145 for SAM-DINOv2-SegEarth-OV)"
            )
        for name, low, high in (("nms_iou", 0.0, 1.0), ("ceg_iou", 0.0, 1.0)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise InputError(f"{name} must be within {low}..{high}, got {value!r}")
        if not 0.0 < self.area_thresh <= 1.0:
            raise InputError(f"area_thresh must be within (0, 1], got {self.area_thresh!r}")
        for name in ("targets", "from_classes", "to_classes"):
            value = getattr(self, name)
            _check_classes(name, value)
            if value is not None:  # lists (JSON, CLI) become hashable tuples of int
                object.__setattr__(self, name, tuple(int(v) for v in value))


def _check_classes(name: str, value: tuple[int, ...] | None) -> None:
    if value is None:
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise InputError(f"{name} must be a tuple of class indices or None, got {value!r}")
    if len(value) == 0:
        raise InputError(f"{name} is empty: give at least one class index, or None for the default")
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, Integral)]
    bad += [v for v in value if isinstance(v, Integral) and not 0 <= v <= MAX_CLASS]
    if bad:
        raise InputError(f"{name} must hold class indices 0..{MAX_CLASS}, got {list(value)!r}")
