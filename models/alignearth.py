"""AlignEarth (SegEarth-OV-2): which weights and inference settings a sensor selects.

Li et al., "Annotation-Free Open-Vocabulary Segmentation for Remote-Sensing Images"
(arXiv 2508.18067), as specified in ``shared/reference/algorithms.md`` §2. On SAR, SegEarth-OV
runs unchanged except for the image encoder: a CLIP ViT-B/16 image tower distilled from the
optical one (AlignEarth), with the optical text encoder, the optical SimFeatUp checkpoint and
GBA as on optical images. The SAR configs of the reference repository set
``model_type='SCLIP'`` (softmax(qqᵀ) + softmax(kkᵀ)) and ``ssa_last_n_layers=2`` (the outputs
of the last two modified blocks summed); the paper does not describe these (§6 item 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from terrawatch.errors import InputError
from terrawatch.models.clip_backbone import Activation

Sensor = Literal["optical", "sar"]
SENSORS: tuple[str, ...] = ("optical", "sar")
ALIGNEARTH_WEIGHTS = "AlignEarth-SAR-ViT-B-16"
"""Registry name of the published AlignEarth checkpoint (:mod:`models.weights`)."""


@dataclass(frozen=True)
class SensorProfile:
    """What ``SegEarthOV.from_pretrained(sensor=...)`` loads by default for one sensor."""

    sensor: str
    weights: str
    """Registry name of the CLIP checkpoint (an explicit ``weights=`` path still wins)."""
    activation: Activation
    """MLP activation used when neither the caller nor the checkpoint names one."""
    settings: dict[str, Any] = field(default_factory=dict)
    """:class:`~models.segearth.SegEarthSettings` defaults; explicit settings still win."""


def sensor_profile(sensor: str, backbone: str) -> SensorProfile:
    """The weights, activation and setting defaults for ``sensor`` on ``backbone``.

    ``sar`` selects AlignEarth, published for ViT-B/16 only. Its activation defaults to GELU:
    the reference loads the file with open_clip's ``load_checkpoint`` into the ``ViT-B-16``
    config, which builds nn.GELU (QuickGELU only comes with ``pretrained='openai'`` or the
    ``-quickgelu`` configs). Which activation it was trained with is UNVERIFIED (§2.1);
    ``activation="quickgelu"`` overrides. The other SAR settings (logit scale 50, λ = 0.3,
    SimFeatUp, 448 long side with 224/112 windows as in ``cfg_openearthmap_sar`` and
    ``cfg_fusar_sar``, ``prob_thd`` 0) equal the optical defaults; the DDHR/WHU/PIE/YESeg
    configs instead resize to 224 and run the whole image (``resize_long_side=224,
    window=224``), which callers can pass explicitly.

    Raises:
        ValueError: unknown sensor, or ``sar`` with a backbone other than ViT-B-16.
    """
    if sensor == "optical":
        return SensorProfile("optical", backbone, "quickgelu")
    if sensor != "sar":
        raise InputError(f"sensor must be one of {SENSORS}, got {sensor!r}")
    if backbone != "ViT-B-16":
        raise InputError(
            f"sensor='sar' uses AlignEarth, published for ViT-B-16 only, got backbone "
            f"{backbone!r}; pass backbone='ViT-B-16' (or sensor='optical' for optical CLIP)"
        )
    settings = {"attention": "sclip", "last_n_layers": 2}
    return SensorProfile("sar", ALIGNEARTH_WEIGHTS, "gelu", settings)
