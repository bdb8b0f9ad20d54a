"""SPECIAL refinement of one image: zero-shot SegEarth-OV map -> spectral classifier map.

The zero-shot pass sees RGB interpolated from the spectrum (655/553/451 nm); the classifier
trained from its pseudo-labels sees every usable band at the image's own resolution
(:mod:`terrawatch.models.special`). Returns both maps and the provenance of the refinement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from terrawatch.models.special.pseudo_labels import ProbabilityModel, fuse_scales
from terrawatch.models.special.spectral_rgb import (
    RGB_PERCENTILE,
    RGB_WAVELENGTHS_NM,
    SPECTRUM_PERCENTILE,
    percentile_stretch,
    spectral_to_rgb,
)
from terrawatch.models.special.training import (
    SpecialSettings,
    SpectralTile,
    check_pseudo_labels,
    predict_probabilities,
    train_special,
)
from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.core.spectral_image import SpectralImage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefinedMap:
    labels: np.ndarray
    """Refined class index ``uint8 [H, W]`` (NODATA outside the valid pixels)."""
    zero_shot: np.ndarray
    """The two-scale SegEarth-OV map it was trained from, same encoding."""
    rgb: np.ndarray
    """The interpolated RGB in 0..1 (for previews)."""
    provenance: dict[str, Any]


def refine_image(
    model: ProbabilityModel,
    image: SpectralImage,
    class_names: list[str],
    settings: SpecialSettings | None = None,
    device: str = "cpu",
    user_labels: np.ndarray | None = None,
) -> RefinedMap:
    """Zero-shot pseudo-labels of ``image`` refined by SPECIAL (one tile: the whole image).

    ``user_labels`` (class index per pixel, -1 unlabelled; :mod:`.user_labels`) join the
    training as clean samples with full weight (``SpecialSettings.clean_weight``).
    """
    settings = settings or SpecialSettings()
    rgb = spectral_to_rgb(image.spectra, image.wavelengths_nm)
    rgb = percentile_stretch(rgb, RGB_PERCENTILE, image.valid)
    pseudo = fuse_scales(model, rgb)
    labels = np.where(image.valid, pseudo.labels, -1).astype(np.int16)
    tile = SpectralTile(
        percentile_stretch(image.spectra, SPECTRUM_PERCENTILE, image.valid),
        labels,
        np.where(image.valid, pseudo.confidence, 0.0).astype(np.float32),
        None if user_labels is None else np.where(image.valid, user_labels, -1),
    )
    check_pseudo_labels([tile], class_names)
    trained = train_special([tile], len(class_names), settings, device=device)
    refined = predict_probabilities(trained.classifier, tile.spectra, device).argmax(axis=0)
    zero_shot = np.where(image.valid, pseudo.labels, NODATA).astype(np.uint8)
    agreement = float((refined[image.valid] == pseudo.labels[image.valid]).mean())
    logger.info("SPECIAL: refined map agrees with the zero-shot map on %.1f %%", 100 * agreement)
    provenance = {
        **trained.provenance(),
        "rgb_wavelengths_nm": list(RGB_WAVELENGTHS_NM),
        "band_wavelengths_nm": list(image.wavelengths_nm),
        "source_bands": list(image.band_indexes),
        "agreement_with_zero_shot": round(agreement, 4),
        "user_labelled_pixels": 0 if user_labels is None else int((tile.clean_labels >= 0).sum()),
    }
    return RefinedMap(
        labels=np.where(image.valid, refined, NODATA).astype(np.uint8),
        zero_shot=zero_shot,
        rgb=rgb,
        provenance=provenance,
    )
