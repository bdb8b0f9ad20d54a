"""SPECIAL training: refinement of degraded pseudo-labels on real labelled Landsat data,
the procedure's bookkeeping, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from terrawatch.errors import InputError
from terrawatch.models.special.spectral_rgb import SPECTRUM_PERCENTILE, percentile_stretch
from terrawatch.models.special.training import (
    SpecialSettings,
    SpectralTile,
    check_pseudo_labels,
    predict_probabilities,
    train_special,
)
from tests.models.special.degrade import accuracy, labelled_pixels, zero_shot_like
from tests.models.special.satimage import CLASS_NAMES, load_scene

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def landsat():
    """The Statlog scene stretched, and per seed its degraded pseudo-labels and the map SPECIAL
    refines from them (default settings, one torch thread), without user labels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    scene = load_scene()
    valid = (scene.spectra != 0).any(axis=0)
    spectra = percentile_stretch(scene.spectra, SPECTRUM_PERCENTILE, valid)
    runs = {}
    for seed in SEEDS:
        labels, confidence = zero_shot_like(scene.truth, valid, len(CLASS_NAMES), seed)
        trained = train_special(
            [SpectralTile(spectra, labels, confidence)],
            len(CLASS_NAMES),
            SpecialSettings(seed=seed),
        )
        refined = predict_probabilities(trained.classifier, spectra).argmax(axis=0)
        runs[seed] = (labels, confidence, refined)
    torch.set_num_threads(threads)
    return scene, spectra, runs


@pytest.mark.slow
def test_refinement_improves_on_the_pseudo_labels_of_a_real_landsat_scene(landsat):
    """Measured over seeds 0-5 (default settings, one CPU thread), pseudo-labels -> refined:

    ====  ===============  ===============  ===============
    seed  OA               AA               kappa
    ====  ===============  ===============  ===============
    0     0.655 -> 0.774   0.652 -> 0.774   0.578 -> 0.726
    1     0.672 -> 0.829   0.660 -> 0.764   0.599 -> 0.786
    2     0.645 -> 0.778   0.629 -> 0.699   0.566 -> 0.723
    3     0.670 -> 0.802   0.671 -> 0.728   0.597 -> 0.751
    4     0.700 -> 0.789   0.682 -> 0.765   0.632 -> 0.741
    5     0.629 -> 0.749   0.623 -> 0.635   0.549 -> 0.681
    ====  ===============  ===============  ===============

    OA gains +0.09..+0.16 and kappa +0.11..+0.19 on every seed; AA gains +0.01..+0.12 (the
    small classes are the hard ones). The margins asserted sit well below the smallest measured
    gain (OA +0.05, kappa +0.07 per seed; AA: never worse, +0.04 on average) so numeric noise
    across platforms cannot fail the test, while a refinement that merely copied its
    pseudo-labels (gain 0) would.
    """
    scene, _, runs = landsat
    gains = []
    for labels, _, refined in runs.values():
        before = accuracy(scene.truth, labels)
        after = accuracy(scene.truth, refined)
        gains.append({k: after[k] - before[k] for k in before})
    for gain in gains:
        assert gain["OA"] > 0.05 and gain["kappa"] > 0.07 and gain["AA"] > 0, gains
    assert np.mean([g["AA"] for g in gains]) > 0.04, gains


@pytest.mark.slow
def test_a_few_hundred_labelled_pixels_improve_the_refinement(landsat):
    """300 ground-truth pixels (50 per class) as clean samples (``--labels``), measured with
    ``python bench/special_labels.py`` (seeds 0-4, default settings; accuracy on the truth
    pixels not given as labels):

    ====  =====================  =====================  =====================
    seed  OA  0 / 100 / 300      AA  0 / 100 / 300      kappa  0 / 100 / 300
    ====  =====================  =====================  =====================
    0     0.774 / 0.816 / 0.813  0.774 / 0.790 / 0.767  0.726 / 0.774 / 0.767
    1     0.829 / 0.840 / 0.827  0.764 / 0.801 / 0.753  0.786 / 0.802 / 0.783
    2     0.778 / 0.794 / 0.822  0.699 / 0.743 / 0.775  0.723 / 0.745 / 0.779
    3     0.802 / 0.821 / 0.815  0.728 / 0.749 / 0.744  0.751 / 0.775 / 0.768
    4     0.789 / 0.784 / 0.803  0.765 / 0.785 / 0.787  0.741 / 0.739 / 0.758
    mean  0.794 / 0.811 / 0.816  0.746 / 0.774 / 0.765  0.745 / 0.767 / 0.771
    ====  =====================  =====================  =====================

    A few hundred labels add about +0.02 OA and +0.02..0.03 AA and kappa on average, not on
    every seed (seed 1: -0.002 OA): they correct the spectral mapping, not the confidently wrong
    zero-shot regions they miss. Over seeds 0-2 the measured mean gain with 300 labels is OA
    +0.027, kappa +0.031; the test asks for a third of that on average (+0.01 each) and that no
    seed gets clearly worse (-0.02), so a change that ignored the labels (gain 0) fails.
    """
    scene, spectra, runs = landsat
    gains = []
    for seed, (labels, confidence, without) in runs.items():
        clean = labelled_pixels(scene.truth, 300, len(CLASS_NAMES), seed)
        trained = train_special(
            [SpectralTile(spectra, labels, confidence, clean)],
            len(CLASS_NAMES),
            SpecialSettings(seed=seed),
        )
        assert trained.history[0].clean > 0
        refined = predict_probabilities(trained.classifier, spectra).argmax(axis=0)
        held_out = np.where(clean >= 0, -1, scene.truth)
        before, after = accuracy(held_out, without), accuracy(held_out, refined)
        gains.append({k: after[k] - before[k] for k in before})
    assert all(g["OA"] > -0.02 and g["kappa"] > -0.02 for g in gains), gains
    assert np.mean([g["OA"] for g in gains]) > 0.01, gains
    assert np.mean([g["kappa"] for g in gains]) > 0.01, gains


def _small_tile(seed: int = 0) -> SpectralTile:
    rng = np.random.default_rng(seed)
    labels = np.zeros((16, 16), np.int16)
    labels[:, 8:] = 1
    spectra = rng.random((3, 16, 16)).astype(np.float32) * 0.1
    spectra[0] += labels  # class 1 is brighter in band 0
    return SpectralTile(spectra, labels, rng.random((16, 16)).astype(np.float32))


def test_history_records_warm_up_then_the_noisy_label_sets():
    settings = SpecialSettings(epochs=3, warmup_epochs=1, iterations=2, samples_per_class=20)
    result = train_special([_small_tile(), _small_tile(1)], 2, settings)
    first, *later = result.history
    assert first.hard == first.confident == 0 and first.confident_pixels == 0
    assert all(r.confident_pixels > 0 and r.hard_pixels > 0 for r in later)
    assert all(r.random_pixels <= 2 * 20 for r in result.history)  # duplicates collapse
    assert result.history[-1].learning_rate < settings.learning_rate  # cosine schedule ran
    info = result.provenance()
    assert info["settings"]["hard_weight"] == 0.1 and len(info["history"]) == 3


def test_a_class_without_pseudo_labels_is_named_before_training():
    tile = _small_tile()
    with pytest.raises(InputError, match=r"'roof'.*--classes"):
        check_pseudo_labels([tile], ["soil", "grass", "roof"])
    check_pseudo_labels([tile], ["soil", "grass"])


def test_bad_settings_and_tiles_are_input_errors():
    with pytest.raises(InputError, match="warm-up"):
        SpecialSettings(epochs=2, warmup_epochs=3)
    tile = _small_tile()
    tile.spectra[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        train_special([tile], 2)
