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


def _label_file(tmp_path, image, rows):
    """A GeoPackage of points at pixel centres ``(row, col, class name)``."""
    import geopandas as gpd
    from shapely.geometry import Point

    transform = image.profile["transform"]
    points = [Point(*(transform * (c + 0.5, r + 0.5))) for r, c, _ in rows]
    frame = gpd.GeoDataFrame({"class": [n for *_, n in rows]}, geometry=points)
    frame = frame.set_crs(image.profile["crs"])
    path = tmp_path / "labels.gpkg"
    frame.to_file(path, driver="GPKG")
    return path


def test_user_labels_are_rasterised_checked_and_rescue_an_unseen_class(tmp_path, one_torch_thread):
    from terrawatch.errors import InputError
    from terrawatch.tasks.core.user_labels import read_user_labels

    path = tmp_path / "s2.tif"
    write_s2_stack(path)
    image = read_spectral_image(path)
    names = ["dark", "mid", "bright", "roof"]
    shape = image.valid.shape
    labels_path = _label_file(tmp_path, image, [(5, 6, "roof"), (7, 8, "Roof"), (9, 9, "dark")])
    labels = read_user_labels(labels_path, names, image.profile, shape)
    assert labels[5, 6] == labels[7, 8] == 3 and labels[9, 9] == 0 and (labels >= 0).sum() == 3
    bad = _label_file(tmp_path, image, [(5, 6, "chimney")])
    with pytest.raises(InputError, match=r"\['chimney'\] are not among the classes"):
        read_user_labels(bad, names, image.profile, shape)
    far = _label_file(tmp_path, image, [(5000, 6, "roof")])
    with pytest.raises(InputError, match="1 of 1 features lie outside"):
        read_user_labels(far, names, image.profile, shape)
    rgb = percentile_stretch(
        spectral_to_rgb(image.spectra, image.wavelengths_nm), RGB_PERCENTILE, image.valid
    )
    greys = np.percentile(rgb.mean(axis=0)[image.valid], [10, 50, 90])
    # the segmenter never predicts "roof" (its colour is impossible): only the labels teach it
    segmenter = ColourSegmenter([(g, g, g) for g in greys] + [(5.0, 5.0, 5.0)])
    settings = SpecialSettings(epochs=3, warmup_epochs=1, iterations=5)
    result = refine_image(segmenter, image, names, settings, user_labels=labels)
    assert result.provenance["user_labelled_pixels"] == 3
    assert result.provenance["history"][0]["clean"] > 0
