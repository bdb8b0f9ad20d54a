"""Materials that look alike in RGB but differ in the red edge or SWIR: the spectrum separates them.

Four materials in 8 x 8 blocks: grass and a green-painted surface share their visible spectrum
but only grass has a red edge (high near-infrared); water and asphalt are equally dark in the
visible but asphalt reflects in the shortwave infrared. RGB pseudo-labels cannot tell the pairs
apart, so (as CLIP would) they guess within each pair: 30 % of the blocks carry the other
member's label. The SPECIAL classifier trained on the full spectrum must separate the pairs;
the same training on the interpolated RGB alone cannot, which shows the gain is the spectrum's.
"""

from __future__ import annotations

import numpy as np

from terrawatch.models.special.spectral_rgb import spectral_to_rgb
from terrawatch.models.special.training import (
    SpecialSettings,
    SpectralTile,
    predict_probabilities,
    train_special,
)

WAVELENGTHS = np.linspace(450, 2400, 40)
GRASS, PAINT, WATER, ASPHALT = range(4)
PARTNER = {GRASS: PAINT, PAINT: GRASS, WATER: ASPHALT, ASPHALT: WATER}


def _spectrum(material: int) -> np.ndarray:
    visible_green = 0.04 + 0.06 * np.exp(-(((WAVELENGTHS - 550) / 40) ** 2))
    red_edge = 0.45 / (1 + np.exp(-(WAVELENGTHS - 715) / 15))
    if material == GRASS:
        return visible_green + red_edge * (WAVELENGTHS < 1400) + 0.15 * (WAVELENGTHS >= 1400)
    if material == PAINT:
        return visible_green + 0.02
    if material == WATER:
        return np.full_like(WAVELENGTHS, 0.03) * (WAVELENGTHS < 900)
    return 0.03 + 0.12 * (WAVELENGTHS > 1000)  # asphalt: dark, brighter in the SWIR


def _scene(seed: int = 0, block: int = 8, blocks: int = 6):
    rng = np.random.default_rng(seed)
    materials = rng.permutation(np.arange(blocks * blocks) % 4).reshape(blocks, blocks)
    truth = np.kron(materials, np.ones((block, block), dtype=int))
    spectra = np.stack([_spectrum(m) for m in range(4)])[truth].transpose(2, 0, 1)
    spectra = spectra + rng.normal(0, 0.01, spectra.shape)
    swapped = rng.random(materials.shape) < 0.3
    labels = np.where(swapped, np.vectorize(PARTNER.get)(materials), materials)
    pseudo = np.kron(labels, np.ones((block, block), dtype=int))
    confidence = np.full(truth.shape, 0.1, np.float32)  # pairs are ambiguous in RGB
    return spectra.astype(np.float32), truth, pseudo.astype(np.int16), confidence


def _within_pair_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float((predicted == truth).mean())


def test_the_spectrum_separates_what_rgb_pseudo_labels_merge():
    spectra, truth, pseudo, confidence = _scene()
    rgb = spectral_to_rgb(spectra, WAVELENGTHS)
    # visible-alike pairs really are alike in RGB (the premise), not in the spectrum
    grass_rgb, paint_rgb = (rgb[:, truth == m].mean(1) for m in (GRASS, PAINT))
    assert np.abs(grass_rgb - paint_rgb).max() < 0.03
    settings = SpecialSettings(seed=0)
    results = {}
    for name, data in (("spectrum", spectra), ("rgb", rgb)):
        scaled = (data / data.max()).astype(np.float32)
        trained = train_special([SpectralTile(scaled, pseudo, confidence)], 4, settings)
        predicted = predict_probabilities(trained.classifier, scaled).argmax(0)
        results[name] = _within_pair_accuracy(truth, predicted)
    pseudo_accuracy = _within_pair_accuracy(truth, pseudo)
    assert pseudo_accuracy < 0.8
    assert results["spectrum"] > 0.95, results
    assert results["rgb"] < results["spectrum"] - 0.15, results
