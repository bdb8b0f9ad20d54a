"""One image through SPECIAL: zero-shot map -> refined map, on real Sentinel-2 bands.

The zero-shot segmenter here is a plug-in (the ``ModelSpec.factory`` contract: SegEarth-OV's
``predict_logits``) that scores RGB against class colours, because the tiny random CLIP of the
test fixtures gives every pixel the same class (see tests/flows/test_cli_special.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from terrawatch.models.special.spectral_rgb import (
    RGB_PERCENTILE,
    percentile_stretch,
    spectral_to_rgb,
)
from terrawatch.models.special.training import SpecialSettings
from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.core.special_refine import refine_image
from terrawatch.tasks.core.spectral_image import read_spectral_image
from tests.tasks.core.test_spectral_image import write_s2_stack


class ColourSegmenter:
    """Class probabilities from the distance of each RGB pixel to a class colour."""

    def __init__(self, colours: list[tuple[float, float, float]]):
        self.colours = torch.tensor(colours).view(1, -1, 3, 1, 1)

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        distance = ((images[:, None] - self.colours) ** 2).sum(dim=2)
        return torch.softmax(-20 * distance, dim=1)


@pytest.fixture
def one_torch_thread():
    """Small tiles: extra torch threads only spin against each other on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_refine_image_returns_both_maps_and_the_training_record(tmp_path, one_torch_thread):
    path = tmp_path / "s2.tif"
    write_s2_stack(path)
    image = read_spectral_image(path)
    image.valid[:3, :3] = False
    rgb = percentile_stretch(
        spectral_to_rgb(image.spectra, image.wavelengths_nm), RGB_PERCENTILE, image.valid
    )
    greys = np.percentile(rgb.mean(axis=0)[image.valid], [10, 50, 90])
    segmenter = ColourSegmenter([(g, g, g) for g in greys])
    settings = SpecialSettings(epochs=4, warmup_epochs=2, iterations=5)
    result = refine_image(segmenter, image, ["dark", "mid", "bright"], settings)
    assert result.labels.shape == result.zero_shot.shape == image.valid.shape
    assert (result.labels[:3, :3] == NODATA).all() and (result.zero_shot[:3, :3] == NODATA).all()
    assert set(np.unique(result.labels[image.valid])) <= {0, 1, 2}
    record = result.provenance
    assert [r["epoch"] for r in record["history"]] == [0, 1, 2, 3]
    assert record["history"][-1]["confident_pixels"] > 0
    assert record["band_wavelengths_nm"][-1] == 2190.0
    agreement = (result.labels == result.zero_shot)[image.valid].mean()
    assert record["agreement_with_zero_shot"] == round(float(agreement), 4)
    assert 0.5 < agreement  # refined, not replaced
