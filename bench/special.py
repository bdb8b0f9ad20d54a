"""Benchmark SPECIAL: seconds per megapixel of the refinement against the zero-shot pass.

One synthetic 12-band Sentinel-2-like scene; the zero-shot pass is what SPECIAL starts from
(spectrum -> RGB, SegEarth-OV at scales 1 and 2, BvSB), the refinement is the SPECIAL training
with its default schedule (10 epochs x 20 iterations) plus the prediction. Random weights of the
real ViT-B/16 + SimFeatUp architecture (no download): compute, not accuracy. One summary line::

    python bench/special.py [--size 448] [--threads 2] [--device cpu]

The peak memory of the land-cover flow's training step by scene size is
``bench/special_memory.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terrawatch.models.segearth import SegEarthOV, SegEarthSettings
from terrawatch.models.simfeatup import JBUOne
from terrawatch.models.special.pseudo_labels import fuse_scales
from terrawatch.models.special.spectral_rgb import (
    RGB_PERCENTILE,
    SPECTRUM_PERCENTILE,
    percentile_stretch,
    spectral_to_rgb,
)
from terrawatch.models.special.training import (
    SpecialSettings,
    SpectralTile,
    predict_probabilities,
    train_special,
)

S2_NM = (443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1610, 2190)
CLASSES = ["water", "tree", "grass", "building", "bare soil"]


def _scene(size: int) -> np.ndarray:
    """Smooth random fields per band: spatial structure like a scene, no meaning."""
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((1, len(S2_NM), size // 16 + 1, size // 16 + 1)))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")[0]
    return (smooth.numpy() + 0.05 * rng.random(smooth.shape)).astype(np.float32)


def _random_model(device: str) -> SegEarthOV:
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True)
    upsampler = JBUOne(feat_dim=int(clip.visual.proj.shape[1]))
    settings = SegEarthSettings(resize_long_side=None)
    return SegEarthOV(clip, upsampler, settings, weights_id="bench-random").to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=448, help="scene side in pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spectra = _scene(args.size)
    megapixels = args.size * args.size / 1e6
    with tempfile.TemporaryDirectory() as cache:
        model = _random_model(args.device)
        model.text_cache.directory = Path(cache)
        model.set_classes(CLASSES)
        started = time.perf_counter()
        rgb = percentile_stretch(spectral_to_rgb(spectra, S2_NM), RGB_PERCENTILE)
        zero_shot = fuse_scales(model, rgb)
        zero_shot_s = time.perf_counter() - started
    started = time.perf_counter()
    stretched = percentile_stretch(spectra, SPECTRUM_PERCENTILE)
    tile = SpectralTile(stretched, zero_shot.labels, zero_shot.confidence)
    trained = train_special([tile], len(CLASSES), SpecialSettings(), device=args.device)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    predict_probabilities(trained.classifier, stretched, args.device)
    predict_s = time.perf_counter() - started
    refine_s = train_s + predict_s
    print(
        f"special {args.size}x{args.size}x{len(S2_NM)} on {args.device} ({args.threads} threads): "
        f"zero-shot {zero_shot_s / megapixels:.1f} s/MP, refinement {refine_s / megapixels:.1f} "
        f"s/MP (train {train_s / megapixels:.1f} + predict {predict_s / megapixels:.2f}), "
        f"refinement/zero-shot {refine_s / zero_shot_s:.2f}x"
    )


if __name__ == "__main__":
    main()
